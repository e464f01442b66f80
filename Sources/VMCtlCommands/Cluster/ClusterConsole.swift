import ArgumentParser
import VMCtlCore

struct ClusterConsole: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "console",
        abstract: "Attach to a node's serial console (libvirt); Ctrl-] leaves.")
    @OptionGroup var cluster: ClusterNameOption
    @Argument(help: "node1, or just 1.")
    var node: String

    func run() async throws { try await ClusterManager.current.console(cluster.name, node: node) }
}

struct ClusterCp: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "cp",
        abstract: "Copy a file to or from a node: `cp ./f node1:/tmp/f` or `cp node1:/etc/hostname ./h`.")
    @OptionGroup var cluster: ClusterNameOption
    @Argument(help: "Source (local path or NODE:PATH).")
    var source: String
    @Argument(help: "Destination (local path or NODE:PATH).")
    var destination: String

    func run() async throws { try await ClusterManager.current.copy(cluster.name, from: source, to: destination) }
}
