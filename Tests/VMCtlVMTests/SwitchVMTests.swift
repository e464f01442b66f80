import Foundation
import Testing
@testable import VMCtlSupport
@testable import Images
@testable import Machines
@testable import Clusters
@testable import Media

/// A guest abusing the cluster network and its console (same serialized suite as the other VM tests).
extension RealVMTests {
    @Test("abuse: 100,000 random source MACs leave the switch alive and small and node1 → node2 working; a console flood leaves serial.log and serial.log.1 under the cap; a killed switch shows in status, and `start` restarts it and the nodes")
    func switchAndSerialUnderAbuse() async throws {
        try await VMFixture.ensureImage()
        let name = "it-sw"
        let cap = 256 << 10
        // Test-only: a small cap, so the emulated serial port has little to write.
        let env = [SerialLogRotator.capVariable: "256K"]
        try await VMFixture.withCluster(name) {
            let up = try await SwitchVM.vmctl(["cluster", "up", "2", "--name", name, "--memory", "1G"], env: env)
            try #require(up.status == 0, "up failed:\n\(up.out)\n\(up.err)")
            let paths = ClusterPaths(state: VMFixture.state, name: name)
            let pid = try #require(SwitchVM.pid(paths.switchPidFile))
            let rssBefore = try #require(SwitchVM.rssKiB(pid))

            // From node1's cluster NIC: 100,000 frames from random unicast MACs to random unicast MACs.
            let flood = try await VMFixture.vmctl(["cluster", "ssh", "--name", name, "node1", "--", SwitchVM.macFlood(100_000)])
            #expect(flood.out.contains("sent 100000"), "flood failed:\n\(flood.out)\n\(flood.err)")
            let ping = try await VMFixture.vmctl(["cluster", "ssh", "--name", name, "node1", "--", "ping -c 3 -W 5 node2"])
            #expect(ping.status == 0, "node1 no longer reaches node2 after the flood:\n\(ping.out)\n\(ping.err)")
            #expect(kill(pid, 0) == 0, "the switch died")
            let rssAfter = try #require(SwitchVM.rssKiB(pid))
            print("switch RSS: \(rssBefore) KiB before, \(rssAfter) KiB after 100,000 random source MACs")
            #expect(rssAfter < 64 << 10 && rssAfter - rssBefore < 8 << 10, "switch RSS \(rssBefore) → \(rssAfter) KiB")

            // The console: four times the cap through ttyS0; the daemon rotates within a second.
            let log = "\(paths.nodeDirectory("node1"))/serial.log"
            let started = ContinuousClock.now
            let tty = try await VMFixture.vmctl(["cluster", "ssh", "--name", name, "node1", "--",
                                                 #"sudo sh -c 'head -c 1M /dev/zero | tr "\\0" x > /dev/ttyS0'"#])
            #expect(tty.status == 0, "\(tty.err)")
            print("1 MiB through ttyS0 in \(ContinuousClock.now - started)")
            for _ in 0..<20 where (SwitchVM.fileInfo(log)?.size ?? 0) > cap { try await Task.sleep(for: .milliseconds(250)) }
            let live = try #require(SwitchVM.fileInfo(log)), rotated = try #require(SwitchVM.fileInfo(log + ".1"))
            #expect(live.size <= cap && rotated.size <= cap && rotated.size > 0, "serial.log \(live.size), serial.log.1 \(rotated.size)")
            #expect(live.mode == 0o660 && rotated.mode == 0o600 && rotated.uid == 0, "modes \(live), \(rotated)")
            let ssh = try await VMFixture.vmctl(["cluster", "ssh", "--name", name, "node1", "--", "hostname"])
            #expect(ssh.out == "node1\n", "\(ssh.err)")

            // A dead switch: status says so; start brings it back, and the nodes it had.
            #expect(kill(pid, SIGKILL) == 0)
            for _ in 0..<50 where SwitchVM.alive(pid) {
                try await Task.sleep(for: .milliseconds(100))
            }
            let dead = try await VMFixture.vmctl(["cluster", "status", "--name", name])
            #expect(dead.out.contains("DOWN, the switch is not running"), "\(dead.out)")
            let deadJSON = try await VMFixture.vmctl(["cluster", "status", "--name", name, "--json"])
            let deadRows = try JSONDecoder().decode([NodeStatus].self, from: Data(deadJSON.out.utf8))
            #expect(deadRows.map(\.clusterLink) == [.switchDead, .switchDead], "\(deadJSON.out)")

            let restartClock = ContinuousClock.now
            let start = try await SwitchVM.vmctl(["cluster", "start", "--name", name], env: env)
            print("cluster start restarted the switch and 2 nodes in \(ContinuousClock.now - restartClock)")
            #expect(start.status == 0, "start failed:\n\(start.out)\n\(start.err)")
            #expect((start.out + start.err).contains("the switch was not running; started it again, restarting node1, node2"),
                    "\(start.out)\(start.err)")
            let newPid = try #require(SwitchVM.pid(paths.switchPidFile))
            #expect(newPid != pid && kill(newPid, 0) == 0)
            let upJSON = try await VMFixture.vmctl(["cluster", "status", "--name", name, "--json"])
            let upRows = try JSONDecoder().decode([NodeStatus].self, from: Data(upJSON.out.utf8))
            #expect(upRows.map(\.clusterLink) == [.up, .up], "\(upJSON.out)")
            let again = try await VMFixture.vmctl(["cluster", "ssh", "--name", name, "node1", "--", "ping -c 3 -W 5 node2"])
            #expect(again.status == 0, "node1 does not reach node2 after the restart:\n\(again.out)\n\(again.err)")
        }
        #expect(VMFixture.leftovers(cluster: name) == [])
    }
}

/// Helpers for the abuse test.
enum SwitchVM {
    /// Runs vmctl as `VMFixture.vmctl` does, with `env` added to its environment.
    static func vmctl(_ args: [String], env: [String: String]) async throws -> VMFixture.Run {
        try await Task.detached {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: VMFixture.binary)
            p.arguments = args
            p.environment = VMFixture.environment.merging(env) { _, new in new }
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sw-run-\(UUID())")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: dir) }
            let out = dir.appendingPathComponent("out"), err = dir.appendingPathComponent("err")
            FileManager.default.createFile(atPath: out.path, contents: nil)
            FileManager.default.createFile(atPath: err.path, contents: nil)
            p.standardOutput = try FileHandle(forWritingTo: out)
            p.standardError = try FileHandle(forWritingTo: err)
            p.standardInput = FileHandle.nullDevice
            try p.run()
            p.waitUntilExit()
            return VMFixture.Run(status: p.terminationStatus, out: (try? String(contentsOf: out, encoding: .utf8)) ?? "",
                                 err: (try? String(contentsOf: err, encoding: .utf8)) ?? "")
        }.value
    }

