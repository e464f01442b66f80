import Blocking
import Foundation
import SSH
import VMCtlSupport
import Images
import Machines

extension ClusterManager {
    /// `cluster up`: validates everything, then creates, boots and verifies every node in
    /// parallel. On failure or cancellation it removes what it made (unless keepOnFailure).
    /// On an existing cluster with the same spec it starts what is stopped.
    @discardableResult
    public func up(_ spec: ClusterSpec, options: ClusterOptions, events: @escaping ClusterEventSink) async throws -> ClusterState {
        let name = options.name
        try Self.validateName(name)
        try spec.validate(freeMemoryMiB: HostMemory.availableMiB(), hugePages: HostMemory.hugePages(sharedLibvirt: options.connect != nil))
        if let warning = spec.cpuWarning(hostCores: ProcessInfo.processInfo.activeProcessorCount) {
            events(.note(warning, elapsed: 0))
        }
        try state.ensureWritable()
        let image = try ImageStore(state: state).image(named: spec.image)
        guard !image.isCloudImage else {
            // Nodes boot by the image's kernel (and `--accel auto` probes with it); a cloud image has none.
            throw VMCtlError.usage("image \(spec.image) is a cloud image, booted through firmware: clusters boot vmctl's own images "
                + "by their kernel and cannot use it yet; use an image such as debian-12")
        }
        let p = paths(name)
        let target = try HypervisorTarget.resolve(connect: options.connect, defaultRoot: p.libvirtRoot)
        _ = try Command.require("qemu-img")
        _ = try Command.require("xorrisofs")
        _ = try Command.require("ssh-keygen")
        if target.embeddedRoot == nil {
            // An explicit libvirt must answer before anything is created for it.
            try await MachineHost(target).connect().close()
        }
        let lock = try ClusterLock.acquire(state: state, name: name, purpose: "cluster up")
        defer { lock.release() }

        if let existing = registry.load(name) {
            guard existing.phase != .creating else {
                throw VMCtlError(.wrongState, message: "cluster \(name) was left half-made by an interrupted `up`: run `vmctl cluster clean --name \(name)`")
            }
            guard existing.spec == spec else {
                throw VMCtlError(.nameInUse, message: "cluster \(name) exists with a different spec (\(describe(existing.spec))); "
                    + "run `vmctl cluster clean --name \(name)` first, or use another --name")
            }
            return try await startLocked(existing, options: options, events: events)
        }
        if FileManager.default.fileExists(atPath: p.directory) {
            throw VMCtlError(.wrongState, message: "cluster \(name) was left half-made: run `vmctl cluster clean --name \(name)`")
        }

        // Ports and subnet are chosen and recorded under one lock shared by every `up`.
        let allocationLock = try AllocationLock.acquire(state: state)
        defer { allocationLock.release() }
        let others = registry.names().filter { $0 != name }.compactMap { registry.load($0) }
        let alloc = try Allocation.choose(count: spec.nodes, taken: others)
        let plans = alloc.plans(cluster: name, count: spec.nodes, paths: p)
        // The state file is written before anything else exists, so `clean` can always find it.
        let initial = ClusterState(
            name: name, spec: spec, phase: .creating, imageHash: image.hash, user: image.user, connectURI: target.uri,
            embeddedRoot: target.embeddedRoot, accelerator: .tcg, subnet: alloc.subnet, created: Date(),
            nodes: plans.map { .init(plan: $0, phase: .planned) })
        let writer = StateWriter(initial, path: p.stateFile)
        do {
            // QEMU reaches node files below the cluster's directory by name; keys and state are root's.
            try FileAccess.directory(state.clusters, qemu: true)
            try FileAccess.directory(p.directory, qemu: true)
            try FileAccess.directory(p.sshDir)
            try await writer.save()
            allocationLock.release()
            _ = try await KeyPair.generate(at: p.privateKey, comment: "vmctl cluster \(name)")
            return try await bringUp(writer, image: image, target: target, options: options, events: events)
        } catch {
            // The evidence outlives the rollback: logs of every node, in a report named in the error.
            var error = error
            if !(error is CancellationError), let report = FailureReport.write(state: state, cluster: await writer.state, error: error) {
                error = VMCtlError(.init(of: error), message: "\(error)\n  serial and QEMU logs kept in \(report)", cause: error)
            }
            if options.keepOnFailure {
                try? await writer.update { $0.phase = .failed }
                events(.note("kept the failed cluster for inspection (--keep-on-failure); `vmctl cluster clean --name \(name)` removes it", elapsed: 0))
            } else {
                events(.note("removing what this `up` created", elapsed: 0))
                await removeEverything(name: name, target: target, domains: plans.map(\.domainName))
            }
            throw error
        }
    }

