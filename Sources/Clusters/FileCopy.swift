import Foundation
import VMCtlSupport

/// The local and shell sides of `cluster cp`: modes, destinations, and a file received in
/// pieces that appears under its name only when complete.
public enum FileCopy {
    /// The mode copies get unless `--mode` says otherwise: owner only.
    public static let defaultMode: mode_t = 0o600

    /// `--mode`: 3 or 4 octal digits (`0644`, `640`, `0600`), or a usage error.
    public static func parseMode(_ text: String) throws -> mode_t {
        guard text.range(of: "^[0-7]{3,4}$", options: .regularExpression) != nil, let m = mode_t(text, radix: 8) else {
            throw VMCtlError.usage("--mode '\(text)' is not an octal file mode: give 3 or 4 octal digits such as 0600, 0644 or 755")
        }
        return m
    }

    /// `mode` as `chmod` reads it (`0644`).
    public static func octal(_ mode: mode_t) -> String {
        let digits = String(mode, radix: 8)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }

    /// Where a file copied from `remotePath` lands for local `destination`: inside it when it
    /// is a directory (under the remote file's name), else `destination` itself.
    public static func localDestination(_ destination: String, remotePath: String) -> String {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: destination, isDirectory: &isDir), isDir.boolValue else { return destination }
        let name = (remotePath as NSString).lastPathComponent
        return (destination as NSString).appendingPathComponent(name.isEmpty || name == "/" ? "copy" : name)
    }

    /// Shell-quotes `s` for the remote `sh`.

    /// The remote command that receives a copy on stdin: into `path` (or, when `path` is a
    /// directory, into it under `sourceName`), created with umask 077 (0600), then set to
    /// `mode` when given. An existing file keeps its mode unless `mode` is given.
    public static func receiveCommand(path: String, sourceName: String, mode: mode_t?) -> String {
        var cmd = "umask 077 && p=\(Shell.quote(path)) && { [ ! -d \"$p\" ] || p=\"${p%/}/\"\(Shell.quote(sourceName)); } && cat > \"$p\""
        if let mode { cmd += " && chmod \(octal(mode)) \"$p\"" }
        return cmd
    }

    /// A local file received in pieces: written to a temporary file beside `destination`,
    /// created 0600 with O_EXCL (so no other user can open or pre-create it), and renamed
    /// over `destination` by `commit` with its final mode. Until then `destination` is untouched.
    public final class Incoming: @unchecked Sendable {
        public let destination: String
        public let temporary: String
        private let mode: mode_t
        private var fd: Int32

        /// Creates the temporary file; throws when the destination's directory is not writable.
        public init(destination: String, mode: mode_t = FileCopy.defaultMode) throws {
            self.destination = destination
            self.mode = mode
            let dir = (destination as NSString).deletingLastPathComponent
            let name = (destination as NSString).lastPathComponent
            temporary = (dir.isEmpty ? "." : dir) + "/.\(name).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
            fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw VMCtlError("cannot write \(destination): \(String(cString: strerror(errno)))") }
        }

        deinit { discard() }

        /// Appends `data`.
        public func write(_ data: Data) throws {
            guard fd >= 0 else { throw VMCtlError("cannot write \(destination): the copy was already finished") }
            try data.withUnsafeBytes { try AtomicFile.writeAll(fd, $0, path: destination) }
        }

        /// Sets the final mode, syncs, and renames the file over `destination`.
        public func commit() throws {
            guard fd >= 0 else { throw VMCtlError("cannot write \(destination): the copy was already finished") }
            let ok = fchmod(fd, mode) == 0 && fsync(fd) == 0
            let saved = errno
            close(fd)
            fd = -1
            guard ok, rename(temporary, destination) == 0 else {
                let msg = String(cString: strerror(ok ? errno : saved))
                unlink(temporary)
                throw VMCtlError("cannot write \(destination): \(msg)")
            }
        }

        /// Removes the temporary file (after a failure); does nothing once committed.
        public func discard() {
            guard fd >= 0 else { return }
            close(fd)
            fd = -1
            unlink(temporary)
        }
    }
}
