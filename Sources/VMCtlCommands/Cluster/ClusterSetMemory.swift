import ArgumentParser
import Foundation
import VMCtlSupport
import Clusters

struct ClusterSetMemory: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "set-memory",
        abstract: "Give a running node less (or again more) memory through its balloon, up to its boot size.",
        discussion: """
            The guest hands pages back to the host below its boot size and takes them again up to it.
            Until the node's next boot. `vmctl cluster memory` shows every node's balloon.
            EXAMPLE:
              vmctl cluster set-memory node2 768M
            """)
    @Argument(help: "The node (node2, 2).") var node: String
    @Argument(help: "The memory the guest may use, like 768M or 1G.") var size: String
    @OptionGroup var cluster: ClusterNameOption
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        guard let bytes = ByteSize.parse(size) else {
            throw VMCtlError.usage("set-memory takes a size like 768M or 1G (got '\(size)')")
        }
        let m = try await ClusterManager.current.setMemory(name: cluster.name, node: node, mib: Int(bytes >> 20))
        if global.json { try printJSON(m); return }
        say("\(m.node): balloon at \(m.actualMiB.map { "\($0) MiB" } ?? "?") of \(m.bootMiB) MiB"
            + (m.actualMiB == Int(bytes >> 20) ? "" : " (still moving toward \(bytes >> 20) MiB: the guest gives pages back at its own pace)"))
    }
}
