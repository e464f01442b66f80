import Foundation
import VMCtlSupport
import Images
import Machines

extension ClusterManager {
    /// The key a warm snapshot of this cluster's image and shape must have.
    func warmKey(_ s: ClusterState, connection: HostConnection) async throws -> WarmSnapshot.Key {
        let versions = try await connection.versions()
        return WarmSnapshot.Key(image: s.imageHash, cpus: s.spec.cpus, memoryMiB: s.spec.memoryMiB, accelerator: s.accelerator,
                         cpuModel: s.accelerator == .tcg ? "qemu64" : nil,
                         qemu: versions.qemu, libvirt: versions.libvirt,
                         balloon: MemoryLevers.standard.balloon)
    }

    /// The warm snapshot for this cluster's image and shape: found, or made now by booting a
    /// template on the cluster's own libvirt and switch. nil (after saying why in one line)
    /// when it cannot be had: the nodes then boot cold.
    func warmSnapshot(_ s: ClusterState, image: Image, connection: HostConnection, deadline: ContinuousClock.Instant,
                      elapsed: @escaping @Sendable () -> Double, events: @escaping ClusterEventSink) async -> WarmSnapshot? {
        if let why = Self.warmIneligible(s) {
            events(.note("warm: \(why); booting cold", elapsed: elapsed()))
            return nil
        }
        do {
            return try await findOrMakeSnapshot(s, image: image, connection: connection, deadline: deadline, elapsed: elapsed, events: events)
        } catch is CancellationError {
            return nil
        } catch {
            events(.note("warm: no snapshot (\(error)); booting cold", elapsed: elapsed()))
            return nil
        }
    }

    /// The snapshot for this cluster's image and shape, found or made now (saying which).
    func findOrMakeSnapshot(_ s: ClusterState, image: Image, connection: HostConnection, deadline: ContinuousClock.Instant,
                            elapsed: @escaping @Sendable () -> Double, events: @escaping ClusterEventSink) async throws -> WarmSnapshot {
        let key = try await warmKey(s, connection: connection)
        if let found = WarmSnapshot.find(key, in: state.warm) {
            events(.note("warm: using the snapshot of \(s.spec.image) made \(Self.age(found.meta.madeAt)) ago", elapsed: elapsed()))
            return found
        }
        WarmSnapshot.prune(in: state.warm, current: Set(ImageStore(state: state).list().map(\.hash)),
                           inUse: Set(registry.imageUsers().keys))
        let why = WarmSnapshot.whyNot(key, in: state.warm).map { " (the one there is for another \($0))" } ?? ""
        events(.note("warm: making the snapshot of \(s.spec.image) for \(s.spec.cpus) vCPU/\(s.spec.memoryMiB) MiB, once per image and shape\(why)",
                     elapsed: elapsed()))
        let made = try await WarmSnapshot.make(key, template: templateSpec(s, image: image, key: key, connection: connection), on: connection,
                                               in: state.warm, deadline: deadline)
        events(.note("warm: snapshot made in \(String(format: "%.1f", made.meta.seconds)) s (\(made.meta.saveBytes >> 20) MiB saved)",
                     elapsed: elapsed()))
        return made
    }

    /// `image warm`: makes (or finds) the snapshot of `image` for one node of `cpus` and
    /// `memoryMiB` through a throwaway one-node cluster of its own, removed afterwards.
    public func makeWarm(image: String, cpus: Int, memoryMiB: Int, accel: AccelRequest, events: @escaping ClusterEventSink) async throws {
        let name = "warm-\(getpid())"
        let spec = ClusterSpec(nodes: 1, image: image, cpus: cpus, memoryMiB: memoryMiB, diskGiB: 20, guestInternet: false)
        var options = ClusterOptions(name: name, accel: accel)
        options.snapshotOnly = true
        do {
            try await up(spec, options: options, events: events)
        } catch {
            try? await clean(name: name)
            throw error
        }
        try await clean(name: name)
    }

    /// Why this cluster's nodes cannot be restored from a snapshot, or nil.
    static func warmIneligible(_ s: ClusterState, environment: [String: String] = ProcessInfo.processInfo.environment) -> String? {
        if consoleCapture(environment) == .stream { return "the console through libvirt's stream is attached at a cold boot" }
        if environment["VMCTL_TEST_HANG_NODE"] != nil { return "a test hangs a node's boot" }
        if s.embeddedRoot == nil { return "warm start is for vmctl's own embedded libvirt (this cluster uses \(s.connectURI))" }
        return nil
    }

