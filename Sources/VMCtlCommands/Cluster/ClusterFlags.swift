import ArgumentParser
import Foundation
import VMCtlSupport
import Images
import Machines
import Clusters
import Media

/// `--name`, shared by every cluster verb.
struct ClusterNameOption: ParsableArguments {
    @Option(name: .long, help: "Cluster name (a DNS label).")
    var name: String = "default"
}

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

extension ClusterManager {
    /// The manager for the current environment.
    static var current: ClusterManager { ClusterManager(state: StateDir.resolve()) }
}

/// A time limit on the command line: whole seconds (`90`), or with a unit (`90s`, `5m`, `1h`),
/// at most 30 days.
struct TimeLimit: ExpressibleByArgument, Sendable, Equatable {
    /// The limit in seconds (1 or more).
    let seconds: Int
    /// Most a limit may be: 30 days.
    static let maxSeconds = 30 * 24 * 3600

    init(seconds: Int) { self.seconds = seconds }

    init?(argument: String) {
        let t = argument.trimmingCharacters(in: .whitespaces).lowercased()
        let units: [(String, Int)] = [("s", 1), ("m", 60), ("h", 3600)]
        let unit = units.first { t.hasSuffix($0.0) }
        let digits = unit.map { String(t.dropLast($0.0.count)) } ?? t
        guard !digits.isEmpty, digits.allSatisfy(\.isASCII), digits.allSatisfy(\.isNumber),
              let n = Int(digits), n > 0, n <= Self.maxSeconds / (unit?.1 ?? 1) else { return nil }
        seconds = n * (unit?.1 ?? 1)
    }

    var duration: Duration { .seconds(seconds) }
    var defaultValueDescription: String { "\(seconds)s" }
}
