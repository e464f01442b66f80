import Foundation
import VMCtlSupport

/// One lock per cluster (flock on a file beside its directory): a second `up` on the same
/// cluster says who holds it; different clusters proceed in parallel. The kernel drops the
/// lock when its holder dies, even by SIGKILL, so `clean` can always get it afterwards.
/// Lock files are never unlinked: a process waiting on a removed file would hold a lock
/// nobody else sees, and two holders would both go on.
public final class ClusterLock {
    private var fd: Int32
    public let path: String

    private init(fd: Int32, path: String) { self.fd = fd; self.path = path }

    /// Takes the lock for `name`, or throws (exit 2) naming the holder.
    public static func acquire(state: StateDir, name: String, purpose: String) throws -> ClusterLock {
        try FileManager.default.createDirectory(atPath: state.clusters, withIntermediateDirectories: true)
        let path = "\(state.clusters)/.\(name).lock"
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw VMCtlError("cannot open lock \(path): \(String(cString: strerror(errno)))") }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let holder = (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
            close(fd)
            throw VMCtlError(.locked, message: "cluster \(name) is busy: \(holder.flatMap { $0.isEmpty ? nil : $0 } ?? "another vmctl") "
                + "holds its lock; wait for it to finish (or stop it) and retry")
        }
        ftruncate(fd, 0)
        let info = "pid \(getpid()) (vmctl \(purpose))\n"
        _ = info.withCString { write(fd, $0, strlen($0)) }
        return ClusterLock(fd: fd, path: path)
    }

    /// Whether some live process holds the lock for `name` now.
    public static func isHeld(state: StateDir, name: String) -> Bool {
        let fd = open("\(state.clusters)/.\(name).lock", O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 { return true }
        flock(fd, LOCK_UN)
        return false
    }

    /// Releases the lock; later calls do nothing.
    public func release() {
        if fd >= 0 { flock(fd, LOCK_UN); close(fd) }
        fd = -1
    }

    deinit { release() }
}

/// The one lock every `up` holds while it chooses ports and a subnet and saves the new
/// cluster's state, so concurrent `up`s of different clusters never pick the same ones.
/// Held briefly; a second `up` waits for it.
public final class AllocationLock {
    private var fd: Int32

    private init(fd: Int32) { self.fd = fd }

    /// Waits for and takes the allocation lock.
    public static func acquire(state: StateDir) throws -> AllocationLock {
        try FileManager.default.createDirectory(atPath: state.clusters, withIntermediateDirectories: true)
        let path = "\(state.clusters)/.allocation.lock"
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw VMCtlError("cannot open lock \(path): \(String(cString: strerror(errno)))") }
        while flock(fd, LOCK_EX) != 0 {
            guard errno == EINTR else {
                close(fd)
                throw VMCtlError("cannot take lock \(path): \(String(cString: strerror(errno)))")
            }
        }
        return AllocationLock(fd: fd)
    }

    /// Releases the lock; later calls do nothing.
    public func release() {
        if fd >= 0 { flock(fd, LOCK_UN); close(fd) }
        fd = -1
    }

    deinit { release() }
}
