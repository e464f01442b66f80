import Foundation
import Testing
@testable import VMCtlSupport
@testable import Images
@testable import Machines
@testable import Clusters
@testable import Media

/// A guest that never stops printing cannot hold vmctl past its time limit or grow it
/// without bound (same serialized suite as the other VM tests).
extension RealVMTests {
    @Test("bounded: exec --timeout 10s -- yes ends on time with bounded memory, and a silent command at its limit too; ssh streams 20 MiB; a 20 MiB capture is refused at 16 MiB")
    func boundedOutput() async throws {
        try await VMFixture.ensureImage()
        let name = "it-bounds"
        try await VMFixture.withCluster(name) {
            let up = try await VMFixture.vmctl(["cluster", "up", "1", "--name", name, "--memory", "1G"])
            try #require(up.status == 0, "up failed:\n\(up.out)\n\(up.err)")

            // `yes` writes as fast as the link takes it: streamed, and stopped at the deadline.
            let yes = try await Self.measured(["cluster", "exec", "--name", name, "--timeout", "10s", "--", "yes"])
            #expect(yes.status == 1, "\(yes.err)")
            #expect(yes.err.contains("timed out after 10 s"), "\(yes.err)")
            #expect(yes.seconds >= 9 && yes.seconds < 40, "took \(yes.seconds) s")
            #expect(yes.outBytes > 1 << 20, "only \(yes.outBytes) bytes streamed")
            #expect(yes.maxRSSKiB > 0 && yes.maxRSSKiB < 200 * 1024, "max RSS \(yes.maxRSSKiB) KiB")

            // A command that prints nothing meets its deadline while vmctl waits on the socket:
            // the same error, naming the limit.
            let quiet = try await VMFixture.vmctl(["cluster", "exec", "--name", name, "--timeout", "3s", "--", "sleep 60"])
            #expect(quiet.status == 1 && quiet.err.contains("timed out after 3 s (--timeout sets the limit)"), "\(quiet.err)")

            let ssh = try await Self.measured(["cluster", "ssh", "--name", name, "node1", "--timeout", "5s", "--", "yes"])
            #expect(ssh.status == 1 && ssh.err.contains("timed out after 5 s"), "\(ssh.err)")
            #expect(ssh.seconds < 35 && ssh.maxRSSKiB < 200 * 1024, "\(ssh.seconds) s, \(ssh.maxRSSKiB) KiB")

            // Streamed output is not capped: all 20 MiB arrive.
            let big = try await Self.measured(["cluster", "ssh", "--name", name, "node1", "--", "head -c 20M /dev/zero"])
            #expect(big.status == 0 && big.outBytes == 20 << 20, "\(big.outBytes) bytes; \(big.err)")

            // Captured output (--json) stops at 16 MiB with an error naming the node and command.
            let cap = try await Self.measured(["cluster", "exec", "--name", name, "--json", "--", "head -c 20M /dev/zero"],
                                              keepOutput: true)
            #expect(cap.status == 1)
            let results = try JSONDecoder().decode([NodeExecResult].self, from: cap.out)
            #expect(results.count == 1 && results[0].node == "node1" && results[0].status == nil)
            let error = results.first?.error ?? ""
            #expect(error.contains("output exceeded 16 MiB on stdout") && error.contains("head -c 20M"), "\(error)")
            #expect(cap.maxRSSKiB < 300 * 1024, "max RSS \(cap.maxRSSKiB) KiB")
        }
    }

    struct Measured { var status: Int32; var seconds: Double; var maxRSSKiB: Int; var outBytes: Int; var out: Data; var err: String }

    /// Runs vmctl under `/usr/bin/time -v`: its exit status, wall time, maximum resident set
    /// size, and how much it printed (stdout goes to a file, kept only with `keepOutput`).
    static func measured(_ args: [String], keepOutput: Bool = false) async throws -> Measured {
        try await Task.detached {
            let dir = try Self.scratch()
            defer { try? FileManager.default.removeItem(atPath: dir) }
            FileManager.default.createFile(atPath: "\(dir)/out", contents: nil)
            FileManager.default.createFile(atPath: "\(dir)/err", contents: nil)
            let out = try FileHandle(forWritingTo: URL(fileURLWithPath: "\(dir)/out"))
            let err = try FileHandle(forWritingTo: URL(fileURLWithPath: "\(dir)/err"))
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/time")
            p.arguments = ["-v", VMFixture.binary] + args
            p.environment = VMFixture.environment
            p.standardInput = FileHandle.nullDevice
            p.standardOutput = out
            p.standardError = err
            let start = ContinuousClock.now
            try p.run()
            p.waitUntilExit()
            let seconds = (ContinuousClock.now - start).components
            try out.close(); try err.close()
            let text = try String(contentsOfFile: "\(dir)/err", encoding: .utf8)
            let rss = text.split(separator: "\n").first { $0.contains("Maximum resident set size") }
                .flatMap { $0.split(separator: ":").last.flatMap { Int($0.trimmingCharacters(in: .whitespaces)) } } ?? -1
            let size = ((try? FileManager.default.attributesOfItem(atPath: "\(dir)/out"))?[.size] as? Int) ?? -1
            return Measured(status: p.terminationStatus,
                            seconds: Double(seconds.seconds) + Double(seconds.attoseconds) / 1e18,
                            maxRSSKiB: rss, outBytes: size,
                            out: keepOutput ? try Data(contentsOf: URL(fileURLWithPath: "\(dir)/out")) : Data(), err: text)
        }.value
    }

    /// A private scratch directory (mkdtemp) beside the tests' state dir.
    static func scratch() throws -> String {
        var template = Array("\(VMFixture.home)/bounds.XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw VMCtlError("mkdtemp: \(String(cString: strerror(errno)))") }
        return String(cString: made)
    }
}
