import Foundation
import VMCtlSupport
import Images
import Clusters
import SSH

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

    /// A case of the seed: its stack file, its services and its VM runner.
    public enum Case: String, Sendable, CaseIterable {
        case case00, case01, case02
        public var stackFile: String {
            switch self {
            case .case00: "phase2-linux-demo.yml"
            case .case01: "phase2-linux-usable.yml"
            case .case02: "phase2-windows-vm.yml"
            }
        }
        /// The normal services (short names), each on a node of its own.
        public var webServices: [String] { self == .case02 ? [] : ["web-a", "web-b"] }
        /// The QEMU VM-runner service, if the case has one.
        public var runner: String? {
            switch self {
            case .case00: nil
            case .case01: "vm-runner"
            case .case02: "win-runner"
            }
        }
        /// Every service of the stack (short names).
        public var services: [String] { webServices + (runner.map { [$0] } ?? []) }
        /// The stack's overlay network (`STACK_demo`).
        public var network: String { "\(rawValue)_demo" }
        /// The runner guest's MAC: `52:54:00:a0:CC:SS`, CC the case's number, SS the task's slot
        /// (Swarm's `{{.Task.Slot}}`, 1 for a single replica). The stack passes the prefix.
        public func runnerMAC(slot: Int = 1) -> String? {
            guard runner != nil, let n = Int(rawValue.dropFirst(4)) else { return nil }
            return String(format: "52:54:00:a0:%02x:%02x", n, slot)
        }
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

        /// The node `service` is placed on. A placement read back from `file` that places no
        /// node for it (edited, or written by another version) is `wrong-state`, naming the file.
        public func node(for service: String, file: String) throws -> String {
            guard let node = services[service] else {
                throw VMCtlError(.wrongState, message: "\(file) places no node for \(service): remove it (`vmctl swarm CASE down` "
                    + "removes it too) and deploy again")
            }
            return node
        }
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

    /// The case's placement: its normal services on distinct random nodes, its runner on a
    /// random node labelled vm-capable=true (any node when none is, with a note saying so).
    public static func place(_ c: Case, on nodes: [String], vmCapable: [String],
                             using rng: inout some RandomNumberGenerator) throws -> (Placement, note: String?) {
        var p = try place(c.webServices, on: nodes, using: &rng)
        var note: String?
        if let runner = c.runner {
            let capable = vmCapable.filter(nodes.contains)
            guard let node = (capable.isEmpty ? nodes : capable).randomElement(using: &rng) else {
                throw VMCtlError(.wrongState, message: "the swarm has no ready node for \(runner)")
            }
            if capable.isEmpty { note = "no node is labelled vm-capable=true: \(runner) goes to \(node) and its guest is emulated (TCG)" }
            p.services[runner] = node
        }
        return (p, note)
    }

    /// The ready nodes labelled vm-capable=true.
    func vmCapableNodes(_ s: ClusterState) async throws -> [String] {
        let out = try await run(s, "for n in $(sudo docker node ls -q); do sudo docker node inspect -f "
                                + "'{{.Description.Hostname}} {{index .Spec.Labels \"vm-capable\"}}' \"$n\"; done")
        return Self.parseLabels(out)
    }

    /// `HOSTNAME true|false|<no value>` lines: the hostnames labelled true.
    static func parseLabels(_ text: String) -> [String] {
        text.split(separator: "\n").compactMap { line in
            let f = line.split(separator: " ")
            return f.count == 2 && f[1] == "true" ? String(f[0]) : nil
        }.sorted()
    }

    /// Where the swarm's runner key lives on the host (made once per swarm) and on every node.
    public var runnerKey: KeyPair { KeyPair(privateKeyPath: "\(ClusterPaths(state: clusters.state, name: name).directory)/vmrunner_ed25519") }
    public static let nodeKeyDirectory = "/var/lib/vmrunner/keys"

    /// The runner's key on every node (`/var/lib/vmrunner/keys/id_ed25519`, 0600, and `.pub`),
    /// made for this swarm on first use; and the runner image on `node`, imported from the
    /// node's own files (rootfs.tar, assembled at image build).
    func prepareRunner(_ s: ClusterState, on node: String, events: @Sendable (String) -> Void) async throws {
        let key = runnerKey
        if !FileManager.default.fileExists(atPath: key.privateKeyPath) {
            try? FileManager.default.removeItem(atPath: key.publicKeyPath)
            _ = try await KeyPair.generate(at: key.privateKeyPath, comment: "vmrunner@\(name)")
        }
        let priv = Data(try key.privateKey().utf8), pub = Data((try key.publicKeyLine() + "\n").utf8)
        let dir = Self.nodeKeyDirectory
        let all = try clusters.select(s, [])
        for (file, mode, data) in [("id_ed25519", "0600", priv), ("id_ed25519.pub", "0644", pub)] {
            // Every node at once; each file written beside and renamed into place.
            let cmd = "sudo install -d -m 0755 \(dir) && sudo install -m \(mode) /dev/stdin \(dir)/\(file).new && sudo mv \(dir)/\(file).new \(dir)/\(file)"
            for r in await clusters.exec(s, nodes: all, command: cmd, input: data, timeout: .seconds(120)) where r.error != nil || r.status != 0 {
                throw VMCtlError("\(r.node): cannot install the runner key at \(dir)/\(file): \(r.error.map { "\($0)" } ?? r.stderr)")
            }
        }
        events("runner key installed on every node at \(dir)/id_ed25519 (mounted at /vm/keys)")
        let imported = try await run(s, "sudo /usr/local/lib/vmctl-runner/import", on: node, timeout: .seconds(600))
        if !imported.isEmpty { events("\(node): \(imported.trimmingCharacters(in: .whitespacesAndNewlines))") }
    }

    /// What a node keeps beside the runner's guest: QEMU itself, Docker, the node's own system.
    public static let runnerOverheadMiB = 512

    /// The runner's guest memory in MiB: RUNNER_MEMORY, else the case's default (192M for the
    /// Linux guest, 4G for Windows), as QEMU's `-m` reads it.
    public static func runnerMemoryMiB(_ c: Case, environment: [String: String]) throws -> Int {
        let text = environment["RUNNER_MEMORY"].flatMap { $0.isEmpty ? nil : $0 } ?? (c == .case02 ? "4G" : "192M")
        guard let bytes = ByteSize.parse(text), bytes >= 64 << 20, bytes <= 1 << 40 else {
            throw VMCtlError.usage("RUNNER_MEMORY '\(text)' is not a size from 64M up, like 192M or 4G")
        }
        return Int(bytes >> 20)
    }

    /// Windows media for case02: both files must be readable before anything happens.
    public struct WindowsMedia: Sendable {
        public var iso: String
        public var virtioISO: String

        /// From `--iso`/`--virtio-iso`, else WINDOWS_ISO/VIRTIO_ISO; one error naming every
        /// missing piece (exit 2).
        public static func resolve(iso: String?, virtioISO: String?, environment: [String: String]) throws -> WindowsMedia {
            let a = iso ?? environment["WINDOWS_ISO"].flatMap { $0.isEmpty ? nil : $0 }
            let b = virtioISO ?? environment["VIRTIO_ISO"].flatMap { $0.isEmpty ? nil : $0 }
            var missing: [String] = []
            func check(_ path: String?, _ what: String) {
                guard let path else { missing.append("\(what): not given"); return }
                var dir: ObjCBool = false
                if !FileManager.default.fileExists(atPath: path, isDirectory: &dir) || dir.boolValue || !FileManager.default.isReadableFile(atPath: path) {
                    missing.append("\(what): \(path) is not a readable file")
                }
            }
            check(a, "the Windows installation ISO (--iso PATH or WINDOWS_ISO)")
            check(b, "the virtio-win drivers ISO (--virtio-iso PATH or VIRTIO_ISO)")
            guard missing.isEmpty, let a, let b else {
                throw VMCtlError.usage("case02 needs media vmctl cannot ship; nothing was deployed:\n  " + missing.joined(separator: "\n  "))
            }
            return WindowsMedia(iso: a, virtioISO: b)
        }
    }

    /// The media on the runner's node, at /var/lib/vmrunner/media (copied unless the same size is there).
    func copyMedia(_ s: ClusterState, _ media: WindowsMedia, to node: String, events: @Sendable (String) -> Void) async throws {
        try await run(s, "sudo install -d -m 0755 -o \"$(id -u)\" /var/lib/vmrunner/media", on: node)
        for (path, target) in [(media.iso, "windows.iso"), (media.virtioISO, "virtio-win.iso")] {
            let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? -1
            let there = try await run(s, "stat -c %s /var/lib/vmrunner/media/\(target) 2>/dev/null || echo -1", on: node)
            if Int(there.trimmingCharacters(in: .whitespacesAndNewlines)) == size { continue }
            events("copying \(path) to \(node):/var/lib/vmrunner/media/\(target)")
            try await clusters.copy(name, from: path, to: "\(node):/var/lib/vmrunner/media/\(target)", mode: 0o644)
        }
    }

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

    /// The case's running runner container.
    func runnerContainer(_ c: Case, runner: String) async throws -> Container {
        guard let x = try await containers(c).first(where: { $0.service == "\(c.rawValue)_\(runner)" }) else {
            throw VMCtlError(.notFound, message: "\(c.rawValue): no running \(runner) container")
        }
        return x
    }

    /// A container's log (the runner's: its own lines and its guest's serial console), on its node.
    func log(_ s: ClusterState, of x: Container) async throws -> String {
        try await run(s, "sudo docker logs \(x.container) 2>&1 | tail -n 400", on: x.node)
    }

    /// Waits until the runner's guest says its SSH server runs (its serial console, in the
    /// container's log), saying how the guest is accelerated.
    func waitGuest(_ s: ClusterState, _ c: Case, runner: String, timeout: Duration, events: @Sendable (String) -> Void) async throws {
        let start = ContinuousClock.now
        var said = false
        var log = ""
        var x = try await runnerContainer(c, runner: runner)
        while ContinuousClock.now - start < timeout {
            if let text = try? await self.log(s, of: x) {
                log = text
                if !said, let accel = text.split(separator: "\n").first(where: { $0.hasPrefix("vmrunner: accel") }) {
                    events("\(runner) on \(x.node): \(accel.dropFirst("vmrunner: ".count))")
                    said = true
                }
                if text.contains("vmrunner-guest: ssh ready") {
                    events(String(format: "%@: its guest answers SSH (%.0f s after its task was running)", runner, (ContinuousClock.now - start).secondsDouble))
                    return
                }
            } else {
                // Found once; again only when its log cannot be read (Swarm replaced the container).
                x = try await runnerContainer(c, runner: runner)
            }
            try await Task.sleep(for: .seconds(5))
        }
        throw VMCtlError(.nodeTimeout, message: "\(c.rawValue): \(runner)'s guest did not start its SSH server within \(timeout.components.seconds) s; its console:\n"
                         + log.split(separator: "\n").suffix(15).joined(separator: "\n"))
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

    /// From inside each normal service's container: ping and HTTP to every other normal
    /// service by name over the overlay; the services on distinct nodes, as placed. Then the
    /// runner's checks (case01: SSH into its guest; case02: RDP or WinRM through the published port).
    public func test(_ c: Case) async throws -> [Check] {
        let s = try cluster()
        let all = try await containers(c)
        let webNames = Set(c.webServices.map { "\(c.rawValue)_\($0)" })
        let cs = all.filter { webNames.contains($0.service) }
        var checks: [Check] = []
        let placed = placement(c)
        let nodes = Set(cs.map(\.node))
        if !c.webServices.isEmpty {
            checks.append(Check(name: "\(c.rawValue): \(cs.count) service container(s) on \(nodes.count) distinct node(s)",
                                passed: cs.count == c.webServices.count && nodes.count == c.webServices.count,
                                detail: cs.map { "\($0.service)@\($0.node)" }.joined(separator: ", ")))
        }
        for x in all {
            let short = x.service.replacingOccurrences(of: "\(c.rawValue)_", with: "")
            if let want = placed?.services[short] {
                checks.append(Check(name: "\(x.service) runs on its placed node \(want)", passed: x.node == want, detail: "on \(x.node)"))
            }
        }
        for x in cs {
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
        if let runner = c.runner {
            guard let x = all.first(where: { $0.service == "\(c.rawValue)_\(runner)" }) else {
                checks.append(Check(name: "\(c.rawValue)_\(runner) runs", passed: false, detail: "no container"))
                return checks
            }
            checks.append(try await privilegeCheck(s, x))
            checks += c == .case01 ? try await guestChecks(s, c, x) : try await windowsChecks(s, x)
        }
        return checks
    }

    /// The runner container is not privileged, has every capability dropped, runs QEMU as nobody.
    func privilegeCheck(_ s: ClusterState, _ x: Container) async throws -> Check {
        let got = try await run(s, "sudo docker inspect -f '{{.HostConfig.Privileged}} {{.HostConfig.CapDrop}} {{.Config.User}}' \(x.container)", on: x.node)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        return Check(name: "\(x.service): not privileged, every capability dropped, QEMU as nobody", passed: got == "false [ALL] 65534:65534", detail: got)
    }

    /// From inside the runner container: SSH to its guest at 127.0.0.1:2222 with the node's
    /// /var/lib/vmrunner/keys/id_ed25519 (mounted at /vm/keys), the guest's host key pinned
    /// from the line the runner printed before it booted the guest; the guest is the runner's
    /// own (its hostname, kernel command line and deterministic MAC) running the node's kernel.
    func guestChecks(_ s: ClusterState, _ c: Case, _ x: Container) async throws -> [Check] {
        let log = try await self.log(s, of: x)
        guard let line = log.split(separator: "\n").first(where: { $0.hasPrefix("vmrunner: guest host key ssh-ed25519 ") }) else {
            return [Check(name: "\(x.service): the runner printed its guest's host key", passed: false, detail: String(log.suffix(400)))]
        }
        let hostKey = line.dropFirst("vmrunner: guest host key ".count)
        try await run(s, "sudo docker exec -i -u 0 \(x.container) sh -c 'cat > /tmp/vmctl_known_hosts'", on: x.node,
                      input: Data("[127.0.0.1]:2222 \(hostKey)\n".utf8))
        let ssh = "sudo docker exec -u 0 \(x.container) ssh -p 2222 -i /vm/keys/id_ed25519 -o BatchMode=yes -o StrictHostKeyChecking=yes "
            + "-o UserKnownHostsFile=/tmp/vmctl_known_hosts -o GlobalKnownHostsFile=/dev/null -o ConnectTimeout=60 root@127.0.0.1 "
            + "'hostname; uname -r; cat /proc/cmdline; cat /sys/class/net/eth0/address'"
        var answer: String?
        var failure = ""
        do { answer = try await run(s, ssh, on: x.node, timeout: .seconds(180)) } catch { failure = "\(error)" }
        let kernel = try await run(s, "uname -r", on: x.node).trimmingCharacters(in: .whitespacesAndNewlines)
        let f = (answer ?? "").split(separator: "\n").map(String.init)
        let name = "\(x.service) (\(x.node)): SSH from inside the runner to its guest at 127.0.0.1:2222 with /vm/keys/id_ed25519, host key pinned"
        guard f.count == 4 else { return [Check(name: name, passed: false, detail: answer ?? failure)] }
        let mac = c.runnerMAC() ?? ""
        return [Check(name: name, passed: true, detail: ""),
                Check(name: "\(x.service): the guest is the runner's (hostname vmrunner-guest, vmctl.runner=\(c.rawValue) on its kernel command line)",
                      passed: f[0] == "vmrunner-guest" && f[2].split(separator: " ").contains("vmctl.runner=\(c.rawValue)"), detail: "\(f[0]); \(f[2])"),
                Check(name: "\(x.service): the guest's kernel is the node's (\(kernel))", passed: f[1] == kernel, detail: f[1]),
                Check(name: "\(x.service): the guest's MAC is the deterministic \(mac)", passed: f[3] == mac, detail: f[3])]
    }

    /// case02: RDP (an X.224 connection confirm to a connection request) or WinRM (an HTTP
    /// answer on /wsman) through the service's published ports, from the manager.
    func windowsChecks(_ s: ClusterState, _ x: Container) async throws -> [Check] {
        let rdp = "exec 3<>/dev/tcp/127.0.0.1/3389 && printf '\\003\\000\\000\\023\\016\\340\\000\\000\\000\\000\\000\\001\\000\\010\\000\\003\\000\\000\\000' >&3 "
            + "&& timeout 20 head -c 2 <&3 | od -An -tx1 | tr -d ' \\n'"
        let winrm = "exec 3<>/dev/tcp/127.0.0.1/5985 && printf 'POST /wsman HTTP/1.1\\r\\nHost: localhost\\r\\nContent-Length: 0\\r\\n\\r\\n' >&3 "
            + "&& timeout 20 head -c 9 <&3"
        let a = (try? await run(s, "bash -c \(Shell.quote(rdp))", timeout: .seconds(60)))?.trimmingCharacters(in: .whitespacesAndNewlines)
        let b = (try? await run(s, "bash -c \(Shell.quote(winrm))", timeout: .seconds(60)))?.trimmingCharacters(in: .whitespacesAndNewlines)
        return [Check(name: "\(x.service): Windows answers RDP (3389) or WinRM (5985) through the published ports",
                      passed: a == "0300" || b == "HTTP/1.1", detail: "RDP: \(a ?? "no answer"); WinRM: \(b ?? "no answer")")]
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
