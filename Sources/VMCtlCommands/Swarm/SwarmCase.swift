import ArgumentParser
import Foundation
import VMCtlSupport
import Clusters
import Swarm

struct SwarmCase: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "case",
        abstract: "Run a case's verb: vmctl swarm case00|case01|case02 up|test|exec-list|exec NAME [-- CMD]|down.")

    /// What `swarm CASE` does.
    enum Verb: String, CaseIterable, ExpressibleByArgument {
        case up, test, execList = "exec-list", exec, down
    }

    @Argument(help: "The case: case00 (two services), case01 (the same plus a Linux VM runner), case02 (a Windows VM runner).")
    var caseName: SwarmManager.Case

    @Argument(help: "up, test, exec-list, exec or down.")
    var verb: Verb

    @Argument(help: "With exec: the container (a name from exec-list, or its unique prefix).")
    var container: String?

    @Argument(parsing: .postTerminator, help: "With exec: a command to run instead of a shell (after --).")
    var command: [String] = []

    @OptionGroup var swarm: SwarmNameOption
    @OptionGroup var global: GlobalOptions

    @Option(help: "up: time until every service runs (seconds, or 90s, 10m).")
    var timeout = TimeLimit(seconds: 300)

    @Option(help: "case01 up: time for the runner's guest to answer SSH once its container runs (emulated inside an emulated node it takes minutes).")
    var guestTimeout = TimeLimit(seconds: 900)

    @Option(help: "case02 up: the Windows installation ISO (or WINDOWS_ISO).")
    var iso: String?

    @Option(help: "case02 up: the virtio-win drivers ISO (or VIRTIO_ISO).")
    var virtioIso: String?

    func validate() throws {
        if verb == .exec && container == nil {
            throw ValidationError("exec needs a container: `vmctl swarm \(caseName.rawValue) exec-list` shows them")
        }
        if verb != .exec && (container != nil || !command.isEmpty) { throw ValidationError("only exec takes a container and a command") }
        if (iso != nil || virtioIso != nil) && !(caseName == .case02 && verb == .up) { throw ValidationError("--iso and --virtio-iso go with `case02 up`") }
    }

    func run() async throws {
        let c = caseName
        let m = swarm.manager
        switch verb {
        case .up:
            // case02's media are checked before anything is made or deployed.
            let media = c == .case02 ? try SwarmManager.WindowsMedia.resolve(iso: iso, virtioISO: virtioIso,
                                                                              environment: ProcessInfo.processInfo.environment) : nil
            if c.runner != nil { _ = try SwarmManager.runnerMemoryMiB(c, environment: ProcessInfo.processInfo.environment) }
            if ClusterRegistry(state: m.clusters.state).load(swarm.name) == nil {
                say("no swarm called \(swarm.name) yet: `vmctl swarm init` first")
                try await SwarmInit.ensure(name: swarm.name, nodes: 3, shape: try MachineShapeOptions.parse([]), timeout: TimeLimit(seconds: 900),
                                           global: global)
            }
            let p = try await m.up(c, timeout: timeout.duration, guestTimeout: guestTimeout.duration, media: media) { say($0) }
            say("\(c.rawValue) up: " + c.services.map { "\($0) on \(p.services[$0] ?? "?")" }.joined(separator: ", "))
        case .test:
            let checks = try await m.test(c)
            let failed = checks.filter { !$0.passed }.count
            for k in checks { say("\(k.passed ? "pass" : "FAIL")  \(k.name)\(k.passed || k.detail.isEmpty ? "" : ": \(k.detail)")") }
            say("\(checks.count - failed) passed, \(failed) failed")
            if failed > 0 { throw ExitCode(1) }
        case .execList:
            let cs = try await m.containers(c)
            if global.json { try printJSON(cs) } else { say(SwarmManager.formatList(cs)) }
        case .exec:
            let x = try await m.locate(c, container: container!)
            // OpenSSH with a terminal (as `cluster ssh` does), then docker exec in the container.
            let inner = command.isEmpty ? ["sudo", "docker", "exec", "-it", x.container, "sh"]
                : ["sudo", "docker", "exec", "-i", x.container] + command
            try OpenSSH.exec(config: ClusterPaths(state: m.clusters.state, name: swarm.name).sshConfig, host: x.node,
                             terminal: command.isEmpty, command: inner.map(Shell.quote))
        case .down:
            try await m.down(c)
            say("\(c.rawValue) down: stack removed, the swarm stays")
        }
    }
}

extension SwarmManager.Case: ExpressibleByArgument {}
