import ArgumentParser
import Clusters

struct ClusterDown: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "down", abstract: "Stop every node (keep disks).")
    @OptionGroup var cluster: ClusterNameOption
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let view = ProgressView(json: global.json)
        try await ClusterManager.current.down(options: ClusterOptions(name: cluster.name), events: view.sink)
        if !global.json { say("cluster \(cluster.name): stopped (disks kept; `vmctl cluster start` boots it again)") }
    }
}
