import ArgumentParser
import Foundation
import VMCtlCore

struct ClusterExec: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "exec",
        abstract: "Run a command on nodes in parallel (libssh2); per-node exit status.")
    @OptionGroup var cluster: ClusterNameOption
    @OptionGroup var global: GlobalOptions

    @Option(help: "Nodes to run on (node1,node3 or 1,3); default all.")
    var nodes: [String] = []

    @Option(help: "Seconds before the command is abandoned.")
    var timeout: Int = 300

    @Flag(name: .long, help: "Print output as is (on a terminal, control characters show as ^[ etc. by default; in --json, DEL and C1 as \\u escapes).")
    var raw = false

    @Argument(parsing: .postTerminator, help: "The command (after --).")
    var command: [String]

    func run() async throws {
        guard !command.isEmpty else { throw VMCtlError.usage("give the command after --, e.g. `vmctl cluster exec -- uname -r`") }
        let m = ClusterManager.current
        let s = try m.existing(cluster.name)
        let results = await m.exec(s, nodes: try m.select(s, nodes), command: command.joined(separator: " "),
                                   timeout: .seconds(timeout))
        if global.json {
            if TerminalText.applies(to: 1, raw: raw) {
                let enc = JSONEncoder()
                enc.outputFormatting = [.prettyPrinted, .sortedKeys]
                say(TerminalText.escapeJSON(String(decoding: try enc.encode(results), as: UTF8.self)))
            } else {
                try printJSON(results)
            }
        } else {
            for r in results {
                let head = r.error != nil ? "error" : "exit \(r.status ?? -1)"
                say("== \(r.node): \(head)")
                if !r.stdout.isEmpty { FileHandle.standardOutput.writeGuestOutput(r.stdout, raw: raw) }
                if !r.stderr.isEmpty { FileHandle.standardError.writeGuestOutput(r.stderr, raw: raw) }
                if let e = r.error { FileHandle.standardError.writeGuestOutput("\(e)\n", raw: raw) }
            }
        }
        if results.contains(where: { $0.status != 0 }) { throw ExitCode(1) }
    }
}

struct ClusterTest: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "test",
        abstract: "Integration checks over SSH on every node (plus the image recipe's checks).")
    @OptionGroup var cluster: ClusterNameOption
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let results = try await ClusterManager.current.test(cluster.name)
        let failed = results.filter { !$0.passed }.count
        if global.json { try printJSON(results) } else {
            say(renderTable(["NODE", "CHECK", "RESULT", "DETAIL"], results.map {
                [$0.node, $0.check, $0.passed ? "pass" : "FAIL", $0.passed ? "" : $0.detail]
            }))
            say("\(results.count - failed) passed, \(failed) failed")
        }
        if failed > 0 { throw ExitCode(1) }
    }
}
