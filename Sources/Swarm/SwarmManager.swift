import Foundation
import VMCtlSupport
import Images
import Clusters

/// `vmctl swarm`: seed 000's Docker Swarm on vmctl cluster nodes (real VMs, a real Docker
/// engine in each). The swarm itself is formed by the `swarm-node` image's bootstrap steps when
/// its cluster comes up; this layer deploys the cases' stacks (`stacks/*.yml`) through node1,
/// the manager, and checks them from inside their containers.
public struct SwarmManager: Sendable {
    public let clusters: ClusterManager
    /// The cluster the swarm runs on.
    public let name: String

    public init(clusters: ClusterManager, name: String) { self.clusters = clusters; self.name = name }

    public static let image = "swarm-node"

    /// A case of the seed: its stack file and name.
    public enum Case: String, Sendable, CaseIterable {
        case case00
        public var stackFile: String {
            switch self { case .case00: "phase2-linux-demo.yml" }
        }
        /// The stack's services, short names.
        public var services: [String] { ["web-a", "web-b"] }
        /// The stack's overlay network (`STACK_demo`).
        public var network: String { "\(rawValue)_demo" }
    }

    /// Where the checkout's `stacks/` is: beside `images/`.
    public static func stacksDirectory() -> String {
        let env = ProcessInfo.processInfo.environment["VMCTL_STACKS"]
        if let env, !env.isEmpty { return env }
        return (RecipeStore.locate().directory as NSString).deletingLastPathComponent + "/stacks"
    }

    /// Which node runs which service, chosen at `up` and kept until `down`.
    public struct Placement: Codable, Sendable, Equatable {
        public var services: [String: String]
    }

    func placementPath(_ c: Case) -> String { "\(ClusterPaths(state: clusters.state, name: name).directory)/swarm-\(c.rawValue).json" }

    public func placement(_ c: Case) -> Placement? { try? AtomicFile.readJSON(Placement.self, from: placementPath(c)) }

    /// The cluster, which must run the swarm image.
    public func cluster() throws -> ClusterState {
        let s = try clusters.existing(name)
        guard s.spec.image == Self.image else {
            throw VMCtlError(.wrongState, message: "cluster \(name) runs \(s.spec.image), not \(Self.image): `vmctl swarm init --name NAME` makes a swarm cluster")
        }
        return s
    }

    /// Runs `command` on `node` (default node1, the manager); its stdout, or an error with its stderr.
    @discardableResult
    func run(_ s: ClusterState, _ command: String, on node: String = "node1", input: Data? = nil,
             timeout: Duration = .seconds(300)) async throws -> String {
        let plan = try clusters.select(s, [node])[0]
        let r = await clusters.exec(s, nodes: [plan], command: command, input: input, timeout: timeout)[0]
        if let e = r.error { throw VMCtlError("\(node): \(e)") }
        guard r.status == 0 else {
            throw VMCtlError("\(node): `\(command.prefix(80))` exited \(r.status ?? -1): \(r.stderr.trimmingCharacters(in: .whitespacesAndNewlines).suffix(400))")
        }
        return r.stdout
    }

    /// The swarm's ready, active nodes (by hostname), as the manager sees them.
    public func swarmNodes(_ s: ClusterState) async throws -> [String] {
        let out = try await run(s, "sudo docker node ls --format '{{.Hostname}} {{.Status}} {{.Availability}}'")
        return out.split(separator: "\n").compactMap { line in
            let f = line.split(separator: " ")
            return f.count == 3 && f[1] == "Ready" && f[2] == "Active" ? String(f[0]) : nil
        }.sorted()
    }

    /// Two (or more) distinct nodes at random, one per service.
    public static func place(_ services: [String], on nodes: [String], using rng: inout some RandomNumberGenerator) throws -> Placement {
        guard nodes.count >= services.count else {
            throw VMCtlError(.wrongState, message: "the swarm has \(nodes.count) ready node(s); \(services.count) distinct ones are needed (`vmctl swarm init --nodes 3`)")
        }
        let chosen = nodes.shuffled(using: &rng).prefix(services.count)
        return Placement(services: Dictionary(uniqueKeysWithValues: zip(services, chosen)))
    }

