import VMCtlSupport
/// A step run over SSH once every node is up (`bootstrap:` in a recipe): the same
/// mechanism serves SLURM, Swarm init/join or k0s-style bootstraps — roles, ordered steps,
/// facts about the nodes.
public struct BootstrapStep: Codable, Sendable, Equatable {
    /// Which nodes: `all`, `first`, `rest`, a node name, or a role from the recipe's `roles`.
    public var on: String
    public var name: String
    /// A shell command (a template), run as the login user (use sudo for root). Put values
    /// into it with `{{key|sh}}`, so each arrives as one literal shell word.
    public var run: String?
    /// What `run` reads on its standard input (a template): secrets travel here, not on a
    /// command line any process on the node can read.
    public var stdin: String?
    /// A file to write (path and content are templates), owned by root.
    public var file: String?
    public var content: String?
    public var mode: String?
    /// Store the command's trimmed output as a fact of each node it ran on
    /// (`{{facts_NAME}}` inside `{{#nodes}}`), and of the cluster when it ran on one node (`{{NAME}}`).
    public var capture: String?
    /// A regular expression the whole captured value must match (`[A-Za-z0-9+/]{43}=`), else
    /// the bootstrap stops: what a node prints is untrusted input for every other node.
    public var shape: String?
    /// The captured value is a secret: never printed, and shown as `<redacted>` by `cluster info`.
    public var secret: Bool?

    public init(on: String, name: String, run: String? = nil, stdin: String? = nil, file: String? = nil,
                content: String? = nil, mode: String? = nil, capture: String? = nil, shape: String? = nil,
                secret: Bool? = nil) {
        self.on = on; self.name = name; self.run = run; self.stdin = stdin; self.file = file; self.content = content
        self.mode = mode; self.capture = capture; self.shape = shape; self.secret = secret
    }

    /// Whether this step captures a secret.
    public var isSecret: Bool { capture != nil && secret == true }

    func validate(recipe: String) throws {
        let what = "recipe \(recipe): bootstrap step '\(name)'"
        guard (run == nil) != (file == nil) else { throw VMCtlError.usage("\(what) needs exactly one of run or file") }
        if file != nil && content == nil { throw VMCtlError.usage("\(what) writes \(file!) but has no content") }
        if capture != nil && run == nil { throw VMCtlError.usage("\(what) captures output but runs nothing") }
        if stdin != nil && run == nil { throw VMCtlError.usage("\(what) has stdin but runs nothing to read it") }
        if let m = mode, UInt16(m, radix: 8) == nil {
            throw VMCtlError.usage("\(what) has mode '\(m)', not an octal mode like 0644")
        }
        if let key = capture, key.range(of: "^[a-z_][a-z0-9_]*$", options: .regularExpression) == nil {
            throw VMCtlError.usage("\(what) captures '\(key)': use lower-case letters, digits and _ (it becomes {{\(key)}})")
        }
        if capture == nil && (shape != nil || secret != nil) {
            throw VMCtlError.usage("\(what) sets shape or secret but captures nothing (add capture: NAME)")
        }
        if let shape {
            do { _ = try Self.shapeRegex(shape) } catch {
                throw VMCtlError.usage("\(what) has a shape that is not a regular expression (\(error)): \(shape)")
            }
        }
    }

    /// `shape` compiled: matched against Unicode scalars, so `[a-z]` never takes a combining mark along.
    static func shapeRegex(_ pattern: String) throws -> Regex<AnyRegexOutput> {
        try Regex(pattern).matchingSemantics(.unicodeScalar)
    }

    /// Checks what this step captured on `node` before anything uses it: not empty and, with a
    /// `shape`, matching it whole. Errors name the node, the step and the fact, never the value.
    public func checkCapture(_ value: String, node: String, stderr: String = "") throws {
        guard let key = capture else { return }
        guard !value.isEmpty else {
            // A fact that came back empty would silently break every later step.
            let why = stderr.trimmingCharacters(in: .whitespacesAndNewlines)
            throw VMCtlError("bootstrap step '\(name)' printed nothing on \(node) to capture as '\(key)'"
                + (why.isEmpty || isSecret ? "" : ": \(why.suffix(300))"))
        }
        guard let shape else { return }
        guard (try? Self.shapeRegex(shape).wholeMatch(in: value)) != nil else {
            throw VMCtlError("bootstrap step '\(name)': \(node) returned a value for fact '\(key)' that does not match "
                + "the step's shape, so it was refused (is the node misbehaving or compromised?)")
        }
    }

