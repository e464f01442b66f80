import Foundation
import SSH
import VMCtlSupport
import Images
import Machines

/// Options shared by cluster verbs.
public struct ClusterOptions: Sendable {
    public var name: String
    public var connect: String?
    public var accel: AccelRequest
    public var timeout: Duration
    public var keepOnFailure: Bool
    /// Nodes restored from a warm snapshot of the image and shape (made first if missing),
    /// where that can be done (`ClusterManager.warmIneligible`); false boots them cold.
    public var warm: Bool
    /// Only make (or find) the warm snapshot; boot no node (`image warm`).
    public var snapshotOnly = false
    public init(name: String = "default", connect: String? = nil, accel: AccelRequest = .auto,
                timeout: Duration = .seconds(600), keepOnFailure: Bool = false, warm: Bool = true) {
        self.name = name; self.connect = connect; self.accel = accel; self.timeout = timeout; self.keepOnFailure = keepOnFailure
        self.warm = warm
    }
}

/// Cluster lifecycle over images, libvirt, cloud-init and SSH.
public struct ClusterManager: Sendable {
    public let state: StateDir
    public let switchExecutable: String

    public init(state: StateDir, switchExecutable: String = SwitchProcess.defaultExecutable()) {
        self.state = state
        self.switchExecutable = switchExecutable
    }

    var registry: ClusterRegistry { ClusterRegistry(state: state) }
    /// libvirt's QEMU capabilities probe, shared by every cluster's embedded root.
    var capabilitiesCache: String { "\(state.cache)/qemu-capabilities" }
    func paths(_ name: String) -> ClusterPaths { ClusterPaths(state: state, name: name) }

    func switchProcess(_ name: String) -> SwitchProcess {
        let p = paths(name)
        return SwitchProcess(socketPath: p.switchSocket, pidFile: p.switchPidFile, executable: switchExecutable,
                             logsDirectory: "\(p.directory)/nodes")
    }

    /// Checks a cluster name is a DNS label.
    public static func validateName(_ name: String) throws {
        guard ClusterSpec.isValidName(name) else {
            throw VMCtlError.usage("cluster name '\(name)' is not valid: use a DNS label (a-z, 0-9, '-', at most 32 characters)")
        }
    }

    /// The saved state of an existing cluster, or a not-found error (exit 2).
    public func existing(_ name: String) throws -> ClusterState {
        try Self.validateName(name)
        guard let s = registry.load(name) else {
            if FileManager.default.fileExists(atPath: paths(name).directory) {
                throw VMCtlError(.wrongState, message: "cluster \(name) was left half-made: run `vmctl cluster clean --name \(name)`")
            }
            throw VMCtlError(.notFound, message: "no cluster '\(name)': run `vmctl cluster up N --name \(name)`")
        }
        return s
    }

    /// The preamble of every verb that changes a cluster: its saved state, and its lock held
    /// while `body` runs (a second command on the cluster exits 2 naming the holder).
    func locked<T>(_ name: String, purpose: String, _ body: (ClusterState) async throws -> T) async throws -> T {
        let s = try existing(name)
        let lock = try ClusterLock.acquire(state: state, name: name, purpose: purpose)
        defer { lock.release() }
        return try await body(s)
    }

    /// A connection to the host a saved cluster lives on, open while `body` runs.
    func connected<T: Sendable>(_ s: ClusterState, _ body: (HostConnection) async throws -> T) async throws -> T {
        try await host(of: s).connect().closing { try await body($0) }
    }

    /// The libvirt target a saved cluster lives on.
    func target(of s: ClusterState) -> HypervisorTarget {
        if let root = s.embeddedRoot { return .embedded(root: root) }
        return (try? HypervisorTarget.resolve(connect: s.connectURI, defaultRoot: paths(s.name).libvirtRoot))
            ?? .embedded(root: paths(s.name).libvirtRoot)
    }

    /// The image a saved cluster's disks sit on.
    func image(of s: ClusterState) throws -> Image {
        guard let img = try ImageStore(state: state).image(hash: s.imageHash) else {
            throw VMCtlError("cluster \(s.name): its image \(s.spec.image) (\(s.imageHash.prefix(12))) is gone from the store; "
                + "run `vmctl cluster clean --name \(s.name)` and bring it up again")
        }
        return img
    }