    /// Deploys the case's stack with its services on distinct random nodes (kept until `down`;
    /// an `up` of a deployed case keeps its placement), and waits until every service runs.
    public func up(_ c: Case, timeout: Duration = .seconds(300), events: @Sendable (String) -> Void) async throws -> Placement {
        let s = try cluster()
        let file = "\(Self.stacksDirectory())/\(c.stackFile)"
        guard let stack = FileManager.default.contents(atPath: file) else {
            throw VMCtlError(.notFound, message: "no stack file \(file) (the checkout's stacks/; VMCTL_STACKS)")
        }
        var p: Placement
        if let kept = placement(c) {
            p = kept
        } else {
            var rng = SystemRandomNumberGenerator()
            p = try Self.place(c.services, on: try await swarmNodes(s), using: &rng)
        }
        try AtomicFile.writeJSON(p, to: placementPath(c))
        let env = c.services.enumerated().map { i, svc in "NODE_\(["A", "B", "C", "D"][i])=\(p.services[svc]!)" }
        let web = ProcessInfo.processInfo.environment["WEB_IMAGE"].map { ["WEB_IMAGE=\($0)"] } ?? []
        events("deploying \(c.rawValue): " + c.services.map { "\($0) on \(p.services[$0]!)" }.joined(separator: ", "))
        try await run(s, "sudo env \((env + web).map(Self.quote).joined(separator: " ")) docker stack deploy --resolve-image never "
                      + "--compose-file - \(c.rawValue) >/dev/null", input: stack)
        try await waitRunning(s, c, timeout: timeout)
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
        let ps = (try? await run(s, "sudo docker stack ps --no-trunc \(c.rawValue)")) ?? ""
        throw VMCtlError(.nodeTimeout, message: "\(c.rawValue): services not running after \(timeout.components.seconds) s:\n\(last)\n\(ps)")
    }

    /// One container of a case: `CONTAINER NODE OVERLAY_IP SERVICE`.
    public struct Container: Codable, Sendable, Equatable {
        public var container: String
        public var node: String
        public var overlayIP: String
        public var service: String
    }

    /// Every running container of the case, from every node.
    public func containers(_ c: Case) async throws -> [Container] {
        let s = try cluster()
        let script = "for c in $(sudo docker ps -q --filter label=com.docker.stack.namespace=\(c.rawValue)); do "
            + "sudo docker inspect -f '{{.Name}} {{index .Config.Labels \"com.docker.swarm.service.name\"}} "
            + "{{range $k, $v := .NetworkSettings.Networks}}{{if eq $k \"\(c.network)\"}}{{$v.IPAddress}}{{end}}{{end}}' \"$c\"; done"
        let results = await clusters.exec(s, nodes: try clusters.select(s, []), command: script, timeout: .seconds(120))
        var out: [Container] = []
        for r in results {
            if let e = r.error { throw VMCtlError("\(r.node): \(e)") }
            out += Self.parseContainers(r.stdout, node: r.node)
        }
        return out.sorted { ($0.service, $0.container) < ($1.service, $1.container) }
    }

    /// Lines of `/NAME SERVICE IP` (docker inspect's format above) as containers on `node`.
    static func parseContainers(_ text: String, node: String) -> [Container] {
        text.split(separator: "\n").compactMap { line in
            let f = line.split(separator: " ").map(String.init)
            guard f.count >= 2 else { return nil }
            return Container(container: String(f[0].drop { $0 == "/" }), node: node, overlayIP: f.count > 2 ? f[2] : "-", service: f[1])
        }
    }

