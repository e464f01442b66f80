import Foundation

/// An exclusive lock on a file, waited for (one maker of a shared thing at a time: the
/// second finds what the first made). Released by `release` or by the holder's death.
public final class FileLock: @unchecked Sendable {
    private var fd: Int32
    private init(fd: Int32) { self.fd = fd }

    public static func exclusive(_ path: String, poll: Duration = .milliseconds(200)) async throws -> FileLock {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw VMCtlError("cannot open lock \(path): \(String(cString: strerror(errno)))") }
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            do { try await Task.sleep(for: poll) } catch { close(fd); throw error }
        }
        return FileLock(fd: fd)
    }

    public func release() {
        if fd >= 0 { flock(fd, LOCK_UN); close(fd) }
        fd = -1
    }
}
