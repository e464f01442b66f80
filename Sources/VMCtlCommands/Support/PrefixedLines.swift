import Foundation

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
