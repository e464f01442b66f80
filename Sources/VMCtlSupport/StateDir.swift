import Foundation
import Synchronization

/// Where vmctl keeps everything: images, clusters, embedded libvirt roots, caches.
///
/// `/var/lib/vmctl` as root, `$XDG_DATA_HOME/vmctl` (or `~/.local/share/vmctl`) otherwise;
/// `VMCTL_HOME` overrides both.
public struct StateDir: Sendable, Equatable {
    public let root: String

    public init(root: String) { self.root = root }

    /// The state dir for this process's environment and user.
    public static func resolve(environment: [String: String] = ProcessInfo.processInfo.environment) -> StateDir {
        if let home = environment["VMCTL_HOME"], !home.isEmpty { return StateDir(root: absolute(home)) }
        if getuid() == 0 { return StateDir(root: "/var/lib/vmctl") }
        if let xdg = environment["XDG_DATA_HOME"], !xdg.isEmpty { return StateDir(root: "\(xdg)/vmctl") }
        let home = environment["HOME"] ?? NSHomeDirectory()
        return StateDir(root: "\(home)/.local/share/vmctl")
    }

    private static func absolute(_ p: String) -> String {
        p.hasPrefix("/") ? p : FileManager.default.currentDirectoryPath + "/" + p
    }

    public var images: String { "\(root)/images" }
    /// Warm snapshots: booted guests saved once per image and shape.
    public var warm: String { "\(root)/images/warm" }
    public var imageStore: String { "\(root)/images/store" }
    public var imageStages: String { "\(root)/images/stages" }
    public var imageTags: String { "\(root)/images/tags" }
    public var clusters: String { "\(root)/clusters" }
    public var cache: String { "\(root)/cache" }
    public func cluster(_ name: String) -> String { "\(clusters)/\(name)" }

    /// libvirt's own log, QEMU's probes: root's alone.
    public var logs: String { "\(root)/log" }

