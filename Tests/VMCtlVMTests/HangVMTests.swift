import Foundation
import Testing
@testable import VMCtlSupport
@testable import Images
@testable import Machines
@testable import Clusters
@testable import Media

extension RealVMTests {
    @Test("a node whose boot hangs before userspace is reset twice, then reported with its serial and QEMU logs kept after rollback")
    func hungBootResetAndReported() async throws {
        try await VMFixture.ensureImage()
        let name = "it-hang"
        try await VMFixture.withCluster(name) {
            // Test-only hook: node1 boots with init=/bin/sleep; 15 s of silence counts as a stall.
            let r = try await VMFixture.vmctl(["cluster", "up", "1", "--name", name, "--memory", "1G"],
                                             env: ["VMCTL_TEST_HANG_NODE": "node1", "VMCTL_BOOT_STALL": "15"])
            #expect(r.status == 1, "\(r.out)\n\(r.err)")
            #expect(r.out.contains("resetting it (1 of 2)") && r.out.contains("resetting it (2 of 2)"), "\(r.out)")
            #expect(r.err.contains("after 2 reset(s)"), "\(r.err)")
            // Rolled back, but the evidence stays and the error names it.
            #expect(!FileManager.default.fileExists(atPath: VMFixture.state.cluster(name)))
            #expect(VMFixture.leftovers(cluster: name) == [])
            let line = try #require(r.err.split(separator: "\n").first { $0.contains("logs kept in") })
            let report = String(try #require(line.split(separator: " ").last))
            #expect(report.hasPrefix("\(VMFixture.home)/reports/\(name)-"))
            // The node's serial log is kept (at loglevel=4 a kernel stuck in init=/bin/sleep
            // prints nothing, so it may be empty: the summary says why it was reset).
            #expect(FileManager.default.fileExists(atPath: "\(report)/node1.serial.log"))
            #expect(try String(contentsOfFile: "\(report)/summary.txt", encoding: .utf8).contains("no serial output for 15 s"))
            #expect(FileManager.default.fileExists(atPath: "\(report)/node1.qemu.log"))
            #expect(try String(contentsOfFile: "\(report)/summary.txt", encoding: .utf8).contains("node1"))
            // Each reset kept QEMU's view of the stalled boot: its run state and vCPU registers.
            let reports = try FileManager.default.contentsOfDirectory(atPath: "\(VMFixture.home)/reports")
            for n in 1...2 {
                let dir = try #require(reports.first { $0.hasPrefix("\(name)-node1-reset\(n)-") }, "\(reports)")
                let summary = try String(contentsOfFile: "\(VMFixture.home)/reports/\(dir)/summary.txt", encoding: .utf8)
                #expect(summary.contains("QEMU: VM status: running") && summary.contains("RIP="), "\(summary)")
                #expect(FileManager.default.fileExists(atPath: "\(VMFixture.home)/reports/\(dir)/node1.qemu.log"))
            }
            #expect(r.out.contains("evidence in \(VMFixture.home)/reports/\(name)-node1-reset1-"), "\(r.out)")
        }
    }
}
