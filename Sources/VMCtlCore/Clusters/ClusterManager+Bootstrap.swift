import Foundation
import SSH

extension ClusterManager {
    /// The nodes as bootstrap steps and checks see them, with the facts learned so far.
    func bootstrapNodes(_ s: ClusterState) -> [BootstrapNode] {
        s.nodes.map { n in
            BootstrapNode(name: n.plan.name, index: n.plan.index, address: n.plan.clusterIP ?? "127.0.0.1",
                          facts: s.bootstrap?.nodeFacts[n.plan.name] ?? [:])
        }
    }

    /// Runs the image's bootstrap steps in order, each on its nodes in parallel, saving facts
    /// and progress after every step (so the state says how far it got).
    func runBootstrap(_ writer: StateWriter, image: Image, elapsed: @escaping @Sendable () -> Double,
                      events: @escaping ClusterEventSink) async throws {
        guard let steps = image.bootstrap, !steps.isEmpty else { return }
        var record = await writer.state.bootstrap ?? ClusterState.BootstrapRecord()
        for (i, step) in steps.enumerated() where i >= record.finishedSteps {
            let s = await writer.state
            let nodes = bootstrapNodes(s)
            let targets = try BootstrapStep.select(step.on, nodes: nodes, roles: image.roles ?? [:])
            let clusterFacts = record.clusterFacts
            events(.note("bootstrap \(i + 1)/\(steps.count): \(step.name) (\(targets.map(\.name).joined(separator: ", ")))", elapsed: elapsed()))
            let outputs = try await withThrowingTaskGroup(of: (String, String).self) { group in
                for node in targets {
                    group.addTask {
                        let scope = BootstrapStep.scope(for: node, nodes: nodes, clusterFacts: clusterFacts)
                        let plan = s.nodes.first { $0.plan.name == node.name }!.plan
                        let target = try self.sshTarget(s, node: plan)
                        let r: ExecResult
                        if let file = step.file {
                            let path = try Template(file).render(scope)
                            let content = try Template(step.content ?? "").render(scope)
                            let mode = step.mode ?? "0644"
                            r = try await SSHSession.run(target, "sudo install -D -m \(mode) /dev/stdin '\(path)'",
                                                         input: Data(content.utf8), timeout: .seconds(120))
                        } else {
                            r = try await SSHSession.run(target, try Template(step.run ?? "").render(scope), timeout: .seconds(600))
                        }
                        guard r.status == 0 else {
                            throw VMCtlError("bootstrap step '\(step.name)' failed on \(node.name) (exit \(r.status)): "
                                + (r.stderr + r.stdout).trimmingCharacters(in: .whitespacesAndNewlines).suffix(400))
                        }
                        let value = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
                        if let key = step.capture, value.isEmpty {
                            // A fact that came back empty would silently break every later step.
                            throw VMCtlError("bootstrap step '\(step.name)' printed nothing on \(node.name) to capture as '\(key)'"
                                + (r.stderr.isEmpty ? "" : ": \(r.stderr.trimmingCharacters(in: .whitespacesAndNewlines).suffix(300))"))
                        }
                        return (node.name, value)
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
}
