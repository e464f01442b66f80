import Blocking
import Foundation
import Testing
@testable import VMCtlSupport
@testable import Images
@testable import Machines
@testable import Clusters
@testable import Media

@Suite("The cluster's L2 switch")
struct FrameSwitchTests {
    /// A QEMU-like port: a UNIX stream connection sending length-prefixed frames.
    final class Port {
        let fd: Int32
        init(_ path: String) throws {
            fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            var addr = sockaddr_un()
            addr.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &addr.sun_path) { buf in
                for (i, b) in path.utf8.enumerated() { buf[i] = b }
            }
            let rc = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            guard rc == 0 else { throw VMCtlError("connect failed: \(String(cString: strerror(errno)))") }
        }
        deinit { close(fd) }

        func send(dst: [UInt8], src: [UInt8], payload: String) {
            writeAll(Port.wire(dst: dst, src: src, payload: payload))
        }

        /// One frame as QEMU puts it on the stream: length prefix, then the frame.
        static func wire(dst: [UInt8], src: [UInt8], payload: String) -> [UInt8] {
            let frame = dst + src + [0x08, 0x00] + Array(payload.utf8)
            let n = frame.count
            return [UInt8(n >> 24 & 0xff), UInt8(n >> 16 & 0xff), UInt8(n >> 8 & 0xff), UInt8(n & 0xff)] + frame
        }

