/// A minimal XML writer: every attribute value and text node goes through `escape`,
/// so no caller ever concatenates markup by hand.
struct XMLWriter {
    private(set) var text = ""
    private var depth = 0

    static func escape(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.count)
        for ch in s {
            switch ch {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            default: out.append(ch)
            }
        }
        return out
    }

    private func attrs(_ a: KeyValuePairs<String, String?>) -> String {
        a.compactMap { k, v in v.map { " \(k)=\"\(Self.escape($0))\"" } }.joined()
    }

    private var indent: String { String(repeating: "  ", count: depth) }

    /// `<name a="v"/>`; attributes whose value is nil are left out.
    mutating func empty(_ name: String, _ a: KeyValuePairs<String, String?> = [:]) {
        text += "\(indent)<\(name)\(attrs(a))/>\n"
    }

    /// `<name a="v">text</name>`.
    mutating func leaf(_ name: String, _ a: KeyValuePairs<String, String?> = [:], _ value: String) {
        text += "\(indent)<\(name)\(attrs(a))>\(Self.escape(value))</\(name)>\n"
    }

    /// `<name a="v"> … </name>` around whatever `body` writes.
    mutating func element(_ name: String, _ a: KeyValuePairs<String, String?> = [:], _ body: (inout XMLWriter) -> Void) {
        text += "\(indent)<\(name)\(attrs(a))>\n"
        depth += 1
        body(&self)
        depth -= 1
        text += "\(indent)</\(name)>\n"
    }
}
