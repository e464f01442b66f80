import Foundation
import Libvirt
import VMCtlSupport
import Machines

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
                guard let d = try await connection.domain(named: plan.domainName) else {
                    throw VMCtlError(.notFound, message: "\(plan.name) has no domain: `vmctl cluster start --name \(s.name)`")
                }
                defer { d.close() }
                guard try await d.isActive() else {
                    throw VMCtlError(.wrongState, message: "\(plan.name) is not running: `vmctl cluster start --name \(s.name)` first")
                }
                guard try await d.xml().contains("<memballoon model='virtio'") else {
                    throw VMCtlError(.wrongState, message: "\(plan.name) was booted without a balloon (VMCTL_BALLOON=0 or an older vmctl); "
                        + "it gets one at its next boot (`cluster down` and `start`)")
                }
                try await d.setMemory(kiB: UInt(mib) * 1024)
                // The guest's balloon driver moves in steps: wait (bounded) until it got there.
                var stats = try await d.memoryStats()
                for _ in 0..<50 where (stats["actual"] ?? 0) != UInt64(mib) * 1024 {
                    try await Task.sleep(for: .milliseconds(200))
                    stats = try await d.memoryStats()
                }
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
                guard let d = try await connection.domain(named: n.plan.domainName) else { continue }
                defer { d.close() }
                guard try await d.isActive() else { continue }
                out.append(Self.nodeMemory(n.plan.name, bootMiB: s.spec.memoryMiB, try await d.memoryStats()))
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
