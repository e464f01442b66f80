import ArgumentParser
import Foundation
import VMCtlSupport
import Images
import Machines
import Clusters
import Media

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

/// Streams guest output to this terminal as it arrives: neutralised (`TerminalText`, one
/// state per node and stream, so a UTF-8 sequence split between reads is judged whole)
/// unless `--raw` or not a terminal, and with `prefixLines` as whole `node1: ` lines
/// (`PrefixedLines`), so nodes never mix within a line. Safe to call from several threads.
final class GuestOutputPrinter: @unchecked Sendable {
    private struct Stream { var text: TerminalText?; var lines: PrefixedLines? }
    private let lock = NSLock()
    private let raw: Bool
    private let prefixLines: Bool
    private var streams: [String: Stream] = [:]
    /// Whether stdout's last byte so far was not a newline.
    private var stdoutMidLine = false

    init(raw: Bool, prefixLines: Bool) { self.raw = raw; self.prefixLines = prefixLines }

    /// Prints a piece of `node`'s output. Throws when the terminal or pipe is gone.
    func write(node: String, _ stream: ExecStream, _ piece: Data) throws {
        lock.lock(); defer { lock.unlock() }
        let fd: Int32 = stream == .stdout ? 1 : 2
        let key = "\(node) \(fd)"
        var st = streams[key] ?? Stream(text: TerminalText.applies(to: fd, raw: raw) ? TerminalText() : nil,
                                         lines: prefixLines ? PrefixedLines(prefix: "\(node): ") : nil)
        defer { streams[key] = st }
        var out = st.text != nil ? st.text!.feed(piece) : piece
        if st.lines != nil { out = st.lines!.feed(out) }
        try writeAll(fd, out)
    }

    /// Prints what `node` left unfinished (a last line without newline, a cut UTF-8 sequence).
    func finish(node: String) {
        lock.lock(); defer { lock.unlock() }
        for fd: Int32 in [1, 2] {
            guard var st = streams.removeValue(forKey: "\(node) \(fd)") else { continue }
            var out = st.text != nil ? st.text!.feed(Data(), final: true) : Data()
            if st.lines != nil { out = st.lines!.feed(out) + st.lines!.finish() }
            try? writeAll(fd, out)
        }
    }

    /// A line of vmctl's own on stdout (`== node1: exit 0`), on a line of its own even after
    /// output that did not end with a newline.
    func status(_ text: String) {
        lock.lock(); defer { lock.unlock() }
        try? writeAll(1, Data(((stdoutMidLine ? "\n" : "") + text).utf8))
    }

    /// A message that may quote the guest (an error naming its command) on stderr, neutralised.
    func note(_ text: String) {
        lock.lock(); defer { lock.unlock() }
        try? writeAll(2, Data(TerminalText.forTerminal(text, fd: 2, raw: raw).utf8))
    }

    private func writeAll(_ fd: Int32, _ data: Data) throws {
        if fd == 1, let last = data.last { stdoutMidLine = last != 0x0A }
        try data.withUnsafeBytes { buf in
            var off = 0
            while off < buf.count {
                let n = Foundation.write(fd, buf.baseAddress!.advanced(by: off), buf.count - off)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { throw VMCtlError("cannot write output: \(String(cString: strerror(errno)))") }
                off += n
            }
        }
    }
}

/// A stream cut into whole lines, each starting with `prefix` (`node1: `). What follows the
/// last newline waits for the next piece, up to `maxLine` bytes: a longer line is broken there.
struct PrefixedLines {
    let prefix: [UInt8]
    private var partial: [UInt8] = []
    /// Longest piece of a line held back waiting for its newline.
    static let maxLine = 64 << 10

    init(prefix: String) { self.prefix = Array(prefix.utf8) }

    /// The complete lines of `partial` + `piece`, prefixed.
    mutating func feed(_ piece: Data) -> Data {
        let b = partial + [UInt8](piece)
        var out: [UInt8] = []
        out.reserveCapacity(b.count + b.count / 2)
        var start = 0
        for (i, c) in b.enumerated() where c == 0x0A {
            out += prefix
            out += b[start...i]
            start = i + 1
        }
        if b.count - start > Self.maxLine {
            out += prefix + b[start...] + [0x0A]
            start = b.count
        }
        partial = Array(b[start...])
        return Data(out)
    }

    /// The last, unterminated line (prefixed, with a newline added), if any.
    mutating func finish() -> Data {
        defer { partial = [] }
        return partial.isEmpty ? Data() : Data(prefix + partial + [0x0A])
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
