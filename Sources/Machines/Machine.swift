import Blocking
import CloudInit
import Foundation
import Libvirt
import SSH
import Synchronization
import VMCtlSupport
import Images

/// What a machine is doing now, for progress output and state.
public enum NodePhase: String, Codable, Sendable, CaseIterable {
    case planned, defining, booting, cloudInit = "cloud-init", verified = "ssh verified", stopped, failed
}

/// One virtual machine on one host: made from a `MachineSpec`, found again by its name and
/// labels, with a lifecycle of its own (`ensure`, `stop`, `remove`). Clusters, vnodes,
/// Swarm runners and the repave controller are users of it.
public struct Machine: Sendable {
    public let spec: MachineSpec
    public let connection: Connection

    public init(_ spec: MachineSpec, on connection: Connection) {
        self.spec = spec
        self.connection = connection
    }

    /// Where a machine stands on its host.
    public enum Status: String, Sendable { case absent, stopped, running }

    /// What `ensure` did.
    public enum Action: String, Sendable {
        case created, started, alreadyRunning = "already running"
        /// Restored from the save an unfinished `compact` kept (`resumeCompactSave`): the same running guest.
        case resumed
    }

    /// Progress of `ensure` (defining, booting, verified), for the caller's state and output.
    /// `hostKey` is set once the machine's host key exists. Cloud-init's start is reported
    /// through `onCloudInit` as it happens.
    public struct Progress: Sendable {
        public var phase: NodePhase
        public var hostKey: HostKeyPin?
    }

    /// Whether the machine exists and runs. A domain of its name that lacks its labels is
    /// someone else's: `name-in-use`.
    public func status() async throws -> Status {
        guard let d = try await connection.domain(named: spec.name) else { return .absent }
        defer { d.close() }
        try await Self.checkOwned(d, name: spec.name, labels: spec.labels)
        return try await d.isActive() ? .running : .stopped
    }

    /// Makes the machine exist and run, and proves it ready: defines it if missing, starts it
    /// if stopped (or restores the guest an unfinished `compact` left in its save), leaves a
    /// running one alone. `deadline` bounds the wait for readiness; `onNote` hears what the
    /// caller should tell its user.
    @discardableResult
    public func ensure(deadline: ContinuousClock.Instant, stall: BootStall.Policy? = .standard(), resets: Int = 2,
                       onReset: @escaping @Sendable (StallEvidence) -> Void = { _ in },
                       onCloudInit: @escaping @Sendable () -> Void = {},
                       onNote: @escaping @Sendable (String) -> Void = { _ in },
                       progress: @escaping @Sendable (Progress) async throws -> Void = { _ in })
        async throws -> (action: Action, hostKey: HostKeyPin) {
        var machine = self
        var action = Action.started
        switch try await status() {
        case .running:
            guard let pin = spec.login.hostKey else {
                throw VMCtlError("machine \(spec.hostname) runs but vmctl has no pinned host key for it: remove it and create it again")
            }
            return (.alreadyRunning, pin)
        case .absent:
            try await progress(Progress(phase: .defining, hostKey: nil))
            let pin = try await create()
            machine = Machine(spec.withHostKey(pin), on: connection)
            action = .created
        case .stopped:
            if let pin = spec.login.hostKey, FileManager.default.fileExists(atPath: spec.files.compactSave) {
                try await progress(Progress(phase: .booting, hostKey: pin))
                try await resumeCompactSave(deadline: deadline, onNote: onNote)
                try await progress(Progress(phase: .verified, hostKey: pin))
                return (.resumed, pin)
            }
        }
        guard let pin = machine.spec.login.hostKey else {
            throw VMCtlError("machine \(spec.hostname) has no pinned host key: remove it and create it again")
        }
        try await progress(Progress(phase: .booting, hostKey: pin))
        let offset = try await machine.start()
        _ = try await machine.waitReady(from: offset, deadline: deadline, stall: stall, resets: resets, onReset: onReset,
                                        onCloudInit: onCloudInit)
        try await progress(Progress(phase: .verified, hostKey: pin))
        return (action, pin)
    }

    /// Makes the machine's files (overlay disk, host key, seed) and defines its domain.
    /// Returns the pin of the host key it generated.
    public func create() async throws -> HostKeyPin {
        let hostKey = try await makeFiles(seed: { try seedConfig(hostKey: $0) })
        try await connection.define(xml: try domainSpec().xml()).close()
        return try hostKey.pin()
    }

