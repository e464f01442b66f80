import ArgumentParser
import Clusters

struct ClusterClean: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "clean",
        abstract: "Remove everything the cluster made, whatever state it is in.")
    @OptionGroup var cluster: ClusterNameOption
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        try await ClusterManager.current.clean(name: cluster.name, connect: global.connectURI)
        if !global.json { say("cluster \(cluster.name): removed") }
    }
}