    private func describe(_ s: ClusterSpec) -> String {
        "\(s.nodes) × \(s.image), \(s.cpus) vCPUs, \(s.memoryMiB) MiB, \(s.diskGiB) GiB"
    }

    private func bringUp(_ writer: StateWriter, image: Image, target: HypervisorTarget, options: ClusterOptions,
                         events: @escaping ClusterEventSink) async throws -> ClusterState {
        let clock = ContinuousClock.now
        let elapsed: @Sendable () -> Double = { (ContinuousClock.now - clock).secondsDouble }
        let name = options.name
        let verdict = try await AccelProbe(state: state).resolve(options.accel, kernel: image.kernel)
        if verdict.accelerator == .tcg && options.accel == .auto {
            events(.note("accel: TCG (\(verdict.reason))", elapsed: elapsed()))
        }
        try await writer.update { $0.accelerator = verdict.accelerator }
        try image.shareWithQemu()
        try await switchProcess(name).start()
        let connection = try await MachineHost(target).connect(sharedCapabilities: capabilitiesCache)
        return try await connection.closing { connection in
            try await bootAndBootstrap(writer, image: image, target: target, connection: connection, options: options,
                                       elapsed: elapsed, events: events)
        }
    }

    private func bootAndBootstrap(_ writer: StateWriter, image: Image, target: HypervisorTarget, connection: HostConnection,
                                  options: ClusterOptions, elapsed: @escaping @Sendable () -> Double,
                                  events: @escaping ClusterEventSink) async throws -> ClusterState {
        let s = await writer.state
        let deadline = ContinuousClock.now + options.timeout
        if options.snapshotOnly {
            if let why = Self.warmIneligible(s) { throw VMCtlError.usage("no warm snapshot can be made: \(why)") }
            _ = try await findOrMakeSnapshot(s, image: image, connection: connection, deadline: deadline, elapsed: elapsed, events: events)
            return s
        }
        if options.warm, let snapshot = await warmSnapshot(s, image: image, connection: connection, deadline: deadline,
                                                           elapsed: elapsed, events: events) {
            try await restoreAll(s.nodes.map(\.plan), from: snapshot, state: s, connection: connection, image: image,
                                 writer: writer, deadline: deadline, elapsed: elapsed, events: events)
        } else {
            try await bootAll(s.nodes.map(\.plan), state: s, connection: connection, image: image, writer: writer,
                              deadline: deadline, elapsed: elapsed, events: events)
        }
        try writeOpenSSHFiles(await writer.state)
        try await runBootstrap(writer, image: image, deadline: deadline, elapsed: elapsed, events: events)
        try await writer.update { $0.phase = .running }
        target.shareCapabilities(into: capabilitiesCache)
        let final = await writer.state
        try writeOpenSSHFiles(final)
        return final
    }

