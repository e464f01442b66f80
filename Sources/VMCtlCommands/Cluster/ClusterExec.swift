import ArgumentParser
import Foundation
import VMCtlSupport
import Clusters

struct ClusterExec: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "exec",
        abstract: "Run a command on nodes in parallel (libssh2); output streamed, per-node exit status.",
        discussion: """
            Output is printed as it arrives; with more than one node each line starts with the \
            node's name (`node2: ...`), and `== node2: exit 0` follows as each node ends. \
            With --json everything is collected (at most 16 MiB per stream and node).
            """)
    @OptionGroup var cluster: ClusterNameOption
    @OptionGroup var global: GlobalOptions

    @Option(help: "Nodes to run on (node1,node3 or 1,3); default all.")
    var nodes: [String] = []

    @Option(help: "Time before the command is abandoned (seconds, or 90s, 10m, 1h).")
    var timeout = TimeLimit(seconds: 300)

    @Flag(name: .long, help: "Print output as is (on a terminal, control characters show as ^[ etc. by default; in --json, DEL and C1 as \\u escapes).")
    var raw = false

    @Argument(parsing: .postTerminator, help: "The command (after --).")
    var command: [String]

    func run() async throws {
        guard !command.isEmpty else { throw VMCtlError.usage("give the command after --, e.g. `vmctl cluster exec -- uname -r`") }
        let m = ClusterManager.current
        let s = try m.existing(cluster.name)
        let selected = try m.select(s, nodes)
        let line = command.joined(separator: " ")
        if global.json {
            let results = await m.exec(s, nodes: selected, command: line, timeout: timeout.duration)
            if TerminalText.applies(to: 1, raw: raw) {
                let enc = JSONEncoder()
                enc.outputFormatting = [.prettyPrinted, .sortedKeys]
                say(TerminalText.escapeJSON(String(decoding: try enc.encode(results), as: UTF8.self)))
            } else {
                try printJSON(results)
            }
            if results.contains(where: { $0.status != 0 }) { throw ExitCode(1) }
            return
        }
        let printer = GuestOutputPrinter(raw: raw, prefixLines: selected.count > 1)
        let results = await m.exec(s, nodes: selected, command: line, timeout: timeout.duration,
                                   output: { try printer.write(node: $0, $1, $2) },
                                   finished: { r in
            printer.finish(node: r.node)
            printer.status("== \(r.node): \(r.error != nil ? "error" : "exit \(r.status ?? -1)")\n")
            if let e = r.error { printer.note("\(e)\n") }
        })
        if results.contains(where: { $0.status != 0 }) { throw ExitCode(1) }
    }
}
