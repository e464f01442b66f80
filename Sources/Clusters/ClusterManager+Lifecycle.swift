import Foundation
import Images
import VMCtlSupport
import Machines

extension ClusterManager {
    /// `cluster start`: boots stopped nodes again and verifies them. A dead switch is started
    /// again, and the running nodes it had are restarted (destroy + start; disks stay).
    @discardableResult
    public func start(options: ClusterOptions, events: @escaping ClusterEventSink) async throws -> ClusterState {
        try await locked(options.name, purpose: "cluster start") { s in
            guard s.phase != .creating else {
                throw VMCtlError(.wrongState, message: "cluster \(s.name) was left half-made by an interrupted `up`: run `vmctl cluster clean --name \(s.name)`")
            }
            return try await startLocked(s, options: options, events: events)
        }
    }

    func startLocked(_ s: ClusterState, options: ClusterOptions, events: @escaping ClusterEventSink) async throws -> ClusterState {
        let clock = ContinuousClock.now
        let elapsed: @Sendable () -> Double = { (ContinuousClock.now - clock).secondsDouble }
        let image = try image(of: s)
        let writer = StateWriter(s, path: paths(s.name).stateFile)
        try image.shareWithQemu()
        let sw = switchProcess(s.name)
        let switchWasDead = sw.runningPid() == nil
        try await sw.start()
        return try await connected(s) { connection in
            let active = try await activeDomains(connection, s)
            // QEMU's stream netdev does not reconnect: running nodes on a restarted switch boot again.
            let cut = Set(cutOff(s, active: active, switchWasDead: switchWasDead).map(\.name))
            let stopped = s.nodes.map(\.plan).filter { !active.contains($0.domainName) || cut.contains($0.name) }
            // Nodes whose guest an unfinished `compact` left in its save: `ensure` restores them,
            // once every such save is known to still match its disk (before any node is touched:
            // a running node to be restarted has run from its disk since any save it has).
            let kept = Set(stopped.filter { FileManager.default.fileExists(atPath: $0.files.compactSave) }.map(\.name))
            for plan in stopped where kept.contains(plan.name) {
                try Machine.checkCompactSave(plan.files, hostname: plan.name, running: active.contains(plan.domainName))
            }
            if !cut.isEmpty {
                let names = cut.sorted().joined(separator: ", ")
                events(.note(switchWasDead
                    ? "cluster \(s.name): the switch was not running; started it again, restarting \(names) (their cluster NIC cannot reconnect)"
                    : "cluster \(s.name): \(names) booted before the running switch started; restarting them (their cluster NIC cannot reconnect)",
                    elapsed: elapsed()))
                try await powerOffForRestart(s.nodes.map(\.plan).filter { cut.contains($0.name) }, state: s, connection: connection,
                                             image: image, writer: writer)
            }
            if stopped.isEmpty {
                events(.note("cluster \(s.name): all \(s.nodes.count) nodes already running", elapsed: elapsed()))
                try await writer.update { $0.phase = .running }
                return await writer.state
            }
            do {
                try await bootAll(stopped, state: s, connection: connection, image: image, writer: writer,
                                  deadline: .now + options.timeout, elapsed: elapsed, events: events)
            } catch {
                // Undo what this command started; the cluster stays as it was (stopped). A
                // restored guest goes back into its save (powered off, what ran in it would be
                // lost); if that save fails, it is left running.
                _ = try? await fleet(s, stopped, connection: connection, image: image).run { name, m in
                    if kept.contains(name) { try await m.1.keepInSave() } else { try await m.1.powerOff() }
                }
                for plan in stopped { try? await writer.setPhase(plan.name, .stopped) }
                try? await writer.update { $0.phase = .stopped }
                throw error
            }
            try await writer.update { $0.phase = .running }
            let final = await writer.state
            try writeOpenSSHFiles(final)
            return final
        }
    }

    /// Names of the cluster's domains that are running now (`Machine.status`: never a dead QEMU).
    func activeDomains(_ connection: HostConnection, _ s: ClusterState) async throws -> Set<String> {
        var out = Set<String>()
        for n in s.nodes where try await machine(s, n.plan, connection: connection, image: nil).status() == .running {
            out.insert(n.plan.domainName)
        }
        return out
    }

