import ArgumentParser
import Foundation
import Clusters

struct ClusterTest: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "test",
        abstract: "Integration checks over SSH on every node (plus the image recipe's checks).")
    @OptionGroup var cluster: ClusterNameOption
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let results = try await ClusterManager.current.test(cluster.name)
        let failed = results.filter { !$0.passed }.count
        if global.json { try printJSON(results) } else {
            say(renderTable(["NODE", "CHECK", "RESULT", "DETAIL"], results.map {
                [$0.node, $0.check, $0.passed ? "pass" : "FAIL", $0.passed ? "" : $0.detail]
            }))
            say("\(results.count - failed) passed, \(failed) failed")
        }
        if failed > 0 { throw ExitCode(1) }
    }
}
