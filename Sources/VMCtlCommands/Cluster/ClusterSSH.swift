import ArgumentParser
import Foundation
import VMCtlSupport
import Clusters

struct ClusterSSH: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ssh",
        abstract: "A shell on a node (OpenSSH, strict host keys), or one command (libssh2).")
    @OptionGroup var cluster: ClusterNameOption

    @Argument(help: "node1, or just 1.")
    var node: String

    @Argument(parsing: .postTerminator, help: "A command to run instead of a shell (after --): its words are joined with spaces and run by the node's shell, as ssh does (quote a script as one word: -- 'a; b'); its stdin is empty.")
    var command: [String] = []

    @Flag(name: .long, help: "With a command: print its output as is (on a terminal, control characters show as ^[ etc. by default).")
    var raw = false

    @Option(help: "With a command: time before it is abandoned (seconds, or 90s, 10m, 1h).")
    var timeout = TimeLimit(seconds: 300)

    func run() async throws {
        let m = ClusterManager.current
        let s = try m.existing(cluster.name)
        let plan = try m.select(s, [node])[0]
        if command.isEmpty {
            // Interactive: hand the terminal to OpenSSH with the cluster's strict config.
            try OpenSSH.exec(config: ClusterPaths(state: m.state, name: s.name).sshConfig, host: plan.name)
        }
        // Streamed as it arrives: a command that prints without end costs no memory.
        let printer = GuestOutputPrinter(raw: raw, prefixLines: false)
        let r = await m.exec(s, nodes: [plan], command: command.joined(separator: " "), timeout: timeout.duration,
                             output: { try printer.write(node: $0, $1, $2) })[0]
        printer.finish(node: plan.name)
        if let e = r.error { throw VMCtlError(TerminalText.forTerminal(e, fd: 2, raw: raw)) }
        if r.status != 0 { throw ExitCode(r.status ?? 1) }
    }
}