    /// The NoCloud seed: hostname, login, host key, every NIC's configuration, /etc/hosts.
    func seedConfig(hostKey: KeyPair) throws -> SeedConfig {
        SeedConfig(
            instanceID: "\(spec.name)-\(UUID().uuidString.prefix(8).lowercased())",
            hostname: spec.hostname,
            user: .init(name: spec.login.user, authorizedKeys: [try spec.login.key.publicKeyLine()]),
            hostKey: .init(privateKey: try hostKey.privateKey(), publicKey: try hostKey.publicKeyLine()),
            interfaces: spec.networks.map(\.guestInterface),
            hosts: spec.hosts,
            bootcmd: Readiness.bootcmd(user: spec.login.user, dropCaches: spec.memoryLevers.dropCaches))
    }

    /// The domain: its boot, the overlay and the seed, its NICs, its labels.
    public func domainSpec() throws -> DomainSpec { try spec.domainSpec() }

    /// Starts the domain; returns the serial-log offset its boot output starts at. A boot
    /// changes the disk, so a save `compact` kept no longer matches it and goes first.
    public func start() async throws -> UInt64 {
        let offset = SerialLogWatcher.size(spec.files.serialLog)
        guard let d = try await connection.domain(named: spec.name) else {
            throw VMCtlError("domain \(spec.name) vanished before it could start")
        }
        defer { d.close() }
        if try await !d.isActive() {
            unlink(spec.files.compactSave)
            switch spec.console {
            case .logFile:
                try await d.start()
            case .stream:
                // Paused until the stream is attached: the log then holds the boot from its first line.
                try await d.start(paused: true)
                let stream = try await d.openConsole()
                ConsolePump.start(stream, into: spec.files.serialLog)
                try await d.resume()
            }
        }
        // QEMU made the socket before libvirt returned; only its owner (and root) may connect.
        if spec.vncPort == nil { chmod(spec.files.vncSocket, 0o600) }
        if spec.identityPort { chmod(spec.files.identitySocket, 0o600) }
        return offset
    }

    /// Waits for the guest's readiness line on its serial console, then proves an
    /// authenticated SSH session with the pinned host key. Returns the marker line.
    /// A boot that stalls before userspace starts is reset (destroyed and started again on the
    /// same disk and seed) up to `resets` times, each announced through `onReset`.
    public func waitReady(from offset: UInt64, deadline: ContinuousClock.Instant,
                          stall: BootStall.Policy? = .standard(), resets: Int = 2,
                          onReset: @escaping @Sendable (StallEvidence) -> Void = { _ in },
                          onCloudInit: @escaping @Sendable () -> Void = {}) async throws -> String {
        var offset = offset
        var attempt = 0
        while true {
            do {
                return try await firstReady(from: offset, deadline: deadline, stall: stall, onCloudInit: onCloudInit)
            } catch let stalled as BootStall {
                guard attempt < resets else {
                    throw NodeFailure(node: spec.hostname, reason: "\(stalled.reason), after \(resets) reset(s)",
                                      serialTail: SerialLogWatcher.tail(spec.files.serialLog), code: .nodeTimeout)
                }
                attempt += 1
                onReset(await evidence(of: stalled, attempt: attempt, since: offset))
                offset = try await reset()
            }
        }
    }

    /// How long a guest may stay without any readiness marker before vmctl also probes SSH.
    static let probeAfter: Duration = .seconds(60)

    /// Readiness by the seed's markers, or, for a guest that has printed none of them after
    /// `probeAfter` (no serial console, no cloud-init `bootcmd`), by SSH probes with backoff:
    /// whichever proves an authenticated session first. The ready line, or `ssh-probe`.
    func firstReady(from offset: UInt64, deadline: ContinuousClock.Instant, stall: BootStall.Policy?,
                    onCloudInit: @escaping @Sendable () -> Void) async throws -> String {
        let sawMarker = MarkerSeen()
        let watch = GuestWatch(connection: connection, domainName: spec.name, node: spec.hostname, serialLog: spec.files.serialLog)
        return try await withThrowingTaskGroup(of: String?.self) { group in
            group.addTask {
                let line = try await watch.waitFor(Readiness.readyLinePrefix, from: offset, deadline: deadline, stall: stall) { line in
                    if line.contains(Readiness.bootingMarker) { sawMarker.set(); onCloudInit() }
                }
                try await GuestWatch.verifySSH(try sshTarget(readyLine: line), node: spec.hostname,
                                               serialLog: spec.files.serialLog, deadline: deadline)
                return line
            }
            group.addTask {
                try await Task.sleep(until: min(.now + Self.probeAfter, deadline))
                if sawMarker.value { return nil }  // the seed's markers work: they decide
                guard let target = try? sshTarget() else { return nil }
                var wait: Duration = .seconds(2)
                while ContinuousClock.now < deadline, !sawMarker.value {
                    if let r = try? await SSHSession.run(target, "true", timeout: .seconds(15)), r.status == 0 { return "ssh-probe" }
                    try await Task.sleep(for: wait)
                    wait = min(wait * 2, .seconds(10))
                }
                return nil
            }
            defer { group.cancelAll() }
            while let result = try await group.next() {
                if let line = result { return line }
            }
            throw CancellationError()  // unreachable: the watch returns or throws
        }
    }

