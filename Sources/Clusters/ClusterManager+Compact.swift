import Foundation
import VMCtlSupport
import Machines

extension ClusterManager {
    /// `cluster compact [NODES]`: each selected node, running and idle, gets a new QEMU holding
    /// the same guest (`Machine.compact`), one node at a time so only one guest is paused at
    /// once. Every selected node is checked to be running before any is touched; a
    /// cancellation is honoured between nodes, never between a node's save and its restore.
    /// `done` hears of each node as it comes back.
    public func compact(name: String, nodes names: [String], deadline: Duration = .seconds(300),
                        done: @escaping @Sendable (Machine.Compaction) -> Void = { _ in }) async throws -> [Machine.Compaction] {
        try await locked(name, purpose: "cluster compact") { s in
            let plans = try select(s, names)
            let image = try? image(of: s)
            return try await connected(s) { connection in
                let machines = plans.map { machine(s, $0, connection: connection, image: image) }
                for m in machines {
                    guard try await m.status() == .running else {
                        throw VMCtlError(.wrongState, message: "\(m.spec.hostname) is not running: `vmctl cluster start --name \(s.name)` first "
                            + "(nothing was compacted)")
                    }
                }
                var out: [Machine.Compaction] = []
                for m in machines {
                    try Task.checkCancellation()
                    let c = try await m.compact(deadline: .now + deadline)
                    done(c)
                    out.append(c)
                }
                return out
            }
        }
    }
}
