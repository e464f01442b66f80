import ArgumentParser
import VMCtlSupport
import Images
import Machines
import Clusters
import Media

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