    /// A guest command sending `count` frames with random source and destination MACs out of
    /// its cluster NIC (the one with a 10.77.X.Y address) through a raw AF_PACKET socket.
    static func macFlood(_ count: Int) -> String {
        #"""
        IF=$(ip -o -4 addr | awk '$4 ~ /^10\.77\./ {print $2; exit}')
        sudo python3 -c '
        import os, socket, sys
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        s.bind((sys.argv[1], 0))
        n = int(sys.argv[2])
        for _ in range(n):
            r = os.urandom(12)
            dst = bytes([r[0] & 0xfe | 0x02]) + r[1:6]
            src = bytes([r[6] & 0xfe | 0x02]) + r[7:12]
            s.send(dst + src + b"\x88\xb5" + b"vmctl-flood".ljust(46, b"\0"))
        print("sent", n, "on", sys.argv[1])
        ' "$IF" 
        """# + String(count)
    }

    static func pid(_ pidFile: String) -> pid_t? {
        (try? String(contentsOfFile: pidFile, encoding: .utf8)).flatMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    /// Whether `pid` is a live process (not gone, not a zombie).
    static func alive(_ pid: pid_t) -> Bool {
        guard let s = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = s.lastIndex(of: ")") else { return false }
        return !s[s.index(after: close)...].trimmingCharacters(in: .whitespaces).hasPrefix("Z")
    }

    static func rssKiB(_ pid: pid_t) -> Int? {
        let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        return status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") }
            .flatMap { $0.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first }.flatMap { Int($0) }
    }

    static func fileInfo(_ path: String) -> (size: Int, mode: mode_t, uid: uid_t)? {
        var st = stat()
        guard lstat(path, &st) == 0 else { return nil }
        return (Int(st.st_size), st.st_mode & 0o7777, st.st_uid)
    }
}
