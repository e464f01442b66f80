import ArgumentParser
import Foundation
import VMCtlSupport
import Images
import Machines
import Clusters
import Media

struct ClusterStatus: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Per-node state and ports.")
    @OptionGroup var cluster: ClusterNameOption
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let (s, rows) = try await ClusterManager.current.status(cluster.name)
        if global.json { try printJSON(rows); return }
        say("cluster \(s.name): \(s.phase.rawValue), \(s.nodes.count) × \(s.spec.image), accel \(s.accelerator.rawValue)")
        say(renderTable(["NODE", "STATE", "SSH"], rows.map {
            [$0.node, $0.state, "127.0.0.1:\($0.sshPort)"]
        }))
        say(networkLine(s.name, rows))
    }
}

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

struct ClusterInfo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "info",
        abstract: "Per node: state, IPs, SSH port, VNC socket, disk, image, uptime.")
    @OptionGroup var cluster: ClusterNameOption
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let m = ClusterManager.current
        let (s, rows) = try await m.status(cluster.name)
        if global.json {
            struct Info: Encodable { var cluster: ClusterState; var nodes: [NodeStatus]; var sshConfig: String; var `switch`: SwitchStatus }
            try printJSON(Info(cluster: s.redacted(), nodes: rows, sshConfig: ClusterPaths(state: m.state, name: s.name).sshConfig,
                               switch: m.switchStatus(s.name)))
            return
        }
        say("cluster \(s.name): \(s.phase.rawValue); image \(s.spec.image) (\(s.imageHash.prefix(12))); "
            + "\(s.spec.cpus) vCPUs, \(s.spec.memoryMiB) MiB, \(s.spec.diskGiB) GiB disk per node; accel \(s.accelerator.rawValue)")
        say("libvirt: \(s.connectURI)")
        say("cluster network: \(s.subnet) (private switch); OpenSSH: ssh -F \(ClusterPaths(state: m.state, name: s.name).sshConfig) node1")
        say(networkLine(s.name, rows))
        say(renderTable(["NODE", "STATE", "MGMT IP", "CLUSTER IP", "SSH", "DISK", "UPTIME"], rows.map {
            [$0.node, $0.state, $0.managementIP, $0.clusterIP ?? "-", "127.0.0.1:\($0.sshPort)",
             ByteSize.format($0.diskBytes), $0.uptimeSeconds.map { "\($0)s" } ?? "-"]
        }))
        // VNC is a UNIX socket only root (and QEMU) can open: no other local user can type into a node.
        say("VNC (as root): remote-viewer vnc+unix://PATH, or `socat TCP-LISTEN:5901,bind=127.0.0.1 UNIX-CONNECT:PATH` for a TCP viewer")
        for r in rows { say("  \(r.node): \(r.vnc)") }
    }
}

struct ClusterList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "Every cluster under the state dir.")
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let reg = ClusterRegistry(state: StateDir.resolve())
        struct Row: Encodable { var name: String; var phase: String; var nodes: Int; var image: String }
        let rows = reg.names().map { n -> Row in
            guard let s = reg.load(n) else { return Row(name: n, phase: "half-made (run clean)", nodes: 0, image: "-") }
            return Row(name: n, phase: s.phase.rawValue, nodes: s.nodes.count, image: s.spec.image)
        }
        if global.json { try printJSON(rows); return }
        if rows.isEmpty { say("no clusters: `vmctl cluster up 3` makes one"); return }
        say(renderTable(["NAME", "PHASE", "NODES", "IMAGE"], rows.map { [$0.name, $0.phase, "\($0.nodes)", $0.image] }))
    }
}
