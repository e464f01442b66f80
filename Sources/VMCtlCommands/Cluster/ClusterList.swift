import ArgumentParser
import Foundation
import VMCtlSupport
import Clusters

struct ClusterList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "Every cluster under the state dir.")
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let reg = ClusterRegistry(state: StateDir.resolve())
        struct Row: Encodable { var name: String; var phase: String; var nodes: Int; var image: String }
        let rows = reg.names().map { n -> Row in
            guard let s = reg.load(n) else { return Row(name: n, phase: "half-made (run clean)", nodes: 0, image: "-") }
            return Row(name: n, phase: s.phase.rawValue, nodes: s.nodes.count, image: s.spec.image)
        }
        if global.json { try printJSON(rows); return }
        if rows.isEmpty { say("no clusters: `vmctl cluster up 3` makes one"); return }
        say(renderTable(["NAME", "PHASE", "NODES", "IMAGE"], rows.map { [$0.name, $0.phase, "\($0.nodes)", $0.image] }))
    }
}
