import ArgumentParser
import Clusters

struct ClusterConsole: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "console",
        abstract: "Attach to a node's serial console (libvirt); Ctrl-] leaves.")
    @OptionGroup var cluster: ClusterNameOption
    @Argument(help: "node1, or just 1.")
    var node: String

    func run() async throws { try await ClusterManager.current.console(cluster.name, node: node) }
}
