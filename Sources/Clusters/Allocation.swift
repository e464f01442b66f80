import Foundation
import VMCtlSupport
import Machines

/// Chooses ports and subnets that no other cluster uses and nothing on the host holds; MACs
/// follow from the cluster's name alone (`MACAddress.stable`), not from what was free.
/// Callers hold `AllocationLock` from choosing until the new cluster's state is saved, so two
/// `up`s at once never pick the same ports or subnet.
public struct Allocation: Sendable, Equatable {
    public var sshPorts: [Int]
    /// The third octet of the cluster subnet 10.77.X.0/24 (private to the cluster's switch).
    public var subnetIndex: Int

    public static let sshBase = 2223

    /// Picks `count` SSH ports and a subnet, skipping `taken` and ports in use.
    public static func choose(count: Int, taken: [ClusterState], isFree: (Int) -> Bool = Allocation.portIsFree) throws -> Allocation {
        let usedPorts = Set(taken.flatMap { $0.nodes.flatMap { [$0.plan.sshPort] + ($0.plan.vncPort.map { [$0] } ?? []) } })
        let usedSubnets = Set(taken.compactMap { Int($0.subnet.split(separator: ".")[2]) })
        func pick(from base: Int, limit: Int, avoid: Set<Int>) throws -> [Int] {
            var out: [Int] = []
            var p = base
            while out.count < count {
                guard p < base + limit else {
                    throw VMCtlError("no \(count) free ports from \(base): other clusters or programs hold them")
                }
                if !avoid.contains(p) && isFree(p) { out.append(p) }
                p += 1
            }
            return out
        }
        let ssh = try pick(from: sshBase, limit: 2000, avoid: usedPorts)
        guard let subnet = (1...254).first(where: { !usedSubnets.contains($0) }) else {
            throw VMCtlError("every cluster subnet 10.77.1–254.0/24 is in use: clean some clusters")
        }
        return Allocation(sshPorts: ssh, subnetIndex: subnet)
    }

    /// Whether 127.0.0.1:`port` can be bound now.
    public static func portIsFree(_ port: Int) -> Bool { LoopbackPort.isFree(port) }

    /// Node plans for a new cluster from this allocation. They are saved in its state, so an
    /// existing cluster keeps the MACs it was made with.
    public func plans(cluster: String, count: Int, paths: ClusterPaths) -> [NodePlan] {
        (1...count).map { i in
            NodePlan(name: "node\(i)", index: i, domainName: "\(cluster)-node\(i)", sshPort: sshPorts[i - 1],
                     vncPort: nil,
                     mgmtMAC: MACAddress.stable(role: .management, cluster: cluster, index: i),
                     clusterAddress: "10.77.\(subnetIndex).\(10 + i)/24",
                     clusterMAC: MACAddress.stable(role: .cluster, cluster: cluster, index: i),
                     directory: paths.nodeDirectory("node\(i)"), hostKey: nil)
        }
    }

    public var subnet: String { "10.77.\(subnetIndex).0/24" }
}