    /// What QEMU and the serial log show of a stalled boot, read before it is reset: the run
    /// state, every vCPU's registers (where the guest spins or halted) and this boot's last lines.
    func evidence(of stall: BootStall, attempt: Int, since offset: UInt64) async -> StallEvidence {
        var status = "", registers = ""
        if let d = try? await connection.domain(named: spec.name) {
            defer { d.close() }
            status = (try? await d.monitor("info status")) ?? "(QEMU did not answer)"
            registers = (try? await d.monitor("info registers -a")) ?? "(QEMU did not answer)"
        }
        let grown = SerialLogWatcher.size(spec.files.serialLog) > offset
        return StallEvidence(stall: stall, attempt: attempt, qemuStatus: status.trimmingCharacters(in: .whitespacesAndNewlines),
                             registers: registers, serialTail: grown ? SerialLogWatcher.tail(spec.files.serialLog, lines: 40) : "")
    }

    /// Pulls the plug and starts the machine again on the same disk and seed; returns the
    /// serial-log offset the new boot starts at.
    public func reset() async throws -> UInt64 {
        try await powerOff()
        return try await start()
    }

    /// Pulls the plug if it runs (disks stay).
    public func powerOff() async throws {
        guard let d = try await connection.domain(named: spec.name) else { return }
        defer { d.close() }
        if try await d.isActive() { try await d.destroy() }
    }

    /// Shuts the guest down cleanly and keeps its disks: asked over SSH first (lean images
    /// have no logind to act on ACPI, and `systemctl poweroff` talks to PID 1 directly), then
    /// ACPI, then, if it still runs, a hard power-off. A clean shutdown matters: pulling the
    /// plug loses what the guest wrote but had not flushed (cloud-init's network config).
    public func stop(grace: Duration = .seconds(60)) async throws {
        if let t = try? sshTarget() {
            _ = try? await SSHSession.run(t, "sudo systemctl poweroff --no-block", timeout: .seconds(10))
        }
        guard let d = try await connection.domain(named: spec.name) else { return }
        defer { d.close() }
        func waitOff(_ limit: Duration) async -> Bool {
            let deadline = ContinuousClock.now + limit
            while ContinuousClock.now < deadline {
                if (try? await d.isActive()) != true { return true }
                try? await Task.sleep(for: .milliseconds(100))
            }
            return false
        }
        if await waitOff(grace) { return }
        try? await d.shutdown()
        if await waitOff(.seconds(10)) { return }
        try await d.destroy()
    }

    /// Removes the machine: its domain (only if it carries the machine's labels) and its
    /// directory (disk, seed, logs, keys). Nothing else.
    public func remove() async throws {
        if let d = try await connection.domain(named: spec.name) {
            defer { d.close() }
            try await Self.checkOwned(d, name: spec.name, labels: spec.labels)
            if try await d.isActive() { try await d.destroy() }
            try await d.undefine()
        }
        try? FileManager.default.removeItem(atPath: spec.files.directory)
    }

    /// One authenticated command over libssh2 with the pinned key.
    public func verifySSH(deadline: ContinuousClock.Instant) async throws {
        try await GuestWatch.verifySSH(try sshTarget(), node: spec.hostname, serialLog: spec.files.serialLog, deadline: deadline)
    }

    /// How vmctl reaches the machine: its SSH endpoint, its login, the pinned host key.
    public func sshTarget() throws -> SSHTarget {
        guard let ep = spec.sshEndpoint else { throw VMCtlError("machine \(spec.hostname) has no NIC vmctl can reach SSH through") }
        return try sshTarget(ep)
    }

    /// The SSH target at `endpoint` (an address learned from the guest), with the pinned key.
    public func sshTarget(_ endpoint: SSHEndpoint) throws -> SSHTarget {
        guard let pin = spec.login.hostKey else { throw VMCtlError("machine \(spec.hostname) has no pinned host key") }
        return SSHTarget(host: endpoint.host, port: endpoint.port, user: spec.login.user, key: spec.login.key, hostKey: pin)
    }

    /// The SSH target after `readyLine`: the NIC's own endpoint when it has one (a loopback
    /// forward), else the guest's first IPv4 address the line reports (a DHCP lease on a bridge), port 22.
    public func sshTarget(readyLine: String) throws -> SSHTarget {
        if spec.sshEndpoint != nil { return try sshTarget() }
        guard let ep = Self.learnedEndpoint(readyLine) else {
            throw NodeFailure(node: spec.hostname, reason: "its ready line names no IPv4 address to reach SSH at: \(readyLine)",
                              serialTail: SerialLogWatcher.tail(spec.files.serialLog), code: .nodeFailed)
        }
        return try sshTarget(ep)
    }

