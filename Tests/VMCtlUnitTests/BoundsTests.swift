import Foundation
import SSH
import Testing
@testable import VMCtlCommands
@testable import VMCtlSupport
@testable import Images
@testable import Machines
@testable import Clusters
@testable import Media

@Suite("Bounded under abuse: output caps, time limits, sizes, vCPUs, durable writes")
struct BoundsTests {
    @Test("a capture keeps up to its limit and refuses the piece that would pass it")
    func captureCap() throws {
        var c = OutputCapture(stream: "stdout", limit: 10)
        try c.append(Data("hello".utf8))
        try c.append(Data("world".utf8))  // exactly the limit
        #expect(c.text == "helloworld")
        #expect(throws: OutputLimitExceeded(stream: "stdout", limit: 10)) { try c.append(Data("!".utf8)) }
        #expect(c.data.count == 10)
        var e = OutputCapture(stream: "stderr", limit: 4)
        #expect(throws: OutputLimitExceeded.self) { try e.append(Data("12345".utf8)) }
        #expect(e.data.isEmpty)
    }

    @Test("the default cap is 16 MiB per stream and its error says so")
    func captureDefault() throws {
        #expect(OutputCapture.defaultLimit == 16 * 1024 * 1024)
        var c = OutputCapture(stream: "stdout")
        let mib = Data(count: 1 << 20)
        for _ in 0..<16 { try c.append(mib) }
        do {
            try c.append(Data([0]))
            Issue.record("17th MiB accepted")
        } catch let e as OutputLimitExceeded {
            #expect(e.description.hasPrefix("output exceeded 16 MiB on stdout"))
        }
        #expect(c.data.count == 16 << 20)
        #expect(OutputLimitExceeded(stream: "stderr", limit: 2048).description.hasPrefix("output exceeded 2 KiB on stderr"))
        #expect(OutputLimitExceeded(stream: "stderr", limit: 100).description.hasPrefix("output exceeded 100 bytes"))
    }

    @Test("an output-limit SSH error is its own kind")
    func errorKind() {
        let e = SSHError(.outputLimit, "run `yes` on 127.0.0.1:2222", "output exceeded 16 MiB on stdout")
        #expect(e.kind == .outputLimit && e.description.contains("16 MiB"))
    }

    @Test("streamed lines from several nodes: whole lines, prefixed; a cut line waits; overlong ones are broken")
    func prefixedLines() {
        var p = PrefixedLines(prefix: "node1: ")
        #expect(p.feed(Data("a\nb".utf8)) == Data("node1: a\n".utf8))
        #expect(p.feed(Data("c\n\nd".utf8)) == Data("node1: bc\nnode1: \n".utf8))
        #expect(p.finish() == Data("node1: d\n".utf8))
        #expect(p.finish().isEmpty)
        let long = Data(repeating: 0x79, count: PrefixedLines.maxLine + 1)
        let out = p.feed(long)
        #expect(out.count == "node1: ".utf8.count + long.count + 1 && out.last == 0x0A)
        #expect(p.finish().isEmpty)
        var many = PrefixedLines(prefix: "n2: ")
        let yes = Data(repeating: 0, count: 32 * 1024).enumerated().map { $0.offset % 2 == 0 ? UInt8(0x79) : 0x0A }
        #expect(many.feed(Data(yes)).count == 16 * 1024 * 6)
    }

    @Test("--timeout takes seconds or 90s, 5m, 1h; anything else is refused")
    func timeLimits() {
        #expect(TimeLimit(argument: "10")?.seconds == 10)
        #expect(TimeLimit(argument: "10s")?.seconds == 10)
        #expect(TimeLimit(argument: "5m")?.seconds == 300)
        #expect(TimeLimit(argument: "1h")?.duration == .seconds(3600))
        for bad in ["0", "-1", "10x", "", "s", "1.5s", "99999999999999999999", "720h1", "721h", " 5 m"] {
            #expect(TimeLimit(argument: bad) == nil, "\(bad)")
        }
        #expect(TimeLimit(argument: "720h")?.seconds == TimeLimit.maxSeconds)
    }

