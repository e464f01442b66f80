import Foundation
@testable import Libvirt
@testable import Clusters
@testable import Machines
@testable import SSH
@testable import VMCtlSupport
import Synchronization
import Testing

/// Members of a fleet that succeed or fail on cue, without VMs.
private struct Cue: Sendable {
    enum Outcome: Sendable { case ready, timeout, failToDefine, wait }
    var outcome: Outcome
    var delay: Duration = .milliseconds(20)
}

private final class Finished: Sendable {
    let names = Mutex<[String]>([])
    func add(_ n: String) { names.withLock { $0.append(n) } }
    var all: [String] { names.withLock { $0.sorted() } }
}

private func play(_ name: String, _ cue: Cue, finished: Finished) async throws -> String {
    try await Task.sleep(for: cue.delay)
    switch cue.outcome {
    case .ready:
        finished.add(name)
        return "\(name) ready"
    case .timeout:
        finished.add(name)
        throw NodeFailure(node: name, reason: "no 'vmctl-ready' line on its serial console in time", serialTail: "[  1.0] hung", code: .nodeTimeout)
    case .failToDefine:
        finished.add(name)
        throw VMCtlError("define domain \(name): XML error")
    case .wait:
        try await Task.sleep(for: .seconds(3600))
        return "never"
    }
}

@Suite("The machine layer: a fleet's barrier, machines found by labels, one embedded root per process")
struct MachineLayerTests {
    @Test("a fleet whose members all become ready returns every member's result")
    func allReady() async throws {
        let finished = Finished()
        let fleet = Fleet((1...5).map { ("node\($0)", Cue(outcome: .ready)) })
        let results = try await fleet.run { name, cue in try await play(name, cue, finished: finished) }
        #expect(results.count == 5)
        #expect(results["node3"] == "node3 ready")
        #expect(finished.all.count == 5)
    }

    @Test("a fleet with a limit never runs more members at once, starts the next as one finishes, and still reports every failure")
    func limited() async throws {
        let running = Mutex((now: 0, most: 0, order: [String]()))
        let fleet = Fleet((1...7).map { ("node\($0)", $0) }, limit: 2)
        do {
            try await fleet.run { name, n in
                running.withLock { $0.now += 1; $0.most = max($0.most, $0.now); $0.order.append(name) }
                try? await Task.sleep(for: .milliseconds(20 * (n % 3 + 1)))
                running.withLock { $0.now -= 1 }
                if n == 4 { throw VMCtlError(.nodeFailed, message: "node4 broke") }
                return n
            }
            Issue.record("the fleet succeeded with a member that failed")
        } catch let f as FleetFailure {
            #expect(f.failures.map(\.name) == ["node4"] && f.total == 7)
        }
        let r = running.withLock { $0 }
        #expect(r.most == 2 && r.now == 0)
        #expect(r.order == (1...7).map { "node\($0)" })  // in order, all of them
        #expect(ClusterManager.bootWidth(.tcg, nodes: 10, hostCores: 2) == 2)
        #expect(ClusterManager.bootWidth(.tcg, nodes: 1, hostCores: 2) == 1)
        #expect(ClusterManager.bootWidth(.kvm, nodes: 10, hostCores: 2) == 10)
        #expect(ClusterManager.restoreWidth(.tcg, nodes: 10, hostCores: 2) == 4)
        #expect(ClusterManager.restoreWidth(.tcg, nodes: 3, hostCores: 2) == 3)
        #expect(ClusterManager.restoreWidth(.kvm, nodes: 10, hostCores: 2) == 10)
    }

    @Test("one member timing out: the others still finish, and the failure names it with its reason")
    func oneTimesOut() async throws {
        let finished = Finished()
        let fleet = Fleet([("node1", Cue(outcome: .ready)), ("node2", Cue(outcome: .timeout)),
                           ("node3", Cue(outcome: .ready, delay: .milliseconds(200)))])
        do {
            try await fleet.run { name, cue in try await play(name, cue, finished: finished) }
            Issue.record("the fleet succeeded with a member that timed out")
        } catch let f as FleetFailure {
            #expect(f.failures.map(\.name) == ["node2"])
            #expect(f.total == 3)
            #expect(f.failures[0].code == .nodeTimeout)
            #expect("\(f)".contains("no 'vmctl-ready' line"))
            #expect("\(f)".contains("1 of 3 failed (node2)"))
        }
        // The barrier waited for the slow member rather than abandoning it.
        #expect(finished.all == ["node1", "node2", "node3"])
    }

