import Foundation

/// Guest output made harmless for a terminal. A guest controls what its commands and serial
/// console print, and escape sequences in it could clear the screen, retitle the window,
/// set the clipboard (OSC 52) or worse. On a terminal (unless `--raw`), ESC and the other C0
/// controls except newline, tab and a CR before a newline, DEL, and the C1 controls
/// U+0080–U+009F (the 8-bit CSI U+009B among them) are shown in caret notation (`^[`,
/// `^G`, `^?`, `M-^[`); bytes that are not UTF-8 become U+FFFD. Text and UTF-8 pass as they are.
struct TerminalText {
    /// Whether output for descriptor `fd` is neutralised: it is a terminal and `--raw` is off.
    static func applies(to fd: Int32, raw: Bool) -> Bool { !raw && isatty(fd) == 1 }

    /// `text` neutralised for a terminal.
    static func sanitize(_ text: String) -> String {
        String(decoding: sanitize(Data(text.utf8)), as: UTF8.self)
    }

    /// `data` neutralised for a terminal (complete output: nothing is held back).
    static func sanitize(_ data: Data) -> Data {
        var s = TerminalText()
        return s.feed(data, final: true)
    }

    /// `text` as given, or neutralised when `fd` is a terminal and `raw` is off.
    static func forTerminal(_ text: String, fd: Int32, raw: Bool) -> String {
        applies(to: fd, raw: raw) ? sanitize(text) : text
    }

    /// JSON text with DEL and C1 controls written as `\u00XX` escapes: the same JSON value,
    /// safe on a terminal (JSONEncoder already escapes the C0 controls, ESC among them).
    static func escapeJSON(_ json: String) -> String {
        var out = String.UnicodeScalarView()
        for u in json.unicodeScalars {
            if u.value == 0x7F || (0x80...0x9F).contains(u.value) {
                out.append(contentsOf: String(format: "\\u%04x", u.value).unicodeScalars)
            } else {
                out.append(u)
            }
        }
        return String(out)
    }

    /// Bytes held back from the last `feed`: an unfinished UTF-8 sequence or a CR whose
    /// next byte decides what it is.
    private var pending: [UInt8] = []

    /// Neutralises the next piece of a stream. With `final` off, a sequence cut at the end
    /// waits for the next piece; with it on, it is shown as U+FFFD (or `^M`).
    mutating func feed(_ data: Data, final: Bool = false) -> Data {
        let b = pending + [UInt8](data)
        pending = []
        var out: [UInt8] = []
        out.reserveCapacity(b.count)
        let replacement: [UInt8] = [0xEF, 0xBF, 0xBD]
        var i = 0
        while i < b.count {
            let c = b[i]
            if c < 0x80 {
                switch c {
                case 0x0A, 0x09: out.append(c)
                case 0x0D where i + 1 < b.count: out += b[i + 1] == 0x0A ? [c] : Self.caret(c)
                case 0x0D where !final: pending = [c]  // the last byte: the next piece decides
                case 0x00..<0x20, 0x7F: out += Self.caret(c)
                default: out.append(c)
                }
                i += 1
                continue
            }
            let length: Int
            switch c {
            case 0xC2...0xDF: length = 2
            case 0xE0...0xEF: length = 3
            case 0xF0...0xF4: length = 4
            default: length = 0  // a stray continuation byte, an overlong lead or beyond U+10FFFF
            }
            // Bytes from i that form a valid start of the sequence (lead included).
            let available = min(length, b.count - i)
            var good = length > 0 ? 1 : 0
            while good > 0 && good < available {
                let lo: UInt8, hi: UInt8
                switch (good, c) {
                case (1, 0xE0): (lo, hi) = (0xA0, 0xBF)  // no overlongs
                case (1, 0xED): (lo, hi) = (0x80, 0x9F)  // no surrogates
                case (1, 0xF0): (lo, hi) = (0x90, 0xBF)
                case (1, 0xF4): (lo, hi) = (0x80, 0x8F)  // nothing beyond U+10FFFF
                default: (lo, hi) = (0x80, 0xBF)
                }
                guard (lo...hi).contains(b[i + good]) else { break }
                good += 1
            }
            if good < available || length == 0 {
                out += replacement  // one U+FFFD for the broken part, as Swift's own decoding does
                i += max(good, 1)
            } else if available < length {
                if final { out += replacement; i += available } else { pending = Array(b[i...]); break }
            } else {
                if c == 0xC2 && b[i + 1] <= 0x9F {
                    out += [0x4D, 0x2D] + Self.caret(b[i + 1] - 0x80)  // C1 control: M-^X
                } else {
                    out += b[i..<(i + length)]
                }
                i += length
            }
        }
        return Data(out)
    }

    /// Caret notation for a C0 control or DEL: `^[` for ESC, `^?` for DEL.
    private static func caret(_ c: UInt8) -> [UInt8] { [0x5E, c == 0x7F ? 0x3F : c + 0x40] }
}

extension FileHandle {
    /// Writes guest output, neutralised when this handle is a terminal and `raw` is off.
    func writeGuestOutput(_ data: Data, raw: Bool) {
        write(TerminalText.applies(to: fileDescriptor, raw: raw) ? TerminalText.sanitize(data) : data)
    }

    /// Writes guest text, neutralised when this handle is a terminal and `raw` is off.
    func writeGuestOutput(_ text: String, raw: Bool) { writeGuestOutput(Data(text.utf8), raw: raw) }
}