        /// Writes all of `bytes` (blocking: the switch reads on its own thread meanwhile).
        func writeAll(_ bytes: [UInt8]) {
            var off = 0
            while off < bytes.count {
                let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + off, $0.count - off) }
                if n <= 0 { if errno == EINTR { continue }; return }
                off += n
            }
        }

        /// The payload of the next frame, or nil if none arrives within `ms`.
        func receive(ms: Int32 = 2000) -> String? {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, ms) > 0 else { return nil }
            var buf = [UInt8](repeating: 0, count: 4096)
            let n = read(fd, &buf, buf.count)
            guard n > 18 else { return nil }
            return String(decoding: buf[18..<n], as: UTF8.self)
        }
    }

    /// Runs a switch's event loop on a thread of its own until `stop()`.
    final class Loop: @unchecked Sendable {
        let sw: FrameSwitch
        private let flag = CancelFlag()
        private let done = DispatchSemaphore(value: 0)
        init(_ sw: FrameSwitch) {
            self.sw = sw
            Thread { [self] in
                while !flag.isCancelled { self.sw.step(timeoutMs: 20) }
                done.signal()
            }.start()
        }
        /// Stops the loop and waits for it: the switch may then be inspected from this thread.
        func stop() { flag.cancel(); done.wait() }
    }

    /// A clock the test moves by hand.
    final class FakeClock: @unchecked Sendable {
        private let lock = NSLock()
        private var t = 1000.0
        var now: Double { lock.withLock { t } }
        func advance(_ s: Double) { lock.withLock { t += s } }
    }

    /// A listening switch in a fresh directory; removed with `cleanup`.
    static func makeSwitch(now: @escaping () -> Double = FrameSwitch.monotonicSeconds) throws -> (FrameSwitch, String, () -> Void) {
        let dir = "/tmp/vmctl-sw-\(getpid())-\(UInt32.random(in: 0...999_999))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let path = "\(dir)/s.sock"
        let sw = FrameSwitch(socketPath: path, now: now)
        try sw.listen()
        return (sw, path, { try? FileManager.default.removeItem(atPath: dir) })
    }

    static let broadcast: [UInt8] = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff]

    @Test("floods broadcasts, learns MACs, and then delivers unicast only to its owner")
    func switching() throws {
        let (sw, path, cleanup) = try Self.makeSwitch()
        defer { cleanup() }
        let loop = Loop(sw)
        defer { loop.stop() }

        let a = try Port(path), b = try Port(path), c = try Port(path)
        usleep(100_000)
        let macA: [UInt8] = [0x52, 0x54, 0, 0, 0, 0x0a], macB: [UInt8] = [0x52, 0x54, 0, 0, 0, 0x0b]
        a.send(dst: [0xff, 0xff, 0xff, 0xff, 0xff, 0xff], src: macA, payload: "who-has")
        #expect(b.receive() == "who-has")
        #expect(c.receive() == "who-has")
        #expect(a.receive(ms: 200) == nil)   // never echoed to the sender
        b.send(dst: macA, src: macB, payload: "is-at")
        #expect(a.receive() == "is-at")
        #expect(c.receive(ms: 300) == nil)   // learned: not flooded
    }

    @Test("100,000 random source MACs: the table stays at 4096, known ports still talk, new MACs are flooded")
    func boundedTable() throws {
        let (sw, path, cleanup) = try Self.makeSwitch()
        defer { cleanup() }
        var loop = Loop(sw)
        defer { loop.stop() }
        let a = try Port(path), b = try Port(path), c = try Port(path)
        usleep(100_000)
        let macA: [UInt8] = [0x52, 0x54, 0, 0, 0, 0x0a], macB: [UInt8] = [0x52, 0x54, 0, 0, 0, 0x0b]
        let macC: [UInt8] = [0x52, 0x54, 0, 0, 0, 0x0c], macD: [UInt8] = [0x52, 0x54, 0, 0, 0, 0x0d]
        a.send(dst: Self.broadcast, src: macA, payload: "a")
        #expect(b.receive() == "a" && c.receive() == "a")
        b.send(dst: macA, src: macB, payload: "b")
        #expect(a.receive() == "b")
        c.send(dst: macA, src: macC, payload: "c")
        #expect(a.receive() == "c")

        // The abuse: frames from random unicast source MACs, to C itself (so nothing is queued
        // for A or B), then a broadcast that arrives once the switch went through them all.
        var flood: [UInt8] = []
        flood.reserveCapacity(100_000 * 24)
        for _ in 0..<100_000 {
            let src: [UInt8] = [0x02, .random(in: 0...255), .random(in: 0...255), .random(in: 0...255), .random(in: 0...255), .random(in: 0...255)]
            flood += Port.wire(dst: macC, src: src, payload: "x")
        }
        flood += Port.wire(dst: Self.broadcast, src: macC, payload: "done")
        let start = ContinuousClock.now
        c.writeAll(flood)
        #expect(a.receive(ms: 60_000) == "done")
        #expect(b.receive(ms: 5000) == "done")
        let took = ContinuousClock.now - start
        loop.stop()
        #expect(sw.learnedCount == 4096, "table holds \(sw.learnedCount) entries")
        loop = Loop(sw)
        print("100,000 frames switched in \(took)")

        // Known ports: unicast, not flooded.
        a.send(dst: macB, src: macA, payload: "a-to-b")
        #expect(b.receive() == "a-to-b")
        #expect(c.receive(ms: 300) == nil)
        // A new port while the table is full: its MAC is not learned, so frames to it are
        // flooded, and still arrive.
        let d = try Port(path)
        usleep(50_000)
        d.send(dst: macA, src: macD, payload: "d-to-a")
        #expect(a.receive() == "d-to-a")
        a.send(dst: macD, src: macA, payload: "a-to-d")
        #expect(d.receive() == "a-to-d")
        #expect(b.receive() == "a-to-d" && c.receive() == "a-to-d", "flooded while the table is full")
        loop.stop()
        #expect(sw.learnedCount <= 4096)
        loop = Loop(sw)
    }

    @Test("entries age out after 300 s (injected clock): then frames to that MAC are flooded again")
    func aging() throws {
        let clock = FakeClock()
        let (sw, path, cleanup) = try Self.makeSwitch(now: { clock.now })
        defer { cleanup() }
        let loop = Loop(sw)
        defer { loop.stop() }
        let a = try Port(path), b = try Port(path), c = try Port(path)
        usleep(100_000)
        let macA: [UInt8] = [0x52, 0x54, 0, 0, 0, 0x0a], macB: [UInt8] = [0x52, 0x54, 0, 0, 0, 0x0b]
        a.send(dst: Self.broadcast, src: macA, payload: "hello")
        #expect(b.receive() == "hello" && c.receive() == "hello")
        clock.advance(299)
        b.send(dst: macA, src: macB, payload: "fresh")
        #expect(a.receive() == "fresh")
        #expect(c.receive(ms: 300) == nil, "learned 299 s ago: still unicast")
        clock.advance(2)
        b.send(dst: macA, src: macB, payload: "stale")
        #expect(a.receive() == "stale")
        #expect(c.receive() == "stale", "unseen for 301 s: forgotten, so flooded")
    }

    @Test("the MAC table: full means not learned, a sweep frees expired entries, a disconnected port is forgotten")
    func macTable() {
        var t = MACTable(capacity: 2, aging: 300)
        let first = t.learn(1, port: 7, now: 0), second = t.learn(2, port: 8, now: 0)
        #expect(first && second)
        let third = t.learn(3, port: 7, now: 10)
        #expect(!third, "full")
        let moved = t.learn(1, port: 9, now: 10)
        #expect(moved, "known MACs are refreshed (and may move) when full")
        let p1 = t.port(for: 1, now: 20), p3 = t.port(for: 3, now: 20)
        #expect(p1 == 9 && p3 == nil)
        let later = t.learn(3, port: 7, now: 305)
        #expect(later, "2 expired and was swept to make room")
        let p2 = t.port(for: 2, now: 305)
        #expect(t.count == 2 && p2 == nil)
        let expired = t.port(for: 1, now: 311)
        #expect(expired == nil, "seen at 10, expired at 310")
        t.forget(port: 7)
        #expect(t.count == 0)
        let key = [UInt8]([0x01, 0x00, 0x5e, 0, 0, 1, 0x52, 0x54, 0, 0, 0, 0x0a]).withUnsafeBufferPointer { b in
            (MACTable.key(b, at: 0), MACTable.key(b, at: 6))
        }
        #expect(MACTable.isGroup(key.0) && !MACTable.isGroup(key.1) && key.1 == 0x5254_0000_000a)
    }
}