    @Test("a member that fails to define is reported with its error's code; members that succeeded are not")
    func failsToDefine() async throws {
        let finished = Finished()
        let fleet = Fleet([("node1", Cue(outcome: .failToDefine)), ("node2", Cue(outcome: .ready)),
                           ("node10", Cue(outcome: .timeout))])
        do {
            try await fleet.run { name, cue in try await play(name, cue, finished: finished) }
            Issue.record("the fleet succeeded with a member that could not be defined")
        } catch let f as FleetFailure {
            #expect(f.failures.map(\.name) == ["node1", "node10"])  // natural order
            #expect(f.failures[0].code == .failure)
            #expect("\(f.failures[0].error)".contains("XML error"))
        }
    }

    @Test("cancelled part-way: every member is cancelled, and cancellation wins over failures")
    func cancelled() async throws {
        let finished = Finished()
        let fleet = Fleet([("node1", Cue(outcome: .ready)), ("node2", Cue(outcome: .timeout)),
                           ("node3", Cue(outcome: .wait)), ("node4", Cue(outcome: .wait))])
        let task = Task { try await fleet.run { name, cue in try await play(name, cue, finished: finished) } }
        while finished.all.count < 2 { try await Task.sleep(for: .milliseconds(10)) }
        let start = ContinuousClock.now
        task.cancel()
        await #expect(throws: CancellationError.self) { try await task.value }
        // The waiting members did not run out their hour.
        #expect(ContinuousClock.now - start < .seconds(30))
        #expect(finished.all == ["node1", "node2"])
    }

    static func machine(_ name: String, labels: [String: String], on conn: Connection) -> Machine {
        Machine(MachineSpec(name: name, hostname: "node1", cpus: 1, memoryMiB: 256, accelerator: .tcg,
                            boot: nil, rootDisk: nil,
                            networks: [UserModeNetwork(mac: "52:54:00:10:00:01", sshPort: 2223)],
                            login: Login(user: "vmctl", key: KeyPair(privateKeyPath: "/nonexistent")),
                            labels: labels, files: MachineFiles(directory: NSTemporaryDirectory() + "/vmctl-machine-\(name)")),
                on: HostConnection(conn))
    }

    static func defineDomain(_ name: String, labels: [String: String], on conn: Connection) async throws {
        let spec = DomainSpec(name: name, accelerator: .tcg, memoryMiB: 256, vcpus: 1, cpuModel: "qemu64",
                              boot: .init(kernel: "/img/vmlinuz", initrd: nil, cmdline: "console=ttyS0"),
                              disks: [], nics: [.init(mode: .bridge(name: "br0"), mac: "52:54:00:30:00:09")],
                              serialLog: nil, vncPort: nil, labels: labels)
        try await conn.define(xml: spec.xml()).close()
    }

    @Test("a machine is found by name and labels: absent, then stopped; someone else's domain of that name is refused and left alone")
    func foundByLabels() async throws {
        let conn = try await Connection.open("test:///default")
        defer { Task { await conn.close() } }
        let n = "machine-\(UInt32.random(in: 0...999_999))"
        let ours = ["cluster": "a", "state": "/s"]
        let m = Self.machine(n, labels: ours, on: conn)
        #expect(try await m.status() == .absent)
        try await Self.defineDomain(n, labels: ours.merging(["node": "node1"]) { a, _ in a }, on: conn)
        #expect(try await m.status() == .stopped)
        #expect(try await HostConnection(conn).machineNames { $0["cluster"] == "a" && $0["state"] == "/s" }.contains(n))
        #expect(try await HostConnection(conn).machineNames { $0["cluster"] == "b" }.contains(n) == false)

        // Same name, other labels: not this machine's, never removed by it.
        let theirs = Self.machine(n, labels: ["cluster": "b", "state": "/s"], on: conn)
        do {
            _ = try await theirs.status()
            Issue.record("a domain with other labels was taken for this machine")
        } catch let e as VMCtlError {
            #expect(e.code == .nameInUse)
            #expect(e.exitCode == 2)
            #expect(e.message.contains("was not made for this machine"))
        }
        await #expect(throws: VMCtlError.self) { try await theirs.remove() }
        #expect(try await m.status() == .stopped)

        // Its own remove takes the domain and its directory, and is idempotent.
        try FileManager.default.createDirectory(atPath: m.spec.files.directory, withIntermediateDirectories: true)
        try await m.remove()
        #expect(try await m.status() == .absent)
        #expect(!FileManager.default.fileExists(atPath: m.spec.files.directory))
        try await m.remove()
    }

