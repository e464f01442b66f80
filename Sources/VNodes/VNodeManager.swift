import Foundation
import SSH
import VMCtlSupport
import Images
import Machines

/// `vmctl vnode`: fresh VMs from pools of names, on cloud images, in parallel (seed 004's
/// `vnode.py`). Each vnode is a `Machine` booted through firmware from its distro's cached
/// disk (a qcow2 overlay), with vmctl's NoCloud seed: its own host key (pinned), the pool's
/// login key, the seed's MAC. Re-running on a name reinstalls it fresh.
public struct VNodeManager: Sendable {
    public let state: StateDir
    public let pools: VNodePools
    public let paths: VNodePaths

    public init(state: StateDir, pools: VNodePools) {
        self.state = state
        self.pools = pools
        self.paths = VNodePaths(state: state)
    }

    /// The labels on every vnode's domain: found by these, never by name alone.
    public static func labels(stem: String, state: StateDir) -> [String: String] {
        ["vnode-pool": stem, "state": state.root]
    }

    // MARK: where vnodes live

    /// `--connect` if given; else `qemu:///system` when a libvirtd answers there (the seed's
    /// world: `virsh list` shows the nodes); else an embedded libvirt of vnode's own. The
    /// second value is the one line saying which, when vmctl chose.
    public func chooseTarget(connect: String?) async throws -> (target: HypervisorTarget, note: String?) {
        if let c = connect?.trimmingCharacters(in: .whitespaces), !c.isEmpty {
            return (try HypervisorTarget.resolve(connect: c, defaultRoot: paths.libvirtRoot), nil)
        }
        if await Self.systemLibvirtAnswers() {
            return (try HypervisorTarget.resolve(connect: "qemu:///system", defaultRoot: paths.libvirtRoot),
                    "vnode: on qemu:///system (a libvirtd answers there: `virsh list` shows the nodes)")
        }
        return (.embedded(root: paths.libvirtRoot),
                "vnode: no libvirtd answers qemu:///system, so vnodes live in vmctl's embedded libvirt (\(paths.libvirtRoot)); "
                + "install libvirt-daemon-system for a shared one, or choose with --connect")
    }

    static func systemLibvirtAnswers() async -> Bool { await MachineHost.answers("qemu:///system") }

    public static func target(of r: VNodeRecord) -> HypervisorTarget {
        if let root = r.embeddedRoot { return .embedded(root: root) }
        return (try? HypervisorTarget.resolve(connect: r.uri, defaultRoot: "")) ?? .embedded(root: r.uri)
    }

    // MARK: install

    public struct InstallOptions: Sendable {
        public var stem: String?
        public var cpus = 2
        public var memoryMiB = 2048
        public var diskGiB = 10
        /// nil: the seed's 2 minutes with KVM, 10 under TCG.
        public var timeout: Duration?
        public var accelerator: Accelerator = .tcg
        /// nil: each pool's own.
        public var network: VNodeNetwork?
        public init() {}
    }

    /// One node's outcome, for the table.
    public struct Outcome: Sendable {
        public var name: String
        public var distro: String
        public var address: String
        public var state: String
        public var seconds: Double
        public var failure: (any Error & Sendable)?
    }

    /// Resolves each request's distro against the catalog: the spec's, else its pool's, else the
    /// catalog's default.
    public func entries(for requests: [VNodeRequest], catalog: CloudCatalog) throws -> [(VNodeRequest, CloudCatalog.Entry)] {
        try requests.map { r in
            guard let d = r.distro ?? r.stem.distro ?? catalog.defaultName else {
                throw VMCtlError.usage("the catalog is empty: no distro for \(r.name)")
            }
            return (r, try catalog.entry(d))
        }
    }

    /// The default timeout: the seed's 2 minutes, or 10 under TCG (and the line that says so).
    public static func defaultTimeout(_ accel: Accelerator) -> (Duration, String?) {
        accel == .kvm ? (.seconds(120), nil)
            : (.seconds(600), "timeout: 600 s, not the seed's 120 s: guests run under TCG here (no usable KVM); --timeout to change")
    }

    /// Checks that every node can be made on `connection` before anything is: a domain of its
    /// name must be a vnode of this pool and state dir (then it is reinstalled). Returns the
    /// names that exist already.
    public func checkNames(_ requests: [VNodeRequest], on connection: HostConnection) async throws -> Set<String> {
        var existing: Set<String> = []
        for r in requests {
            let m = machine(r.name, stem: r.stem.prefix, on: connection)
            if let have = try await m.foreignLabels() {
                throw VMCtlError(.nameInUse, message: "a domain called \(r.name) exists on \(connection.uri) but vmctl did not make it "
                    + "as a vnode (labels: \(have.isEmpty ? "none" : have.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", "))); "
                    + "vmctl leaves it alone: remove it yourself or pick another number")
            }
            if try await m.status() != .absent { existing.insert(r.name) }
        }
        return existing
    }

