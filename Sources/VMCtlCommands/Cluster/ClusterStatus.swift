import ArgumentParser
import Foundation
import Machines
import Clusters

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
