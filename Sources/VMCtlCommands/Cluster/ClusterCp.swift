import ArgumentParser
import Images
import Clusters

struct ClusterCp: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "cp",
        abstract: "Copy a file to or from a node: `cp ./f node1:/tmp/f` or `cp node1:/etc/hostname ./h`.",
        discussion: """
            The file is streamed (any size). New copies are readable by their owner only (0600): on \
            the node the file is created under umask 077; locally it is written to a 0600 temporary \
            file beside the destination and renamed into place. An existing file on the node keeps \
            its mode. --mode sets the copy's mode instead (e.g. --mode 0644). A directory as \
            destination receives the file under its own name.
            """)
    @OptionGroup var cluster: ClusterNameOption
    @Option(help: "Mode of the copy, in octal (0644, 755); default 0600 for new files.")
    var mode: String?
    @Argument(help: "Source (local path or NODE:PATH).")
    var source: String
    @Argument(help: "Destination (local path, directory, or NODE:PATH).")
    var destination: String

    func validate() throws {
        if let mode { _ = try FileCopy.parseMode(mode) }
    }

    func run() async throws {
        try await ClusterManager.current.copy(cluster.name, from: source, to: destination, mode: try mode.map(FileCopy.parseMode))
    }
}
