import Blocking
import CLibvirt
import Foundation
import Synchronization

/// A libvirt data stream (`virStreamPtr`), here a domain's serial console.
///
/// Why it cannot be freed under a reader, and why nothing blocks in it:
/// - The stream is non-blocking (`VIR_STREAM_NONBLOCK`) and driven by libvirt's event loop:
///   a callback on the event-loop thread reads what is there and writes what is queued. No
///   thread ever sits inside `virStreamRecv`. (A blocking recv on a console holds the fd
///   stream's lock while it waits, so a send, or the abort meant to wake it, would wait for the
///   guest to print.)
/// - The pointer lives in a `GuardedHandle`: a `Mutex` over the pointer and the count of calls
///   in progress. The callback and `send` count themselves in; `close` refuses new calls and
///   the stream is taken off the event loop, aborted and freed (`virStreamEventRemoveCallback`,
///   `virStreamAbort`, `virStreamFree`) by whoever leaves it unused, on a thread of its own.
/// - Bytes read come out of `output`; bytes to write are queued by `send`, which never blocks.
public final class Stream: Sendable {
    let handle: GuardedHandle
    private let events: StreamEvents
    // Keeps the connection open while the stream lives.
    private let connection: Connection

    /// The bytes the other end sends, as they arrive. Ends at end of stream or on `close`;
    /// throws libvirt's error if the stream fails.
    public let output: AsyncThrowingStream<Data, any Error>

    /// How many bytes `send` may have waiting for the other end before it refuses more.
    public static let sendQueueLimit = 1 << 20

    /// Wraps a new non-blocking stream that libvirt has just connected (on the wrapper's own
    /// thread) and puts it on libvirt's event loop. On failure the stream is aborted and freed.
    init(handle st: virStreamPtr, connection: Connection) throws {
        self.handle = GuardedHandle(st, label: "libvirt.stream") { st in
            _ = virStreamEventRemoveCallback(st)  // fails harmlessly if never added
            _ = virStreamAbort(st)
            virStreamFree(st)
        }
        self.connection = connection
        let (output, continuation) = AsyncThrowingStream.makeStream(of: Data.self, throwing: (any Error).self)
        self.output = output
        events = StreamEvents(handle: handle, continuation: continuation)
        let opaque = Unmanaged.passRetained(events).toOpaque()
        let added = virStreamEventAddCallback(st, StreamEvents.readInterest, { _, events, opaque in
            guard let opaque else { return }
            Unmanaged<StreamEvents>.fromOpaque(opaque).takeUnretainedValue().dispatch(events)
        }, opaque, { opaque in
            guard let opaque else { return }
            Unmanaged<StreamEvents>.fromOpaque(opaque).release()
        })
        if added < 0 {
            let err = LibvirtError.last("watch stream")
            Unmanaged<StreamEvents>.fromOpaque(opaque).release()
            continuation.finish()
            handle.closeNow()
            throw err
        }
    }

    deinit {
        events.end()
        handle.closeDetached()
    }

    /// Queues `data` for the other end and returns at once; the event loop writes it when the
    /// stream can take it. Throws once the stream is closed or has ended, or when more than
    /// `sendQueueLimit` bytes are already waiting.
    public func send(_ data: Data) throws {
        try handle.use(orThrow: LibvirtError(operation: "write to console", code: 0, message: "stream is closed")) { st in
            try events.queue(data, on: st)
        }
    }

    /// Ends `output`, then takes the stream off the event loop, aborts and frees it on a thread
    /// of its own once no call on it is in progress; returns when that is done. Later calls
    /// do nothing.
    public func close() async {
        events.end()
        await handle.close()
    }
}

/// What the event-loop callback works with: the guarded handle, where read bytes go, and what
/// waits to be written. Retained by libvirt while the callback is registered.
final class StreamEvents: Sendable {
    static let readInterest = Int32(VIR_STREAM_EVENT_READABLE.rawValue | VIR_STREAM_EVENT_ERROR.rawValue
                                    | VIR_STREAM_EVENT_HANGUP.rawValue)
    static let writeInterest = Int32(VIR_STREAM_EVENT_WRITABLE.rawValue)

    private struct Pending {
        var bytes: [UInt8] = []
        var ended = false
    }

    let handle: GuardedHandle
    private let continuation: AsyncThrowingStream<Data, any Error>.Continuation
    private let pending = Mutex(Pending())

