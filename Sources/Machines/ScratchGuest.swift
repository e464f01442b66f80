import Foundation
internal import Libvirt

/// A throwaway guest booted from media under UEFI (the media verifier's): disks as given, an
/// optional SSH forward from 127.0.0.1, its serial console in a log. Defined, started, watched,
/// then always destroyed and undefined: nothing of it outlives `HostConnection.withScratchGuest`.
public struct ScratchGuest: Sendable {
    /// One disk of the guest.
    public struct Disk: Sendable, Equatable {
        public enum Format: String, Sendable { case qcow2, raw }
        public enum Bus: String, Sendable { case virtio, sata, usb }
        public var path: String
        public var format: Format
        /// The guest's device name (`vda`, `sda`).
        public var target: String
        public var bus: Bus
        /// A CD-ROM rather than a disk.
        public var cdrom: Bool
        /// Firmware boot order (1 first); nil for a disk firmware never boots.
        public var bootOrder: Int?
        public init(path: String, format: Format, target: String, bus: Bus = .virtio, cdrom: Bool = false, bootOrder: Int? = nil) {
            self.path = path; self.format = format; self.target = target; self.bus = bus; self.cdrom = cdrom; self.bootOrder = bootOrder
        }

        var domain: DomainSpec.Disk {
            let bus: DomainSpec.Disk.Bus = switch self.bus {
            case .virtio: .virtio
            case .sata: .sata
            case .usb: .usb
            }
            return DomainSpec.Disk(path: path, format: format == .qcow2 ? .qcow2 : .raw, target: target,
                                   bus: bus, device: cdrom ? .cdrom : .disk, bootOrder: bootOrder)
        }
    }

    /// The domain's name on the host.
    public var domainName: String
    /// The name used in messages (`usb-secure`).
    public var name: String
    public var disks: [Disk]
    public var secureBoot: Bool
    /// The host port forwarded to the guest's port 22, if any.
    public var sshPort: Int?
    /// Where QEMU writes the serial console.
    public var serialLog: String
    public var labels: [String: String]
    public var memoryMiB = 2048
    public var cpus = 2

    public init(domainName: String, name: String, disks: [Disk], secureBoot: Bool, sshPort: Int?, serialLog: String,
                labels: [String: String]) {
        self.domainName = domainName; self.name = name; self.disks = disks; self.secureBoot = secureBoot
        self.sshPort = sshPort; self.serialLog = serialLog; self.labels = labels
    }

    /// The domain: TCG (media are checked as any PC would boot them), UEFI, a user-mode NIC
    /// restricted to the SSH forward.
    func domainSpec() -> DomainSpec {
        var nics: [DomainSpec.NIC] = []
        if let p = sshPort {
            nics.append(.init(mode: .user(.init(forwards: [.init(host: p, guest: 22)], restrict: true)), mac: "52:54:00:fe:00:01"))
        }
        return DomainSpec(name: domainName, accelerator: .tcg, memoryMiB: memoryMiB, vcpus: cpus, cpuModel: "qemu64", boot: nil,
                          uefi: .init(secureBoot: secureBoot), disks: disks.map(\.domain), nics: nics, serialLog: serialLog,
                          vncPort: nil, labels: labels)
    }
}

extension HostConnection {
    /// Defines and starts `guest` (a leftover of its name is removed first), runs `body` with a
    /// watch on it, and always destroys and undefines it again.
    public func withScratchGuest<T: Sendable>(_ guest: ScratchGuest, _ body: (GuestWatch) async throws -> T) async throws -> T {
        try? FileManager.default.removeItem(atPath: guest.serialLog)
        try Machine.makeSerialLog(guest.serialLog)
        try await removeScratch(guest.domainName)
        let d = try await libvirt.define(xml: guest.domainSpec().xml())
        defer { d.close() }
        do { try await d.start() } catch {
            try? await d.undefine()
            throw error
        }
        do {
            let result = try await body(GuestWatch(connection: libvirt, domainName: guest.domainName, node: guest.name,
                                                   serialLog: guest.serialLog))
            try await removeScratch(guest.domainName)
            return result
        } catch {
            try? await removeScratch(guest.domainName)
            throw error
        }
    }

    func removeScratch(_ name: String) async throws {
        guard let d = try await libvirt.domain(named: name) else { return }
        defer { d.close() }
        try await d.destroy()
        try await d.undefine()
    }
}
