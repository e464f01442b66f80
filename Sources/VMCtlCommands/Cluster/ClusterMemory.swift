import ArgumentParser
import Foundation
import Clusters

struct ClusterMemory: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "memory",
        abstract: "Per running node: boot size, balloon, what the guest has unused, what its QEMU holds on the host.")
    @OptionGroup var cluster: ClusterNameOption
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let rows = try await ClusterManager.current.memory(name: cluster.name)
        if global.json { try printJSON(rows); return }
        func f(_ v: Int?) -> String { v.map { "\($0) MiB" } ?? "-" }
        say(renderTable(["NODE", "BOOT", "BALLOON", "GUEST UNUSED", "GUEST USABLE", "HOST RSS"], rows.map {
            [$0.node, "\($0.bootMiB) MiB", f($0.actualMiB), f($0.guestUnusedMiB), f($0.guestUsableMiB), f($0.hostRSSMiB)]
        }))
    }
}
