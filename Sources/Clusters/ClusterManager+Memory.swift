import Foundation
import Machines
import VMCtlSupport

extension ClusterManager {
    /// What a node's balloon says: the memory the guest may use now, what it has free, and
    /// what its QEMU holds on the host (KiB, as libvirt reports them; nil when not reported).
    public struct NodeMemory: Sendable, Encodable {
        public var node: String
        public var bootMiB: Int
        public var actualMiB: Int?
        public var guestUnusedMiB: Int?
        public var guestUsableMiB: Int?
        public var hostRSSMiB: Int?
    }

    /// `cluster set-memory NODE SIZE`: moves the node's balloon so the running guest has
    /// `mib` MiB (at most what it booted with, at least 256 MiB), then reads back what the
    /// balloon reached. The size holds until the node's next boot.
    public func setMemory(name: String, node: String, mib: Int) async throws -> NodeMemory {
        try await locked(name, purpose: "cluster set-memory") { s in
            let i = try ClusterSpec.nodeIndex(node, count: s.nodes.count)
            let plan = s.nodes[i - 1].plan
            guard (256...s.spec.memoryMiB).contains(mib) else {
                throw VMCtlError.usage("\(plan.name) booted with \(s.spec.memoryMiB) MiB: set-memory takes 256M…\(s.spec.memoryMiB)M "
                    + "(a guest cannot grow past its boot size; `cluster clean` and `up --memory` for more), got \(mib) MiB")
            }
            return try await connected(s) { connection in
                let stats = try await machine(s, plan, connection: connection, image: nil)
                    .setMemory(mib: mib, hint: "`vmctl cluster start --name \(s.name)` first")
                return Self.nodeMemory(plan.name, bootMiB: s.spec.memoryMiB, stats)
            }
        }
    }

    /// Every running node's balloon figures (`cluster memory`, tests).
    public func memory(name: String) async throws -> [NodeMemory] {
        let s = try existing(name)
        return try await connected(s) { connection in
            var out: [NodeMemory] = []
            for n in s.nodes {
                guard let stats = try await machine(s, n.plan, connection: connection, image: nil).memoryStats() else { continue }
                out.append(Self.nodeMemory(n.plan.name, bootMiB: s.spec.memoryMiB, stats))
            }
            return out
        }
    }

    static func nodeMemory(_ node: String, bootMiB: Int, _ stats: [String: UInt64]) -> NodeMemory {
        func mib(_ k: String) -> Int? { stats[k].map { Int($0 / 1024) } }
        return NodeMemory(node: node, bootMiB: bootMiB, actualMiB: mib("actual"), guestUnusedMiB: mib("unused"),
                          guestUsableMiB: mib("usable"), hostRSSMiB: mib("rss"))
    }
}