    /// Creates `root` if needed (checked to be ours: a directory, not a symlink, owned by
    /// this user; shared with QEMU's group as root, private otherwise), proves it is writable
    /// and that QEMU's user can reach it, and sends libvirt's log into it.
    public func ensureWritable() throws {
        do {
            try FileAccess.directoryWithParents(root, qemu: true)
        } catch let e as VMCtlError where e.message.hasPrefix("cannot create") {
            throw VMCtlError("state dir \(root) is not writable (\(e.message)): set VMCTL_HOME to a directory you own, or fix its permissions")
        }
        if let blocked = FileAccess.blockedAncestor(of: root + "/x") {
            throw VMCtlError("QEMU runs as \(FileAccess.qemuUser) and cannot pass through \(blocked) to reach \(root): "
                + "set VMCTL_HOME to a directory under one others can traverse (e.g. /var/lib/vmctl)")
        }
        let probe = "\(root)/.write-test-\(getpid())"
        let fd = open(probe, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        guard fd >= 0 else {
            throw VMCtlError("state dir \(root) is not writable: set VMCTL_HOME to a directory you own, or fix its permissions")
        }
        close(fd)
        unlink(probe)
        try FileAccess.directory(logs)
        Self.logsReady(logs)
    }

    /// Sends libvirt's log into the state dir when it exists already and checks out as ours
    /// (commands that create nothing do not create it).
    public func useLogIfPresent() {
        guard FileManager.default.fileExists(atPath: root),
              (try? FileAccess.directory(root, qemu: true)) != nil,
              (try? FileAccess.directory(logs)) != nil else { return }
        Self.logsReady(logs)
    }

    private static let logsHandler = Mutex<(@Sendable (String) -> Void)?>(nil)

    /// Called with the logs directory once it is known to be ours: the command layer sends
    /// libvirt's log there (this layer knows nothing of libvirt).
    public static func onLogsReady(_ handler: @escaping @Sendable (String) -> Void) {
        logsHandler.withLock { $0 = handler }
    }

    private static func logsReady(_ logs: String) {
        logsHandler.withLock { $0 }?(logs)
    }
}

/// Writes files so that readers see either the old or the new content, never half of it.
public enum AtomicFile {
    /// Writes `data` to a temporary file beside `path`, syncs it, renames it over `path` and
    /// syncs the directory, so the new content survives a crash (a directory it had to make
    /// is synced into its parent too). Files are created with their final mode (0600 unless
    /// asked): no window in which a secret is readable by others.
    public static func write(_ data: Data, to path: String, mode: mode_t = 0o600) throws {
        let dir = (path as NSString).deletingLastPathComponent
        let made = !FileManager.default.fileExists(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        if made { try syncDirectory((dir as NSString).deletingLastPathComponent) }
        let tmp = "\(dir)/.\((path as NSString).lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else { throw VMCtlError("cannot write \(path): \(String(cString: strerror(errno)))") }
        var failure: String?
        do { try data.withUnsafeBytes { try writeAll(fd, $0, path: path) } } catch { failure = "\(error)" }
        fchmod(fd, mode)
        if failure == nil && fsync(fd) != 0 { failure = "cannot write \(path): \(String(cString: strerror(errno)))" }
        close(fd)
        if failure == nil && rename(tmp, path) != 0 { failure = "cannot write \(path): \(String(cString: strerror(errno)))" }
        if let failure {
            unlink(tmp)
            throw VMCtlError(failure)
        }
        try syncDirectory(dir)
    }

    /// fsyncs directory `dir`, so renames and new entries in it are on disk. A filesystem
    /// that cannot sync directories (EINVAL) is let be.
    public static func syncDirectory(_ dir: String) throws {
        let fd = open(dir.isEmpty ? "." : dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw VMCtlError("cannot sync directory \(dir): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        if fsync(fd) != 0 && errno != EINVAL {
            throw VMCtlError("cannot sync directory \(dir): \(String(cString: strerror(errno)))")
        }
    }

    /// fsyncs every file and directory under `root` (and `root`), so a tree about to be
    /// renamed into place holds its data after a crash.
    public static func syncTree(_ root: String) throws {
        let fm = FileManager.default
        let entries = [""] + ((try? fm.subpathsOfDirectory(atPath: root)) ?? [])
        for rel in entries {
            let path = rel.isEmpty ? root : "\(root)/\(rel)"
            var st = stat()
            guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG || (st.st_mode & S_IFMT) == S_IFDIR else { continue }
            let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
            guard fd >= 0 else { throw VMCtlError("cannot sync \(path): \(String(cString: strerror(errno)))") }
            defer { close(fd) }
            if fsync(fd) != 0 && errno != EINVAL { throw VMCtlError("cannot sync \(path): \(String(cString: strerror(errno)))") }
        }
    }

    /// Writes all of `buffer` to `fd` (retrying short writes and EINTR), naming `path` on failure.
    public static func writeAll(_ fd: Int32, _ buffer: UnsafeRawBufferPointer, path: String) throws {
        var off = 0
        while off < buffer.count {
            let n = Foundation.write(fd, buffer.baseAddress!.advanced(by: off), buffer.count - off)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw VMCtlError("cannot write \(path): \(String(cString: strerror(errno)))") }
            off += n
        }
    }

    public static func write(_ text: String, to path: String, mode: mode_t = 0o600) throws {
        try write(Data(text.utf8), to: path, mode: mode)
    }

    /// Encodes `value` as pretty, key-sorted JSON and writes it atomically.
    public static func writeJSON<T: Encodable>(_ value: T, to path: String, mode: mode_t = 0o600) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        enc.dateEncodingStrategy = .iso8601
        try write(enc.encode(value), to: path, mode: mode)
    }

    /// Reads JSON written by `writeJSON`.
    public static func readJSON<T: Decodable>(_ type: T.Type, from path: String) throws -> T {
        let dec = JSONDecoder()
        dec.dateDecodingStrategy = .iso8601
        return try dec.decode(type, from: Data(contentsOf: URL(fileURLWithPath: path)))
    }
}