    /// Makes `plans` exist, run and answer SSH, all at once (`Machine.ensure`: defines the
    /// missing, starts the stopped), recording each node's progress; names every node that failed.
    func bootAll(_ plans: [NodePlan], state s: ClusterState, connection: HostConnection, image: Image, writer: StateWriter,
                 deadline: ContinuousClock.Instant, elapsed: @escaping @Sendable () -> Double,
                 events: @escaping ClusterEventSink) async throws {
        let width = Self.bootWidth(s.accelerator, nodes: plans.count)
        if width < plans.count {
            events(.note("booting \(width) node(s) at a time (TCG: one per host core; more at once only slows every boot), "
                         + "the others start as each is up", elapsed: elapsed()))
        }
        try await runNodes(fleet(s, plans, connection: connection, image: image).limited(to: width), writer: writer,
                           elapsed: elapsed, events: events) { name, member in
            let (plan, machine) = member
            try await machine.ensure(deadline: deadline, stall: .standard(nodes: width), onReset: { e in
                let report = FailureReport.writeReset(state: state, cluster: s.name, node: plan,
                                                      embeddedRoot: s.embeddedRoot, evidence: e)
                events(.note("\(e.stall); QEMU \(e.qemuStatus.replacingOccurrences(of: "VM status: ", with: "")), \(e.cpuSummary); "
                             + "resetting it (\(e.attempt) of 2)" + (report.map { "; evidence in \($0)" } ?? ""), elapsed: elapsed()))
            }, onCloudInit: {
                events(.node(name: name, phase: .cloudInit, elapsed: elapsed(), detail: nil))
            }, onNote: { events(.note($0, elapsed: elapsed())) }, progress: { p in
                var plan = plan
                plan.hostKey = p.hostKey ?? plan.hostKey
                try await writer.setNode(plan, phase: p.phase, booted: p.phase == .booting)
                events(.node(name: name, phase: p.phase, elapsed: elapsed(),
                             detail: p.phase == .booting ? "ssh 127.0.0.1:\(plan.sshPort)" : nil))
            })
        }
    }

    /// How many nodes boot cold at once. Under TCG a boot is CPU-bound from firmware to
    /// cloud-init: ten at once on two cores took 634 s here and one hung (its starved vCPUs
    /// saw RCU stalls), so at most one per host core; under KVM all at once.
    static func bootWidth(_ accel: Accelerator, nodes: Int,
                          hostCores: Int = ProcessInfo.processInfo.activeProcessorCount) -> Int {
        accel == .tcg ? min(nodes, max(1, hostCores)) : nodes
    }

    /// Runs `body` for every node of `fleet` at once (or as many at a time as its limit). A
    /// node whose body fails is recorded and shown as failed (not when cancelled); one error
    /// then names every node that failed.
    func runNodes(_ fleet: Fleet<(NodePlan, Machine)>, writer: StateWriter, elapsed: @escaping @Sendable () -> Double,
                  events: @escaping ClusterEventSink,
                  _ body: @escaping @Sendable (String, (NodePlan, Machine)) async throws -> Void) async throws {
        do {
            try await fleet.run { name, member in
                do {
                    try await body(name, member)
                } catch {
                    if !(error is CancellationError) {
                        try? await writer.setPhase(name, .failed)
                        events(.node(name: name, phase: .failed, elapsed: elapsed(), detail: nil))
                    }
                    throw error
                }
            }
        } catch let f as FleetFailure {
            throw Self.upFailure(f)
        }
    }

    /// One error naming every node of `f` that failed, with each one's reason.
    static func upFailure(_ f: FleetFailure) -> VMCtlError {
        let nodes = f.failures.compactMap { ($0.error as? NodeFailure)?.node }
        let head = nodes.isEmpty ? "\(f.failures.count) node(s) did not come up"
            : "node(s) \(nodes.sorted().joined(separator: ", ")) did not come up"
        let errors = f.failures.map(\.error)
        return VMCtlError(.init(commonTo: errors) ?? .nodeFailed, message: head + ":\n" + errors.map { "  \($0)" }.joined(separator: "\n"),
                          cause: errors.count == 1 ? errors[0] : nil)
    }
}
