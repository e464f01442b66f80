import Foundation
import VMCtlSupport
import Images
import Clusters

/// `vmctl swarm`: seed 000's Docker Swarm on vmctl cluster nodes (real VMs, a real Docker
/// engine in each). The swarm itself is formed by the `swarm-node` image's bootstrap steps when
/// its cluster comes up; this layer deploys the cases' stacks (`stacks/*.yml`) through node1,
/// the manager, and checks them from inside their containers.
public struct SwarmManager: Sendable {
    public let clusters: ClusterManager
    /// The cluster the swarm runs on.
    public let name: String

    public init(clusters: ClusterManager, name: String) { self.clusters = clusters; self.name = name }

    public static let image = "swarm-node"

    /// A case of the seed: its stack file, its services and its VM runner.
    public enum Case: String, Sendable, CaseIterable {
        case case00, case01, case02
        public var stackFile: String {
            switch self {
            case .case00: "phase2-linux-demo.yml"
            case .case01: "phase2-linux-usable.yml"
            case .case02: "phase2-windows-vm.yml"
            }
        }
        /// The normal services (short names), each on a node of its own.
        public var webServices: [String] { self == .case02 ? [] : ["web-a", "web-b"] }
        /// The QEMU VM-runner service, if the case has one.
        public var runner: String? {
            switch self {
            case .case00: nil
            case .case01: "vm-runner"
            case .case02: "win-runner"
            }
        }
        /// Every service of the stack (short names).
        public var services: [String] { webServices + (runner.map { [$0] } ?? []) }
        /// The stack's overlay network (`STACK_demo`).
        public var network: String { "\(rawValue)_demo" }
        /// The runner guest's MAC: `52:54:00:a0:CC:SS`, CC the case's number, SS the task's slot
        /// (Swarm's `{{.Task.Slot}}`, 1 for a single replica). The stack passes the prefix.
        public func runnerMAC(slot: Int = 1) -> String? {
            guard runner != nil, let n = Int(rawValue.dropFirst(4)) else { return nil }
            return String(format: "52:54:00:a0:%02x:%02x", n, slot)
        }
    }

    /// Where the checkout's `stacks/` is: beside `images/`.
    public static func stacksDirectory() -> String {
        let env = ProcessInfo.processInfo.environment["VMCTL_STACKS"]
        if let env, !env.isEmpty { return env }
        return (RecipeStore.locate().directory as NSString).deletingLastPathComponent + "/stacks"
    }

    /// The cluster, which must run the swarm image.
    public func cluster() throws -> ClusterState {
        let s = try clusters.existing(name)
        guard s.spec.image == Self.image else {
            throw VMCtlError(.wrongState, message: "cluster \(name) runs \(s.spec.image), not \(Self.image): `vmctl swarm init --name NAME` makes a swarm cluster")
        }
        return s
    }

    /// Runs `command` on `node` (default node1, the manager); its stdout, or an error with its stderr.
    @discardableResult
    func run(_ s: ClusterState, _ command: String, on node: String = "node1", input: Data? = nil,
             timeout: Duration = .seconds(300)) async throws -> String {
        let plan = try clusters.select(s, [node])[0]
        let r = await clusters.exec(s, nodes: [plan], command: command, input: input, timeout: timeout)[0]
        if let e = r.error { throw VMCtlError("\(node): \(e)") }
        guard r.status == 0 else {
            throw VMCtlError("\(node): `\(command.prefix(80))` exited \(r.status ?? -1): \(r.stderr.trimmingCharacters(in: .whitespacesAndNewlines).suffix(400))")
        }
        return r.stdout
    }

    /// The swarm's ready, active nodes (by hostname), as the manager sees them.
    public func swarmNodes(_ s: ClusterState) async throws -> [String] {
        let out = try await run(s, "sudo docker node ls --format '{{.Hostname}} {{.Status}} {{.Availability}}'")
        return out.split(separator: "\n").compactMap { line in
            let f = line.split(separator: " ")
            return f.count == 3 && f[1] == "Ready" && f[2] == "Active" ? String(f[0]) : nil
        }.sorted()
    }
}