    @Test("removing by labels takes only the matching domains")
    func removeByLabels() async throws {
        let conn = try await Connection.open("test:///default")
        defer { Task { await conn.close() } }
        let tag = UInt32.random(in: 0...999_999)
        try await Self.defineDomain("a-node1-\(tag)", labels: ["cluster": "a-\(tag)"], on: conn)
        try await Self.defineDomain("a-node2-\(tag)", labels: ["cluster": "a-\(tag)"], on: conn)
        try await Self.defineDomain("a-nodeX-\(tag)", labels: ["cluster": "ab-\(tag)"], on: conn)
        let removed = try await HostConnection(conn).removeMachines { $0["cluster"] == "a-\(tag)" }
        #expect(removed == ["a-node1-\(tag)", "a-node2-\(tag)"])
        let left = try await HostConnection(conn).machineNames { $0["cluster"]?.hasSuffix("\(tag)") == true }
        #expect(left == ["a-nodeX-\(tag)"])
        try await HostConnection(conn).removeMachines { $0["cluster"] == "ab-\(tag)" }
    }

    @Test("a machine with no image on record can be found and removed, not created")
    func noImageNoCreate() async throws {
        let conn = try await Connection.open("test:///default")
        defer { Task { await conn.close() } }
        let m = Self.machine("machine-noimage-\(UInt32.random(in: 0...999_999))", labels: ["cluster": "x"], on: conn)
        do {
            _ = try await m.create()
            Issue.record("created a machine without an image")
        } catch let e as VMCtlError {
            #expect(e.message.contains("cannot be created"))
        }
    }

    @Test("network attachments: user mode forwards SSH from 127.0.0.1 and is restricted; the switch NIC has its static address")
    func attachments() {
        let user = UserModeNetwork(mac: "52:54:00:10:00:01", sshPort: 2301)
        #expect(user.sshEndpoint == SSHEndpoint(host: "127.0.0.1", port: 2301))
        #expect(user.nic.mode == .user(.init(forwards: [.init(host: 2301, guest: 22)], restrict: true)))
        #expect(user.guestInterface.nameservers.isEmpty)
        #expect(UserModeNetwork(mac: "52:54:00:10:00:01", sshPort: 2301, restrict: false).guestInterface.nameservers == ["10.0.2.3"])
        let sw = SwitchNetwork(mac: "52:54:00:20:00:01", socket: "/c/switch.sock", address: "10.77.3.11/24")
        #expect(sw.sshEndpoint == nil)
        #expect(sw.guestAddress == "10.77.3.11")
        #expect(sw.nic.mode == .stream(socket: "/c/switch.sock"))
    }

    @Test("one embedded root per process: the same root is shared, another waits for it to close and says so once")
    func oneRootPerProcess() async throws {
        let gate = EmbeddedRoots()
        try await gate.acquire("/r/a")
        try await gate.acquire("/r/a")
        #expect(gate.current == "/r/a")
        let notes = Mutex<[String]>([])
        let waiter = Task { try await gate.acquire("/r/b") { line in notes.withLock { $0.append(line) } } }
        try await Task.sleep(for: .milliseconds(200))
        #expect(gate.current == "/r/a")
        gate.release("/r/a")
        try await Task.sleep(for: .milliseconds(200))
        #expect(gate.current == "/r/a")  // still held once
        gate.release("/r/a")
        try await waiter.value
        #expect(gate.current == "/r/b")
        #expect(notes.withLock { $0.count } == 1)
        #expect(notes.withLock { $0.first ?? "" }.contains("one embedded root per process"))
        gate.release("/r/b")
        #expect(gate.current == nil)
    }
}