    /// (Re)installs every node at once and waits for all behind one barrier: each SSH-verified
    /// with its pinned host key, or failed, or past `deadline`. A node that did not make it is
    /// removed (its serial log's tail is in its failure); on cancellation every node this call
    /// made is removed. `bases` maps each distro to its cached disk.
    public func install(_ nodes: [(VNodeRequest, CloudCatalog.Entry)], bases: [String: String], options: InstallOptions,
                        reinstalling: Set<String> = [], target: HypervisorTarget, connection: HostConnection, deadline: ContinuousClock.Instant,
                        events: @escaping @Sendable (String) -> Void) async throws -> [Outcome] {
        let start = ContinuousClock.now
        var machines: [(String, (VNodeRequest, CloudCatalog.Entry, VNodeNetwork, Machine))] = []
        var usedPorts: Set<Int> = []
        for (r, e) in nodes {
            let key = try await loginKey(r.stem)
            let old = try? AtomicFile.readJSON(VNodeRecord.self, from: paths.record(r.stem.prefix, r.name))
            // A node being reinstalled keeps its port (its old QEMU holds it until it is removed).
            let port = reinstalling.contains(r.name) && old?.uri == target.uri ? old!.sshPort
                : Self.port(for: r, previous: old?.sshPort, taken: usedPorts)
            usedPorts.insert(port)
            guard let base = bases[e.name] else { throw VMCtlError("no disk for \(e.name)") }
            let network = try options.network ?? VNodeNetwork(r.stem.network)
            let nic: any NetworkAttachment = switch network {
            case .user: UserModeNetwork(mac: r.mac, sshPort: port)
            case .bridge(let br): BridgeNetwork(mac: r.mac, bridge: br)
            }
            let spec = MachineSpec(
                name: r.name, hostname: r.name, cpus: options.cpus, memoryMiB: options.memoryMiB, accelerator: options.accelerator,
                boot: .firmware(e.firmware == .uefi ? .uefi(secureBoot: false) : .bios),
                rootDisk: OverlayDisk(base: base, sizeBytes: UInt64(options.diskGiB) << 30),
                networks: [nic],
                login: Login(user: e.user, key: key),
                labels: Self.labels(stem: r.stem.prefix, state: state),
                files: MachineFiles(directory: paths.node(r.stem.prefix, r.name)))
            machines.append((r.name, (r, e, network, Machine(spec, on: connection))))
        }
        try FileAccess.directoryWithParents(paths.root, qemu: true)
        for stem in Set(nodes.map(\.0.stem.prefix)) { try FileAccess.directory(paths.stem(stem), qemu: true) }

        let fleet = Fleet(machines)
        let outcomes: [String: Outcome]
        do {
            outcomes = try await fleet.run { name, member in
                let (r, e, network, machine) = member
                do {
                    try await machine.remove()  // a reinstall starts from nothing: new disk, seed, host key
                    var record = VNodeRecord(
                        name: r.name, stem: r.stem.prefix, number: r.number, distro: e.name, user: e.user, mac: r.mac,
                        sshPort: machine.spec.sshEndpoint?.port ?? 0, hostKey: nil, uri: target.uri, embeddedRoot: target.embeddedRoot,
                        cpus: options.cpus, memoryMiB: options.memoryMiB, diskGiB: options.diskGiB, firmware: e.firmware.rawValue,
                        base: machine.spec.rootDisk?.base ?? "", created: Date(), phase: "installing", network: network.text)
                    events("\(name): installing \(e.name) (\(e.firmware.rawValue))")
                    let pin = try await machine.create()
                    record.hostKey = pin
                    try AtomicFile.writeJSON(record, to: paths.record(r.stem.prefix, r.name))
                    let ready = Machine(machine.spec.withHostKey(pin), on: connection)
                    let offset = try await ready.start()
                    record.booted = Date()
                    let line = try await ready.waitReady(from: offset, deadline: deadline, onCloudInit: { events("\(name): cloud-init started") })
                    let ssh = try ready.sshTarget(readyLine: line)
                    if case .bridge = network { record.guestAddress = ssh.host }
                    // sshd answers before cloud-init's last stages end (they may still restart
                    // services): the node is handed over once cloud-init is done.
                    if let note = try await Self.waitCloudInit(ready, ssh, deadline: deadline) { events("\(name): \(note)") }
                    record.phase = "ready"
                    try AtomicFile.writeJSON(record, to: paths.record(r.stem.prefix, r.name))
                    let secs = (ContinuousClock.now - start).secondsDouble
                    events("\(name): ssh verified (\(String(format: "%.1f", secs)) s)")
                    return Outcome(name: name, distro: e.name, address: record.address, state: "ready", seconds: secs)
                } catch is CancellationError {
                    throw CancellationError()
                } catch {
                    let secs = (ContinuousClock.now - start).secondsDouble
                    // Tear down what did not come up (its failure carries its serial log's tail).
                    try? await machine.remove()
                    return Outcome(name: name, distro: e.name, address: "-", state: "failed", seconds: secs, failure: error)
                }
            }
        } catch {
            // Ctrl-C: remove every node this call made; nothing half-made stays.
            for (_, (_, _, _, m)) in machines { try? await m.remove() }
            try? writeOpenSSHFiles(Set(nodes.map(\.0.stem.prefix)))
            throw error
        }
        try writeOpenSSHFiles(Set(nodes.map(\.0.stem.prefix)))
        return machines.compactMap { outcomes[$0.0] }
    }

