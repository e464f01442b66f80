import Blocking
import Foundation
import Synchronization
import Testing
@testable import VMCtlSupport
@testable import Machines

@Suite("Waiting for a daemon's socket: inotify and the daemon's exit, not a poll loop")
struct SocketWaitTests {
    static func tempDir() throws -> String {
        let dir = "/tmp/vmctl-sw-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    /// Binds a UNIX socket at `path` (and keeps it bound until the returned fd is closed).
    static func listen(at path: String) -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { buf in
            for (i, b) in path.utf8.enumerated() { buf[i] = b }
        }
        _ = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        _ = Foundation.listen(fd, 1)
        return fd
    }

    @Test("a socket made after a delay is noticed as it appears")
    func socketAppears() async throws {
        let dir = try Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = "\(dir)/daemon.sock"
        // Both sides on threads of their own, timed there: a busy cooperative pool (other
        // tests) cannot stretch the measurement.
        let listener = Mutex<Int32>(-1)
        startThread("test.listen") {
            usleep(300_000)
            listener.withLock { $0 = Self.listen(at: path) }
        }
        let took = try await onOwnThread("test.wait") { () -> Duration in
            let start = ContinuousClock.now
            try SocketWait.wait(for: path, deadline: .now + .seconds(10))
            return ContinuousClock.now - start
        }
        close(listener.withLock { $0 })
        #expect(took >= .milliseconds(250))
        #expect(took < .seconds(3), "took \(took): the wait should wake on the socket, not on a timer")
    }

    @Test("a socket already there is seen at once (checked after the watch exists)")
    func socketAlreadyThere() throws {
        let dir = try Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fd = Self.listen(at: "\(dir)/daemon.sock")
        defer { close(fd) }
        let start = ContinuousClock.now
        try SocketWait.wait(for: "\(dir)/daemon.sock", deadline: .now + .seconds(5))
        #expect(ContinuousClock.now - start < .seconds(1))
    }

    @Test("at the deadline the wait ends with an error that names the socket")
    func deadlineExpires() throws {
        let dir = try Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = "\(dir)/never.sock"
        let start = ContinuousClock.now
        do {
            try SocketWait.wait(for: path, deadline: .now + .milliseconds(300))
            Issue.record("the wait should have timed out")
        } catch let f as SocketWait.Failure {
            guard case .timedOut(let p, _) = f else { Issue.record("expected a timeout, got \(f)"); return }
            #expect(p == path)
            #expect(f.description.hasPrefix("nothing listened on \(path) within 0."), "\(f)")
        }
        let took = ContinuousClock.now - start
        #expect(took >= .milliseconds(300) && took < .seconds(3))
    }

    @Test("a daemon that exits before listening is reported at once, with its status")
    func daemonExitsEarly() throws {
        let dir = try Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", "sleep 0.2; exit 3"]
        let exit = ProcessExit(p)
        try p.run()
        let start = ContinuousClock.now
        #expect(throws: SocketWait.Failure.exited(path: "\(dir)/d.sock", status: 3)) {
            try SocketWait.wait(for: "\(dir)/d.sock", deadline: .now + .seconds(20), exit: exit)
        }
        #expect(ContinuousClock.now - start < .seconds(5))
    }

    @Test("the switch's start fails fast and clearly when its executable exits at once")
    func switchStartReportsEarlyExit() async throws {
        let dir = try Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let sw = SwitchProcess(socketPath: "\(dir)/switch.sock", pidFile: "\(dir)/switch.pid", executable: "/bin/false")
        let start = ContinuousClock.now
        do {
            try await sw.start(timeout: .seconds(60))
            Issue.record("a switch that exits at once cannot have started")
        } catch let e as VMCtlError {
            #expect("\(e)".contains("exited with status 1"), "\(e)")
        }
        // Told by the exit, not by the timeout.
        #expect(ContinuousClock.now - start < .seconds(20))
    }

    static var vmctlBinary: String? {
        let b = SwitchProcess.defaultExecutable()
        return FileManager.default.isExecutableFile(atPath: b) ? b : nil
    }

    @Test("the real switch daemon starts, is waited for until it listens, and stops",
          .enabled(if: vmctlBinary != nil, "needs the built vmctl binary beside the tests"))
    func realSwitchStarts() async throws {
        let dir = try Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let sw = SwitchProcess(socketPath: "\(dir)/switch.sock", pidFile: "\(dir)/switch.pid", executable: Self.vmctlBinary!)
        try await sw.start()
        defer { sw.stop() }
        #expect(sw.runningPid() != nil)
        #expect(FileManager.default.fileExists(atPath: "\(dir)/switch.sock"))
    }
}
