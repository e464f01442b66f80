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
        let thread = Thread {
            do { cont.resume(returning: try body()) } catch { cont.resume(throwing: error) }
        }
        thread.name = label
        thread.stackSize = 1 << 20
        thread.start()
    }
}
