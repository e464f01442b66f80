import ArgumentParser
import Foundation
import Testing
@testable import VMCtlCommands
@testable import VMCtlSupport
@testable import Clusters

@Suite("Command line: --version")
struct CommandLineTests {
    @Test("vmctl --version prints the version (MAJOR.MINOR.PATCH) and exits 0")
    func version() {
        #expect(VMCtlVersion.current.range(of: #"^[0-9]+\.[0-9]+\.[0-9]+$"#, options: .regularExpression) != nil)
        do {
            _ = try VMCtlRoot.parseAsRoot(["--version"])
            Issue.record("--version parsed as a command")
        } catch {
            #expect(VMCtlRoot.exitCode(for: error) == .success)
            #expect(VMCtlRoot.fullMessage(for: error) == VMCtlVersion.current)
        }
    }
}
