/// A step run over SSH once every node is up (`bootstrap:` in a recipe): the same
/// mechanism serves SLURM, Swarm init/join or k0s-style bootstraps — roles, ordered steps,
/// facts about the nodes.
public struct BootstrapStep: Codable, Sendable, Equatable {
    /// Which nodes: `all`, `first`, `rest`, a node name, or a role from the recipe's `roles`.
    public var on: String
    public var name: String
    /// A shell command (a template), run as the login user (use sudo for root).
    public var run: String?
    /// A file to write (path and content are templates), owned by root.
    public var file: String?
    public var content: String?
    public var mode: String?
    /// Store the command's trimmed output as a fact of each node it ran on
    /// (`{{facts_NAME}}` inside `{{#nodes}}`), and of the cluster when it ran on one node (`{{NAME}}`).
    public var capture: String?

    public init(on: String, name: String, run: String? = nil, file: String? = nil, content: String? = nil,
                mode: String? = nil, capture: String? = nil) {
        self.on = on; self.name = name; self.run = run; self.file = file; self.content = content
        self.mode = mode; self.capture = capture
    }

    func validate(recipe: String) throws {
        guard (run == nil) != (file == nil) else {
            throw VMCtlError.usage("recipe \(recipe): bootstrap step '\(name)' needs exactly one of run or file")
        }
        if file != nil && content == nil {
            throw VMCtlError.usage("recipe \(recipe): bootstrap step '\(name)' writes \(file!) but has no content")
        }
        if capture != nil && run == nil {
            throw VMCtlError.usage("recipe \(recipe): bootstrap step '\(name)' captures output but runs nothing")
        }
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
