import Foundation
import Blocking
import SSH
import Testing
@testable import VMCtlSupport
@testable import Images
@testable import Machines
@testable import Clusters
@testable import Media

@Suite("Private work directories, cp's local side, the USB media's known_hosts")
struct LocalFilesTests {
    static func scratch() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vmctl-local-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    static func mode(_ path: String) -> mode_t? {
        var st = stat()
        return lstat(path, &st) == 0 ? st.st_mode & 0o7777 : nil
    }

    @Test("work directories come from mkdtemp: mode 0700, unique, in the parent, named prefix.XXXXXX")
    func privateTemp() throws {
        let parent = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: parent) }
        let old = umask(0o000)  // a lax umask must not loosen them
        let made = try (0..<20).map { _ in try PrivateTemp.makeDirectory(in: parent, prefix: ".esp") }
        umask(old)
        #expect(Set(made).count == made.count)
        for d in made {
            #expect((d as NSString).deletingLastPathComponent == parent)
            #expect(Self.mode(d) == 0o700)
            let name = (d as NSString).lastPathComponent
            #expect(name.hasPrefix(".esp.") && name.count == ".esp.".count + 6)
            #expect(PrivateTemp.isDirectory(name, madeWith: ".esp"))
            var st = stat()
            #expect(lstat(d, &st) == 0 && st.st_mode & S_IFMT == S_IFDIR && st.st_uid == getuid())
        }
        #expect(!PrivateTemp.isDirectory(".esp", madeWith: ".esp"))
        #expect(!PrivateTemp.isDirectory(".esp.abc", madeWith: ".esp"))
        #expect(throws: VMCtlError.self) { try PrivateTemp.makeDirectory(in: parent, prefix: "a/b") }
        #expect(throws: VMCtlError.self) { try PrivateTemp.makeDirectory(in: "/proc/no-such-dir/x", prefix: "w") }
    }

    @Test("the sweep finds a dead owner's work directory by the pid in its name, old and new style")
    func sweep() throws {
        let out = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: out) }
        let mine = try PrivateTemp.makeDirectory(in: out, prefix: ".os-work-\(getpid())")
        #expect(USBMedia.ownerPID((mine as NSString).lastPathComponent, lead: ".os-work-") == getpid())
        #expect(USBMedia.ownerPID(".os-work-123", lead: ".os-work-") == 123)
        #expect(USBMedia.ownerPID(".os-work-123.Ab9xYz", lead: ".os-work-") == 123)
        #expect(USBMedia.ownerPID(".os-work-123.toolongname", lead: ".os-work-") == nil)
        #expect(USBMedia.ownerPID(".os-work-x1.Ab9xYz", lead: ".os-work-") == nil)
        #expect(USBMedia.ownerPID(".os-work-", lead: ".os-work-") == nil)
        // A pid that cannot be alive (above pid_max) stands for a run that died.
        let dead = try PrivateTemp.makeDirectory(in: out, prefix: ".os-work-\(Int32.max - 1)")
        let unrelated = "\(out)/.os-work-notes"
        try FileManager.default.createDirectory(atPath: unrelated, withIntermediateDirectories: false)
        USBMedia.sweepAbandonedWork(in: out, lead: ".os-work-")
        #expect(!FileManager.default.fileExists(atPath: dead))
        #expect(FileManager.default.fileExists(atPath: mine))
        #expect(FileManager.default.fileExists(atPath: unrelated))
    }

    @Test("a copy from a node goes to a 0600 O_EXCL file beside the destination, renamed into place")
    func incoming() throws {
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let dest = "\(dir)/copy"
        try "old".write(toFile: dest, atomically: false, encoding: .utf8)
        chmod(dest, 0o644)
        let old = umask(0o000)
        let f = try FileCopy.Incoming(destination: dest)
        umask(old)
        #expect((f.temporary as NSString).deletingLastPathComponent == dir)
        #expect(Self.mode(f.temporary) == 0o600)
        try f.write(Data("new ".utf8))
        try f.write(Data(repeating: 0x41, count: 1 << 20))
        // Until the commit the destination is untouched.
        #expect(try String(contentsOfFile: dest, encoding: .utf8) == "old")
        try f.commit()
        #expect(!FileManager.default.fileExists(atPath: f.temporary))
        #expect(FileManager.default.contents(atPath: dest) == Data("new ".utf8) + Data(repeating: 0x41, count: 1 << 20))
        #expect(Self.mode(dest) == 0o600)
        #expect(throws: VMCtlError.self) { try f.write(Data("late".utf8)) }

        let g = try FileCopy.Incoming(destination: "\(dir)/shared", mode: 0o644)
        try g.write(Data("x".utf8))
        try g.commit()
        #expect(Self.mode("\(dir)/shared") == 0o644)

        let h = try FileCopy.Incoming(destination: "\(dir)/failed")
        try h.write(Data("partial".utf8))
        h.discard()
        #expect(!FileManager.default.fileExists(atPath: h.temporary))
        #expect(!FileManager.default.fileExists(atPath: "\(dir)/failed"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).sorted() == ["copy", "shared"])
        #expect(throws: VMCtlError.self) { try FileCopy.Incoming(destination: "\(dir)/no-such-dir/file") }
        // A directory as destination receives the file under its own name.
        #expect(FileCopy.localDestination(dir, remotePath: "/etc/hostname") == "\(dir)/hostname")
        #expect(FileCopy.localDestination("\(dir)/h", remotePath: "/etc/hostname") == "\(dir)/h")
    }

    @Test("--mode takes 3 or 4 octal digits; anything else is a usage error")
    func modes() throws {
        #expect(try FileCopy.parseMode("0600") == 0o600)
        #expect(try FileCopy.parseMode("644") == 0o644)
        #expect(try FileCopy.parseMode("0755") == 0o755)
        #expect(try FileCopy.parseMode("4755") == 0o4755)
        for bad in ["", "8", "0o644", "rw-r--r--", "0999", "07777777", "-644", "64", " 644", "u+x"] {
            #expect { try FileCopy.parseMode(bad) } throws: { e in
                (e as? VMCtlError)?.exitCode == 2 && "\(e)".contains("--mode '\(bad)' is not an octal file mode")
            }
        }
        #expect(FileCopy.octal(0o644) == "0644" && FileCopy.octal(0o4755) == "4755" && FileCopy.octal(0o7) == "0007")
    }

    @Test("the node side creates copies under umask 077 and applies --mode only when given")
    func receiveCommand() {
        let plain = FileCopy.receiveCommand(path: "/tmp/it's", sourceName: "f", mode: nil)
        #expect(plain.hasPrefix("umask 077 && p='/tmp/it'\\''s' && "))
        #expect(plain.hasSuffix("cat > \"$p\""))
        #expect(!plain.contains("chmod"))
        let moded = FileCopy.receiveCommand(path: "/tmp/", sourceName: "a b", mode: 0o640)
        #expect(moded.contains("p=\"${p%/}/\"'a b'"))
        #expect(moded.hasSuffix("cat > \"$p\" && chmod 0640 \"$p\""))
    }

    @Test("the USB media's known_hosts names the machine's hostname, not *, and OpenSSH finds it by that name only")
    func knownHosts() async throws {
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let key = try await KeyPair.generate(at: "\(dir)/host", comment: "cluster-os host key")
        let pub = try key.publicKeyLine()
        let line = USBMedia.knownHostsLine(hostname: "cluster-os", publicKey: pub)
        #expect(line == "cluster-os \(pub)\n")
        #expect(!line.hasPrefix("*"))
        let file = "\(dir)/known_hosts"
        try AtomicFile.write(line, to: file)
        // `ssh -o HostKeyAlias=cluster-os` looks the key up under that name; any address does not match.
        let byName = try Command("ssh-keygen", ["-F", "cluster-os", "-f", file]).run()
        #expect(byName.status == 0 && byName.stdout.contains(pub.split(separator: " ")[1]))
        for other in ["192.168.1.50", "[127.0.0.1]:2899", "other-host"] {
            #expect(try Command("ssh-keygen", ["-F", other, "-f", file]).run().status != 0, "\(other) matched")
        }
    }
}
