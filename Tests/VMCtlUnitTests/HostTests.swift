import Foundation
import Testing
@testable import VMCtlSupport
@testable import Images
@testable import Machines
@testable import Clusters
@testable import Media

@Suite("Hypervisor target, state dir, serial watcher")
struct HostTests {
    @Test("embedded by default; local URIs accepted; remote URIs refused with a clear message")
    func uris() throws {
        let t = try HypervisorTarget.resolve(connect: nil, defaultRoot: "/var/lib/vmctl/clusters/a/libvirt")
        #expect(t.uri == "qemu:///embed?root=/var/lib/vmctl/clusters/a/libvirt")
        #expect(t.embeddedRoot == "/var/lib/vmctl/clusters/a/libvirt")
        #expect(try HypervisorTarget.resolve(connect: "qemu:///system", defaultRoot: "/x").embeddedRoot == nil)
        for remote in ["qemu+ssh://host/system", "qemu://host/system", "qemu+tcp://10.0.0.1/system"] {
            #expect {
                try HypervisorTarget.resolve(connect: remote, defaultRoot: "/x")
            } throws: { e in (e as? VMCtlError)?.exitCode == 2 && "\(e)".contains("remote libvirt URIs are not supported yet") }
        }
        #expect(throws: VMCtlError.self) { try HypervisorTarget.resolve(connect: "nonsense", defaultRoot: "/x") }
        #expect(throws: VMCtlError.self) { try HypervisorTarget.resolve(connect: "xen:///system", defaultRoot: "/x") }
    }

    @Test("a long embedded root is reached through a short symlink in /run/vmctl (ours, checked), never /tmp")
    func shortRoot() throws {
        let deep = FileManager.default.temporaryDirectory.appendingPathComponent(
            "a-rather-deep-state-directory-\(UUID())/clusters/default/libvirt").path
        try FileManager.default.createDirectory(atPath: deep, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: deep) }
        let short = HypervisorTarget.shortRoot(deep)
        #expect(short.utf8.count < 40)
        #expect(!short.hasPrefix("/tmp"))
        try HypervisorTarget.linkShortRoot(deep)
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: short) == deep)
        var st = stat()
        #expect(lstat((short as NSString).deletingLastPathComponent, &st) == 0)
        #expect(st.st_uid == getuid() && st.st_mode & 0o007 == 0)
        #expect(HypervisorTarget.shortRoot("/var/lib/vmctl/x") == "/var/lib/vmctl/x")
        HypervisorTarget.unlinkShortRoot(deep)
        #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: short)) == nil)
    }

    @Test("the embedded qemu.conf runs QEMU as libvirt-qemu (DAC), logs to files, needs no systemd")
    func qemuConf() {
        let root = HypervisorTarget.embeddedQemuConf(asRoot: true)
        #expect(root.contains("stdio_handler = \"file\""))
        #expect(root.contains("user = \"libvirt-qemu\""))
        #expect(root.contains("group = \"\(FileAccess.qemuProcessGroup)\""))
        #expect(!root.contains("\"root\""))
        #expect(root.contains("cgroup_controllers = [ ]"))
        #expect(!HypervisorTarget.embeddedQemuConf(asRoot: false).contains("user ="))
    }

    @Test("a directory planted by another user, a symlink or a file is refused in one line naming it; ours is made private")
    func ownedDirectories() throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("owned-\(UUID())").path
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: base) }
        let mine = "\(base)/mine"
        try FileAccess.directory(mine)
        var st = stat()
        #expect(lstat(mine, &st) == 0 && st.st_mode & 0o7777 == 0o700 && st.st_uid == getuid())
        // Already there with a loose mode: tightened, not refused.
        chmod(mine, 0o755)
        try FileAccess.directory(mine)
        #expect(lstat(mine, &st) == 0 && st.st_mode & 0o7777 == 0o700)
        let link = "\(base)/link"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: mine)
        #expect { try FileAccess.directory(link) } throws: { e in
            "\(e)".contains("refusing \(link)") && !"\(e)".contains("\n") }
        if getuid() == 0 {
            let planted = "\(base)/planted"
            #expect(mkdir(planted, 0o777) == 0)
            #expect(chown(planted, 65534, 65534) == 0)
            #expect { try FileAccess.directory(planted) } throws: { e in
                "\(e)".contains("refusing \(planted)") && "\(e)".contains("uid 65534") }
            #expect(lstat(planted, &st) == 0 && st.st_uid == 65534, "left as it was")
            // Shared with QEMU: root:libvirt-qemu 0710.
            if let gid = FileAccess.qemuGroup {
                let shared = "\(base)/shared"
                try FileAccess.directory(shared, qemu: true)
                #expect(lstat(shared, &st) == 0 && st.st_mode & 0o7777 == 0o710 && st.st_gid == gid)
            }
        }
    }

    @Test("a state dir that cannot be written gives one clear error naming the fix")
    func unwritableStateDir() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("plain-file-\(UUID())").path
        FileManager.default.createFile(atPath: file, contents: Data())
        defer { try? FileManager.default.removeItem(atPath: file) }
        #expect {
            try StateDir(root: "\(file)/vmctl").ensureWritable()
        } throws: { e in "\(e)".contains("not writable") && "\(e)".contains("VMCTL_HOME") }
        #expect(StateDir.resolve(environment: ["VMCTL_HOME": "/tmp/x"]).root == "/tmp/x")
    }

    @Test("the watcher wakes on a marker line written later with CRLF endings, and times out otherwise")
    func watcher() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("watch-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = "\(dir)/serial.log"
        try "old vmctl-ready from a previous boot\r\n".write(toFile: log, atomically: false, encoding: .utf8)
        let offset = SerialLogWatcher.size(log)
        let writer = Thread {
            usleep(300_000)
            let h = FileHandle(forWritingAtPath: log)!
            h.seekToEndOfFile()
            h.write(Data("booting...\r\nvmctl-ready node1 12.5\r\n".utf8))
            try? h.close()
        }
        writer.start()
        let start = ContinuousClock.now
        let r = SerialLogWatcher.wait(path: log, from: offset, marker: "vmctl-ready", deadline: .now + .seconds(10))
        #expect(r == .found(line: "vmctl-ready node1 12.5"))
        #expect(ContinuousClock.now - start < .seconds(5))
        #expect(SerialLogWatcher.wait(path: log, from: SerialLogWatcher.size(log), marker: "vmctl-ready",
                                      deadline: .now + .milliseconds(300)) == .timedOut)
        #expect(SerialLogWatcher.wait(path: log, from: SerialLogWatcher.size(log), marker: "x", deadline: .now + .seconds(5),
                                      stopIf: { "guest stopped" }) == .stopped(reason: "guest stopped"))
    }

    @Test("after the log is truncated (rotated), the watcher starts again at its new start and finds a marker written there")
    func watcherAcrossTruncation() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("watch-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = "\(dir)/serial.log"
        try String(repeating: "boot noise\r\n", count: 1000).write(toFile: log, atomically: false, encoding: .utf8)
        let offset = SerialLogWatcher.size(log)
        let writer = Thread {
            usleep(300_000)
            // As the switch daemon rotates: truncate in place; QEMU appends at the new end.
            let fd = open(log, O_WRONLY | O_APPEND)
            ftruncate(fd, 0)
            let line = Array("vmctl-ready node1 3.0\r\n".utf8)
            _ = line.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            close(fd)
        }
        writer.start()
        let r = SerialLogWatcher.wait(path: log, from: offset, marker: "vmctl-ready", deadline: .now + .seconds(10))
        #expect(r == .found(line: "vmctl-ready node1 3.0"))
        // Started past the end of an already-truncated log: read from its start.
        #expect(SerialLogWatcher.wait(path: log, from: offset, marker: "vmctl-ready", deadline: .now + .seconds(2))
                == .found(line: "vmctl-ready node1 3.0"))
    }

    @Test("a line without a newline is capped at 64 KiB: pending never grows past it, and a marker after it is found")
    func watcherPendingCap() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("watch-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = "\(dir)/serial.log"
        try String(repeating: "x", count: 3 << 20).write(toFile: log, atomically: false, encoding: .utf8)
        var pos: UInt64 = 0
        var pending: [UInt8] = []
        #expect(SerialLogWatcher.scan(path: log, pos: &pos, pending: &pending, marker: "vmctl-ready", onLine: { _ in }) == nil)
        #expect(pos == 3 << 20)
        #expect(pending.count <= SerialLogWatcher.maxPendingLine && SerialLogWatcher.maxPendingLine == 64 * 1024)
        let h = try #require(FileHandle(forWritingAtPath: log))
        h.seekToEndOfFile()
        h.write(Data("xxxx login: vmctl-ready node1 7.5\r\n".utf8))
        try h.close()
        var seen: [String] = []
        let line = SerialLogWatcher.scan(path: log, pos: &pos, pending: &pending, marker: "vmctl-ready", onLine: { seen.append($0) })
        #expect(line?.hasSuffix("vmctl-ready node1 7.5") == true)
        #expect(line.map { $0.utf8.count <= SerialLogWatcher.maxPendingLine } == true)
        #expect(seen.count == 1)
    }

    @Test("tail reads only the end of a log: the last bytes of a 64 GiB sparse file, at once")
    func tailReadsTheEnd() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tail-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = "\(dir)/serial.log"
        let fd = open(log, O_WRONLY | O_CREAT, 0o600)
        #expect(ftruncate(fd, 64 << 30) == 0)
        let end = Array("\u{1B}[0mline one\r\nline two\r\nthe end\r\n".utf8)
        _ = end.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(64 << 30)) }
        close(fd)
        let start = ContinuousClock.now
        #expect(SerialLogWatcher.tail(log, bytes: 19) == "line two\nthe end\n")
        #expect(SerialLogWatcher.tail(log, lines: 2) == "line two\nthe end")
        #expect(ContinuousClock.now - start < .seconds(2))
        #expect(SerialLogWatcher.tail("\(dir)/missing", bytes: 100) == "")
        #expect(SerialLogWatcher.tail("\(dir)/missing").contains("no serial log"))
    }
}