    /// The template: the cluster's machine shape with NICs of its own MACs (the same kinds, in
    /// the same order), its files inside the snapshot's staging directory, the cluster's
    /// labels (so `clean` removes it if `up` dies while it runs).
    func templateSpec(_ s: ClusterState, image: Image, key: WarmSnapshot.Key, connection: HostConnection) throws -> MachineSpec {
        guard let first = s.nodes.first?.plan else { throw VMCtlError("cluster \(s.name) has no nodes") }
        var spec = machine(s, first, connection: connection, image: image).spec
        spec.name = "\(s.name)-warm-template"
        spec.hostname = "vmctl-warm"
        spec.files = MachineFiles(directory: "\(state.warm)/template-\(getpid())")  // short: QEMU sockets live in it
        spec.login.hostKey = nil
        spec.vncPort = nil
        var port = Int.random(in: 40000...49999)
        while !LoopbackPort.isFree(port) { port = Int.random(in: 40000...49999) }
        spec.networks = spec.networks.enumerated().map { i, n -> any NetworkAttachment in
            let mac = String(format: "52:54:00:77:%02x:%02x", getpid() & 0xff, i + 1)
            if let sw = n as? SwitchNetwork { return SwitchNetwork(mac: mac, socket: sw.socket, address: sw.address) }
            return UserModeNetwork(mac: mac, sshPort: port)
        }
        spec.labels["role"] = "warm-template"
        spec.identityPort = true
        return spec
    }

    /// Restores every node of `plans` from `snapshot` (`restoreWidth` at a time), gives each its identity and
    /// proves it ready as after a cold boot; names every node that failed.
    func restoreAll(_ plans: [NodePlan], from snapshot: WarmSnapshot, state s: ClusterState, connection: HostConnection, image: Image,
                    writer: StateWriter, deadline: ContinuousClock.Instant, elapsed: @escaping @Sendable () -> Double,
                    events: @escaping ClusterEventSink) async throws {
        let width = Self.restoreWidth(s.accelerator, nodes: plans.count)
        if width < plans.count {
            events(.note("restoring \(width) node(s) at a time (TCG: two per host core), the others as each is verified", elapsed: elapsed()))
        }
        try await runNodes(fleet(s, plans, connection: connection, image: image).limited(to: width), writer: writer, elapsed: elapsed, events: events) { name, member in
            var (plan, machine) = member
            var spec = machine.spec
            spec.uuid = UUID().uuidString.lowercased()
            spec.identityPort = true
            try await writer.setNode(plan, phase: .booting, booted: true, warmFrom: snapshot.meta.key.name)
            events(.node(name: name, phase: .defining, elapsed: elapsed(), detail: "warm"))
            let restored = try await Machine(spec, on: connection).restore(from: snapshot)
            plan.hostKey = restored.pin
            machine = Machine(spec.withHostKey(restored.pin), on: connection)
            try await writer.setNode(plan, phase: .booting)
            events(.node(name: name, phase: .booting, elapsed: elapsed(), detail: "restored"))
            try await machine.giveIdentity(restored.identity, deadline: deadline)
            events(.node(name: name, phase: .cloudInit, elapsed: elapsed(), detail: "identity applied"))
            _ = try await machine.waitReady(from: restored.offset, deadline: deadline, stall: nil)
            try await writer.setNode(plan, phase: .verified)
            events(.node(name: name, phase: .verified, elapsed: elapsed(), detail: nil))
        }
    }

    /// How many clones restore and take their identity at once. Under TCG each costs about
    /// 2.8 s of QEMU CPU (restore, identity, sshd, the SSH check), so the cores bound the total
    /// (ten on two cores: 14 s at best); two per core keeps both busy while a clone waits on
    /// its stream or on SSH, and fewer QEMUs compete for the caches than with all at once. A
    /// small gain, measured: warm `up 10` on 2 cores 16.6 s all at once (4 runs: 16.2–17.1 s),
    /// 15.9 s four at a time (7 runs: 15.4–16.7 s). Under KVM all at once.
    static func restoreWidth(_ accel: Accelerator, nodes: Int,
                             hostCores: Int = ProcessInfo.processInfo.activeProcessorCount) -> Int {
        accel == .tcg ? min(nodes, 2 * max(1, hostCores)) : nodes
    }

    static func age(_ date: Date) -> String {
        let s = Int(Date().timeIntervalSince(date))
        return s < 120 ? "\(s) s" : s < 7200 ? "\(s / 60) min" : "\(s / 3600) h"
    }
}
