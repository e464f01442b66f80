import Blocking
import CloudInit
import Foundation
import Libvirt
import SSH
import VMCtlSupport
import Images

/// What a node is doing now, for progress output and state.
public enum NodePhase: String, Codable, Sendable, CaseIterable {
    case planned, defining, booting, cloudInit = "cloud-init", verified = "ssh verified", stopped, failed
}

/// Creates, boots and verifies one guest: overlay disk, seed ISO, domain, readiness.
public struct NodeLauncher: Sendable {
    public let connection: Connection
    public let image: Image
    public let accelerator: DomainSpec.Accelerator
    public let clusterKey: KeyPair
    public let labels: [String: String]
    public let cpus: Int
    public let memoryMiB: Int
    public let diskBytes: UInt64
    /// The cluster segment's socket (QEMU `stream` netdev), if any.
    public let clusterSocket: String?
    public let guestInternet: Bool
    /// Every node's cluster address and names, for /etc/hosts.
    public let hosts: [(address: String, names: [String])]

    public init(connection: Connection, image: Image, accelerator: DomainSpec.Accelerator, clusterKey: KeyPair,
                labels: [String: String], cpus: Int, memoryMiB: Int, diskBytes: UInt64, clusterSocket: String?,
                guestInternet: Bool, hosts: [(address: String, names: [String])]) {
        self.connection = connection; self.image = image; self.accelerator = accelerator; self.clusterKey = clusterKey
        self.labels = labels; self.cpus = cpus; self.memoryMiB = memoryMiB; self.diskBytes = diskBytes
        self.clusterSocket = clusterSocket; self.guestInternet = guestInternet; self.hosts = hosts
    }

    /// The management NIC's fixed slirp address: static, so no DHCP wait.
    static let mgmtAddress = "10.0.2.15/24"
    static let mgmtGateway = "10.0.2.2"

    /// Makes the node's disk, host key and seed, and defines its domain. Returns the plan
    /// with the host key pinned.
    public func prepare(_ plan: NodePlan) async throws -> NodePlan {
        var plan = plan
        let fm = FileManager.default
        // QEMU (libvirt-qemu) reaches its files by name through directories it cannot list.
        try FileAccess.directory((plan.directory as NSString).deletingLastPathComponent, qemu: true)
        try FileAccess.directory(plan.directory, qemu: true)
        try Self.makeVNCDirectory(plan.vncDirectory)
        try await Command("qemu-img", ["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", image.rootDisk,
                                       plan.disk, String(diskBytes)]).checkedAsync()
        try FileAccess.shareWithQemu(plan.disk, writable: true)
        try Self.makeSerialLog(plan.serialLog)
        try? fm.removeItem(atPath: plan.hostKeyPath)
        try? fm.removeItem(atPath: plan.hostKeyPath + ".pub")
        let hostKey = try await KeyPair.generate(at: plan.hostKeyPath, comment: "\(plan.name) host key")
        plan.hostKey = try hostKey.pin()
        // The seed carries the node's host private key: QEMU's group may read it, nobody else.
        try await SeedISO.write(try SeedISO.files(for: seedConfig(plan, hostKey: hostKey)), to: plan.seed)
        try FileAccess.shareWithQemu(plan.seed)
        try await connection.define(xml: domainSpec(plan).xml()).close()
        return plan
    }

    func seedConfig(_ plan: NodePlan, hostKey: KeyPair) throws -> SeedConfig {
        var interfaces = [SeedConfig.Interface(id: "mgmt", mac: plan.mgmtMAC, addresses: [Self.mgmtAddress],
                                               gateway: Self.mgmtGateway, nameservers: guestInternet ? ["10.0.2.3"] : [])]
        if let addr = plan.clusterAddress, let mac = plan.clusterMAC {
            interfaces.append(SeedConfig.Interface(id: "cluster", mac: mac, addresses: [addr]))
        }
        return SeedConfig(
            instanceID: "\(plan.domainName)-\(UUID().uuidString.prefix(8).lowercased())",
            hostname: plan.name,
            user: .init(name: image.user, authorizedKeys: [try clusterKey.publicKeyLine()]),
            hostKey: .init(privateKey: try hostKey.privateKey(), publicKey: try hostKey.publicKeyLine()),
            interfaces: interfaces,
            hosts: hosts)
    }

    /// The domain for a plan: direct kernel boot of the image, overlay disk, seed, two NICs.
    public func domainSpec(_ plan: NodePlan) -> DomainSpec {
        var nics = [DomainSpec.NIC(mode: .user(.init(forwards: [.init(host: plan.sshPort, guest: 22)],
                                                      restrict: !guestInternet)), mac: plan.mgmtMAC)]
        if let sock = clusterSocket, let mac = plan.clusterMAC {
            nics.append(DomainSpec.NIC(mode: .stream(socket: sock), mac: mac))
        }
        var l = labels
        l["node"] = plan.name
        return DomainSpec(
            name: plan.domainName, accelerator: accelerator, memoryMiB: memoryMiB, vcpus: cpus,
            cpuModel: accelerator == .tcg ? "qemu64" : nil,
            boot: .init(kernel: image.kernel, initrd: image.initrd,
                        cmdline: "root=/dev/vda rw \(image.cmdline)" + Self.testHang(plan.name)),
            disks: [.init(path: plan.disk, format: .qcow2, target: "vda"),
                    .init(path: plan.seed, format: .raw, target: "vdb", readOnly: true)],
            nics: nics, serialLog: plan.serialLog, vncPort: plan.vncPort,
            vncSocket: plan.vncPort == nil ? plan.vncSocket : nil, labels: l)
    }

