import Foundation
import Synchronization
import VMCtlSupport

/// Waits for a daemon to make its socket: wakes when an entry appears in the socket's
/// directory (inotify) or when the daemon exits, never on a timer, and gives up at a deadline.
public enum SocketWait {
    /// Why the wait ended without the socket.
    public enum Failure: Error, CustomStringConvertible, Equatable, Sendable {
        /// Nothing listened on `path` within `after`.
        case timedOut(path: String, after: Duration)
        /// The process that should have listened exited first, with `status`.
        case exited(path: String, status: Int32)

        public var description: String {
            switch self {
            case .timedOut(let path, let after):
                return "nothing listened on \(path) within \(String(format: "%.1f", after.secondsDouble)) s"
            case .exited(let path, let status):
                return "the process that should listen on \(path) exited with status \(status) before it did"
            }
        }
    }

    /// Blocks until `ready()` holds (without one: `path` exists), re-checking it whenever an
    /// entry is created, moved in or changed in `path`'s directory and in `also` (the
    /// directories of other files `ready` looks at). Throws `.exited` as soon as `exit`
    /// reports the daemon gone, `.timedOut` at `deadline`.
    ///
    /// `ready` is checked after the watches exist, so a socket made just before them is
    /// seen by that check and one made after wakes the wait: neither is missed.
    public static func wait(for path: String, also: [String] = [], deadline: ContinuousClock.Instant,
                            exit: ProcessExit? = nil, ready: (() -> Bool)? = nil) throws {
        let isReady = ready ?? { FileManager.default.fileExists(atPath: path) }
        let started = ContinuousClock.now
        let ifd = inotify_init1(Int32(IN_CLOEXEC) | Int32(IN_NONBLOCK))
        guard ifd >= 0 else { throw VMCtlError("cannot watch for \(path): inotify: \(String(cString: strerror(errno)))") }
        defer { close(ifd) }
        let mask = UInt32(IN_CREATE) | UInt32(IN_MOVED_TO) | UInt32(IN_ATTRIB) | UInt32(IN_CLOSE_WRITE)
        for dir in Set([(path as NSString).deletingLastPathComponent] + also) {
            guard inotify_add_watch(ifd, dir, mask) >= 0 else {
                throw VMCtlError("cannot watch \(dir) for \(path): \(String(cString: strerror(errno)))")
            }
        }
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            if isReady() { return }
            if let status = exit?.status { throw Failure.exited(path: path, status: status) }
            let left = deadline - ContinuousClock.now
            if left <= .zero { throw Failure.timedOut(path: path, after: ContinuousClock.now - started) }
            var fds = [pollfd(fd: ifd, events: Int16(POLLIN), revents: 0)]
            if let exit { fds.append(pollfd(fd: exit.fd, events: Int16(POLLIN), revents: 0)) }
            let ms = Int32(clamping: max(1, left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000))
            if poll(&fds, nfds_t(fds.count), ms) > 0 { while read(ifd, &buf, buf.count) > 0 {} }
        }
    }
}

/// Tells a waiting thread that a child process exited: a pipe it can poll beside other
/// descriptors, written to from the process's termination handler.
public final class ProcessExit: Sendable {
    /// Becomes readable once the process has exited.
    public let fd: Int32
    private let writeEnd: Int32
    private let exitStatus = Mutex<Int32?>(nil)

    /// Watches `process`, which must not have been started yet (its termination handler is
    /// set here, so an exit cannot slip past unseen).
    public init(_ process: Process) {
        var ends: [Int32] = [-1, -1]
        if pipe(&ends) == 0 {
            for e in ends { _ = fcntl(e, F_SETFD, FD_CLOEXEC); _ = fcntl(e, F_SETFL, fcntl(e, F_GETFL) | O_NONBLOCK) }
        }
        fd = ends[0]
        writeEnd = ends[1]
        process.terminationHandler = { [self] p in exited(p.terminationStatus) }
    }

    deinit {
        if fd >= 0 { close(fd) }
        if writeEnd >= 0 { close(writeEnd) }
    }

    /// The exit status, once the process has exited.
    public var status: Int32? { exitStatus.withLock { $0 } }

    func exited(_ status: Int32) {
        exitStatus.withLock { $0 = status }
        var one: UInt8 = 1
        if writeEnd >= 0 { _ = write(writeEnd, &one, 1) }
    }
}
