import Foundation
import Synchronization

/// A C handle that several threads use, freed exactly once and never while a call on it is
/// in progress.
///
/// The handle lives in a `Mutex` with a count of the calls in progress. `use` takes the
/// handle and counts itself in under the lock, then runs the (blocking) call outside it, so a
/// long call never holds up another call or a close. Closing refuses new calls at once; the
/// handle is freed by whoever leaves it unused: the closer when nothing is in progress, else
/// the last call in progress as it returns. The async `close` and a last call free it on a
/// thread of its own (never inside a C callback that was using it, never on the cooperative
/// pool), and `close` returns only once that free has run. A guard dropped without a close
/// frees the handle in `deinit`, on the thread that dropped it: owners whose free blocks close
/// explicitly.
public final class GuardedHandle: Sendable {
    public typealias Handle = OpaquePointer

    private struct State {
        // The pointer's address: plain data the mutex can own (a C pointer is not Sendable).
        // It becomes a pointer again only for `use` (counted in) and for the one free.
        var address: UInt?
        var inFlight = 0
        var closing = false
        var released = false
        var waiters: [CheckedContinuation<Void, Never>] = []

        /// Takes the address out for freeing: once, and only when nobody uses it.
        mutating func takeIfUnused() -> UInt? {
            guard closing, inFlight == 0, let a = address else { return nil }
            address = nil
            return a
        }
    }

    private let state: Mutex<State>
    private let release: @Sendable (Handle) -> Void
    private let label: String

    /// Guards `handle`; `release` frees it, exactly once. The caller hands the handle over:
    /// from here on it is reached only through `use`.
    public init(_ handle: Handle, label: String, release: @escaping @Sendable (Handle) -> Void) {
        state = Mutex(State(address: UInt(bitPattern: handle)))
        self.release = release
        self.label = label
    }

    deinit {
        // Nobody can be using the handle (a call in progress holds a reference to this guard).
        let left = state.withLock { s in s.closing = true; return s.takeIfUnused() }
        if let left, let h = Handle(bitPattern: left) { release(h) }
    }

    /// Whether a close has been asked for.
    public var isClosed: Bool { state.withLock { $0.closing } }

    /// How many calls are in progress (for tests and diagnostics).
    public var callsInProgress: Int { state.withLock { $0.inFlight } }

    /// Whether the handle has been freed.
    public var isReleased: Bool { state.withLock { $0.released } }

    /// Runs `body` with the handle, counted as a call in progress; throws `closed()` once a
    /// close has been asked for. `body` runs outside the lock and may block.
    public func use<R>(orThrow closed: @autoclosure () -> any Error, _ body: (Handle) throws -> R) throws -> R {
        guard let h = enter() else { throw closed() }
        defer { leave() }
        return try body(h)
    }

    /// Like `use`, but returns nil instead of throwing once a close has been asked for.
    @discardableResult
    public func ifOpen<R>(_ body: (Handle) throws -> R) rethrows -> R? {
        guard let h = enter() else { return nil }
        defer { leave() }
        return try body(h)
    }

    private func enter() -> Handle? {
        let address: UInt? = state.withLock { s in
            guard !s.closing, let a = s.address else { return nil }
            s.inFlight += 1
            return a
        }
        return address.flatMap { Handle(bitPattern: $0) }
    }

    private func leave() {
        let last = state.withLock { s in
            s.inFlight -= 1
            return s.takeIfUnused()
        }
        if let last { releaseOnOwnThread(last) }
    }

    /// Refuses new calls and frees the handle without waiting: here, on the calling thread,
    /// when no call is in progress, else on a thread of its own as the last one returns. For
    /// handles whose free does not block (a reference dropped).
    public func closeNow() {
        let now = state.withLock { s in s.closing = true; return s.takeIfUnused() }
        if let now, let h = Handle(bitPattern: now) {
            release(h)
            finished()
        }
    }

    /// Refuses new calls and frees the handle on a thread of its own once no call is in
    /// progress; returns at once (for `deinit`, which cannot wait).
    public func closeDetached() {
        let now = state.withLock { s in s.closing = true; return s.takeIfUnused() }
        if let now { releaseOnOwnThread(now) }
    }

    /// Refuses new calls, and returns once the handle has been freed on a thread of its own,
    /// after the last call in progress has returned. Later closes return at once.
    public func close() async {
        closeDetached()
        await withCheckedContinuation { (cont: CheckedContinuation<Void, Never>) in
            let done = state.withLock { s in
                if s.released { return true }
                s.waiters.append(cont)
                return false
            }
            if done { cont.resume() }
        }
    }

    private func releaseOnOwnThread(_ address: UInt) {
        startThread("\(label).close") { [self] in
            if let h = Handle(bitPattern: address) { release(h) }
            finished()
        }
    }

    private func finished() {
        let waiters = state.withLock { s in
            s.released = true
            defer { s.waiters = [] }
            return s.waiters
        }
        for w in waiters { w.resume() }
    }
}