    /// Test-only: `VMCTL_TEST_HANG_NODE=node2` boots that node with `init=/bin/sleep`, a boot
    /// that hangs before userspace, so the reset path and failure report can be exercised.
    static func testHang(_ node: String) -> String {
        ProcessInfo.processInfo.environment["VMCTL_TEST_HANG_NODE"] == node ? " init=/bin/sleep 100000" : ""
    }

    /// The serial log exists before QEMU starts, writable by QEMU's group and nobody else.
    package static func makeSerialLog(_ path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw VMCtlError("cannot create \(path): \(String(cString: strerror(errno)))") }
        close(fd)
        try FileAccess.shareWithQemu(path, writable: true)
    }

    /// VNC's socket directory belongs to QEMU's user alone (QEMU creates the socket there):
    /// no other local user can connect and type into the node. Root connects anyway.
    static func makeVNCDirectory(_ path: String) throws {
        try FileAccess.directory(path)
        if getuid() == 0, let pw = getpwnam(FileAccess.qemuUser) {
            guard chown(path, pw.pointee.pw_uid, pw.pointee.pw_gid) == 0 else {
                throw VMCtlError("cannot hand \(path) to \(FileAccess.qemuUser): \(String(cString: strerror(errno)))")
            }
        }
    }

    /// Starts the node's domain; returns the serial-log offset its boot output starts at.
    public func boot(_ plan: NodePlan) async throws -> UInt64 {
        let offset = SerialLogWatcher.size(plan.serialLog)
        do {
            guard let d = try await connection.domain(named: plan.domainName) else {
                throw VMCtlError("domain \(plan.domainName) vanished before it could start")
            }
            defer { d.close() }
            if try await !d.isActive() { try await d.start() }
        }
        // QEMU made the socket before libvirt returned; only its owner (and root) may connect.
        if plan.vncPort == nil { chmod(plan.vncSocket, 0o600) }
        return offset
    }

    /// Waits for the guest's readiness line on its serial console, then proves an
    /// authenticated SSH session with the pinned host key. Returns the marker line.
    /// A boot that stalls before userspace starts is reset (destroyed and started again on the
    /// same disk and seed) up to `resets` times, each announced through `onReset`.
    public func waitReady(_ plan: NodePlan, from offset: UInt64, deadline: ContinuousClock.Instant,
                          stall: BootStall.Policy? = .standard(), resets: Int = 2,
                          onReset: @escaping @Sendable (BootStall, Int) -> Void = { _, _ in },
                          onCloudInit: @escaping @Sendable () -> Void = {}) async throws -> String {
        var offset = offset
        var attempt = 0
        while true {
            do {
                let line = try await GuestWatch(connection: connection, domainName: plan.domainName, node: plan.name,
                                                serialLog: plan.serialLog)
                    .waitFor(Seal.readyMarker, from: offset, deadline: deadline, stall: stall) { line in
                        if line.contains(Seal.bootingMarker) { onCloudInit() }
                    }
                try await verifySSH(plan, deadline: deadline)
                return line
            } catch let stalled as BootStall {
                guard attempt < resets else {
                    throw NodeFailure(node: plan.name, reason: "\(stalled.reason), after \(resets) reset(s)",
                                      serialTail: SerialLogWatcher.tail(plan.serialLog))
                }
                attempt += 1
                onReset(stalled, attempt)
                offset = try await reset(plan)
            }
        }
    }

    /// Pulls the plug and starts the node again on the same disk and seed; returns the
    /// serial-log offset the new boot starts at.
    public func reset(_ plan: NodePlan) async throws -> UInt64 {
        do {
            guard let d = try await connection.domain(named: plan.domainName) else {
                throw VMCtlError("domain \(plan.domainName) vanished before it could be reset")
            }
            defer { d.close() }
            try await d.destroy()
        }
        return try await boot(plan)
    }

    /// One authenticated command over libssh2 with the pinned key.
    public func verifySSH(_ plan: NodePlan, deadline: ContinuousClock.Instant) async throws {
        try await GuestWatch.verifySSH(try sshTarget(plan), node: plan.name, serialLog: plan.serialLog, deadline: deadline)
    }

    /// How vmctl reaches the node: 127.0.0.1, the forwarded port, the pinned host key.
    public func sshTarget(_ plan: NodePlan) throws -> SSHTarget {
        guard let pin = plan.hostKey else { throw VMCtlError("node \(plan.name) has no pinned host key") }
        return SSHTarget(host: "127.0.0.1", port: plan.sshPort, user: image.user, key: clusterKey, hostKey: pin)
    }
}

/// A node that did not come up: which, why, and the end of its serial log.
public struct NodeFailure: Error, CustomStringConvertible, Sendable {
    public let node: String
    public let reason: String
    public let serialTail: String
    public var description: String {
        "\(node): \(reason)" + (serialTail.isEmpty ? "" : "\n  last serial output:\n    "
            + serialTail.split(separator: "\n").joined(separator: "\n    "))
    }
}