    /// Waits over SSH (pinned key) until cloud-init has finished; returns a note when it
    /// finished with errors. A connection that fails before the command runs is tried again:
    /// cloud-init's later stages may restart sshd (a cloud image's own `set_passwords` does),
    /// and a connection made just then gets no banner. A wrong host key or a refused login
    /// is never retried.
    static func waitCloudInit(_ m: Machine, _ target: SSHTarget, deadline: ContinuousClock.Instant) async throws -> String? {
        var attempt = 0
        let r: ExecResult
        while true {
            let left = deadline - ContinuousClock.now
            guard left > .zero else { throw NodeFailure(node: m.spec.hostname, reason: "timed out before cloud-init finished", serialTail: "", code: .nodeTimeout) }
            do {
                r = try await SSHSession.run(target, "cloud-init status --wait >/dev/null 2>&1; cloud-init status", timeout: left)
                break
            } catch let e as SSHError where (e.kind == .connect || e.kind == .protocolError) && attempt < 10 {
                attempt += 1
                try await Task.sleep(for: .seconds(1))
            }
        }
        let status = r.stdout.split(separator: "\n").first { $0.hasPrefix("status:") }.map { $0.dropFirst(7).trimmingCharacters(in: .whitespaces) }
        switch status {
        case "done"?: return nil
        case let s?: return "cloud-init ended with status \(s) (`vmctl vnode ssh \(m.spec.hostname) -- cloud-init status --long`)"
        case nil: return "cloud-init's status could not be read: \(r.stderr.prefix(200))"
        }
    }

    /// The node's 127.0.0.1 port: its previous one, else 42000 + 100 × the pool's MAC byte +
    /// its number, else any free port (all checked free now).
    static func port(for r: VNodeRequest, previous: Int?, taken: Set<Int>) -> Int {
        for p in [previous, 42000 + 100 * (r.stem.macByte % 80) + r.number].compactMap({ $0 })
        where !taken.contains(p) && LoopbackPort.isFree(p) { return p }
        while true {
            let p = Int.random(in: 30000...39999)
            if !taken.contains(p) && LoopbackPort.isFree(p) { return p }
        }
    }

    /// The pool's login key: the configured one, else one vmctl made for the pool.
    func loginKey(_ stem: VNodePools.Stem) async throws -> KeyPair {
        if let k = stem.loginKey {
            guard FileManager.default.isReadableFile(atPath: k) else { throw VMCtlError.usage("pool \(stem.prefix): login key \(k) is not readable") }
            return KeyPair(privateKeyPath: k)
        }
        try FileAccess.directoryWithParents(paths.stem(stem.prefix), qemu: true)
        let path = paths.loginKey(stem.prefix)
        if FileManager.default.fileExists(atPath: path) { return KeyPair(privateKeyPath: path) }
        return try await KeyPair.generate(at: path, comment: "vmctl vnode pool \(stem.prefix)")
    }

    /// known_hosts (each node's key under its name and its address) and an ssh_config for
    /// plain OpenSSH with strict checking, per pool, from the records.
    public func writeOpenSSHFiles(_ stems: Set<String>) throws {
        let records = paths.records()
        for stem in stems {
            let hosts = records.filter { $0.stem == stem }.compactMap { r -> OpenSSHFiles.Host? in
                guard let pin = r.hostKey else { return nil }
                if r.onBridge {
                    guard let a = r.guestAddress else { return nil }
                    return OpenSSHFiles.Host(alias: r.name, hostName: a, port: 22, user: r.user, hostKey: pin)
                }
                return OpenSSHFiles.Host(alias: r.name, hostName: "127.0.0.1", port: r.sshPort, user: r.user, hostKey: pin)
            }
            guard FileManager.default.fileExists(atPath: paths.stem(stem)) else { continue }
            let key = (try? pools.stem(stem).loginKey) ?? nil
            try AtomicFile.write(OpenSSHFiles.knownHosts(hosts), to: paths.knownHosts(stem), mode: 0o600)
            try AtomicFile.write(OpenSSHFiles.sshConfig(hosts, identityFile: key ?? paths.loginKey(stem), knownHostsPath: paths.knownHosts(stem)),
                                 to: paths.sshConfig(stem), mode: 0o600)
        }
    }

