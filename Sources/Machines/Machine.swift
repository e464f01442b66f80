import CloudInit
import Foundation
internal import Libvirt
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
    /// The host connection the machine is reached through.
    public let host: HostConnection
    var connection: Connection { host.libvirt }

    public init(_ spec: MachineSpec, on host: HostConnection) {
        self.spec = spec
        self.host = host
    }

    /// A machine known only from vmctl's records: its name, its labels and its directory. It
    /// can be found, watched, stopped and removed, not created (it has no boot source).
    public static func recorded(name: String, hostname: String? = nil, labels: [String: String], directory: String,
                                on host: HostConnection) -> Machine {
        Machine(MachineSpec(name: name, hostname: hostname ?? name, cpus: 1, memoryMiB: 0, accelerator: .tcg, boot: nil,
                            rootDisk: nil, networks: [], login: Login(user: "", key: KeyPair(privateKeyPath: "")),
                            labels: labels, files: MachineFiles(directory: directory)), on: host)
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
    /// someone else's: `name-in-use`. Read once libvirt has settled (`Domain.settle`): a QEMU
    /// that died with no libvirt attached is never reported running.
    public func status() async throws -> Status {
        guard let d = try await connection.domain(named: spec.name) else { return .absent }
        defer { d.close() }
        try await Self.checkOwned(d, name: spec.name, labels: spec.labels)
        return try await d.settledActive() ? .running : .stopped
    }

    /// The labels of a domain of the machine's name that was not made for it (someone else's,
    /// which `status` refuses as `name-in-use`); nil when there is none or it is this machine's.
    public func foreignLabels() async throws -> [String: String]? {
        guard let d = try await connection.domain(named: spec.name) else { return nil }
        defer { d.close() }
        let have = try await d.labels()
        return spec.labels.allSatisfy({ have[$0.key] == $0.value }) ? nil : have
    }

    /// What the machine's domain is doing, in libvirt's words, for listings.
    public enum PowerState: String, Sendable, Codable {
        case running, blocked, paused, shuttingDown = "shutting-down", shutOff = "shut-off", crashed, suspended, unknown
    }

    /// The machine's power state once libvirt has settled (as `status`), nil when it has no domain.
    public func powerState() async throws -> PowerState? {
        guard let d = try await connection.domain(named: spec.name) else { return nil }
        defer { d.close() }
        try await Self.checkOwned(d, name: spec.name, labels: spec.labels)
        return PowerState(rawValue: try await d.settledState().rawValue) ?? .unknown
    }

    /// The running domain, or an error saying why there is none: `not-found` without a domain,
    /// `wrong-state` when it is not running (`hint` says what to do).
    func runningDomain(hint: String) async throws -> Domain {
        guard let d = try await connection.domain(named: spec.name) else {
            throw VMCtlError(.notFound, message: "\(spec.hostname) has no domain on \(host.uri): \(hint)")
        }
        do {
            try await Self.checkOwned(d, name: spec.name, labels: spec.labels)
            guard try await d.settledActive() else {
                throw VMCtlError(.wrongState, message: "\(spec.hostname) is not running: \(hint)")
            }
            return d
        } catch {
            d.close()
            throw error
        }
    }

    /// Joins the terminal to the running machine's serial console until Ctrl-] (`SerialConsole`).
    /// `hint` completes the error when it does not run.
    public func attachConsole(hint: String) async throws {
        let d = try await runningDomain(hint: hint)
        defer { d.close() }
        try await SerialConsole.attach(d, name: spec.hostname)
    }

    /// The running machine's balloon: what the guest may use now (`actual`), what QEMU holds on
    /// the host (`rss`), and with the guest's stats on, `unused`, `available`, `usable` (KiB, by
    /// libvirt's tag names). Nil when the machine does not run.
    public func memoryStats() async throws -> [String: UInt64]? {
        guard let d = try await connection.domain(named: spec.name) else { return nil }
        defer { d.close() }
        guard try await d.settledActive() else { return nil }
        return try await d.memoryStats()
    }

    /// Moves the running machine's balloon so the guest has `mib` MiB, and waits (bounded) for
    /// the guest's driver to get there; returns the balloon's figures as `memoryStats`. A
    /// machine booted without a balloon is `wrong-state`; `hint` completes the error when it
    /// does not run.
    public func setMemory(mib: Int, hint: String) async throws -> [String: UInt64] {
        let d = try await runningDomain(hint: hint)
        defer { d.close() }
        guard try await d.xml().contains("<memballoon model='virtio'") else {
            throw VMCtlError(.wrongState, message: "\(spec.hostname) was booted without a balloon (VMCTL_BALLOON=0 or an older vmctl); "
                + "it gets one at its next boot (`cluster down` and `start`)")
        }
        try await d.setMemory(kiB: UInt(mib) * 1024)
        // The guest's balloon driver moves in steps: wait (bounded) until it got there.
        var stats = try await d.memoryStats()
        for _ in 0..<50 where (stats["actual"] ?? 0) != UInt64(mib) * 1024 {
            try await Task.sleep(for: .milliseconds(200))
            stats = try await d.memoryStats()
        }
        return stats
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
            machine = Machine(spec.withHostKey(pin), on: host)
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
    func domainSpec() throws -> DomainSpec { try spec.domainSpec() }

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
