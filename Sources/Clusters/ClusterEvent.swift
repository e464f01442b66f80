import Foundation
import Machines

/// Progress from cluster operations, rendered as a live table, plain lines or JSON lines.
public enum ClusterEvent: Sendable, Equatable {
    /// A node moved to a new phase, `elapsed` seconds into the operation.
    case node(name: String, phase: NodePhase, elapsed: Double, detail: String?)
    /// Something about the cluster as a whole.
    case note(String, elapsed: Double)

    /// One JSON object, for `--json`.
    public var jsonLine: String {
        var obj: [String: Any]
        switch self {
        case .node(let name, let phase, let elapsed, let detail):
            obj = ["event": "node", "node": name, "phase": phase.rawValue, "elapsed": (elapsed * 10).rounded() / 10]
            if let d = detail { obj["detail"] = d }
        case .note(let text, let elapsed):
            obj = ["event": "note", "message": text, "elapsed": (elapsed * 10).rounded() / 10]
        }
        let data = (try? JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    /// One plain line, for logs and pipes.
    public var plainLine: String {
        switch self {
        case .node(let name, let phase, let elapsed, let detail):
            return String(format: "[%6.1fs] %@: %@", elapsed, name, phase.rawValue) + (detail.map { " (\($0))" } ?? "")
        case .note(let text, let elapsed):
            return String(format: "[%6.1fs] %@", elapsed, text)
        }
    }
}

/// Where events go.
public typealias ClusterEventSink = @Sendable (ClusterEvent) -> Void
