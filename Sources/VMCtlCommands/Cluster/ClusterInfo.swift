import ArgumentParser
import Foundation
import VMCtlSupport
import Machines
import Clusters

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
