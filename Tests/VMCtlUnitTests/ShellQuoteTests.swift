import Blocking
import Foundation
import Testing
@testable import VMCtlSupport

/// `Shell.quote`, the one place vmctl makes a shell word: a real `/bin/sh` must hand back
/// every hostile string byte for byte, never run any part of it.
@Suite("shell quoting: one function, hostile strings")
struct ShellQuoteTests {
    static let hostile = [
        "", "plain", "it's", "'", "''", "'\\''", "a b\tc", "$(touch PWNED)", "`touch PWNED`", "${HOME}", "$HOME",
        "x'; touch PWNED; '", "\\", "\\'", "\"", "a\nb\n", "*", "?[a]*", "~root", "-n", "--", "a;b|c&d>e<f",
        "é ✓ 日本", "!!", "#comment", "line1\r\nline2", "' $(touch PWNED) '",
    ]

    @Test("sh prints every hostile string back unchanged through Shell.quote, and runs none of it")
    func roundTrip() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vmctl-quote-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for s in Self.hostile {
            let out = try Command("/bin/sh", ["-c", "cd \(Shell.quote(dir)) && printf '%s' \(Shell.quote(s))"]).run()
            #expect(out.status == 0 && out.stdout == s, "\(s.debugDescription) came back as \(out.stdout.debugDescription) \(out.stderr)")
        }
        // Several words in one command stay several words.
        let words = try Command("/bin/sh", ["-c", "printf '<%s>' " + Self.hostile.map(Shell.quote).joined(separator: " ")]).run()
        #expect(words.stdout == Self.hostile.map { "<\($0)>" }.joined())
        #expect(!FileManager.default.fileExists(atPath: "\(dir)/PWNED"))
    }
}
