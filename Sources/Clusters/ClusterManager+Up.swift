import Blocking
import Foundation
import Libvirt
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
        try spec.validate(freeMemoryMiB: HostMemory.availableMiB())
        if let warning = spec.cpuWarning(hostCores: ProcessInfo.processInfo.activeProcessorCount) {
            events(.note(warning, elapsed: 0))
        }
        try state.ensureWritable()
        let image = try ImageStore(state: state).image(named: spec.image)
        let p = paths(name)
        let target = try HypervisorTarget.resolve(connect: options.connect, defaultRoot: p.libvirtRoot)
        _ = try Command.require("qemu-img")
        _ = try Command.require("xorrisofs")
        _ = try Command.require("ssh-keygen")
        if target.embeddedRoot == nil {
            // An explicit libvirt must answer before anything is created for it.
            try await target.open().close()
        }
        let lock = try ClusterLock.acquire(state: state, name: name, purpose: "cluster up")
        defer { lock.release() }

        if let existing = registry.load(name) {
            guard existing.phase != .creating else {
                throw VMCtlError.usage("cluster \(name) was left half-made by an interrupted `up`: run `vmctl cluster clean --name \(name)`")
            }
            guard existing.spec == spec else {
                throw VMCtlError.usage("cluster \(name) exists with a different spec (\(describe(existing.spec))); "
                    + "run `vmctl cluster clean --name \(name)` first, or use another --name")
            }
            return try await startLocked(existing, options: options, events: events)
        }
        if FileManager.default.fileExists(atPath: p.directory) {
            throw VMCtlError.usage("cluster \(name) was left half-made: run `vmctl cluster clean --name \(name)`")
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
                let code = (error as? VMCtlError)?.exitCode ?? 1
                error = VMCtlError("\(error)\n  serial and QEMU logs kept in \(report)", exitCode: code)
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
        let connection = try await target.open(sharedCapabilities: capabilitiesCache)
        return try await connection.closing { connection in
            let s = await writer.state
            let launcher = launcher(s, connection: connection, image: image)
            let deadline = ContinuousClock.now + options.timeout
            try await bootAll(s.nodes.map(\.plan), launcher: launcher, writer: writer, prepare: true, deadline: deadline,
                              elapsed: elapsed, events: events)
            try writeOpenSSHFiles(await writer.state)
            try await runBootstrap(writer, image: image, deadline: deadline, elapsed: elapsed, events: events)
            try await writer.update { $0.phase = .running }
            target.shareCapabilities(into: capabilitiesCache)
            let final = await writer.state
            try writeOpenSSHFiles(final)
            return final
        }
    }

    /// Prepares (if asked), boots and verifies `plans` all at once; names every node that failed.
    func bootAll(_ plans: [NodePlan], launcher: NodeLauncher, writer: StateWriter, prepare: Bool,
                 deadline: ContinuousClock.Instant, elapsed: @escaping @Sendable () -> Double,
                 events: @escaping ClusterEventSink) async throws {
        let failures = try await withThrowingTaskGroup(of: Error?.self) { group in
            for plan in plans {
                group.addTask {
                    do {
                        var plan = plan
                        if prepare {
                            events(.node(name: plan.name, phase: .defining, elapsed: elapsed(), detail: nil))
                            try await writer.setNode(plan, phase: .defining)
                            plan = try await launcher.prepare(plan)
                        }
                        try await writer.setNode(plan, phase: .booting, booted: true)
                        events(.node(name: plan.name, phase: .booting, elapsed: elapsed(), detail: "ssh 127.0.0.1:\(plan.sshPort)"))
                        let offset = try await launcher.boot(plan)
                        let name = plan.name
                        _ = try await launcher.waitReady(plan, from: offset, deadline: deadline,
                                                         stall: .standard(nodes: plans.count), onReset: { stalled, n in
                            events(.note("\(stalled); resetting it (\(n) of 2)", elapsed: elapsed()))
                        }, onCloudInit: {
                            events(.node(name: name, phase: .cloudInit, elapsed: elapsed(), detail: nil))
                        })
                        try await writer.setNode(plan, phase: .verified)
                        events(.node(name: plan.name, phase: .verified, elapsed: elapsed(), detail: nil))
                        return nil
                    } catch {
                        if !(error is CancellationError) {
                            try? await writer.setNode(plan, phase: .failed)
                            events(.node(name: plan.name, phase: .failed, elapsed: elapsed(), detail: nil))
                        }
                        return error
                    }
                }
            }
            var errors: [Error] = []
            for try await e in group { if let e { errors.append(e) } }
            return errors
        }
        try Task.checkCancellation()
        if failures.contains(where: { $0 is CancellationError }) { throw CancellationError() }
        if !failures.isEmpty {
            let nodes = failures.compactMap { ($0 as? NodeFailure)?.node }
            let head = nodes.isEmpty ? "\(failures.count) node(s) did not come up"
                : "node(s) \(nodes.sorted().joined(separator: ", ")) did not come up"
            throw VMCtlError(head + ":\n" + failures.map { "  \($0)" }.joined(separator: "\n"))
        }
    }
}
