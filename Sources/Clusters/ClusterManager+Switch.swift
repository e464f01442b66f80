import Foundation
import Images
import Machines

/// The cluster network as `cluster status` reports it.
public struct SwitchStatus: Sendable, Codable, Equatable {
    /// Whether the cluster's switch process is alive.
    public var running: Bool
    /// The switch's pid, or nil when it is not running.
    public var pid: Int32?
    /// When the running switch started.
    public var startedAt: Date?
}

/// How a running node is attached to the cluster segment (`clusterLink` in `status --json`).
public enum ClusterLink: String, Sendable, Codable {
    /// On the running switch.
    case up
    /// The switch is not running: the node reaches no other node.
    case switchDead = "switch-dead"
    /// The switch was restarted after the node booted: QEMU's stream netdev does not
    /// reconnect, so the node is cut off until it restarts (`cluster start` does it).
    case switchRestarted = "switch-restarted"
}

extension ClusterManager {
    /// Whether the cluster's switch runs, and since when.
    public func switchStatus(_ name: String) -> SwitchStatus {
        let sw = switchProcess(name)
        guard let pid = sw.runningPid() else { return SwitchStatus(running: false, pid: nil, startedAt: nil) }
        return SwitchStatus(running: true, pid: pid, startedAt: sw.startedAt())
    }

    /// The link of a node that is running (nil for other nodes).
    static func link(_ node: ClusterState.NodeRecord, running: Bool, switch sw: SwitchStatus) -> ClusterLink? {
        guard running else { return nil }
        guard sw.running else { return .switchDead }
        // The state keeps `bootedAt` in whole seconds (ISO 8601), the pid file's time has a
        // fraction: a node booted in the switch's own second (a warm `up` boots its nodes within
        // one) read as booted before it, and `start` restarted it. Whole seconds on both sides.
        if let booted = node.bootedAt, let started = sw.startedAt,
           booted.timeIntervalSince1970.rounded(.down) < started.timeIntervalSince1970.rounded(.down) {
            return .switchRestarted
        }
        return .up
    }

    /// Running nodes the switch cannot reach: all of them when it was dead before this
    /// command started it, else those booted before it started.
    func cutOff(_ s: ClusterState, active: Set<String>, switchWasDead: Bool) -> [NodePlan] {
        let sw = switchStatus(s.name)
        return s.nodes.filter { n in
            guard active.contains(n.plan.domainName) else { return false }
            return switchWasDead || Self.link(n, running: true, switch: sw) != .up
        }.map(\.plan)
    }

    /// Shuts `plans` down (their disks stay) so they boot again onto the new switch, and
    /// records them as stopped.
    func powerOffForRestart(_ plans: [NodePlan], state s: ClusterState, connection: HostConnection, image: Image,
                            writer: StateWriter) async throws {
        // A clean shutdown, not a pulled plug: what the guest wrote at its first boot (cloud-init's
        // records, its network config) may not be on disk yet, and losing it breaks the next boot.
        try await fleet(s, plans, connection: connection, image: image).run { _, m in try await m.1.stop(grace: .seconds(30)) }
        for plan in plans { try await writer.setPhase(plan.name, .stopped) }
    }
}
