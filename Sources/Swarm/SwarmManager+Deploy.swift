import Foundation
import VMCtlSupport
import Clusters

/// Deploying a case (`up`), waiting for it, and removing it (`down`).
extension SwarmManager {
    /// Deploys the case's stack with its services on distinct random nodes (kept until `down`;
    /// an `up` of a deployed case keeps its placement), and waits until every service runs.
    /// A runner case first installs the runner key and image; case01 then waits for its guest.
    public func up(_ c: Case, timeout: Duration = .seconds(300), guestTimeout: Duration = .seconds(900), media: WindowsMedia? = nil,
                   events: @Sendable (String) -> Void) async throws -> Placement {
        let s = try cluster()
        let file = "\(Self.stacksDirectory())/\(c.stackFile)"
        guard let stack = FileManager.default.contents(atPath: file) else {
            throw VMCtlError(.notFound, message: "no stack file \(file) (the checkout's stacks/; VMCTL_STACKS)")
        }
        if c == .case02 && media == nil { throw VMCtlError.usage("case02 needs --iso and --virtio-iso") }
        var p: Placement
        if let kept = placement(c) {
            p = kept
        } else {
            var rng = SystemRandomNumberGenerator()
            let nodes = try await swarmNodes(s)
            let (placed, note) = try Self.place(c, on: nodes, vmCapable: c.runner == nil ? [] : try await vmCapableNodes(s), using: &rng)
            if let note { events(note) }
            p = placed
        }
        if let runner = c.runner, let node = p.services[runner] {
            // The guest must fit in the node beside QEMU and Docker: refused before anything is deployed.
            let want = try Self.runnerMemoryMiB(c, environment: ProcessInfo.processInfo.environment)
            let total = Int(try await run(s, "awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo", on: node)
                .trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
            if want + Self.runnerOverheadMiB > total {
                throw VMCtlError(.hostMemory, message: "\(runner)'s guest asks for \(want) MiB (RUNNER_MEMORY) but \(node) has \(total) MiB in all "
                                 + "(\(Self.runnerOverheadMiB) MiB go to QEMU and Docker): give RUNNER_MEMORY less, or make the swarm with "
                                 + "bigger nodes (`vmctl swarm init --name NAME --memory 8G`); nothing was deployed")
            }
            try await prepareRunner(s, on: node, events: events)
            if let media { try await copyMedia(s, media, to: node, events: events) }
        }
        let placementFile = placementPath(c)
        let nodeOf = { (svc: String) throws -> String in try p.node(for: svc, file: placementFile) }
        var env = try c.webServices.enumerated().map { i, svc in "NODE_\(["A", "B", "C", "D"][i])=\(try nodeOf(svc))" }
        if let runner = c.runner { env.append("NODE_RUNNER=\(try nodeOf(runner))") }
        let placed = try c.services.map { "\($0) on \(try nodeOf($0))" }
        try AtomicFile.writeJSON(p, to: placementFile)
        for k in ["WEB_IMAGE", "RUNNER_ACCEL", "RUNNER_MEMORY"] {
            if let v = ProcessInfo.processInfo.environment[k], !v.isEmpty { env.append("\(k)=\(v)") }
        }
        events("deploying \(c.rawValue): " + placed.joined(separator: ", "))
        try await run(s, "sudo env \(env.map(Shell.quote).joined(separator: " ")) docker stack deploy --resolve-image never "
                      + "--compose-file - \(c.rawValue) >/dev/null", input: stack)
        try await waitRunning(s, c, timeout: timeout)
        if c == .case01, let runner = c.runner {
            try await waitGuest(s, c, runner: runner, timeout: guestTimeout, events: events)
        }
        return p
    }

    /// Waits until every service of the case has its one task running.
    func waitRunning(_ s: ClusterState, _ c: Case, timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        var last = ""
        while ContinuousClock.now < deadline {
            last = try await run(s, "sudo docker service ls --filter label=com.docker.stack.namespace=\(c.rawValue) --format '{{.Name}} {{.Replicas}}'")
            let lines = last.split(separator: "\n")
            if lines.count == c.services.count && lines.allSatisfy({ $0.hasSuffix(" 1/1") }) { return }
            try await Task.sleep(for: .seconds(2))
        }
        let ps = (try? await run(s, "sudo docker stack ps --no-trunc \(c.rawValue) | head -n 12")) ?? ""
        var logs = ""
        for line in last.split(separator: "\n") where !line.hasSuffix(" 1/1") {
            let svc = String(line.split(separator: " ")[0])
            let tail = (try? await run(s, "sudo docker service logs --raw --tail 6 \(svc) 2>&1")) ?? ""
            if !tail.isEmpty { logs += "\(svc)'s last lines:\n\(tail)" }
        }
        throw VMCtlError(.nodeTimeout, message: "\(c.rawValue): services not running after \(timeout.components.seconds) s:\n\(last)\n\(ps)\(logs)")
    }

    /// Removes the case's stack and waits until its containers and network are gone; the swarm stays.
    public func down(_ c: Case, timeout: Duration = .seconds(180)) async throws {
        let s = try cluster()
        try await run(s, "sudo docker stack rm \(c.rawValue) >/dev/null")
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let left = try await containers(c)
            let nets = try await run(s, "sudo docker network ls -q --filter label=com.docker.stack.namespace=\(c.rawValue)")
            if left.isEmpty && nets.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
                if c.runner != nil {
                    // The runner's QEMU (`-name vmrunner-CASE`) goes with its container; say so if one outlived it.
                    let pattern = "[-]name vmrunner-\(c.rawValue)"
                    for r in await clusters.exec(s, nodes: try clusters.select(s, []), command: "pgrep -c -f -- '\(pattern)' || true", timeout: .seconds(60))
                    where r.stdout.trimmingCharacters(in: .whitespacesAndNewlines) != "0" {
                        throw VMCtlError("\(c.rawValue): a QEMU process is still running on \(r.node) after its container went")
                    }
                }
                try? FileManager.default.removeItem(atPath: placementPath(c))
                return
            }
            try await Task.sleep(for: .seconds(2))
        }
        throw VMCtlError(.nodeTimeout, message: "\(c.rawValue): containers or its network still there after \(timeout.components.seconds) s")
    }
}
