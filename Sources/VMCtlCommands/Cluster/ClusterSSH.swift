import ArgumentParser
import Foundation
import VMCtlCore

struct ClusterSSH: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ssh",
        abstract: "A shell on a node (OpenSSH, strict host keys), or one command (libssh2).")
    @OptionGroup var cluster: ClusterNameOption

    @Argument(help: "node1, or just 1.")
    var node: String

    @Argument(parsing: .postTerminator, help: "A command to run instead of a shell (after --).")
    var command: [String] = []

    func run() async throws {
        let m = ClusterManager.current
        let s = try m.existing(cluster.name)
        let plan = try m.select(s, [node])[0]
        if command.isEmpty {
            // Interactive: hand the terminal to OpenSSH with the cluster's strict config.
            let ssh = try VMCtlCore.locateTool("ssh")
            let config = ClusterPaths(state: m.state, name: s.name).sshConfig
            let args = [ssh, "-F", config, plan.name]
            var cargs = args.map { strdup($0) } + [nil]
            execv(ssh, &cargs)
            throw VMCtlError("cannot run \(ssh): \(String(cString: strerror(errno)))")
        }
        let r = await m.exec(s, nodes: [plan], command: command.joined(separator: " "))[0]
        FileHandle.standardOutput.write(Data(r.stdout.utf8))
        FileHandle.standardError.write(Data(r.stderr.utf8))
        if let e = r.error { throw VMCtlError(e) }
        if r.status != 0 { throw ExitCode(r.status ?? 1) }
    }
}

struct ClusterLogs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "logs", abstract: "A node's serial console log.")
    @OptionGroup var cluster: ClusterNameOption
    @Argument(help: "node1, or just 1.")
    var node: String
    @Flag(name: .shortAndLong, help: "Keep printing as the guest writes.")
    var follow = false

    func run() async throws {
        let m = ClusterManager.current
        let s = try m.existing(cluster.name)
        let plan = try m.select(s, [node])[0]
        guard let h = FileHandle(forReadingAtPath: plan.serialLog) else {
            throw VMCtlError.usage("\(plan.name) has no serial log yet (\(plan.serialLog))")
        }
        FileHandle.standardOutput.write(h.readDataToEndOfFile())
        guard follow else { return }
        while !Task.isCancelled {
            let d = h.availableData
            if d.isEmpty { try await Task.sleep(for: .milliseconds(250)) } else { FileHandle.standardOutput.write(d) }
        }
    }
}
