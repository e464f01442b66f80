import Foundation
import Blocking
import Testing
@testable import CloudInit
@testable import Libvirt
@testable import Machines
@testable import Clusters
@testable import VMCtlSupport

@Suite("Warm start: libvirt save files and a clone's identity")
struct WarmStartTests {
    @Test("a save file's header, XML and cookie are written as libvirt 9.0 lays them out and read back; the stream follows")
    func saveImageRoundTrip() throws {
        let img = SaveImage(xml: "<domain type='qemu'><name>c1-node1</name></domain>\n", cookie: "<cookie><cpu/></cookie>\n",
                            wasRunning: true)
        let head = img.encoded()
        #expect(head.count % 4096 == 0)
        let bytes = [UInt8](head)
        #expect(Array(bytes[0..<16]) == Array("LibvirtQemudSave".utf8))
        func u32(_ at: Int) -> UInt32 { bytes[at..<at + 4].reversed().reduce(0) { $0 << 8 | UInt32($1) } }
        #expect(u32(16) == 2 && u32(20) == UInt32(head.count - 92) && u32(24) == 1 && u32(28) == 0)
        #expect(u32(32) == UInt32(img.xml.utf8.count + 1))
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("save-\(UUID()).img").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try (head + Data("QEVM\0\0\0\u{3}stream".utf8)).write(to: URL(fileURLWithPath: path))
        let back = try SaveImage.read(path)
        #expect(back.xml == img.xml && back.cookie == img.cookie && back.wasRunning)
        #expect(back.streamOffset == UInt64(head.count))
        let h = try #require(FileHandle(forReadingAtPath: path))
        try h.seek(toOffset: back.streamOffset)
        #expect(try h.read(upToCount: 4) == Data("QEVM".utf8))
        try h.close()
    }

    @Test("an unfinished save, a compressed one and a file that is not a save are refused with the reason")
    func saveImageRefusals() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("save-\(UUID()).img").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        var partial = [UInt8](SaveImage(xml: "<domain/>", cookie: nil, wasRunning: true).encoded())
        partial.replaceSubrange(0..<16, with: Array("LibvirtQemudPart".utf8))
        try Data(partial).write(to: URL(fileURLWithPath: path))
        #expect(throws: SaveImage.FormatError.self) { try SaveImage.read(path) }
        do { _ = try SaveImage.read(path) } catch { #expect("\(error)".contains("did not finish")) }
        var compressed = [UInt8](SaveImage(xml: "<domain/>", cookie: nil, wasRunning: true).encoded())
        compressed[28] = 1
        try Data(compressed).write(to: URL(fileURLWithPath: path))
        do { _ = try SaveImage.read(path); Issue.record("compressed save accepted") } catch { #expect("\(error)".contains("compressed")) }
        try Data("#!/bin/sh\n".utf8).write(to: URL(fileURLWithPath: path))
        do { _ = try SaveImage.read(path); Issue.record("a script accepted") } catch { #expect("\(error)".contains("header")) }
    }

    static func identity() -> WarmIdentity {
        WarmIdentity(hostname: "node2", machineID: "0123456789abcdef0123456789abcdef", user: "vmctl",
                     authorizedKeys: ["ssh-ed25519 AAAAC3Nza vmctl"],
                     hostKey: .init(privateKey: "-----BEGIN OPENSSH PRIVATE KEY-----\nabc'\"$x\n-----END OPENSSH PRIVATE KEY-----\n",
                                    publicKey: "ssh-ed25519 AAAAhost node2 host key"),
                     etcHosts: "127.0.0.1 localhost\n192.168.76.12 node2\n",
                     nics: [(templateMAC: "52:54:00:aa:00:01", mac: "52:54:00:aa:00:01", addresses: []),
                            (templateMAC: "52:54:00:aa:00:02", mac: "52:54:00:bb:00:02", addresses: ["192.168.76.12/24"])],
                     now: 1_764_480_000.25, entropy: [UInt8](repeating: 7, count: 64))
    }

    @Test("the identity: directives only, in order (RNG, clock, names, keys, NICs, sshd), paths and contents base64-encoded")
    func identityScript() throws {
        let s = Self.identity().script()
        #expect(s.hasSuffix("\n\(WarmIdentity.endMarker)\n"))
        #expect(!s.contains("BEGIN OPENSSH"))  // keys travel base64-encoded, never quoted
        #expect(!s.contains("systemctl") && !s.contains("python3") && !s.contains(" ip "))  // no process per clone
        let lines = s.split(separator: "\n").map(String.init).dropLast()
        let directives = lines.filter { $0.hasPrefix("#vmctl-") }
        let kinds = directives.map { String($0.prefix { $0 != " " }) }
        typealias D = WarmIdentity.Directive
        #expect(Array(kinds.prefix(2)) == [D.entropy.rawValue, D.clock.rawValue])
        #expect(directives[0] == "\(D.entropy.rawValue) \(Data([UInt8](repeating: 7, count: 64)).base64EncodedString())")
        #expect(directives[1] == "\(D.clock.rawValue) 1764480000.250")
        // Every file: MODE OWNER PATH CONTENT, the last two base64.
        let files = directives.filter { $0.hasPrefix(D.file.rawValue + " ") }.map { line -> (mode: String, owner: String, path: String, content: String) in
            let w = line.split(separator: " ").map(String.init)
            func d(_ s: String) -> String { String(decoding: Data(base64Encoded: s) ?? Data(), as: UTF8.self) }
            return (w[1], w[2], d(w[3]), d(w[4]))
        }
        #expect(files.map(\.path) == ["/etc/hostname", "/etc/machine-id", "/etc/hosts", "/etc/ssh/ssh_host_ed25519_key",
                                      "/etc/ssh/ssh_host_ed25519_key.pub", "~/.ssh/authorized_keys", WarmIdentity.recordPath])
        #expect(files[3].content == "-----BEGIN OPENSSH PRIVATE KEY-----\nabc'\"$x\n-----END OPENSSH PRIVATE KEY-----\n" && files[3].mode == "600")
        #expect(files[5].owner == "vmctl" && files[5].mode == "600" && files[0].owner == "root")
        // The old host keys go before the new one is written; the hostname is set with its file.
        #expect(kinds.firstIndex(of: D.remove.rawValue)! < kinds.lastIndex(of: D.file.rawValue)!)
        #expect(kinds.contains(D.hostname.rawValue) && directives.contains("\(D.hostname.rawValue) node2"))
        // No shell: every line is a directive. The cluster NIC (MAC and address together)
        // before sshd, sshd before the last word; the management NIC keeps its MAC.
        #expect(lines.allSatisfy { $0.hasPrefix("#vmctl-") }, "\(lines)")
        let nics = directives.filter { $0.hasPrefix(D.nic.rawValue + " ") }
        #expect(nics.contains("\(D.nic.rawValue) 52:54:00:aa:00:02 52:54:00:bb:00:02 192.168.76.12/24"), "\(nics)")
        #expect(nics.first == "\(D.nic.rawValue) 52:54:00:aa:00:01 52:54:00:aa:00:01 -")
        #expect(kinds.lastIndex(of: D.nic.rawValue)! < kinds.firstIndex(of: D.sshd.rawValue)!)
        #expect(kinds.lastIndex(of: D.file.rawValue)! < kinds.firstIndex(of: D.sshd.rawValue)!)
        #expect(directives.contains("\(D.sshd.rawValue) ssh.service sshd.service"))
        #expect(directives.last == "\(D.log.rawValue) applied node2")
        #expect(WarmIdentity.newMachineID().count == 32 && WarmIdentity.newMachineID() != WarmIdentity.newMachineID())
    }

