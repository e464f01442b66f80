import Foundation
import VMCtlSupport
import Clusters

/// Placement: which node runs which service, chosen at random and kept until `down`.
extension SwarmManager {
    /// Which node runs which service, chosen at `up` and kept until `down`.
    public struct Placement: Codable, Sendable, Equatable {
        public var services: [String: String]

        /// The node `service` is placed on. A placement read back from `file` that places no
        /// node for it (edited, or written by another version) is `wrong-state`, naming the file.
        public func node(for service: String, file: String) throws -> String {
            guard let node = services[service] else {
                throw VMCtlError(.wrongState, message: "\(file) places no node for \(service): remove it (`vmctl swarm CASE down` "
                    + "removes it too) and deploy again")
            }
            return node
        }
    }

    func placementPath(_ c: Case) -> String { "\(ClusterPaths(state: clusters.state, name: name).directory)/swarm-\(c.rawValue).json" }

    public func placement(_ c: Case) -> Placement? { try? AtomicFile.readJSON(Placement.self, from: placementPath(c)) }

    /// Two (or more) distinct nodes at random, one per service.
    public static func place(_ services: [String], on nodes: [String], using rng: inout some RandomNumberGenerator) throws -> Placement {
        guard nodes.count >= services.count else {
            throw VMCtlError(.wrongState, message: "the swarm has \(nodes.count) ready node(s); \(services.count) distinct ones are needed (`vmctl swarm init --nodes 3`)")
        }
        let chosen = nodes.shuffled(using: &rng).prefix(services.count)
        return Placement(services: Dictionary(uniqueKeysWithValues: zip(services, chosen)))
    }

    /// The case's placement: its normal services on distinct random nodes, its runner on a
    /// random node labelled vm-capable=true (any node when none is, with a note saying so).
    public static func place(_ c: Case, on nodes: [String], vmCapable: [String],
                             using rng: inout some RandomNumberGenerator) throws -> (Placement, note: String?) {
        var p = try place(c.webServices, on: nodes, using: &rng)
        var note: String?
        if let runner = c.runner {
            let capable = vmCapable.filter(nodes.contains)
            guard let node = (capable.isEmpty ? nodes : capable).randomElement(using: &rng) else {
                throw VMCtlError(.wrongState, message: "the swarm has no ready node for \(runner)")
            }
            if capable.isEmpty { note = "no node is labelled vm-capable=true: \(runner) goes to \(node) and its guest is emulated (TCG)" }
            p.services[runner] = node
        }
        return (p, note)
    }

    /// The ready nodes labelled vm-capable=true.
    func vmCapableNodes(_ s: ClusterState) async throws -> [String] {
        let out = try await run(s, "for n in $(sudo docker node ls -q); do sudo docker node inspect -f "
                                + "'{{.Description.Hostname}} {{index .Spec.Labels \"vm-capable\"}}' \"$n\"; done")
        return Self.parseLabels(out)
    }

    /// `HOSTNAME true|false|<no value>` lines: the hostnames labelled true.
    static func parseLabels(_ text: String) -> [String] {
        text.split(separator: "\n").compactMap { line in
            let f = line.split(separator: " ")
            return f.count == 2 && f[1] == "true" ? String(f[0]) : nil
        }.sorted()
    }
}