    init(handle: GuardedHandle, continuation: AsyncThrowingStream<Data, any Error>.Continuation) {
        self.handle = handle
        self.continuation = continuation
    }

    /// Ends `output` (no more bytes are read or written).
    func end(throwing error: (any Error)? = nil) {
        pending.withLock { $0.ended = true; $0.bytes = [] }
        continuation.finish(throwing: error)
    }

    /// Adds `data` to what waits to be written and asks the event loop for "writable".
    /// The interest is set under the same lock the callback sets it under, so the two never
    /// leave a stale value behind.
    func queue(_ data: Data, on st: virStreamPtr) throws {
        try pending.withLock { p in
            guard !p.ended else {
                throw LibvirtError(operation: "write to console", code: 0, message: "the stream has ended")
            }
            guard p.bytes.count + data.count <= Stream.sendQueueLimit else {
                throw LibvirtError(operation: "write to console", code: 0,
                                   message: "more than \(Stream.sendQueueLimit) bytes wait for the other end")
            }
            p.bytes += data
            _ = virStreamEventUpdateCallback(st, Self.readInterest | Self.writeInterest)
        }
    }

    /// The event-loop callback: reads all there is, writes what it can. Does nothing once the
    /// stream is closing (its handle is refused).
    func dispatch(_ events: Int32) {
        handle.ifOpen { st in
            if events & Self.readInterest != 0 { read(st) }
            if events & Self.writeInterest != 0 { write(st) }
        }
    }

    private func read(_ st: virStreamPtr) {
        var buf = [CChar](repeating: 0, count: 64 * 1024)
        while true {
            let n = virStreamRecv(st, &buf, buf.count)
            if n > 0 {
                continuation.yield(buf.withUnsafeBytes { Data($0.prefix(Int(n))) })
                continue
            }
            if n == -2 { return }  // nothing more for now
            let error: (any Error)? = n == 0 ? nil : LibvirtError.last("read from console")
            end(throwing: error)
            // Ended: stop the event loop from reporting a hung-up stream over and over.
            _ = virStreamEventUpdateCallback(st, 0)
            return
        }
    }

    private func write(_ st: virStreamPtr) {
        pending.withLock { p in
            while !p.bytes.isEmpty {
                let n = p.bytes.withUnsafeBufferPointer { b in
                    b.withMemoryRebound(to: CChar.self) { virStreamSend(st, $0.baseAddress, $0.count) }
                }
                if n > 0 { p.bytes.removeFirst(Int(n)); continue }
                if n == -2 { break }  // full: wait for the next "writable"
                p.bytes = []  // the write failed: the read side reports how the stream ended
                break
            }
            let interest = p.ended ? 0 : Self.readInterest | (p.bytes.isEmpty ? 0 : Self.writeInterest)
            _ = virStreamEventUpdateCallback(st, interest)
        }
    }
}

extension Domain {
    /// Connects a new stream to the domain's first serial console (taking it over if another
    /// client has it), on a thread of its own.
    public func openConsole() async throws -> Stream {
        let connection = self.connection
        let name = self.name
        return try await call("console") { d in
            try connection.handle.use(orThrow: connection.closedError) { c in
                guard let st = virStreamNew(c, UInt32(VIR_STREAM_NONBLOCK.rawValue)) else {
                    throw LibvirtError.last("create stream")
                }
                if virDomainOpenConsole(d, nil, st, UInt32(VIR_DOMAIN_CONSOLE_FORCE.rawValue)) < 0 {
                    let err = LibvirtError.last("open console of \(name)")
                    virStreamFree(st)
                    throw err
                }
                return try Stream(handle: st, connection: connection)
            }
        }
    }

    /// A stream of a screenshot of the domain's display, as PNG (or whatever the driver
    /// makes). Here for the `test:///default` driver, whose domains have a screen but no
    /// console: the one way to exercise `Stream` without a guest.
    func screenshot() async throws -> Stream {
        let connection = self.connection
        let name = self.name
        return try await call("screenshot") { d in
            try connection.handle.use(orThrow: connection.closedError) { c in
                guard let st = virStreamNew(c, UInt32(VIR_STREAM_NONBLOCK.rawValue)) else {
                    throw LibvirtError.last("create stream")
                }
                guard let mime = virDomainScreenshot(d, st, 0, 0) else {
                    let err = LibvirtError.last("take a screenshot of \(name)")
                    virStreamFree(st)
                    throw err
                }
                free(mime)
                return try Stream(handle: st, connection: connection)
            }
        }
    }
}
