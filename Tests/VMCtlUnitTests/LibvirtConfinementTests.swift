import CLibvirt
import Foundation
import Synchronization
import Testing
@testable import Libvirt

/// The names of the threads libvirt reported errors on, while a test listens.
private let errorThreads = Mutex<[String]>([])

/// The calling thread's name as the kernel knows it. (A thread made by another inherits its
/// name: a pool thread's children are called after the pool until they rename themselves.)
private func currentThreadName() -> String {
    var buf = [UInt8](repeating: 0, count: 32)
    let fd = open("/proc/thread-self/comm", O_RDONLY | O_CLOEXEC)
    defer { close(fd) }
    let n = read(fd, &buf, buf.count)
    return String(decoding: buf.prefix(max(0, n)), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
}

@Suite("libvirt off the cooperative pool (test:///default driver)", .serialized)
struct LibvirtConfinementTests {
    @Test("libvirt calls made through the wrappers run on threads of their own, and read their error there")
    func callsRunOnOwnThreads() async throws {
        let conn = try await Connection.open("test:///default")
        // libvirt hands every failing call's error to the error function on the thread that
        // made the call: listen for a moment and see which threads those were.
        errorThreads.withLock { $0 = [] }
        virSetErrorFunc(nil) { _, _ in
            errorThreads.withLock { $0.append(currentThreadName()) }
        }
        defer { silenceDefaultErrorPrinter() }
        #expect(try await conn.domain(named: "no-such-domain-\(UUID())") == nil)
        await #expect(throws: LibvirtError.self) {
            _ = try await conn.define(xml: "<domain type='test'><name>no-memory</name></domain>")
        }
        let d = try #require(try await conn.domain(named: "test"))
        await #expect(throws: LibvirtError.self) { try await d.start() }  // already running
        d.close()
        silenceDefaultErrorPrinter()
        let seen = errorThreads.withLock { $0 }
        #expect(seen.contains("libvirt.lookup"))
        #expect(seen.contains("libvirt.define"))
        #expect(seen.contains("libvirt.start"))
        // Other tests may fail libvirt calls meanwhile: theirs ran on the wrappers' threads too.
        #expect(seen.allSatisfy { $0.hasPrefix("libvirt") }, "libvirt calls on other threads: \(seen)")
        await conn.close()
    }

    @Test("a closed connection or domain refuses calls instead of using a freed handle")
    func closedHandlesRefuse() async throws {
        let conn = try await Connection.open("test:///default")
        let d = try #require(try await conn.domain(named: "test"))
        d.close()
        await #expect(throws: LibvirtError.self) { _ = try await d.state() }
        await conn.close()
        #expect(conn.handle.isReleased)
        await #expect(throws: LibvirtError.self) { _ = try await conn.domain(named: "test") }
        await conn.close()  // again: nothing happens
    }

    @Test("a stream reads to its end through libvirt's event loop (the test driver's screenshot)")
    func streamReadsToEnd() async throws {
        let conn = try await Connection.open("test:///default")
        let d = try #require(try await conn.domain(named: "test"))
        let stream = try await d.screenshot()
        var bytes = Data()
        for try await chunk in stream.output { bytes += chunk }
        #expect(bytes.count > 1000)
        #expect(bytes.prefix(4) == Data([0x89, 0x50, 0x4e, 0x47]))  // PNG
        await stream.close()
        #expect(stream.handle.isReleased)
        #expect(throws: LibvirtError.self) { try stream.send(Data([1])) }
        d.close()
        await conn.close()
    }

    @Test("closing a stream while its output is being read ends the reader and frees the stream after it")
    func streamClosedUnderReader() async throws {
        let conn = try await Connection.open("test:///default")
        let d = try #require(try await conn.domain(named: "test"))
        for round in 0..<40 {
            let stream = try await d.screenshot()
            let reader = Task {
                var n = 0
                do { for try await chunk in stream.output { n += chunk.count } } catch {}
                return n
            }
            if round % 4 != 0 { try await Task.sleep(for: .microseconds(Int.random(in: 0...3000))) }
            await stream.close()
            let read = await reader.value
            #expect(read >= 0)
            #expect(stream.handle.isReleased)
            #expect(stream.handle.callsInProgress == 0)
        }
        d.close()
        await conn.close()
    }
}
