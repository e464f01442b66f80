import ArgumentParser
import Foundation
import Clusters

/// One line on the cluster network: whether the switch runs and which running nodes it cannot reach.
func networkLine(_ cluster: String, _ rows: [NodeStatus]) -> String {
    let sw = ClusterManager.current.switchStatus(cluster)
    let fix = "`vmctl cluster start --name \(cluster)` restarts it and the running nodes"
    if !sw.running {
        let running = rows.filter { $0.clusterLink != nil }
        return running.isEmpty ? "cluster network: switch stopped"
            : "cluster network: DOWN, the switch is not running (nodes cannot reach each other); \(fix)"
    }
    let cut = rows.filter { $0.clusterLink == .switchRestarted }.map(\.node)
    if !cut.isEmpty {
        return "cluster network: switch running (pid \(sw.pid!)), but \(cut.joined(separator: ", ")) booted before it started "
            + "and cannot reach it; `vmctl cluster start --name \(cluster)` restarts them"
    }
    return "cluster network: switch running (pid \(sw.pid!))"
}
