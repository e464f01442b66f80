import ArgumentParser
import Clusters
import Media

struct ClusterStart: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "start", abstract: "Boot stopped nodes again and verify them.")
    @OptionGroup var cluster: ClusterNameOption
    @OptionGroup var global: GlobalOptions
    @Option(help: "Seconds to wait for every node to be SSH-verified.")
    var timeout: Int = 600

    func run() async throws {
        let view = ProgressView(json: global.json)
        let s = try await ClusterManager.current.start(options: ClusterOptions(name: cluster.name, timeout: .seconds(timeout)),
                                                       events: view.sink)
        if !global.json { say("cluster \(s.name): \(s.nodes.count) node(s) running and SSH-verified") }
    }
}
