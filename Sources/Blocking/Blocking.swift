import Foundation

/// Runs a blocking C call (libvirt, libssh2, a child process) on a thread of its own.
///
/// Swift's cooperative pool has one thread per core (two here): N blocking calls made
/// straight from a task group would quietly run one after another. A dedicated thread
/// per call keeps fleet operations parallel.
public func onOwnThread<T: Sendable>(
    _ label: String = "vmctl.blocking",
    _ body: @escaping @Sendable () throws -> T
) async throws -> T {
    try await withCheckedThrowingContinuation { (cont: CheckedContinuation<T, Error>) in
        startThread(label) {
            do { cont.resume(returning: try body()) } catch { cont.resume(throwing: error) }
        }
    }
}

/// Starts `body` on a new thread called `label` (as `top -H` and the kernel see it: at most
/// 15 bytes, the rest cut off).
public func startThread(_ label: String, _ body: @escaping @Sendable () -> Void) {
    let thread = Thread {
        nameCurrentThread(label)
        body()
    }
    thread.stackSize = 1 << 20
    thread.start()
}

/// Names the calling thread for the kernel (`top -H`, `/proc`), cut to 15 bytes. Foundation's
/// `Thread.name` does not do it reliably on Linux (a name set before start is dropped, and one
/// set early in the thread can be lost), and Glibc's `pthread_setname_np` is not visible to
/// Swift: the thread writes its own `comm`.
func nameCurrentThread(_ label: String) {
    let fd = open("/proc/thread-self/comm", O_WRONLY | O_CLOEXEC)
    guard fd >= 0 else { return }
    let bytes = Array(label.utf8.prefix(15))
    _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    close(fd)
}
