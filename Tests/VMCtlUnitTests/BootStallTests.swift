import Foundation
import Testing
import Yams
@testable import CloudInit
@testable import VMCtlSupport
@testable import Images
@testable import Machines
@testable import Clusters
@testable import Media

@Suite("Hung boots: stall detection and the failure report")
struct BootStallTests {
    static func tempDir() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("stall-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    @Test("the evidence of a reset names vCPU 0's instruction pointer and halt state from QEMU's CRLF registers dump")
    func evidenceSummary() {
        let dump = "\r\nCPU#0\r\nRAX=000000000001ad40 RBX=0000000000000000\r\nRIP=ffffffff8fc0dfeb RFL=00000246 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=1\r\nES =0000\r\nCPU#1\r\nRIP=0000000000000000 HLT=0\r\n"
        let e = StallEvidence(stall: BootStall(node: "node1", reason: "no serial output for 90 s before userspace started", lastLine: ""),
                              attempt: 1, qemuStatus: "VM status: running", registers: dump, serialTail: "")
        #expect(e.cpuSummary == "RIP=ffffffff8fc0dfeb HLT=1")
        let none = StallEvidence(stall: e.stall, attempt: 1, qemuStatus: "", registers: "(QEMU did not answer)", serialTail: "")
        #expect(none.cpuSummary == "")
    }

    @Test("a silent log stalls; output resets the clock; once userspace announced itself nothing stalls")
    func progress() throws {
        let dir = try Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = "\(dir)/serial.log"
        FileManager.default.createFile(atPath: log, contents: Data("an earlier boot\n".utf8))
        let policy = BootStall.Policy(until: Readiness.bootingMarker, silence: .milliseconds(300), limit: .seconds(60))
        let p = BootProgress(policy: policy, log: log)
        // What an earlier boot left in the log does not count as progress of this one.
        #expect(p.stalled() == nil)
        usleep(400_000)
        #expect(p.stalled()?.contains("no serial output") == true)
        let h = try #require(FileHandle(forWritingAtPath: log))
        h.seekToEndOfFile(); h.write(Data("more\n".utf8)); try h.close()
        #expect(p.stalled() == nil, "output resets the silence clock")
        p.saw("\(Readiness.bootingMarker) 3.2")
        usleep(400_000)
        #expect(p.stalled() == nil, "after userspace started, silence is not a stall")
        // The overall limit for reaching userspace.
        let limited = BootProgress(policy: .init(until: Readiness.bootingMarker, silence: .seconds(60), limit: .milliseconds(200)), log: log)
        usleep(300_000)
        #expect(limited.stalled()?.contains("did not start within") == true)
        #expect(BootProgress(policy: nil, log: log).stalled() == nil)
    }

    @Test("VMCTL_BOOT_STALL tunes the policy; the default limit grows with the nodes booting at once")
    func policy() {
        let d = BootStall.Policy.standard(nodes: 3, hostCores: 4, environment: [:])
        #expect(d.silence == .seconds(90) && d.limit == .seconds(240))
        // More nodes than cores: each boots slower, so its silences last longer.
        let ten = BootStall.Policy.standard(nodes: 10, hostCores: 2, environment: [:])
        #expect(ten.limit == .seconds(600) && ten.silence == .seconds(450))
        #expect(BootStall.Policy.standard(nodes: 3, hostCores: 2, environment: [:]).silence == .seconds(135))
        #expect(BootStall.Policy.standard(nodes: 1, hostCores: 2, environment: [:]).silence == .seconds(90))
        let t = BootStall.Policy.standard(nodes: 3, environment: ["VMCTL_BOOT_STALL": "20"])
        #expect(t.silence == .seconds(20) && t.limit == .seconds(60))
    }

    @Test("the failure report keeps every node's serial and QEMU log (0600), the redacted state and the error; old reports are pruned")
    func report() throws {
        let dir = try Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let state = StateDir(root: dir)
        var s = ClusterModelTests.state("rep", ssh: [2400, 2401], subnet: 7)
        s.embeddedRoot = "\(dir)/root"
        for i in s.nodes.indices {
            s.nodes[i].plan.directory = "\(dir)/n\(i)"
            s.nodes[i].bootedAt = Date()
            try FileManager.default.createDirectory(atPath: s.nodes[i].plan.directory, withIntermediateDirectories: true)
            try "boot of node\(i + 1)\n[    2.1] Run /bin/sleep as init process\n".write(toFile: s.nodes[i].plan.serialLog, atomically: true, encoding: .utf8)
        }
        try FileManager.default.createDirectory(atPath: "\(dir)/root/log/qemu", withIntermediateDirectories: true)
        try "qemu said things\n".write(toFile: "\(dir)/root/log/qemu/\(s.nodes[0].plan.domainName).log", atomically: true, encoding: .utf8)
        s.bootstrap = .init(clusterFacts: ["munge_key": "c2VjcmV0"], secretFacts: ["munge_key"])
        let report = try #require(FailureReport.write(state: state, cluster: s, error: VMCtlError("node(s) node2 did not come up")))
        let files = try FileManager.default.contentsOfDirectory(atPath: report).sorted()
        #expect(files == ["node1.qemu.log", "node1.serial.log", "node2.serial.log", "state.json", "summary.txt"])
        #expect(try String(contentsOfFile: "\(report)/node2.serial.log", encoding: .utf8).contains("Run /bin/sleep as init"))
        #expect(try String(contentsOfFile: "\(report)/summary.txt", encoding: .utf8).contains("node2 did not come up"))
        #expect(!(try String(contentsOfFile: "\(report)/state.json", encoding: .utf8)).contains("c2VjcmV0"), "secrets redacted")
        for f in files {
            var st = stat()
            #expect(lstat("\(report)/\(f)", &st) == 0 && st.st_mode & 0o077 == 0, "\(f) private")
        }
        // Nothing to report when no node ever booted.
        var fresh = s
        for i in fresh.nodes.indices { fresh.nodes[i].bootedAt = nil }
        #expect(FailureReport.write(state: state, cluster: fresh, error: VMCtlError("x")) == nil)
        // Bounded: only the newest reports stay.
        for i in 0..<(FailureReport.keep + 3) {
            try FileManager.default.createDirectory(atPath: "\(dir)/reports/old-\(i)", withIntermediateDirectories: true)
        }
        FailureReport.prune("\(dir)/reports")
        #expect(try FileManager.default.contentsOfDirectory(atPath: "\(dir)/reports").count == FailureReport.keep)
    }
}

@Suite("Readiness carried by the seed")
struct ReadinessTests {
    @Test("the ready line carries the guest's addresses; older lines without them still parse")
    func parse() {
        let r = Readiness.parse("vmctl-ready node1 12.34 addrs=10.0.2.15/24,10.77.3.11/24")
        #expect(r == Readiness.Report(uptime: 12.34, addresses: ["10.0.2.15/24", "10.77.3.11/24"]))
        #expect(Readiness.parse("noise vmctl-ready node2 5.0") == Readiness.Report(uptime: 5.0, addresses: []))
        #expect(Readiness.parse("vmctl-booting 3.1") == nil)
        // systemd names the poller's unit on the console as it starts: that is not readiness.
        #expect(Readiness.parse("[  OK  ] Started vmctl-ready.servic…rial console that SSH logins work.") == nil)
        #expect(Readiness.parse("vmctl-ready node1 1.5 addrs=10.0.2.15/24\r")?.addresses == ["10.0.2.15/24"])
    }

