import ArgumentParser
import Foundation
import VMCtlSupport
import Images
import Machines

struct DoctorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "doctor",
        abstract: "Check every prerequisite and say how to fix a missing one.")

    @Flag(help: "JSON output.")
    var json = false

    func run() async throws {
        let report = await Doctor(state: StateDir.resolve()).run()
        if json { try printJSON(report) } else {
            print(renderTable(["CHECK", "STATUS", "DETAIL"], report.checks.map { [$0.name, $0.ok ? "ok" : "MISSING", $0.detail] }))
            let missing = report.checks.filter { !$0.ok }
            print(missing.isEmpty ? "\nall prerequisites present" : "\n\(missing.count) missing: run scripts/install-prereqs.sh")
        }
        if report.checks.contains(where: { !$0.ok }) { throw ExitCode(1) }
    }
}
