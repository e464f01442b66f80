import Foundation
import Machines
import Clusters

/// Renders cluster events: a live table on a terminal, plain lines when piped, JSON lines with --json.
final class ProgressView: @unchecked Sendable {
    enum Mode { case live, plain, json }
    private let mode: Mode
    private let lock = NSLock()
    private var rows: [(name: String, phase: String, elapsed: Double)] = []
    private var notes: [String] = []
    private var drawnLines = 0

    init(json: Bool) {
        mode = json ? .json : (isatty(1) == 1 && ProcessInfo.processInfo.environment["TERM"] != "dumb" ? .live : .plain)
    }

    var sink: ClusterEventSink { { [self] e in self.handle(e) } }

    func handle(_ e: ClusterEvent) {
        lock.lock(); defer { lock.unlock() }
        switch mode {
        case .json: say(e.jsonLine)
        case .plain: say(e.plainLine)
        case .live:
            switch e {
            case .node(let name, let phase, let elapsed, _):
                if let i = rows.firstIndex(where: { $0.name == name }) { rows[i] = (name, phase.rawValue, elapsed) }
                else { rows.append((name, phase.rawValue, elapsed)); rows.sort { $0.name.compare($1.name, options: .numeric) == .orderedAscending } }
            case .note(let text, _):
                notes.append(text)
            }
            redraw()
        }
    }

    private func redraw() {
        var out = drawnLines > 0 ? "\u{1B}[\(drawnLines)A\u{1B}[J" : ""
        let lines = notes + [renderTable(["NODE", "PHASE", "SECONDS"], rows.map { [$0.name, $0.phase, String(format: "%.1f", $0.elapsed)] })]
        let text = lines.joined(separator: "\n")
        out += text + "\n"
        drawnLines = text.split(separator: "\n", omittingEmptySubsequences: false).count
        FileHandle.standardOutput.write(Data(out.utf8))
    }
}
