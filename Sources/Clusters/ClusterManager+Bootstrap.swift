import Foundation
import Machines
import SSH
import VMCtlSupport
import Images

extension ClusterManager {
    /// The nodes as bootstrap steps and checks see them, with the facts learned so far.
    func bootstrapNodes(_ s: ClusterState) -> [BootstrapNode] {
        s.nodes.map { n in
            BootstrapNode(name: n.plan.name, index: n.plan.index, address: n.plan.clusterIP ?? "127.0.0.1",
                          facts: s.bootstrap?.nodeFacts[n.plan.name] ?? [:])
        }
    }

    /// Runs the image's bootstrap steps in order, each on its nodes in parallel, saving facts
    /// and progress after every step (so the state says how far it got). A captured value
    /// must match its step's `shape`; secrets never reach an event or an error message.
    /// No step runs past `deadline` (`up`'s `--timeout`), and what a step prints is captured
    /// up to `OutputCapture.defaultLimit` (16 MiB) per stream.
    func runBootstrap(_ writer: StateWriter, image: Image, deadline: ContinuousClock.Instant,
                      elapsed: @escaping @Sendable () -> Double, events: @escaping ClusterEventSink) async throws {
        guard let steps = image.bootstrap, !steps.isEmpty else { return }
        var record = await writer.state.bootstrap ?? ClusterState.BootstrapRecord()
        record.secretFacts = Set(record.secretFacts).union(steps.filter(\.isSecret).compactMap(\.capture)).sorted()
        for (i, step) in steps.enumerated() where i >= record.finishedSteps {
            let s = await writer.state
            let nodes = bootstrapNodes(s)
            let targets = try BootstrapStep.select(step.on, nodes: nodes, roles: image.roles ?? [:])
            let clusterFacts = record.clusterFacts
            let secrets = record.secretValues
            events(.note("bootstrap \(i + 1)/\(steps.count): \(step.name) (\(targets.map(\.name).joined(separator: ", ")))", elapsed: elapsed()))
            let outputs = try await withThrowingTaskGroup(of: (String, String).self) { group in
                for node in targets {
                    group.addTask {
                        var command: String?
                        var cutShort = false
                        do {
                            let scope = BootstrapStep.scope(for: node, nodes: nodes, clusterFacts: clusterFacts)
                            let plan = s.nodes.first { $0.plan.name == node.name }!.plan
                            let target = try self.sshTarget(s, node: plan)
                            let (cmd, input, timeout) = try Self.bootstrapCommand(step, scope: scope)
                            command = cmd
                            let left = deadline - ContinuousClock.now
                            guard left > .zero else {
                                throw VMCtlError("bootstrap step '\(step.name)' on \(node.name): not started, `cluster up`'s "
                                    + "--timeout ran out first; give `up` more time (e.g. --timeout 20m)")
                            }
                            cutShort = left < timeout
                            let r = try await SSHSession.run(target, cmd, input: input, timeout: min(timeout, left))
                            guard r.status == 0 else {
                                throw step.failure(node: node.name, status: r.status, stdout: r.stdout, stderr: r.stderr)
                            }
                            let value = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
                            try step.checkCapture(value, node: node.name, stderr: r.stderr)
                            return (node.name, value)
                        } catch let e as VMCtlError {
                            throw VMCtlError(e.code, message: BootstrapStep.scrub(e.message, secrets: secrets, command: command))
                        } catch let e as CancellationError {
                            throw e  // Ctrl-C: the rollback runs and the command exits 130
                        } catch {
                            let upRanOut = cutShort && (error as? SSHError)?.kind == .timeout
                            throw VMCtlError(VMCtlError.Code(of: error), message: "bootstrap step '\(step.name)' on \(node.name): "
                                + BootstrapStep.scrub("\(error)", secrets: secrets, command: command)
                                + (upRanOut ? " (`cluster up`'s --timeout ran out: give it more time, e.g. --timeout 20m)" : ""))
                        }
                    }
                }
                var out: [(String, String)] = []
                for try await o in group { out.append(o) }
                return out
            }
            if let key = step.capture {
                for (node, value) in outputs { record.nodeFacts[node, default: [:]][key] = value }
                if outputs.count == 1 { record.clusterFacts[key] = outputs[0].1 }
            }
            record.finishedSteps = i + 1
            let saved = record
            try await writer.update { $0.bootstrap = saved }
        }
        record.done = true
        let saved = record
        try await writer.update { $0.bootstrap = saved }
    }

    /// What a step runs on one node: the command, its standard input and its time limit.
    /// A file is written by `install` from stdin, its path one quoted shell word.
    static func bootstrapCommand(_ step: BootstrapStep, scope: [String: Template.Value]) throws
        -> (command: String, input: Data?, timeout: Duration) {
        if let file = step.file {
            let path = try Template(file).render(scope)
            let content = try Template(step.content ?? "").render(scope)
            return ("sudo install -D -m \(step.mode ?? "0644") /dev/stdin \(Shell.quote(path))",
                    Data(content.utf8), .seconds(120))
        }
        let input = try step.stdin.map { Data(try Template($0).render(scope).utf8) }
        return (try Template(step.run ?? "").render(scope), input, .seconds(600))
    }
}
