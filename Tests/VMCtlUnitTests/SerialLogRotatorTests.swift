import Foundation
import Testing
@testable import VMCtlSupport
@testable import Images
@testable import Machines
@testable import Clusters
@testable import Media

@Suite("Serial log cap and rotation")
struct SerialLogRotatorTests {
    /// A cluster-like `nodes` directory with node1's serial log as vmctl makes it.
    static func nodes() throws -> (dir: String, log: String) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("rotate-\(UUID())/nodes").path
        try FileManager.default.createDirectory(atPath: "\(dir)/node1", withIntermediateDirectories: true)
        let log = "\(dir)/node1/serial.log"
        close(open(log, O_WRONLY | O_CREAT | O_APPEND, 0o600))
        chmod(log, 0o660)
        return (dir, log)
    }

    static func mode(_ path: String) -> (mode: mode_t, uid: uid_t, size: Int)? {
        var st = stat()
        guard lstat(path, &st) == 0 else { return nil }
        return (st.st_mode & 0o7777, st.st_uid, Int(st.st_size))
    }

    static func append(_ fd: Int32, _ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    }

    @Test("past the cap: the last cap bytes go to serial.log.1 (0600, ours), the log is emptied in place and keeps its mode; an appender goes on at the new start")
    func rotates() throws {
        let (dir, log) = try Self.nodes()
        defer { try? FileManager.default.removeItem(atPath: (dir as NSString).deletingLastPathComponent) }
        // QEMU's view: the log open with O_APPEND for the whole run.
        let qemu = open(log, O_WRONLY | O_APPEND)
        defer { close(qemu) }
        let first = (0..<10_000).map { UInt8(truncatingIfNeeded: $0) }
        Self.append(qemu, first)
        let rotator = SerialLogRotator(nodesDirectory: dir, cap: 4096)
        #expect(rotator.check() == [log])
        #expect(Self.mode(log)?.size == 0 && Self.mode(log)?.mode == 0o660)
        let rotated = try #require(Self.mode(log + ".1"))
        #expect(rotated.mode == 0o600 && rotated.uid == getuid() && rotated.size == 4096)
        #expect(FileManager.default.contents(atPath: log + ".1") == Data(first.suffix(4096)))
        #expect(rotator.check() == [], "under the cap: left alone")

        // Writes continue at the new end (no hole where the old content was).
        Self.append(qemu, Array("after rotation\n".utf8))
        #expect(FileManager.default.contents(atPath: log) == Data("after rotation\n".utf8))

        // The next rotation replaces serial.log.1.
        Self.append(qemu, [UInt8](repeating: 0x41, count: 5000))
        #expect(try SerialLogRotator.rotateIfNeeded(log, cap: 4096))
        #expect(FileManager.default.contents(atPath: log + ".1") == Data([UInt8](repeating: 0x41, count: 4096)))
        #expect(Self.mode(log + ".1")?.mode == 0o600)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: "\(dir)/node1").sorted()
        #expect(leftovers == ["serial.log", "serial.log.1"])
    }

    @Test("a symlink in place of the log is never followed; a missing log is no error")
    func refusesLinks() throws {
        let (dir, log) = try Self.nodes()
        defer { try? FileManager.default.removeItem(atPath: (dir as NSString).deletingLastPathComponent) }
        let victim = "\(dir)/victim"
        try Data(count: 10_000).write(to: URL(fileURLWithPath: victim))
        try FileManager.default.removeItem(atPath: log)
        try FileManager.default.createSymbolicLink(atPath: log, withDestinationPath: victim)
        #expect(throws: VMCtlError.self) { try SerialLogRotator.rotateIfNeeded(log, cap: 4096) }
        #expect(SerialLogRotator(nodesDirectory: dir, cap: 4096).check() == [])
        #expect(Self.mode(victim)?.size == 10_000)
        #expect(!FileManager.default.fileExists(atPath: log + ".1"))
        #expect(try !SerialLogRotator.rotateIfNeeded("\(dir)/node9/serial.log", cap: 4096))
    }

    @Test("the cap: 16 MiB unless VMCTL_SERIAL_LOG_CAP (test-only) gives a size")
    func cap() {
        #expect(SerialLogRotator.cap(environment: [:]) == 16 << 20)
        #expect(SerialLogRotator.cap(environment: ["VMCTL_SERIAL_LOG_CAP": "2M"]) == 2 << 20)
        #expect(SerialLogRotator.cap(environment: ["VMCTL_SERIAL_LOG_CAP": "lots"]) == 16 << 20)
        #expect(SerialLogRotator(nodesDirectory: "/x", cap: 10).cap == 4096, "never below 4 KiB")
    }
}
