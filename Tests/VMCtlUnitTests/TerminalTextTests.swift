import Foundation
import Testing
@testable import VMCtlCommands

@Suite("Guest output on a terminal: control characters neutralised")
struct TerminalTextTests {
    /// True when `s` holds nothing a terminal would act on: no C0 control but newline and
    /// tab (and CR before LF), no DEL, no C1 control, no stray 0x9B byte.
    static func inert(_ s: String) -> Bool {
        let scalars = Array(s.unicodeScalars)
        for (i, u) in scalars.enumerated() {
            switch u.value {
            case 0x0A, 0x09: continue
            case 0x0D where i + 1 < scalars.count && scalars[i + 1] == "\n": continue
            case 0x00...0x1F, 0x7F...0x9F: return false
            default: continue
            }
        }
        return !s.utf8.contains(0x9B) && !s.utf8.contains(0x1B)
    }

    @Test("ESC[2J, an OSC 52 clipboard write, BEL and backspace show as caret notation")
    func escapes() {
        let clear = TerminalText.sanitize("before\u{1B}[2Jafter")
        #expect(clear == "before^[[2Jafter")
        let osc52 = TerminalText.sanitize("\u{1B}]52;c;ZXZpbCBjbGlwYm9hcmQ=\u{07}done")
        #expect(osc52 == "^[]52;c;ZXZpbCBjbGlwYm9hcmQ=^Gdone")
        #expect(TerminalText.sanitize("bell\u{07}") == "bell^G")
        #expect(TerminalText.sanitize("pass\u{08}\u{08}\u{08}") == "pass^H^H^H")
        #expect(TerminalText.sanitize("del\u{7F}") == "del^?")
        #expect(TerminalText.sanitize("\u{00}nul") == "^@nul")
        for s in [clear, osc52] { #expect(Self.inert(s)) }
    }

    @Test("the 8-bit CSI (U+009B, or a bare 0x9B byte) and other C1 controls are neutralised")
    func c1() {
        let csi = TerminalText.sanitize("x\u{9B}2Jy")
        #expect(csi == "xM-^[2Jy")
        #expect(Self.inert(csi))
        #expect(TerminalText.sanitize("\u{90}\u{9D}\u{9C}\u{80}\u{9F}") == "M-^PM-^]M-^\\M-^@M-^_")
        let bare = TerminalText.sanitize(Data([0x61, 0x9B, 0x32, 0x4A, 0x62]))
        #expect(bare == Data("a\u{FFFD}2Jb".utf8))
        #expect(Self.inert(String(decoding: bare, as: UTF8.self)))
    }

    @Test("text, UTF-8, newline, tab and CRLF are kept; a lone CR is shown")
    func kept() {
        let text = "plain text, é✓ 日本 🙂\n\tindented\r\nwindows line\n"
        #expect(TerminalText.sanitize(text) == text)
        #expect(TerminalText.sanitize(Data(text.utf8)) == Data(text.utf8))
        #expect(TerminalText.sanitize("progress 10%\rprogress 99%") == "progress 10%^Mprogress 99%")
        #expect(TerminalText.sanitize("ends\r") == "ends^M")
        // U+00A0 and above are text, not C1.
        #expect(TerminalText.sanitize("a\u{A0}b\u{FF}c") == "a\u{A0}b\u{FF}c")
    }

    @Test("a stream split inside a UTF-8 sequence or a CRLF is judged whole")
    func streaming() {
        let bytes = [UInt8]("é✓\r\n\u{9B}x".utf8)
        for cut in 0...bytes.count {
            var t = TerminalText()
            var out = t.feed(Data(bytes[..<cut]))
            out += t.feed(Data(bytes[cut...]), final: true)
            #expect(String(decoding: out, as: UTF8.self) == "é✓\r\nM-^[x", "cut at \(cut)")
        }
        // A sequence still unfinished at the end becomes U+FFFD.
        var t = TerminalText()
        #expect(t.feed(Data([0x61, 0xE2, 0x9C])).isEmpty == false)
        #expect(t.feed(Data(), final: true) == Data("\u{FFFD}".utf8))
        // Broken sequences read as Swift's own decoding reads them.
        for broken: [UInt8] in [[0xE2, 0x9C, 0x41], [0xC0, 0xAF], [0xED, 0xA0, 0x80], [0xF5, 0x80], [0x80, 0x41], [0xF0, 0x9F, 0x99]] {
            #expect(TerminalText.sanitize(Data(broken)) == Data(String(decoding: broken, as: UTF8.self).utf8), "\(broken)")
        }
    }

    @Test("JSON keeps its value: DEL and C1 become \\u escapes")
    func json() throws {
        let raw = "{\"out\":\"a\u{9B}2J\u{7F}é\"}"
        let escaped = TerminalText.escapeJSON(raw)
        #expect(escaped == "{\"out\":\"a\\u009b2J\\u007fé\"}")
        let back = try JSONSerialization.jsonObject(with: Data(escaped.utf8)) as? [String: String]
        #expect(back?["out"] == "a\u{9B}2J\u{7F}é")
    }

    @Test("only a terminal gets neutralised output, and never with --raw")
    func appliesOnlyToTerminals() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("vmctl-tt-\(UUID())").path
        #expect(FileManager.default.createFile(atPath: path, contents: nil))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let h = try #require(FileHandle(forWritingAtPath: path))
        #expect(!TerminalText.applies(to: h.fileDescriptor, raw: false))
        h.writeGuestOutput("\u{1B}[2J", raw: false)
        try h.close()
        #expect(FileManager.default.contents(atPath: path) == Data("\u{1B}[2J".utf8))
        #expect(!TerminalText.applies(to: 0, raw: true) && !TerminalText.applies(to: 1, raw: true))
    }
}