    /// `cluster down`: shuts every node down cleanly and keeps disks, then stops the switch.
    ///
    /// A clean guest shutdown matters: pulling the plug loses files the guest wrote but had
    /// not flushed yet (cloud-init's network config, the host key), and the next boot fails.
    /// Lean images have no logind to act on an ACPI power button, so the shutdown is asked
    /// for over SSH (`systemctl poweroff` talks to PID 1 directly); ACPI and, last, a hard
    /// power-off follow only if the guest is still running after `grace`.
    public func down(options: ClusterOptions, grace: Duration = .seconds(60), events: @escaping ClusterEventSink) async throws {
        try await locked(options.name, purpose: "cluster down") { s in
            try await connected(s) { connection in try await downLocked(s, connection: connection, grace: grace, events: events) }
        }
    }

    private func downLocked(_ s: ClusterState, connection: HostConnection, grace: Duration,
                            events: @escaping ClusterEventSink) async throws {
        let clock = ContinuousClock.now
        let writer = StateWriter(s, path: paths(s.name).stateFile)
        let active = try await activeDomains(connection, s)
        let running = s.nodes.map(\.plan).filter { active.contains($0.domainName) }
        // Each node stops on its own; one that cannot be stopped does not keep the others running.
        _ = try? await fleet(s, running, connection: connection, image: nil).run { name, member in
            try? await member.1.stop(grace: grace)
            try? await writer.setPhase(name, .stopped)
            events(.node(name: name, phase: .stopped, elapsed: (ContinuousClock.now - clock).secondsDouble, detail: nil))
        }
        for node in s.nodes where !active.contains(node.plan.domainName) { try? await writer.setPhase(node.plan.name, .stopped) }
        switchProcess(s.name).stop()
        try await writer.update { $0.phase = .stopped }
    }

    /// `cluster clean`: removes the cluster whatever state it is in (even after `up` was
    /// killed with SIGKILL): domains, disks, switch, keys, state. Only what the cluster made:
    /// domains carrying its labels, files under its own directory.
    public func clean(name: String, connect: String? = nil) async throws {
        try Self.validateName(name)
        let p = paths(name)
        let saved = registry.load(name)
        guard saved != nil || FileManager.default.fileExists(atPath: p.directory) else {
            throw VMCtlError(.notFound, message: "no cluster '\(name)' to clean")
        }
        let lock = try ClusterLock.acquire(state: state, name: name, purpose: "cluster clean")
        defer { lock.release() }
        let target: HypervisorTarget
        if let saved { target = self.target(of: saved) } else {
            target = try HypervisorTarget.resolve(connect: connect, defaultRoot: p.libvirtRoot)
        }
        await removeEverything(name: name, target: target, domains: saved?.nodes.map(\.plan.domainName))
    }

    /// Destroys and undefines the cluster's domains (found by label), stops its switch and
    /// deletes its directory. Never throws: it does what it can and falls back to the pid
    /// files if libvirt will not open. `domains` are the names the saved state knows, if any.
    func removeEverything(name: String, target: HypervisorTarget, domains: [String]? = nil) async {
        let own = paths(name).directory
        var removedViaLibvirt = false
        if target.embeddedRoot == nil || FileManager.default.fileExists(atPath: target.embeddedRoot! + "/etc") {
            if let connection = try? await MachineHost(target).connect() {
                let state = self.state
                removedViaLibvirt = (try? await connection.removeMachines {
                    Self.belongs($0, cluster: name, state: state)
                }) != nil
                await connection.close()
            }
        }
        // Without libvirt, only QEMU processes of a root inside the cluster's own directory
        // are ours to kill.
        if !removedViaLibvirt, let root = target.embeddedRoot, root.hasPrefix(own + "/") {
            Self.killQemu(under: root, domains: domains)
        }
        switchProcess(name).stop()
        if let root = target.embeddedRoot { HypervisorTarget.unlinkShortRoot(root) }
        try? FileManager.default.removeItem(atPath: own)
    }

    /// Last resort when libvirt cannot open the root: kill the QEMU processes whose pid files
    /// libvirt left under it (only those of `domains` when known), checking each one's
    /// command line names the root first.
    static func killQemu(under root: String, domains: [String]?) {
        let fm = FileManager.default
        guard let e = fm.enumerator(atPath: root) else { return }
        for case let rel as String in e where rel.hasSuffix(".pid") {
            let domain = String((rel as NSString).lastPathComponent.dropLast(4))
            if let domains, !domains.contains(domain) { continue }
            guard let text = try? String(contentsOfFile: "\(root)/\(rel)", encoding: .utf8),
                  let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)),
                  let cmd = try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8),
                  cmd.contains("qemu-system"),
                  cmd.contains(root) || cmd.contains(HypervisorTarget.shortRoot(root)) else { continue }
            kill(pid, SIGKILL)
        }
    }
}
