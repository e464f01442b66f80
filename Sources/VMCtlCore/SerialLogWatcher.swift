import Blocking
import Foundation

/// Watches a guest's serial log with inotify and returns as soon as a marker line appears:
/// readiness is an event the guest sends, not a sleep-and-poll loop.
public enum SerialLogWatcher {
    public enum Outcome: Sendable, Equatable {
        case found(line: String)
        case timedOut
        case stopped(reason: String)
        case cancelled
    }

    /// Blocks until a line containing `marker` appears after byte `offset` of `path`,
    /// the deadline passes, `stopIf` returns a reason, or `cancel` is set.
    public static func wait(path: String, from offset: UInt64, marker: String, deadline: ContinuousClock.Instant,
                            cancel: CancelFlag? = nil, stopIf: () -> String? = { nil },
                            onLine: (String) -> Void = { _ in }) -> Outcome {
        let dir = (path as NSString).deletingLastPathComponent
        let ifd = inotify_init1(Int32(IN_CLOEXEC) | Int32(IN_NONBLOCK))
        defer { if ifd >= 0 { close(ifd) } }
        if ifd >= 0 { _ = inotify_add_watch(ifd, dir, UInt32(IN_MODIFY) | UInt32(IN_CREATE) | UInt32(IN_CLOSE_WRITE)) }
        var pos = offset
        var pending: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            if let line = scan(path: path, pos: &pos, pending: &pending, marker: marker, onLine: onLine) { return .found(line: line) }
            if cancel?.isCancelled == true { return .cancelled }
            if let reason = stopIf() { return .stopped(reason: reason) }
            let left = deadline - ContinuousClock.now
            if left <= .zero { return .timedOut }
            // Wake on the next write to the directory; the cap only bounds how late a
            // cancellation or a dead guest is noticed.
            let ms = min(1000, max(1, Int32(left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000)))
            if ifd >= 0 {
                var p = pollfd(fd: ifd, events: Int16(POLLIN), revents: 0)
                if poll(&p, 1, ms) > 0 { while read(ifd, &buf, buf.count) > 0 {} }
            } else {
                usleep(UInt32(ms) * 1000)
            }
        }
    }

    /// Reads what was appended since `pos` and returns the first complete line holding `marker`.
    /// Works on bytes: serial consoles end lines with "\r\n", which Swift treats as one Character.
    private static func scan(path: String, pos: inout UInt64, pending: inout [UInt8], marker: String,
                             onLine: (String) -> Void) -> String? {
        guard let h = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? h.close() }
        guard (try? h.seek(toOffset: pos)) != nil, let data = try? h.readToEnd(), !data.isEmpty else { return nil }
        pos += UInt64(data.count)
        pending.append(contentsOf: data)
        let needle = Array(marker.utf8)
        while let nl = pending.firstIndex(of: 10) {
            let line = Array(pending[..<nl])
            pending.removeSubrange(...nl)
            // Only vmctl's own lines are handed on; a console prints thousands of others.
            // (A marker can share its line with a login prompt, so search, not prefix-match.)
            if contains(line, Array("vmctl-".utf8)) { onLine(String(decoding: line, as: UTF8.self)) }
            if contains(line, needle) {
                return String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            }
        }
        return nil
    }

    private static func contains(_ hay: [UInt8], _ needle: [UInt8]) -> Bool {
        guard hay.count >= needle.count else { return false }
        return (0...(hay.count - needle.count)).contains { hay[$0..<($0 + needle.count)].elementsEqual(needle) }
    }

    /// The last `lines` lines of `path`, for error messages.
    public static func tail(_ path: String, lines: Int = 15) -> String {
        guard let data = FileManager.default.contents(atPath: path) else { return "(no serial log at \(path))" }
        // Firmware output is not always UTF-8 (box drawing in code page 437), and has escapes.
        let text = String(decoding: data.suffix(64 * 1024), as: UTF8.self)
            .replacingOccurrences(of: "\u{1B}\\[[0-9;=?]*[A-Za-z]", with: "", options: .regularExpression)
        let clean = text.replacingOccurrences(of: "\r", with: "")
            .filter { $0 == "\n" || $0 == "\t" || !($0.asciiValue.map { $0 < 32 || $0 == 127 } ?? false) }
        return clean.split(separator: "\n", omittingEmptySubsequences: true).suffix(lines).joined(separator: "\n")
    }

    /// Current size of `path` (0 when missing): where a fresh boot's output starts.
    public static func size(_ path: String) -> UInt64 {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? UInt64) ?? 0
    }
}