    @Test("the warm agent is valid Python that handles every directive itself, and the template stops sshd without masking it and gives back its free pages only with a balloon")
    func agentSource() throws {
        let src = WarmAgent.python()
        #expect(src.contains("0x40085203") && src.contains("0x5207"))
        // Every directive is handled by the agent under its case name; the words themselves
        // arrive at run time, as the agent's one JSON argument.
        #expect(WarmIdentity.Directive.allCases.allSatisfy { src.contains("word == D[\"\($0)\"]") })
        let params = try JSONDecoder().decode(WarmAgent.Parameters.self, from: Data(WarmAgent.parameters().utf8))
        #expect(params.directives == Dictionary(uniqueKeysWithValues: WarmIdentity.Directive.allCases.map { ("\($0)", $0.rawValue) }))
        #expect(params.port == WarmIdentity.portName && params.end == WarmIdentity.endMarker && params.idle == WarmAgent.idleMarker
                && params.applied == WarmIdentity.appliedMarker && params.ready == Readiness.readyMarker)
        #expect(!src.contains("\\#("), "a Swift interpolation left in the agent")
        // The template's seed carries the agent file byte for byte, and its bootcmd starts it with the parameters.
        let file = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Sources/Machines/Resources/warm-agent.py")
        let seed = WarmAgent.seed(name: "t", user: "vmctl", hostKey: .init(privateKey: "k", publicKey: "p"), interfaces: [], giveBack: true)
        #expect(seed.files.first { $0.path == WarmAgent.path }?.content == (try String(contentsOf: file, encoding: .utf8)))
        #expect(WarmAgent.bootcmd(giveBack: false).flatMap { $0 }.contains { $0.contains("exec python3 \(WarmAgent.path) \(Shell.quote(WarmAgent.parameters()))") })
        #expect(WarmAgent.bootcmd(giveBack: true).flatMap { $0 }.allSatisfy { !$0.contains("systemctl mask") })
        // With a balloon the template gives its free pages back before the save; without one
        // there is nothing to give them back through, and no 5 s wait.
        #expect(WarmAgent.bootcmd(giveBack: true).flatMap { $0 }.contains { $0.contains("drop_caches") && $0.contains(Readiness.reportingOrder) })
        #expect(!WarmAgent.bootcmd(giveBack: false).flatMap { $0 }.contains { $0.contains("drop_caches") || $0.contains("page_reporting") })
        let p = Process()
        p.executableURL = URL(fileURLWithPath: try Command.require("python3"))
        p.arguments = ["-c", "import sys; compile(sys.argv[1], 'agent.py', 'exec')", src]
        try p.run(); p.waitUntilExit()
        #expect(p.terminationStatus == 0)
    }

    static func key(image: String = "76daf74d3255aa", cpus: Int = 2, memory: Int = 2048, qemu: UInt = 7_002_022) -> WarmSnapshot.Key {
        WarmSnapshot.Key(image: image, cpus: cpus, memoryMiB: memory, accelerator: .tcg, cpuModel: "qemu64", qemu: qemu, libvirt: 9_000_000)
    }

    @Test("a snapshot serves only its exact key; every other image, shape, QEMU or protocol is refused with the reason in words")
    func snapshotKey() {
        let k = Self.key()
        #expect(k.mismatch(k) == nil)
        #expect(k.name == "76daf74d3255-2c-2048m-tcg-q35-qemu64-qemu7002022-libvirt9000000-p\(WarmSnapshot.protocolVersion)")
        #expect(k.mismatch(Self.key(image: "135f69e6715b00"))?.contains("rebuilt as 135f69e6715b") == true)
        #expect(k.mismatch(Self.key(memory: 1024))?.contains("shape 2 vCPU/2048 MiB, not 2/1024") == true)
        #expect(k.mismatch(Self.key(qemu: 8_000_000))?.contains("QEMU") == true)
        var p = k; p.protocolVersion += 1
        #expect(k.mismatch(p)?.contains("identity protocol") == true)
        #expect(Set([k.name, Self.key(cpus: 1).name, Self.key(memory: 1024).name, Self.key(image: "ffff").name]).count == 4)
    }

    @Test("find needs the record written last and both files; prune removes snapshots of untagged images or older protocols no cluster uses, and dead makers' templates")
    func snapshotFindAndPrune() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("warm-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        func make(_ k: WarmSnapshot.Key, record: Bool = true) throws {
            let dir = WarmSnapshot.directory(for: k, in: root)
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            FileManager.default.createFile(atPath: "\(dir)/guest.save", contents: Data("x".utf8))
            FileManager.default.createFile(atPath: "\(dir)/disk.qcow2", contents: Data("x".utf8))
            if record {
                let meta = WarmSnapshot.Meta(key: k, macs: ["52:54:00:77:00:01"], user: "vmctl", madeAt: Date(), seconds: 1, saveBytes: 1)
                try JSONEncoder.iso.encode(meta).write(to: URL(fileURLWithPath: "\(dir)/snapshot.json"))
            }
        }
        let (cur, old, used, half) = (Self.key(image: "aaaa"), Self.key(image: "bbbb"), Self.key(image: "cccc"), Self.key(image: "dddd"))
        var older = Self.key(image: "aaaa", memory: 1024)
        older.protocolVersion = WarmSnapshot.protocolVersion - 1
        var olderUsed = Self.key(image: "cccc", memory: 1024)
        olderUsed.protocolVersion = WarmSnapshot.protocolVersion - 1
        try make(cur); try make(old); try make(used); try make(half, record: false); try make(older); try make(olderUsed)
        #expect(WarmSnapshot.find(cur, in: root) != nil)
        #expect(WarmSnapshot.find(half, in: root) == nil)  // a maker died before its record
        #expect(WarmSnapshot.find(Self.key(image: "aaaa", memory: 1024), in: root) == nil)
        try FileManager.default.createDirectory(atPath: "\(root)/template-999999", withIntermediateDirectories: true)
        let gone = WarmSnapshot.prune(in: root, current: ["aaaa"], inUse: ["cccc"])
        #expect(Set(gone) == [old.name, older.name])
        #expect(WarmSnapshot.find(olderUsed, in: root) != nil)  // a cluster's disks may sit on it
        #expect(WarmSnapshot.find(cur, in: root) != nil && WarmSnapshot.find(used, in: root) != nil)
        #expect(!FileManager.default.fileExists(atPath: "\(root)/template-999999"))
    }

    @Test("nodes boot cold, saying why, with the console stream, a test's hung boot or a shared libvirt; otherwise warm")
    func warmEligibility() {
        var s = ClusterModelTests.state("w", ssh: [2223], subnet: 1)
        #expect(ClusterManager.warmIneligible(s, environment: [:]) == nil)
        #expect(ClusterManager.warmIneligible(s, environment: ["VMCTL_CONSOLE": "stream"])?.contains("console") == true)
        #expect(ClusterManager.warmIneligible(s, environment: ["VMCTL_TEST_HANG_NODE": "node1"])?.contains("hangs") == true)
        s.embeddedRoot = nil
        s.connectURI = "qemu:///system"
        #expect(ClusterManager.warmIneligible(s, environment: [:])?.contains("qemu:///system") == true)
    }
}
