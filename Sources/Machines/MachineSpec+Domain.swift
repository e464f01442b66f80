import Foundation
internal import Libvirt
import VMCtlSupport

/// The spec → domain XML mapping: the one place a `MachineSpec` becomes libvirt's `DomainSpec`.
extension MachineSpec {
    /// The domain: its boot, the overlay and the seed, its NICs, its labels. Firmware boots
    /// the overlay first (boot order 1); the seed is never a boot device.
    func domainSpec() throws -> DomainSpec {
        var l = labels
        l["node"] = hostname
        var direct: DomainSpec.DirectBoot?
        var uefi: DomainSpec.UEFI?
        var rootBootOrder: Int?
        switch boot {
        case .kernel(let b):
            direct = .init(kernel: b.kernel, initrd: b.initrd, cmdline: b.cmdline + Machine.testHang(hostname))
        case .firmware(.bios):
            rootBootOrder = 1  // no <loader>: libvirt's default firmware, SeaBIOS
        case .firmware(.uefi(let secureBoot)):
            uefi = .init(secureBoot: secureBoot)  // libvirt picks the OVMF build and makes the NVRAM
            rootBootOrder = 1
        case nil:
            throw VMCtlError("machine \(hostname) has no boot source")
        }
        var spec = DomainSpec(
            name: name, accelerator: accelerator.domain, memoryMiB: memoryMiB, vcpus: cpus,
            cpuModel: accelerator == .tcg ? "qemu64" : nil, boot: direct, uefi: uefi,
            disks: [.init(path: files.disk, format: .qcow2, target: "vda", bootOrder: rootBootOrder),
                    .init(path: files.seed, format: .raw, target: "vdb", readOnly: true)],
            nics: try networks.map { try $0.libvirtNIC }, serialLog: console == .logFile ? files.serialLog : nil,
            vncPort: vncPort,
            vncSocket: vncPort == nil ? files.vncSocket : nil, labels: l,
            channel: identityPort ? .init(name: WarmIdentity.portName, socket: files.identitySocket) : nil, uuid: uuid)
        spec.tbCacheMiB = memoryLevers.tbCacheMiB
        spec.balloon = memoryLevers.balloon
        return spec
    }
}

extension NetworkAttachment {
    /// The NIC as libvirt sees it; only the machine layer's own attachments have one.
    var libvirtNIC: DomainSpec.NIC {
        get throws {
            guard let a = self as? any LibvirtAttachment else {
                throw VMCtlError("\(type(of: self)) is not a NIC the machine layer can attach")
            }
            return a.nic
        }
    }
}