    /// The first IPv4 address of a ready line, at port 22.
    public static func learnedEndpoint(_ readyLine: String) -> SSHEndpoint? {
        Readiness.parse(readyLine)?.addresses.lazy.filter { !$0.contains(":") }
            .map { SSHEndpoint(host: String($0.split(separator: "/")[0]), port: 22) }.first
    }

    /// A domain called `name` must carry every one of `labels`: otherwise it is not ours.
    static func checkOwned(_ d: Domain, name: String, labels: [String: String]) async throws {
        let have = try await d.labels()
        guard labels.allSatisfy({ have[$0.key] == $0.value }) else {
            throw VMCtlError(.nameInUse, message: "a domain called \(name) exists on this host but was not made for this machine "
                + "(its labels: \(have.isEmpty ? "none" : have.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", "))); "
                + "vmctl leaves it alone: remove it yourself or pick another name")
        }
    }

    /// Test-only: `VMCTL_TEST_HANG_NODE=node2` boots that machine with `init=/bin/sleep`, a
    /// boot that hangs before userspace, so the reset path and failure report can be exercised.
    static func testHang(_ hostname: String) -> String {
        ProcessInfo.processInfo.environment["VMCTL_TEST_HANG_NODE"] == hostname ? " init=/bin/sleep 100000" : ""
    }

    /// The serial log exists before QEMU starts, writable by QEMU's group and nobody else.
    package static func makeSerialLog(_ path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw VMCtlError("cannot create \(path): \(String(cString: strerror(errno)))") }
        close(fd)
        try FileAccess.shareWithQemu(path, writable: true)
    }

    /// VNC's socket directory belongs to QEMU's user alone (QEMU creates the socket there):
    /// no other local user can connect and type into the machine. Root connects anyway.
    static func makeVNCDirectory(_ path: String) throws {
        try FileAccess.directory(path)
        if getuid() == 0, let pw = getpwnam(FileAccess.qemuUser) {
            guard chown(path, pw.pointee.pw_uid, pw.pointee.pw_gid) == 0 else {
                throw VMCtlError("cannot hand \(path) to \(FileAccess.qemuUser): \(String(cString: strerror(errno)))")
            }
        }
    }
}

extension MachineSpec {
    /// The same spec with its host key pinned.
    public func withHostKey(_ pin: HostKeyPin) -> MachineSpec {
        var s = self
        s.login.hostKey = pin
        return s
    }
}

/// Whether a guest has printed a readiness marker, shared by the watch and the SSH prober.
final class MarkerSeen: Sendable {
    private let seen = Mutex(false)
    func set() { seen.withLock { $0 = true } }
    var value: Bool { seen.withLock { $0 } }
}

/// A machine that did not come up: which, why, and the end of its serial log.
public struct NodeFailure: Error, CustomStringConvertible, Sendable {
    public let node: String
    public let reason: String
    public let serialTail: String
    /// What kind of failure, for a controller's status (`node-timeout`, `node-failed`, …).
    public var code: VMCtlError.Code
    public init(node: String, reason: String, serialTail: String, code: VMCtlError.Code = .nodeFailed) {
        self.node = node; self.reason = reason; self.serialTail = serialTail; self.code = code
    }
    public var description: String {
        "\(node): \(reason)" + (serialTail.isEmpty ? "" : "\n  last serial output:\n    "
            + serialTail.split(separator: "\n").joined(separator: "\n    "))
    }
}

extension MachineSpec {
    /// The domain: its boot, the overlay and the seed, its NICs, its labels. Firmware boots
    /// the overlay first (boot order 1); the seed is never a boot device.
    public func domainSpec() throws -> DomainSpec {
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
            name: name, accelerator: accelerator, memoryMiB: memoryMiB, vcpus: cpus,
            cpuModel: accelerator == .tcg ? "qemu64" : nil, boot: direct, uefi: uefi,
            disks: [.init(path: files.disk, format: .qcow2, target: "vda", bootOrder: rootBootOrder),
                    .init(path: files.seed, format: .raw, target: "vdb", readOnly: true)],
            nics: networks.map(\.nic), serialLog: console == .logFile ? files.serialLog : nil,
            vncPort: vncPort,
            vncSocket: vncPort == nil ? files.vncSocket : nil, labels: l,
            channel: identityPort ? .init(name: WarmIdentity.portName, socket: files.identitySocket) : nil, uuid: uuid)
        spec.tbCacheMiB = memoryLevers.tbCacheMiB
        spec.balloon = memoryLevers.balloon
        return spec
    }
}
