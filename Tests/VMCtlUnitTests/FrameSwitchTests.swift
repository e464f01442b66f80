import Blocking
import Foundation
import Testing
@testable import VMCtlCore

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
            let frame = dst + src + [0x08, 0x00] + Array(payload.utf8)
            let n = frame.count
            let wire = [UInt8(n >> 24 & 0xff), UInt8(n >> 16 & 0xff), UInt8(n >> 8 & 0xff), UInt8(n & 0xff)] + frame
            _ = wire.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
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

    @Test("floods broadcasts, learns MACs, and then delivers unicast only to its owner")
    func switching() throws {
        let dir = "/tmp/vmctl-sw-\(getpid())-\(UInt16.random(in: 0...9999))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = "\(dir)/s.sock"
        let sw = FrameSwitch(socketPath: path)
        try sw.listen()
        let stop = CancelFlag()
        nonisolated(unsafe) let unsafeSwitch = sw
        let loop = Thread { while !stop.isCancelled { unsafeSwitch.step(timeoutMs: 20) } }
        loop.start()
        defer { stop.cancel(); usleep(50_000) }

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
}
