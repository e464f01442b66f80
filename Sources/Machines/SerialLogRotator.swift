import Foundation
import VMCtlSupport
import Images

/// Keeps a cluster's serial logs (`nodes/NODE/serial.log`) under a cap, so a guest flooding
/// its console cannot fill the state disk. Run by the cluster's switch daemon.
///
/// Past the cap, the log's last `cap` bytes are copied to `serial.log.1` (root's, 0600,
/// replacing the previous one) and the log is truncated in place. QEMU appends (O_APPEND),
/// so it goes on writing at the new end; the log keeps its owner and mode. As with
/// logrotate's copytruncate, output written during the copy itself can be lost.
public struct SerialLogRotator: Sendable {
    /// 16 MiB per log, and as much again in its one rotated copy.
    public static let defaultCap: UInt64 = 16 << 20
    /// Test-only: a smaller cap (a size such as `1M`) for the switch daemon, so tests need not
    /// write 16 MiB through an emulated serial port.
    public static let capVariable = "VMCTL_SERIAL_LOG_CAP"

    /// The cluster's `nodes` directory: every `NODE/serial.log` below it is watched.
    public let nodesDirectory: String
    /// Bytes a log may hold before it is rotated (at least 4 KiB).
    public let cap: UInt64

    /// A rotator for the logs below `nodesDirectory`.
    public init(nodesDirectory: String, cap: UInt64 = SerialLogRotator.defaultCap) {
        self.nodesDirectory = nodesDirectory
        self.cap = max(cap, 4096)
    }

    /// The cap from `VMCTL_SERIAL_LOG_CAP` when set to a size, else `defaultCap`.
    public static func cap(environment: [String: String] = ProcessInfo.processInfo.environment) -> UInt64 {
        environment[capVariable].flatMap(ByteSize.parse) ?? defaultCap
    }

    /// Checks every node's log once and rotates those over the cap; returns their paths.
    /// Problems are skipped (the next check tries again): the daemon has nowhere to report them.
    @discardableResult
    public func check() -> [String] {
        let nodes = (try? FileManager.default.contentsOfDirectory(atPath: nodesDirectory)) ?? []
        return nodes.sorted().compactMap { node in
            let log = "\(nodesDirectory)/\(node)/serial.log"
            return ((try? Self.rotateIfNeeded(log, cap: cap)) ?? false) ? log : nil
        }
    }

    /// Rotates `path` when it holds more than `cap` bytes: its last `cap` bytes replace
    /// `path.1` (created 0600), then `path` is truncated to zero. Returns whether it rotated.
    @discardableResult
    public static func rotateIfNeeded(_ path: String, cap: UInt64) throws -> Bool {
        // Never follow a link someone put in place of the log; only regular files are rotated.
        let fd = open(path, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT { return false }
            throw VMCtlError("cannot open \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG, UInt64(st.st_size) > cap else { return false }
        let size = UInt64(st.st_size)
        let rotated = path + ".1"
        let tmp = "\((path as NSString).deletingLastPathComponent)/.\((rotated as NSString).lastPathComponent).tmp-\(getpid())"
        unlink(tmp)
        let out = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard out >= 0 else { throw VMCtlError("cannot create \(tmp): \(String(cString: strerror(errno)))") }
        do {
            defer { close(out) }
            try copy(from: fd, range: (size - cap)..<size, to: out, path: tmp)
            // Guest output is for root alone, whatever the umask or the log's own mode.
            guard fchmod(out, 0o600) == 0 else { throw VMCtlError("cannot chmod \(tmp): \(String(cString: strerror(errno)))") }
        } catch {
            unlink(tmp)
            throw error
        }
        guard rename(tmp, rotated) == 0 else {
            let why = String(cString: strerror(errno))
            unlink(tmp)
            throw VMCtlError("cannot rename \(tmp) to \(rotated): \(why)")
        }
        guard ftruncate(fd, 0) == 0 else { throw VMCtlError("cannot truncate \(path): \(String(cString: strerror(errno)))") }
        return true
    }

    /// Copies `range` of `input` to `output` in 1 MiB pieces (never the whole log in memory).
    private static func copy(from input: Int32, range: Range<UInt64>, to output: Int32, path: String) throws {
        var buf = [UInt8](repeating: 0, count: 1 << 20)
        var pos = range.lowerBound
        while pos < range.upperBound {
            let want = Int(min(UInt64(buf.count), range.upperBound - pos))
            let n = buf.withUnsafeMutableBytes { pread(input, $0.baseAddress, want, off_t(pos)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            try buf.withUnsafeBytes { try AtomicFile.writeAll(output, UnsafeRawBufferPointer(rebasing: $0[0..<n]), path: path) }
            pos += UInt64(n)
        }
    }
}
