import Foundation
import VMCtlSupport

/// Guest paths resolved inside an image root the way a chroot resolves them: every symlink
/// along the way is followed, an absolute target starts again at the root, and `..` stops at
/// the root. Recipe files land inside the tree even where the image has links such as
/// Debian's `/var/run -> /run`, which the host would otherwise follow to its own `/run`.
enum RootPath {
    /// Symlinks followed in one resolution before it is called a loop (Linux's MAXSYMLINKS).
    static let maxLinks = 40

    /// The host directory that holds guest `path`'s last component, and that component.
    /// Missing directories on the way are made inside `root` (mode 0755) when `create` is set.
    static func parent(of path: String, in root: String, create: Bool) throws -> (directory: String, name: String) {
        var parts = path.split(separator: "/").map(String.init).filter { $0 != "." }
        guard let name = parts.popLast(), name != ".." else {
            throw VMCtlError("image path '\(path)' does not name a file")
        }
        var pending = Array(parts.reversed())  // next component last
        var resolved: [String] = []
        var links = 0
        func host(_ comps: [String]) -> String { comps.isEmpty ? root : root + "/" + comps.joined(separator: "/") }
        while let c = pending.popLast() {
            if c == "." || c.isEmpty { continue }
            if c == ".." { _ = resolved.popLast(); continue }
            let here = host(resolved + [c])
            var st = stat()
            if lstat(here, &st) != 0 {
                guard errno == ENOENT, create else {
                    throw VMCtlError("cannot place \(path) in the image: \(here): \(String(cString: strerror(errno)))")
                }
                // Explicit mode: the process umask may be 077, and the guest needs to traverse it.
                if mkdir(here, 0o755) != 0 {
                    guard errno == EEXIST else {
                        throw VMCtlError("cannot create directory \(here) for \(path): \(String(cString: strerror(errno)))")
                    }
                    pending.append(c)  // appeared meanwhile: look at it again
                    continue
                }
                guard chmod(here, 0o755) == 0 else {
                    throw VMCtlError("cannot set the mode of \(here): \(String(cString: strerror(errno)))")
                }
                resolved.append(c)
                continue
            }
            switch st.st_mode & S_IFMT {
            case S_IFDIR:
                resolved.append(c)
            case S_IFLNK:
                links += 1
                guard links <= maxLinks else {
                    throw VMCtlError("cannot place \(path) in the image: too many symbolic links (a loop?) at \(here)")
                }
                let target = try FileManager.default.destinationOfSymbolicLink(atPath: here)
                if target.hasPrefix("/") { resolved = [] }
                pending += target.split(separator: "/").map(String.init).reversed()
            default:
                throw VMCtlError("cannot place \(path) in the image: \(here) is not a directory")
            }
        }
        return (host(resolved), name)
    }

    /// Opens a new file for guest `path` inside `root` with `mode`, replacing whatever was
    /// there (a symlink in the last place is replaced, not followed). Returns the descriptor
    /// and the host path.
    static func create(_ path: String, in root: String, mode: mode_t) throws -> (fd: Int32, hostPath: String) {
        let (dir, name) = try parent(of: path, in: root, create: true)
        let dest = dir + "/" + name
        var st = stat()
        if lstat(dest, &st) == 0 {
            guard st.st_mode & S_IFMT != S_IFDIR else {
                throw VMCtlError("cannot place \(path) in the image: it is a directory there")
            }
            guard unlink(dest) == 0 else {
                throw VMCtlError("cannot replace \(dest): \(String(cString: strerror(errno)))")
            }
        }
        let fd = open(dest, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
        guard fd >= 0 else { throw VMCtlError("cannot create \(dest): \(String(cString: strerror(errno)))") }
        fchmod(fd, mode)  // the umask does not decide a recipe's mode
        return (fd, dest)
    }

    /// Writes `data` to guest `path` inside `root` with `mode`; returns the host path.
    @discardableResult
    static func write(_ data: Data, to path: String, in root: String, mode: mode_t) throws -> String {
        let (fd, dest) = try create(path, in: root, mode: mode)
        defer { close(fd) }
        try data.withUnsafeBytes { try AtomicFile.writeAll(fd, $0, path: dest) }
        return dest
    }

    /// Copies the host file `source` to guest `path` inside `root` with `mode`; returns the host path.
    @discardableResult
    static func copy(_ source: String, to path: String, in root: String, mode: mode_t) throws -> String {
        let input = open(source, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { throw VMCtlError("cannot read \(source): \(String(cString: strerror(errno)))") }
        defer { close(input) }
        let (fd, dest) = try create(path, in: root, mode: mode)
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = read(input, &buf, buf.count)
            if n == 0 { break }
            if n < 0 {
                if errno == EINTR { continue }
                throw VMCtlError("cannot read \(source): \(String(cString: strerror(errno)))")
            }
            try buf.withUnsafeBytes { try AtomicFile.writeAll(fd, UnsafeRawBufferPointer(rebasing: $0.prefix(n)), path: dest) }
        }
        return dest
    }
}
