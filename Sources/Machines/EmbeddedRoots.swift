import Synchronization

/// libvirt lets a process hold one embedded root at a time ("already open with path …"),
/// and a root be held by one process at a time. This gate makes the first rule explicit:
/// connections to the same root share it; a connection to another root waits until the
/// first is closed, and says so in one line. A command that works on several clusters
/// therefore opens them one after another (or uses a shared `qemu:///system`).
public final class EmbeddedRoots: Sendable {
    /// The process's one gate.
    public static let shared = EmbeddedRoots()

    private struct Held { var root: String; var count: Int }
    private let held = Mutex<Held?>(nil)

    /// Holds `root` for one connection: at once when nothing or the same root is held,
    /// otherwise after `onWait` (called once) and a wait for the other root to be released.
    public func acquire(_ root: String, onWait: @Sendable (String) -> Void = { _ in }) async throws {
        var told = false
        while true {
            let other: String? = held.withLock { h in
                if h == nil { h = Held(root: root, count: 1); return nil }
                if h!.root == root { h!.count += 1; return nil }
                return h!.root
            }
            guard let other else { return }
            if !told {
                onWait("waiting for libvirt root \(other) to close: libvirt opens one embedded root per process")
                told = true
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// Releases one hold on `root`.
    public func release(_ root: String) {
        held.withLock { h in
            guard let cur = h, cur.root == root else { return }
            h = cur.count > 1 ? Held(root: root, count: cur.count - 1) : nil
        }
    }

    /// The embedded root held now, if any.
    public var current: String? { held.withLock { $0?.root } }
}
