import ArgumentParser
import Foundation
import Machines
import Clusters

struct ClusterCompact: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "compact",
        abstract: "Give idle nodes a fresh QEMU holding the same running guest, so the host gets back what their boot left in QEMU.",
        discussion: """
            Each node in turn is saved, its zero pages left out, and restored: the guest goes on \
            where it was (processes, uptime, boot ID, disks), paused for a few seconds, and its \
            clock is stepped forward over SSH. What goes is what QEMU kept from running it: above \
            all TCG's translation cache, which a cold boot fills (128 MiB) and QEMU never \
            shrinks, and the heap the boot grew. It fills again as the node works: this is for \
            nodes that will sit idle (a cold node then costs the host about what a warm clone \
            does; see docs/density.md). SSH sessions and other connections through the node's \
            forwarded ports are cut. A node whose restore failed (or whose compact was killed \
            between the save and the restore) keeps its guest in the save: `vmctl cluster start` \
            restores it from there, unless its disk was written after the save (the domain was \
            booted outside vmctl): such a save is refused and kept, since restoring it would \
            corrupt the filesystem.
            EXAMPLES:
              vmctl cluster up 3 --cold && vmctl cluster compact
              vmctl cluster compact node2 --name lab
            """)
    @Argument(help: "Nodes (node2, 2, or node1,node3); default all.") var nodes: [String] = []
    @OptionGroup var cluster: ClusterNameOption
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let json = global.json
        let rows = try await ClusterManager.current.compact(name: cluster.name, nodes: nodes) { c in
            if !json { say(Self.line(c)) }
        }
        if json { try printJSON(rows) }
    }

    static func line(_ c: Machine.Compaction) -> String {
        func mib(_ v: Int?) -> String { v.map { "\($0) MiB" } ?? "?" }
        return "\(c.node): QEMU \(mib(c.rssBeforeMiB)) → \(mib(c.rssAfterMiB)); paused \(String(format: "%.1f", c.pausedSeconds)) s "
            + "(save \(c.saveBytes >> 20) MiB), clock stepped \(String(format: "%+.2f", c.clockStepSeconds)) s"
    }
}
