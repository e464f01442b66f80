import ArgumentParser
import Foundation
import VNodes

struct VNodeList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list",
        abstract: "Every vnode: name, distro, state, address, MAC, uptime.")
    @OptionGroup var pool: VNodePoolOptions

    @Flag(help: "Machine-readable JSON output.")
    var json = false

    func run() async throws {
        let m = try pool.manager()
        let nodes = try await m.list(stem: pool.stem)
        if json { return try printJSON(nodes) }
        guard !nodes.isEmpty else { return say("no vnodes: `vmctl vnode 3` makes vnode03") }
        say(renderTable(["NAME", "DISTRO", "STATE", "ADDRESS", "MAC", "UPTIME"], nodes.map {
            [$0.name, $0.distro, $0.state, $0.address, $0.mac, $0.uptimeSeconds.map(Self.uptime) ?? "-"]
        }))
    }

    static func uptime(_ s: Int) -> String {
        s < 120 ? "\(s)s" : s < 7200 ? "\(s / 60)m" : s < 172_800 ? "\(s / 3600)h" : "\(s / 86400)d"
    }
}
