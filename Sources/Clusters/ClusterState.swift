import Foundation
import VMCtlSupport
import Images
import Machines

/// Everything vmctl knows about a cluster, written atomically after every change so a
/// later command (or a reconciler) can resume or remove it whatever happened before.
public struct ClusterState: Codable, Sendable, Equatable {
    public enum Phase: String, Codable, Sendable {
        /// `up` is creating it (or was killed while doing so: `clean` removes it).
        case creating
        case running
        case stopped
        case failed
    }

    public var name: String
    public var spec: ClusterSpec
    public var phase: Phase
    public var imageHash: String
    public var user: String
    public var connectURI: String
    public var embeddedRoot: String?
    public var accelerator: Accelerator
    /// The cluster segment, e.g. `10.77.3.0/24`.
    public var subnet: String
    public var created: Date
    public var nodes: [NodeRecord]
    /// What the recipe's bootstrap learned (facts) and whether it finished: a later command
    /// or a reconciler resumes from here.
    public var bootstrap: BootstrapRecord?

    public struct BootstrapRecord: Codable, Sendable, Equatable {
        public var finishedSteps: Int
        public var done: Bool
        public var clusterFacts: [String: String]
        public var nodeFacts: [String: [String: String]]
        /// Names of the facts that are secrets (`secret: true` steps): kept here, never printed.
        public var secretFacts: [String]
        public init(finishedSteps: Int = 0, done: Bool = false, clusterFacts: [String: String] = [:],
                    nodeFacts: [String: [String: String]] = [:], secretFacts: [String] = []) {
            self.finishedSteps = finishedSteps; self.done = done; self.clusterFacts = clusterFacts; self.nodeFacts = nodeFacts
            self.secretFacts = secretFacts
        }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            finishedSteps = try c.decode(Int.self, forKey: .finishedSteps)
            done = try c.decode(Bool.self, forKey: .done)
            clusterFacts = try c.decode([String: String].self, forKey: .clusterFacts)
            nodeFacts = try c.decode([String: [String: String]].self, forKey: .nodeFacts)
            // State files from before secrets were marked have none.
            secretFacts = try c.decodeIfPresent([String].self, forKey: .secretFacts) ?? []
        }

        /// The values of the secret facts, on the cluster and on every node.
        public var secretValues: [String] {
            let names = Set(secretFacts)
            let all = clusterFacts.filter { names.contains($0.key) }.map(\.value)
                + nodeFacts.values.flatMap { $0.filter { names.contains($0.key) }.map(\.value) }
            return Array(Set(all)).sorted()
        }
    }

    /// One node: its plan plus what was last seen of it.
    public struct NodeRecord: Codable, Sendable, Equatable {
        public var plan: NodePlan
        public var phase: NodePhase
        public var bootedAt: Date?
        /// The warm snapshot this node was restored from (nil: made by a cold boot); its disk
        /// sits on that snapshot's disk for good, even after later cold boots.
        public var warmFrom: String?
        public init(plan: NodePlan, phase: NodePhase, bootedAt: Date? = nil) {
            self.plan = plan; self.phase = phase; self.bootedAt = bootedAt
        }
    }

    public init(name: String, spec: ClusterSpec, phase: Phase, imageHash: String, user: String, connectURI: String,
                embeddedRoot: String?, accelerator: Accelerator, subnet: String, created: Date, nodes: [NodeRecord]) {
        self.name = name; self.spec = spec; self.phase = phase; self.imageHash = imageHash; self.user = user
        self.connectURI = connectURI; self.embeddedRoot = embeddedRoot; self.accelerator = accelerator
        self.subnet = subnet; self.created = created; self.nodes = nodes
    }
}

extension ClusterState {
    /// What a secret fact's value reads as wherever vmctl prints it.
    public static let redactedValue = BootstrapStep.redactedValue

    /// This state with the value of every secret fact replaced by `<redacted>`, for printing
    /// (the state file itself keeps the values).
    public func redacted() -> ClusterState {
        guard var b = bootstrap else { return self }
        let secret = Set(b.secretFacts)
        for k in b.clusterFacts.keys where secret.contains(k) { b.clusterFacts[k] = Self.redactedValue }
        b.nodeFacts = b.nodeFacts.mapValues { facts in
            facts.reduce(into: [:]) { out, f in out[f.key] = secret.contains(f.key) ? Self.redactedValue : f.value }
        }
        var s = self
        s.bootstrap = b
        return s
    }
}

/// The files of one cluster under the state dir.
public struct ClusterPaths: Sendable, Equatable {
    public let directory: String
    public init(state: StateDir, name: String) { directory = state.cluster(name) }

    public var stateFile: String { "\(directory)/state.json" }
    public var libvirtRoot: String { "\(directory)/libvirt" }
    public var sshDir: String { "\(directory)/ssh" }
    public var privateKey: String { "\(sshDir)/id_ed25519" }
    public var knownHosts: String { "\(sshDir)/known_hosts" }
    public var sshConfig: String { "\(sshDir)/ssh_config" }
    public var switchSocket: String { "\(directory)/switch.sock" }
    public var switchPidFile: String { "\(directory)/switch.pid" }
    public func nodeDirectory(_ node: String) -> String { "\(directory)/nodes/\(node)" }
}

/// All clusters under a state dir.
public struct ClusterRegistry: Sendable {
    public let state: StateDir
    public init(state: StateDir) { self.state = state }

    /// Names of every cluster directory (including half-made ones).
    public func names() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: state.clusters)) ?? [])
            .filter { ClusterSpec.isValidName($0) }.sorted()
    }

    /// The saved state of `name`, or nil when it has none (or it is unreadable).
    public func load(_ name: String) -> ClusterState? {
        try? AtomicFile.readJSON(ClusterState.self, from: ClusterPaths(state: state, name: name).stateFile)
    }

    /// Image hash → clusters whose disks sit on it.
    public func imageUsers() -> [String: [String]] {
        var out: [String: [String]] = [:]
        for n in names() { if let s = load(n) { out[s.imageHash, default: []].append(n) } }
        return out
    }
}