    // MARK: list, find, remove

    /// A record and what its host says about it now.
    public struct Listed: Codable, Sendable {
        public var name: String
        public var distro: String
        public var state: String
        public var address: String
        public var mac: String
        public var uptimeSeconds: Int?
        public var uri: String
    }

    /// Every vnode (of `stem`, if given) with its state on its host.
    public func list(stem: String? = nil) async throws -> [Listed] {
        let records = paths.records().filter { stem == nil || $0.stem == stem }
        var out: [Listed] = []
        for (uri, group) in Self.byHost(records) {
            var states: [String: (String, Int?)] = [:]
            do {
                let c = try await MachineHost(Self.target(of: group[0])).connect(onWait: { _ in })
                try await c.closing { c in
                    for r in group { states[r.name] = try await liveState(r, on: c) }
                }
            } catch {
                for r in group { states[r.name] = ("unknown (\(VMCtlError.Code(of: error)))", nil) }
            }
            for r in group {
                let (s, up) = states[r.name] ?? ("unknown", nil)
                out.append(Listed(name: r.name, distro: r.distro, state: s, address: r.address, mac: r.mac, uptimeSeconds: up, uri: uri))
            }
        }
        return out.sorted { $0.name.localizedStandardCompare($1.name) == .orderedAscending }
    }

    /// Records grouped by host, shared libvirts first: once this process has opened an embedded
    /// root, libvirt's in-process QEMU driver claims `qemu:///system` too.
    static func byHost(_ records: [VNodeRecord]) -> [(String, [VNodeRecord])] {
        Dictionary(grouping: records, by: \.uri).sorted { a, b in
            let (ea, eb) = (a.value[0].embeddedRoot != nil, b.value[0].embeddedRoot != nil)
            return ea != eb ? !ea : a.key < b.key
        }.map { ($0.key, $0.value) }
    }

    func liveState(_ r: VNodeRecord, on c: HostConnection) async throws -> (String, Int?) {
        switch try await machine(r.name, stem: r.stem, on: c).status() {
        case .absent: return ("absent", nil)
        case .stopped: return ("stopped", nil)
        case .running: break
        }
        // Since vmctl started it (a restart behind vmctl's back is not seen).
        let up = r.booted.map { Int(Date().timeIntervalSince($0)) }
        return (r.phase == "ready" ? "running" : r.phase, up)
    }

    /// The vnode `name` of pool `stem` as vmctl's records know it: found by its labels, so a
    /// domain of its name that vmctl did not make as this pool's vnode is `name-in-use`.
    public func machine(_ name: String, stem: String, on host: HostConnection) -> Machine {
        .recorded(name: name, labels: Self.labels(stem: stem, state: state), directory: paths.node(stem, name), on: host)
    }

    /// The record of `name` (a number or a name, as `vnode` takes them).
    public func record(_ name: String, stem: String? = nil) throws -> VNodeRecord {
        let r = try VNodeRequest.parse([name], pools: pools, stem: stem)[0]
        guard let rec = try? AtomicFile.readJSON(VNodeRecord.self, from: paths.record(r.stem.prefix, r.name)) else {
            throw VMCtlError(.notFound, message: "no vnode \(r.name): `vmctl vnode list` shows them, `vmctl vnode \(r.number)` makes it")
        }
        return rec
    }

    /// Removes vnodes (domain, disk, seed, keys, record); known_hosts loses their entries.
    /// A domain of the name without vnode labels is left alone (and named).
    public func remove(_ records: [VNodeRecord], events: @Sendable (String) -> Void) async throws {
        var firstError: (any Error)?
        for (_, group) in Self.byHost(records) {
            let c = try await MachineHost(Self.target(of: group[0])).connect()
            try await c.closing { c in
                for r in group {
                    do {
                        try await machine(r.name, stem: r.stem, on: c).remove()
                        events("\(r.name): removed")
                    } catch {
                        firstError = firstError ?? error
                    }
                }
            }
        }
        try writeOpenSSHFiles(Set(records.map(\.stem)))
        if let firstError { throw firstError }
    }
}