    /// The error for this step's command failing on `node`: with its output, unless the step
    /// captures a secret.
    public func failure(node: String, status: Int32, stdout: String, stderr: String) -> VMCtlError {
        let head = "bootstrap step '\(name)' failed on \(node) (exit \(status))"
        if isSecret { return VMCtlError(head + "; its output is withheld as it captures the secret '\(capture ?? "")'") }
        return VMCtlError(head + ": " + (stderr + stdout).trimmingCharacters(in: .whitespacesAndNewlines).suffix(400))
    }

    /// What a secret value shows as in state, listings and errors.
    public static let redactedValue = "<redacted>"

    /// `text` with each secret value replaced by `<redacted>`, and, when `command` holds a
    /// secret, the command too (an SSH error quotes its first 60 characters).
    public static func scrub(_ text: String, secrets: [String], command: String? = nil) -> String {
        var t = text
        if let command, secrets.contains(where: { !$0.isEmpty && command.contains($0) }) {
            for quoted in [command, String(command.prefix(60))] {
                t = t.replacingOccurrences(of: quoted, with: "<command holding a secret>")
            }
        }
        for v in secrets.sorted(by: { $0.count > $1.count }) where !v.isEmpty {
            t = t.replacingOccurrences(of: v, with: Self.redactedValue)
        }
        return t
    }
}

/// The nodes a bootstrap sees, and what it learned about them.
public struct BootstrapNode: Sendable, Equatable, Codable {
    public var name: String
    public var index: Int
    public var address: String
    public var facts: [String: String]
    public init(name: String, index: Int, address: String, facts: [String: String] = [:]) {
        self.name = name; self.index = index; self.address = address; self.facts = facts
    }
}

extension BootstrapStep {
    /// The nodes `on` names.
    public static func select(_ on: String, nodes: [BootstrapNode], roles: [String: [String]]) throws -> [BootstrapNode] {
        switch on {
        case "all": return nodes
        case "first": return Array(nodes.prefix(1))
        case "rest": return Array(nodes.dropFirst())
        default:
            if let members = roles[on] { return try members.flatMap { try select($0, nodes: nodes, roles: [:]) } }
            if let n = nodes.first(where: { $0.name == on }) { return [n] }
            throw VMCtlError.usage("bootstrap: '\(on)' is not all, first, rest, a role (\(roles.keys.sorted().joined(separator: ", "))) or a node")
        }
    }

    /// The template scope for one node: cluster values, the node's own values, and lists of
    /// all nodes and of its peers.
    public static func scope(for node: BootstrapNode?, nodes: [BootstrapNode], clusterFacts: [String: String]) -> [String: Template.Value] {
        func entry(_ n: BootstrapNode) -> [String: Template.Value] {
            var e: [String: Template.Value] = ["name": .text(n.name), "index": .text(String(n.index)), "ip": .text(n.address)]
            for (k, v) in n.facts { e["facts_\(k)"] = .text(v) }
            return e
        }
        var s: [String: Template.Value] = ["count": .text(String(nodes.count)), "first": .text(nodes.first?.name ?? ""),
                                           "nodes": .list(nodes.map(entry))]
        for (k, v) in clusterFacts { s[k] = .text(v) }
        if let node {
            s["node"] = .text(node.name)
            s["node_index"] = .text(String(node.index))
            s["node_ip"] = .text(node.address)
            s["peers"] = .list(nodes.filter { $0.name != node.name }.map(entry))
            s["peer_count"] = .text(String(nodes.count - 1))
            for (k, v) in node.facts { s["my_\(k)"] = .text(v) }
        }
        return s
    }
}
