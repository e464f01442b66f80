import Foundation
import VMCtlSupport
import Clusters

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
