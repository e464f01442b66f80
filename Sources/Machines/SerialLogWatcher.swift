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

    /// The longest unterminated line kept: past it the bytes so far count as one line (so a
    /// guest printing without newlines cannot grow the watcher's memory).
    static let maxPendingLine = 64 * 1024
    /// How much of the log one read takes in.
    static let readChunk = 1 << 20

    /// Reads what was appended since `pos` and returns the first complete line holding `marker`.
    /// Works on bytes: serial consoles end lines with "\r\n", which Swift treats as one Character.
    /// A log shorter than `pos` was truncated (rotated): reading restarts at its new start.
    static func scan(path: String, pos: inout UInt64, pending: inout [UInt8], marker: String,
                     onLine: (String) -> Void) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { return nil }
        let size = UInt64(st.st_size)
        if size < pos {
            pos = 0
            pending.removeAll()
        }
        guard size > pos else { return nil }
        let needle = Array(marker.utf8)
        var buf = [UInt8](repeating: 0, count: Int(min(UInt64(readChunk), size - pos)))
        while true {
            let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(pos)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return nil }
            pos += UInt64(n)
            if let line = lines(buf[0..<n], pending: &pending, needle: needle, onLine: onLine) { return line }
        }
    }

    /// Splits `chunk` (after `pending`, the unfinished line before it) into lines; returns the
    /// first holding `needle`. Keeps the unfinished end in `pending`, at most `maxPendingLine` bytes.
    static func lines(_ chunk: ArraySlice<UInt8>, pending: inout [UInt8], needle: [UInt8],
                      onLine: (String) -> Void) -> String? {
        var start = chunk.startIndex
        func handle(_ line: [UInt8]) -> String? {
            // Only vmctl's own lines are handed on; a console prints thousands of others.
            // (A marker can share its line with a login prompt, so search, not prefix-match.)
            if contains(line, Array("vmctl-".utf8)) { onLine(String(decoding: line, as: UTF8.self)) }
            guard contains(line, needle) else { return nil }
            return String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        while start < chunk.endIndex {
            let found = chunk.withUnsafeBytes { b in
                memchr(b.baseAddress! + (start - chunk.startIndex), 10, chunk.endIndex - start)
                    .map { chunk.startIndex + (UnsafeRawPointer($0) - b.baseAddress!) }
            }
            guard let nl = found else {
                let room = maxPendingLine - pending.count
                if chunk.endIndex - start <= room {
                    pending.append(contentsOf: chunk[start...])
                    return nil
                }
                // Too long without a newline: what fits is taken as a line; the rest starts the next.
                pending.append(contentsOf: chunk[start..<(start + room)])
                start += room
                let line = pending
                pending.removeAll(keepingCapacity: true)
                if let found = handle(line) { return found }
                continue
            }
            var line = pending
            pending.removeAll(keepingCapacity: true)
            line.append(contentsOf: chunk[start..<nl])
            start = nl + 1
            if line.count > maxPendingLine { line = Array(line.suffix(maxPendingLine)) }
            if let found = handle(line) { return found }
        }
        return nil
    }

    private static func contains(_ hay: [UInt8], _ needle: [UInt8]) -> Bool {
        guard !needle.isEmpty else { return true }
        guard hay.count >= needle.count else { return false }
        // memchr for the first byte, memcmp for the rest: fast even in debug builds.
        return hay.withUnsafeBytes { h in
            needle.withUnsafeBytes { n in
                let base = h.baseAddress!, last = h.count - n.count
                var i = 0
                while i <= last, let p = memchr(base + i, Int32(n[0]), last - i + 1) {
                    i = UnsafeRawPointer(p) - base
                    if memcmp(base + i, n.baseAddress!, n.count) == 0 { return true }
                    i += 1
                }
                return false
            }
        }
    }

    /// The last `lines` lines of `path` (read from its last 64 KiB only), for error messages.
    public static func tail(_ path: String, lines: Int = 15) -> String {
        guard FileManager.default.fileExists(atPath: path) else { return "(no serial log at \(path))" }
        return tail(path, bytes: 64 * 1024).split(separator: "\n", omittingEmptySubsequences: true)
            .suffix(lines).joined(separator: "\n")
    }

    /// The last `bytes` bytes of `path` as text without terminal escapes or control characters
    /// (a partial first line included); only those bytes are read, however big the log. "" when
    /// it cannot be read.
    public static func tail(_ path: String, bytes: Int) -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0, bytes > 0 else { if fd >= 0 { close(fd) }; return "" }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { return "" }
        let size = Int(st.st_size)
        var buf = [UInt8](repeating: 0, count: min(bytes, size))
        var got = 0
        while got < buf.count {
            let at = off_t(size - buf.count + got)
            let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + got, $0.count - got, at) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            got += n
        }
        // Firmware output is not always UTF-8 (box drawing in code page 437), and has escapes.
        let text = String(decoding: buf[0..<got], as: UTF8.self)
            .replacingOccurrences(of: "\u{1B}\\[[0-9;=?]*[A-Za-z]", with: "", options: .regularExpression)
        return text.replacingOccurrences(of: "\r", with: "")
            .filter { $0 == "\n" || $0 == "\t" || !($0.asciiValue.map { $0 < 32 || $0 == 127 } ?? false) }
    }

    /// Current size of `path` (0 when missing): where a fresh boot's output starts.
    public static func size(_ path: String) -> UInt64 {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? UInt64) ?? 0
    }
}
