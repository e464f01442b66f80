import Blocking
import Foundation
import Synchronization
import Testing

/// What happened to a fake handle, in order.
private final class HandleLog: Sendable {
    private let events = Mutex<[String]>([])
    private let freed = Mutex(false)
    private let useAfterFree = Atomic<Int>(0)
    func note(_ e: String) { events.withLock { $0.append(e) } }
    var all: [String] { events.withLock { $0 } }
    func markFreed() { freed.withLock { $0 = true } }
    /// Called inside a use: counts a use that sees the handle already freed.
    func check() { if freed.withLock({ $0 }) { useAfterFree.add(1, ordering: .relaxed) } }
    var usesAfterFree: Int { useAfterFree.load(ordering: .relaxed) }
}

/// A fake C handle: an address nobody dereferences.
private var fakeHandle: OpaquePointer { OpaquePointer(bitPattern: 0x1000)! }

@Suite("A guarded C handle: no free while a call is in progress")
struct GuardedHandleTests {
    private struct Closed: Error {}

    @Test("a close during a call frees the handle once, after the call returns, on a thread of its own")
    func closeWaitsForCall() async throws {
        let log = HandleLog()
        let guarded = GuardedHandle(fakeHandle, label: "test") { _ in
            log.note("free on \(Thread.current.name ?? "?")")
            log.markFreed()
        }
        let entered = DispatchSemaphore(value: 0)
        let proceed = DispatchSemaphore(value: 0)
        let caller = Thread {
            try? guarded.use(orThrow: Closed()) { _ in
                log.note("call entered")
                entered.signal()
                proceed.wait()  // a blocking C call in progress
                log.check()
                log.note("call left")
            }
        }
        caller.start()
        entered.wait()
        let closing = Task { await guarded.close() }
        // The close is under way: new calls are refused, the handle stays.
        while !guarded.isClosed { try await Task.sleep(for: .milliseconds(1)) }
        #expect(throws: Closed.self) { try guarded.use(orThrow: Closed()) { _ in } }
        try await Task.sleep(for: .milliseconds(50))
        #expect(!guarded.isReleased)
        #expect(guarded.callsInProgress == 1)
        proceed.signal()
        await closing.value
        #expect(guarded.isReleased)
        #expect(log.all == ["call entered", "call left", "free on test.close"])
        #expect(log.usesAfterFree == 0)
        await guarded.close()  // a second close returns at once and frees nothing more
        #expect(log.all.count == 3)
    }

    @Test("threads hammering a handle while it is closed never see it freed, and it is freed once")
    func concurrentCallsAndClose() async throws {
        for round in 0..<20 {
            let log = HandleLog()
            let frees = Atomic<Int>(0)
            let guarded = GuardedHandle(fakeHandle, label: "test") { _ in
                log.markFreed()
                frees.add(1, ordering: .relaxed)
            }
            let threads = 6
            let done = DispatchSemaphore(value: 0)
            for _ in 0..<threads {
                Thread {
                    while true {
                        let went: Bool? = guarded.ifOpen { _ in
                            log.check()
                            usleep(UInt32.random(in: 0...200))
                            log.check()
                            return true
                        }
                        if went == nil { break }
                    }
                    done.signal()
                }.start()
            }
            try await Task.sleep(for: .microseconds(Int.random(in: 0...(round * 300))))
            await guarded.close()
            for _ in 0..<threads { done.wait() }
            #expect(frees.load(ordering: .relaxed) == 1)
            #expect(log.usesAfterFree == 0)
        }
    }

    @Test("closeNow frees an idle handle at once, on the calling thread")
    func closeNowIdle() throws {
        let frees = Atomic<Int>(0)
        let guarded = GuardedHandle(fakeHandle, label: "test") { _ in frees.add(1, ordering: .relaxed) }
        guarded.closeNow()
        #expect(frees.load(ordering: .relaxed) == 1)
        #expect(guarded.isReleased)
        #expect(guarded.ifOpen { _ in true } == nil)
        guarded.closeNow()
        #expect(frees.load(ordering: .relaxed) == 1)
    }

    @Test("a handle dropped without a close is freed once")
    func deinitFrees() {
        let frees = Atomic<Int>(0)
        do {
            let guarded = GuardedHandle(fakeHandle, label: "test") { _ in frees.add(1, ordering: .relaxed) }
            _ = guarded.ifOpen { _ in 1 }
        }
        #expect(frees.load(ordering: .relaxed) == 1)
    }
}
