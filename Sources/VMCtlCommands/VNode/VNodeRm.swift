import ArgumentParser
import Foundation
import VNodes

struct VNodeRm: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rm",
        abstract: "Remove vnodes: domain, disk, seed, host key, record and known_hosts entries.")
    @OptionGroup var pool: VNodePoolOptions

    @Argument(help: "vnode07, or just 7.")
    var nodes: [String] = []

    @Flag(help: "Every vnode (of --stem, if given).")
    var all = false

    func validate() throws {
        if all == !nodes.isEmpty { throw ValidationError("name the vnodes to remove, or --all") }
    }

    func run() async throws {
        let m = try pool.manager()
        let records = all ? m.paths.records().filter { pool.stem == nil || $0.stem == pool.stem }
            : try nodes.map { try m.record($0, stem: pool.stem) }
        guard !records.isEmpty else { return say("no vnodes to remove") }
        try await m.remove(records) { say($0) }
    }
}