    /// The host a saved cluster's machines live on.
    func host(of s: ClusterState) -> MachineHost { MachineHost(target(of: s)) }

    /// One node of a saved cluster as a machine: its plan (ports, MACs, addresses, paths,
    /// pinned host key) and the cluster's shape, image, key, switch and labels.
    /// Without `image` (gone from the store) the machine can still be stopped and removed.
    func machine(_ s: ClusterState, _ plan: NodePlan, connection: HostConnection, image: Image?) -> Machine {
        var networks: [any NetworkAttachment] = [UserModeNetwork(mac: plan.mgmtMAC, sshPort: plan.sshPort,
                                                                 restrict: !s.spec.guestInternet)]
        if let address = plan.clusterAddress, let mac = plan.clusterMAC {
            networks.append(SwitchNetwork(mac: mac, socket: paths(s.name).switchSocket, address: address))
        }
        let spec = MachineSpec(
            name: plan.domainName, hostname: plan.name, cpus: s.spec.cpus, memoryMiB: s.spec.memoryMiB,
            accelerator: s.accelerator, boot: image.map { .image($0) },
            rootDisk: image.map { OverlayDisk(base: $0.rootDisk, sizeBytes: UInt64(s.spec.diskGiB) << 30) },
            networks: networks,
            login: Login(user: s.user, key: KeyPair(privateKeyPath: paths(s.name).privateKey), hostKey: plan.hostKey),
            hosts: s.nodes.compactMap { n in n.plan.clusterIP.map { ($0, [n.plan.name]) } },
            labels: Self.labels(cluster: s.name, state: state), files: plan.files,
            vncPort: plan.vncPort)
        var machine = spec
        machine.console = Self.consoleCapture()
        return Machine(machine, on: connection)
    }

    /// How nodes' consoles are captured: QEMU's log file (local hosts), or, with
    /// `VMCTL_CONSOLE=stream`, libvirt's console stream copied by vmctl, the path remote hosts
    /// will take, so it can be exercised here.
    static func consoleCapture(_ env: [String: String] = ProcessInfo.processInfo.environment) -> ConsoleCapture {
        env["VMCTL_CONSOLE"].flatMap(ConsoleCapture.init(rawValue:)) ?? .logFile
    }

    /// The cluster's nodes `plans` as one fleet.
    func fleet(_ s: ClusterState, _ plans: [NodePlan], connection: HostConnection, image: Image?) -> Fleet<(NodePlan, Machine)> {
        Fleet(plans.map { ($0.name, ($0, machine(s, $0, connection: connection, image: image))) })
    }

    /// The labels every domain of a cluster carries in its metadata: `clean` finds domains by
    /// these, never by name, so on a shared libvirt it removes only its own.
    static func labels(cluster: String, state: StateDir) -> [String: String] {
        ["cluster": cluster, "state": state.root]
    }

    /// Whether a domain with `labels` belongs to `cluster` of this state dir.
    static func belongs(_ labels: [String: String], cluster: String, state: StateDir) -> Bool {
        labels["cluster"] == cluster && (labels["state"] == nil || labels["state"] == state.root)
    }

    /// SSH target for a node of a saved cluster.
    public func sshTarget(_ s: ClusterState, node: NodePlan) throws -> SSHTarget {
        guard let pin = node.hostKey else { throw VMCtlError("node \(node.name) has no pinned host key yet") }
        return SSHTarget(host: "127.0.0.1", port: node.sshPort, user: s.user,
                         key: KeyPair(privateKeyPath: paths(s.name).privateKey), hostKey: pin)
    }

    /// Writes known_hosts and ssh_config so plain OpenSSH reaches the nodes strictly.
    func writeOpenSSHFiles(_ s: ClusterState) throws {
        let p = paths(s.name)
        let hosts = s.nodes.compactMap { n -> OpenSSHFiles.Host? in
            guard let pin = n.plan.hostKey else { return nil }
            return OpenSSHFiles.Host(alias: n.plan.name, hostName: "127.0.0.1", port: n.plan.sshPort, user: s.user, hostKey: pin)
        }
        try AtomicFile.write(OpenSSHFiles.knownHosts(hosts), to: p.knownHosts, mode: 0o600)
        try AtomicFile.write(OpenSSHFiles.sshConfig(hosts, identityFile: p.privateKey, knownHostsPath: p.knownHosts),
                             to: p.sshConfig, mode: 0o600)
    }
}
