import Blocking
import Foundation
import Libvirt
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
    public init(name: String = "default", connect: String? = nil, accel: AccelRequest = .auto,
                timeout: Duration = .seconds(600), keepOnFailure: Bool = false) {
        self.name = name; self.connect = connect; self.accel = accel; self.timeout = timeout; self.keepOnFailure = keepOnFailure
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

    /// A launcher for a saved cluster's nodes.
    func launcher(_ s: ClusterState, connection: Connection, image: Image) -> NodeLauncher {
        NodeLauncher(connection: connection, image: image, accelerator: s.accelerator,
                     clusterKey: KeyPair(privateKeyPath: paths(s.name).privateKey),
                     labels: Self.labels(cluster: s.name, state: state), cpus: s.spec.cpus, memoryMiB: s.spec.memoryMiB,
                     diskBytes: UInt64(s.spec.diskGiB) << 30, clusterSocket: paths(s.name).switchSocket,
                     guestInternet: s.spec.guestInternet,
                     hosts: s.nodes.compactMap { n in n.plan.clusterIP.map { ($0, [n.plan.name]) } })
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
