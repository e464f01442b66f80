import VMCtlSupport
/// A deliberately small template language for recipe steps and checks:
/// `{{key}}` substitutes a value; `{{#list}}…{{/list}}` repeats its body once per item of a
/// list, with that item's keys in scope (outer keys stay visible). Unknown keys are errors,
/// so a typo in a recipe fails loudly instead of rendering an empty string.
///
/// Filters: `{{key|sh}}` renders the value as one single-quoted POSIX shell word (`'` becomes
/// `'\''`), so it reaches the command literally whatever it holds: use it wherever a value
/// lands in a command (`printf %s {{munge_key|sh}}`, `{{#nodes}}{{facts_x|sh}} {{/nodes}}`).
/// An unknown filter is an error too. Any other `{{…}}` (Go templates such as docker's
/// `{{.Names}}`) is not ours and passes through untouched.
public struct Template: Sendable {
    public indirect enum Value: Sendable, Equatable {
        case text(String)
        case list([[String: Value]])
    }

    public let source: String
    public init(_ source: String) { self.source = source }

    public func render(_ scope: [String: Value]) throws -> String {
        var out = ""
        try render(source[...], scopes: [scope], into: &out)
        return out
    }

    /// The filters `{{key|filter}}` knows; nil when the value cannot be rendered so.
    static let filters: [String: @Sendable (String) -> String?] = [
        // No shell word can hold a NUL byte: the command would be cut short there.
        "sh": { $0.utf8.contains(0) ? nil : Shell.quote($0) },
    ]

    private func lookup(_ key: String, _ scopes: [[String: Value]]) -> Value? {
        for s in scopes.reversed() { if let v = s[key] { return v } }
        return nil
    }

    private func render(_ text: Substring, scopes: [[String: Value]], into out: inout String) throws {
        var rest = text
        while let open = rest.range(of: "{{") {
            out += rest[..<open.lowerBound]
            guard let close = rest[open.upperBound...].range(of: "}}") else {
                throw VMCtlError.usage("template: '{{' without '}}' near \(rest[open.lowerBound...].prefix(30))")
            }
            let tag = rest[open.upperBound..<close.lowerBound].trimmingCharacters(in: .whitespaces)
            // Only {{name}}, {{name|filter}}, {{#name}} and {{/name}} are ours; anything else
            // ({{.Names}} for docker, say) is the command's own and passes through untouched.
            guard tag.range(of: "^([#/]?[a-z_][a-z0-9_]*|[a-z_][a-z0-9_]* *\\| *[a-z_][a-z0-9_]*)$",
                            options: .regularExpression) != nil else {
                out += rest[open.lowerBound..<close.upperBound]
                rest = rest[close.upperBound...]
                continue
            }
            rest = rest[close.upperBound...]
            if tag.hasPrefix("#") {
                let name = String(tag.dropFirst())
                guard let end = rest.range(of: "{{/\(name)}}") else {
                    throw VMCtlError.usage("template: {{#\(name)}} is never closed with {{/\(name)}}")
                }
                let body = rest[..<end.lowerBound]
                rest = rest[end.upperBound...]
                guard case .list(let items)? = lookup(name, scopes) else {
                    throw VMCtlError.usage("template: '\(name)' is not a list (known: \(known(scopes)))")
                }
                for item in items { try render(body, scopes: scopes + [item], into: &out) }
            } else {
                let parts = tag.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
                let key = parts[0]
                guard case .text(let v)? = lookup(key, scopes) else {
                    throw VMCtlError.usage("template: unknown value '{{\(tag)}}' (known: \(known(scopes)))")
                }
                if parts.count == 2 {
                    guard let filter = Self.filters[parts[1]] else {
                        throw VMCtlError.usage("template: unknown filter '|\(parts[1])' in {{\(tag)}} "
                            + "(known: \(Self.filters.keys.sorted().joined(separator: ", ")))")
                    }
                    guard let r = filter(v) else {
                        throw VMCtlError("template: {{\(tag)}} cannot render its value (it holds a NUL byte)")
                    }
                    out += r
                } else {
                    out += v
                }
            }
        }
        out += rest
    }

    private func known(_ scopes: [[String: Value]]) -> String {
        Set(scopes.flatMap(\.keys)).sorted().joined(separator: ", ")
    }
}