    /// `exec-list`'s text: a header, then one line per container.
    public static func formatList(_ cs: [Container]) -> String {
        var widths = [9, 4, 10]
        for c in cs { widths = [max(widths[0], c.container.count), max(widths[1], c.node.count), max(widths[2], c.overlayIP.count)] }
        func line(_ a: String, _ b: String, _ c: String, _ d: String) -> String {
            [a.padding(toLength: widths[0], withPad: " ", startingAt: 0), b.padding(toLength: widths[1], withPad: " ", startingAt: 0),
             c.padding(toLength: widths[2], withPad: " ", startingAt: 0), d].joined(separator: "  ")
        }
        return ([line("CONTAINER", "NODE", "OVERLAY_IP", "SERVICE")] + cs.map { line($0.container, $0.node, $0.overlayIP, $0.service) })
            .joined(separator: "\n")
    }

    /// One check's outcome.
    public struct Check: Sendable {
        public var name: String
        public var passed: Bool
        public var detail: String
    }

    /// From inside each service's container: ping and HTTP to every other service by name over
    /// the overlay; and the services on distinct nodes, as placed.
    public func test(_ c: Case) async throws -> [Check] {
        let s = try cluster()
        let cs = try await containers(c)
        var checks: [Check] = []
        let placed = placement(c)
        let nodes = Set(cs.map(\.node))
        checks.append(Check(name: "\(c.rawValue): \(cs.count) container(s) on \(nodes.count) distinct node(s)",
                            passed: cs.count == c.services.count && nodes.count == c.services.count,
                            detail: cs.map { "\($0.service)@\($0.node)" }.joined(separator: ", ")))
        for x in cs {
            let short = x.service.replacingOccurrences(of: "\(c.rawValue)_", with: "")
            if let want = placed?.services[short] {
                checks.append(Check(name: "\(x.service) runs on its placed node \(want)", passed: x.node == want, detail: "on \(x.node)"))
            }
            for y in cs where y.service != x.service {
                let target = y.service.replacingOccurrences(of: "\(c.rawValue)_", with: "")
                let ping = try? await run(s, "sudo docker exec \(x.container) ping -c 1 -W 5 \(target) >/dev/null && echo ok", on: x.node, timeout: .seconds(60))
                checks.append(Check(name: "\(x.service) (\(x.node)) pings \(target) over \(c.network)", passed: ping?.hasPrefix("ok") == true,
                                    detail: ping == nil ? "no answer" : ""))
                // No -T: busybox-static 1.35's wget crashes with it (SIGSEGV); the SSH command's timeout bounds it.
                let http = try? await run(s, "sudo docker exec \(x.container) wget -q -O - http://\(target)/cgi-bin/index", on: x.node,
                                          timeout: .seconds(60))
                let ok = http?.contains("service=\(y.service) node=\(y.node)") == true
                checks.append(Check(name: "\(x.service) (\(x.node)) gets HTTP from \(target) (\(y.node))", passed: ok,
                                    detail: http?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "no answer"))
            }
        }
        return checks
    }

    /// The node running `container` (a name from `exec-list`, or its unique prefix).
    public func locate(_ c: Case, container: String) async throws -> Container {
        let cs = try await containers(c)
        if let exact = cs.first(where: { $0.container == container }) { return exact }
        let matches = cs.filter { $0.container.hasPrefix(container) }
        guard matches.count == 1 else {
            throw VMCtlError(.notFound, message: matches.isEmpty
                ? "no container \(container) in \(c.rawValue): `vmctl swarm \(c.rawValue) exec-list` shows them"
                : "\(container) matches \(matches.count) containers: \(matches.map(\.container).joined(separator: ", "))")
        }
        return matches[0]
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
                try? FileManager.default.removeItem(atPath: placementPath(c))
                return
            }
            try await Task.sleep(for: .seconds(2))
        }
        throw VMCtlError(.nodeTimeout, message: "\(c.rawValue): containers or its network still there after \(timeout.components.seconds) s")
    }

    static func quote(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'" }
}
