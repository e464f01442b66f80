import ArgumentParser
import Foundation
import VMCtlSupport
import Clusters

struct ClusterLogs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "logs", abstract: "A node's serial console log.")
    @OptionGroup var cluster: ClusterNameOption
    @Argument(help: "node1, or just 1.")
    var node: String
    @Flag(name: .shortAndLong, help: "Keep printing as the guest writes.")
    var follow = false
    @Flag(name: .long, help: "Print the log as is (on a terminal, control characters show as ^[ etc. by default).")
    var raw = false

    func run() async throws {
        let m = ClusterManager.current
        let s = try m.existing(cluster.name)
        let plan = try m.select(s, [node])[0]
        guard let h = FileHandle(forReadingAtPath: plan.serialLog) else {
            throw VMCtlError.usage("\(plan.name) has no serial log yet (\(plan.serialLog))")
        }
        let out = FileHandle.standardOutput
        // One stream, so a UTF-8 sequence split between reads is judged whole.
        var text: TerminalText? = TerminalText.applies(to: out.fileDescriptor, raw: raw) ? TerminalText() : nil
        func emit(_ d: Data, final: Bool) {
            if text != nil { out.write(text!.feed(d, final: final)) } else { out.write(d) }
        }
        emit(h.readDataToEndOfFile(), final: !follow)
        guard follow else { return }
        while !Task.isCancelled {
            let d = h.availableData
            if d.isEmpty { try await Task.sleep(for: .milliseconds(250)) } else { emit(d, final: false) }
        }
    }
}
