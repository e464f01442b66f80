import Foundation
import Testing
@testable import VMCtlSupport
@testable import Machines

/// `vmctl doctor --json`: the numbers scripts read (fit.sh), not prose to scrape.
@Suite("doctor: the host's memory as numbers")
struct DoctorTests {
    @Test("the JSON report carries MemAvailable, what an idle 2 GiB node keeps and how many fit, the same numbers its prose says")
    func hostMemoryNumbers() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vmctl-doctor-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let report = await Doctor(state: StateDir(root: dir)).run()
        let data = try JSONEncoder().encode(report)
        let decoded = try JSONDecoder().decode(Doctor.Report.self, from: data)
        let fit = try #require(decoded.hostMemory, "no hostMemory in \(String(decoding: data, as: UTF8.self))")
        #expect(fit.availableMiB > 0 && fit.nodeMemoryMiB == 2048 && fit.perNodeMiB > 0)
        let tcg = access("/dev/kvm", R_OK | W_OK) != 0 || AccelProbe(state: StateDir(root: dir)).cached()?.accelerator == .tcg
        #expect(fit.idleNodesFit == HostMemory.fit(memoryMiB: 2048, tcg: tcg, availableMiB: fit.availableMiB))
        #expect(fit.perNodeMiB == HostMemory.perNodeMiB(memoryMiB: 2048, tcg: tcg))
        let prose = try #require(decoded.checks.first { $0.name == "host memory" }?.detail)
        #expect(prose.hasPrefix("\(fit.availableMiB) MiB available: about \(fit.idleNodesFit) idle 2 GiB nodes fit (\(fit.perNodeMiB) MiB each"), "\(prose)")
    }
}