    @Test("cluster exec and ssh take --timeout with a unit")
    func timeoutFlags() throws {
        let exec = try ClusterExec.parse(["--timeout", "10s", "--", "yes"])
        #expect(exec.timeout.seconds == 10)
        #expect(try ClusterExec.parse(["--", "true"]).timeout.seconds == 300)
        let ssh = try ClusterSSH.parse(["node1", "--timeout", "2m", "--", "yes"])
        #expect(ssh.timeout.seconds == 120)
        #expect(try ClusterUp.parse(["1", "--timeout", "20m"]).timeout.seconds == 1200)
        #expect(throws: (any Error).self) { try ClusterExec.parse(["--timeout", "0", "--", "yes"]) }
    }

    @Test("sizes that overflow, are negative, zero or huge are not sizes")
    func byteSizes() {
        #expect(ByteSize.parse("2G") == 2 << 30)
        #expect(ByteSize.parse("16777215T") == 16_777_215 << 40)
        for bad in ["99999999T", "16777216T", "-1G", "0", "0G", "99999999999999999999999", "18446744073709551616",
                    "99999999999999999999999M", "G", "1.5G"] {
            #expect(ByteSize.parse(bad) == nil, "\(bad)")
        }
        #expect(ByteSize.parse("18446744073709551615") == UInt64.max)
    }

    @Test("up --memory 99999999T and friends are usage errors (exit 2), not a crash")
    func upRefusesSizes() async throws {
        for (flag, value) in [("--memory", "99999999T"), ("--memory", "-1G"), ("--memory", "0"),
                              ("--disk", "99999999999999999999999G"), ("--disk", "99999999T")] {
            let args = [flag, value]
            let up = try ClusterUp.parse(["1", "\(flag)=\(value)"])
            do {
                try await up.run()
                Issue.record("\(args) accepted")
            } catch let e as VMCtlError {
                #expect(e.exitCode == 2, "\(args)")
                #expect(e.message.contains(args[1]))
            }
        }
    }

    @Test("more vCPUs per node than host cores: one warning line naming the core count")
    func cpuWarning() throws {
        let w = try #require(ClusterSpec(nodes: 1, cpus: 64).cpuWarning(hostCores: 2))
        #expect(w.contains("64 vCPUs") && w.contains("2 cores") && !w.contains("\n"))
        #expect(ClusterSpec(nodes: 1, cpus: 2).cpuWarning(hostCores: 2) == nil)
        #expect(ClusterSpec(nodes: 3, cpus: 1).cpuWarning(hostCores: 2) == nil)
        #expect(ClusterSpec(nodes: 1, cpus: 2).cpuWarning(hostCores: 1)?.contains("1 core:") == true)
    }

    @Test("AtomicFile replaces content, keeps the mode, makes missing directories and leaves no temp file")
    func atomicFile() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("atomic-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = "\(dir)/sub/state.json"
        try AtomicFile.write("one", to: path)
        try AtomicFile.write("two", to: path, mode: 0o640)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "two")
        var st = stat()
        #expect(stat(path, &st) == 0 && st.st_mode & 0o777 == 0o640)
        #expect(try FileManager.default.contentsOfDirectory(atPath: "\(dir)/sub") == ["state.json"])
        try AtomicFile.syncDirectory("\(dir)/sub")
        try AtomicFile.syncTree(dir)
        #expect(throws: VMCtlError.self) { try AtomicFile.syncDirectory("\(dir)/missing") }
        // A failed write keeps the old content and leaves nothing beside it.
        #expect(throws: (any Error).self) { try AtomicFile.write("x", to: "\(dir)/sub/state.json/inner") }
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "two")
        #expect(try FileManager.default.contentsOfDirectory(atPath: "\(dir)/sub") == ["state.json"])
    }

    @Test("recipe downloads are bounded in time: curl gets --max-time and a connect timeout")
    func curlBounded() throws {
        let args = Downloader.curlArguments(URL(string: "https://example.com/k3s")!, output: "/x/out", seconds: 900)
        #expect(args.contains("--connect-timeout"))
        let i = try #require(args.firstIndex(of: "--max-time"))
        #expect(args[i + 1] == "900")
        #expect(Downloader(cache: "/x").timeout == .seconds(900))
    }
}