    @Test("the seed's user-data runs bootcmd: kernel quieted, early marker, the poller handed to systemd for the login user")
    func userData() throws {
        let seed = SeedConfig(instanceID: "i-1", hostname: "node1", user: .init(name: "alice", authorizedKeys: ["ssh-ed25519 AAAA k"]),
                              hostKey: .init(privateKey: "PRIV", publicKey: "PUB"), interfaces: [],
                              bootcmd: Readiness.bootcmd(user: "alice"))
        let ud = try seed.userData()
        let doc = try #require(try Yams.load(yaml: String(ud.dropFirst("#cloud-config\n".count))) as? [String: Any])
        let cmds = try #require(doc["bootcmd"] as? [[String]])
        #expect(cmds.count == 2)
        #expect(cmds[0].last?.contains("dmesg -n 3") == true)
        #expect(cmds[0].last?.contains("vmctl-booting") == true)
        #expect(cmds[1].first == "systemd-run" && cmds[1].contains("--no-block"))
        let script = try #require(cmds[1].last)
        #expect(script.contains("getent passwd alice"))
        #expect(script.contains("ssh.service") && script.contains("sshd.service"))
        #expect(script.contains("vmctl-ready $(hostname)") && script.contains("addrs=$addrs"))
    }

    @Test("the poller is valid POSIX sh, with and without the give-back", arguments: [false, true])
    func pollerParses(dropCaches: Bool) throws {
        let script = Readiness.pollerScript(user: "vmctl", dropCaches: dropCaches)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-n", "-c", script]
        try p.run()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        // The give-back comes after the ready line and cloud-init's end: every free page is
        // reported (order 0) while the caches are dropped, then reporting goes back to 128 KiB.
        let ready = try #require(script.range(of: "vmctl-ready $(hostname)"))
        if dropCaches {
            let finished = try #require(script.range(of: "/var/lib/cloud/instance/boot-finished"))
            let order0 = try #require(script.range(of: "echo 0 > \(Readiness.reportingOrder)"))
            let drop = try #require(script.range(of: "echo 3 > /proc/sys/vm/drop_caches"))
            let order5 = try #require(script.range(of: "echo 5 > \(Readiness.reportingOrder)"))
            #expect(ready.upperBound < finished.lowerBound && finished.upperBound < order0.lowerBound)
            #expect(order0.upperBound < drop.lowerBound && drop.upperBound < order5.lowerBound)
        } else {
            #expect(!script.contains("drop_caches") && !script.contains("page_reporting"))
        }
    }
}
