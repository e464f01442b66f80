import Foundation
import Libvirt
import Testing
@testable import VMCtlSupport
@testable import Images
@testable import Machines
@testable import Clusters
@testable import Media

@Suite("Cluster spec, allocation, state, events")
struct ClusterModelTests {
    @Test("limits are checked before anything is created")
    func specValidation() throws {
        try ClusterSpec(nodes: 3).validate(freeMemoryMiB: 24_000)
        #expect(throws: VMCtlError.self) { try ClusterSpec(nodes: 0).validate(freeMemoryMiB: nil) }
        #expect(throws: VMCtlError.self) { try ClusterSpec(nodes: 65).validate(freeMemoryMiB: nil) }
        #expect(throws: VMCtlError.self) { try ClusterSpec(nodes: 1, cpus: 0).validate(freeMemoryMiB: nil) }
        #expect(throws: VMCtlError.self) { try ClusterSpec(nodes: 1, memoryMiB: 100).validate(freeMemoryMiB: nil) }
        // Nodes are planned at what they cost once idle, not at their full memory: with the
        // balloon a 2 GiB node costs its idle guest, the translation cache and QEMU.
        let each = HostMemory.perNodeMiB(memoryMiB: 2048, tcg: true)
        #expect(each < 2048 && each == HostMemory.idleGuestMiB + (MemoryLevers.standard.tbCacheMiB ?? 1024) + HostMemory.qemuOverheadMiB)
        let fit = (12_000 - HostMemory.reserveMiB) / each
        try ClusterSpec(nodes: fit, memoryMiB: 2048).validate(freeMemoryMiB: 12_000)
        #expect {
            try ClusterSpec(nodes: fit + 1, memoryMiB: 2048).validate(freeMemoryMiB: 12_000)
        } throws: { e in
            (e as? VMCtlError)?.code == .hostMemory && (e as? VMCtlError)?.exitCode == 2 && "\(e)".contains("\(fit) fit")
                && "\(e)".contains("\((fit + 1) * each) MiB")
        }
        // Without a balloon a guest keeps all it touched: planned at its full size.
        let plain = MemoryLevers(tbCacheMiB: nil, balloon: false, dropCaches: false)
        #expect(HostMemory.perNodeMiB(memoryMiB: 2048, tcg: true, levers: plain) == 2048 + 1024 + HostMemory.qemuOverheadMiB)
        #expect(HostMemory.perNodeMiB(memoryMiB: 2048, tcg: false, levers: plain) == 2048 + HostMemory.qemuOverheadMiB)
        #expect(HostMemory.availableMiB(meminfo: "MemTotal: 1 kB\nMemAvailable:   2097152 kB\n") == 2048)
    }

    @Test("cluster names must be DNS labels; nodes are node1…nodeN, also as 1 or node1")
    func naming() throws {
        #expect(ClusterSpec.isValidName("default"))
        #expect(ClusterSpec.isValidName("ci-2"))
        #expect(!ClusterSpec.isValidName("Bad"))
        #expect(!ClusterSpec.isValidName("-x"))
        #expect(!ClusterSpec.isValidName("a_b"))
        #expect(!ClusterSpec.isValidName(String(repeating: "a", count: 40)))
        #expect(try ClusterSpec.nodeIndex("node3", count: 3) == 3)
        #expect(try ClusterSpec.nodeIndex("2", count: 3) == 2)
        #expect(throws: VMCtlError.self) { try ClusterSpec.nodeIndex("node4", count: 3) }
        #expect(throws: VMCtlError.self) { try ClusterSpec.nodeIndex("x", count: 3) }
        #expect(throws: VMCtlError.self) { try ClusterManager.validateName("No!") }
    }

    static func state(_ name: String, ssh: [Int], subnet: Int) -> ClusterState {
        let alloc = Allocation(sshPorts: ssh, subnetIndex: subnet)
        let plans = alloc.plans(cluster: name, count: ssh.count, paths: ClusterPaths(state: StateDir(root: "/s"), name: name))
        return ClusterState(name: name, spec: ClusterSpec(nodes: ssh.count), phase: .running, imageHash: "h", user: "vmctl",
                            connectURI: "qemu:///embed?root=/s", embeddedRoot: "/s", accelerator: .tcg,
                            subnet: alloc.subnet, created: Date(timeIntervalSince1970: 1_700_000_000),
                            nodes: plans.map { .init(plan: $0, phase: .verified) })
    }

    @Test("ports from 2223 skip other clusters' and busy ports (old VNC ports too); subnets are unique; no VNC port")
    func allocation() throws {
        var other = Self.state("a", ssh: [2223, 2224], subnet: 1)
        other.nodes[1].plan.vncPort = 2225
        let a = try Allocation.choose(count: 3, taken: [other], isFree: { $0 != 2226 })
        #expect(a.sshPorts == [2227, 2228, 2229])
        #expect(a.subnetIndex == 2)
        let plans = a.plans(cluster: "b", count: 3, paths: ClusterPaths(state: StateDir(root: "/s"), name: "b"))
        #expect(plans.map(\.name) == ["node1", "node2", "node3"])
        #expect(plans.map(\.domainName) == ["b-node1", "b-node2", "b-node3"])
        #expect(plans[2].clusterAddress == "10.77.2.13/24")
        #expect(plans[0].mgmtMAC == "52:54:10:3e:23:01")  // SHA-256("b") starts 3e23
        #expect(Set(plans.map(\.mgmtMAC) + plans.compactMap(\.clusterMAC)).count == 6)
        #expect(throws: VMCtlError.self) { try Allocation.choose(count: 1, taken: [], isFree: { _ in false }) }
    }

    @Test("MACs follow from the cluster's name: the same for any subnet and ports, distinct within a cluster and across a sample of names, locally administered unicast")
    func stableMACs() throws {
        func macs(_ name: String, subnet: Int, ports: [Int]) -> [String] {
            Allocation(sshPorts: ports, subnetIndex: subnet)
                .plans(cluster: name, count: ports.count, paths: ClusterPaths(state: StateDir(root: "/s"), name: name))
                .flatMap { [$0.mgmtMAC, $0.clusterMAC ?? "none"] }
        }
        let first = macs("ci", subnet: 1, ports: [2223, 2224, 2225])
        #expect(first == macs("ci", subnet: 1, ports: [2223, 2224, 2225]))
        #expect(first == macs("ci", subnet: 200, ports: [3000, 3001, 3002]))
        #expect(first[0] == MACAddress.stable(role: .management, cluster: "ci", index: 1))
        #expect(first[1] == MACAddress.stable(role: .cluster, cluster: "ci", index: 1))

        // The most nodes a cluster has: every NIC its own MAC.
        let big = macs("big", subnet: 3, ports: Array(2223..<(2223 + ClusterSpec.maxNodes)))
        #expect(Set(big).count == 2 * ClusterSpec.maxNodes)

        // Different names, different MACs (for this sample).
        let names = (0..<50).map { "c\($0)" } + ["default", "demo", "it-one", "it-two", "it-slurm", "a", "b"]
        var owner: [String: String] = [:]
        for n in names {
            for m in macs(n, subnet: 5, ports: [2223, 2224]) {
                #expect(owner[m] == nil, "\(m) from both \(owner[m] ?? "") and \(n)")
                owner[m] = n
            }
        }

        for m in first + big + Array(owner.keys) {
            #expect(m.range(of: "^([0-9a-f]{2}:){5}[0-9a-f]{2}$", options: .regularExpression) != nil, "\(m)")
            let octet = try #require(UInt8(m.prefix(2), radix: 16))
            #expect(octet & 0x02 != 0, "\(m) is not locally administered")
            #expect(octet & 0x01 == 0, "\(m) is multicast")
            #expect(!m.hasPrefix("52:54:00:"), "\(m) is in the range libvirt picks from")
        }
    }

    @Test("state survives a JSON round trip, written atomically with no temp file left")
    func stateRoundTrip() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("state-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var s = Self.state("rt", ssh: [2300], subnet: 9)
        s.nodes[0].plan.hostKey = .init(type: "ssh-ed25519", base64: "AAAA")
        try AtomicFile.writeJSON(s, to: "\(dir)/state.json")
        #expect(try AtomicFile.readJSON(ClusterState.self, from: "\(dir)/state.json") == s)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["state.json"])
    }

    @Test("a node is cut off only if it booted a whole second before the running switch started (the state keeps seconds, the pid file fractions)")
    func switchLink() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("link-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let started = Date(timeIntervalSince1970: 1_700_000_100.21)
        let sw = SwitchStatus(running: true, pid: 1, startedAt: started)
        // Booted 0.7 s after the switch started, as the state file gives it back: the same second.
        var s = Self.state("lnk", ssh: [2300], subnet: 7)
        s.nodes[0].bootedAt = Date(timeIntervalSince1970: 1_700_000_100.91)
        try AtomicFile.writeJSON(s, to: "\(dir)/state.json")
        let node = try AtomicFile.readJSON(ClusterState.self, from: "\(dir)/state.json").nodes[0]
        #expect(try #require(node.bootedAt) < started)
        #expect(ClusterManager.link(node, running: true, switch: sw) == .up)
        func link(bootedAt t: Double?) -> ClusterLink? {
            var n = node
            n.bootedAt = t.map { Date(timeIntervalSince1970: $0) }
            return ClusterManager.link(n, running: true, switch: sw)
        }
        #expect(link(bootedAt: 1_700_000_102) == .up)
        #expect(link(bootedAt: nil) == .up)
        #expect(link(bootedAt: 1_700_000_099) == .switchRestarted)
        #expect(ClusterManager.link(node, running: true, switch: SwitchStatus(running: false, pid: nil, startedAt: nil)) == .switchDead)
        #expect(ClusterManager.link(node, running: false, switch: sw) == nil)
    }

    @Test("events render as JSON lines and plain lines")
    func events() throws {
        let e = ClusterEvent.node(name: "node2", phase: .cloudInit, elapsed: 12.34, detail: "x")
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(e.jsonLine.utf8)) as? [String: Any])
        #expect(obj["node"] as? String == "node2")
        #expect(obj["phase"] as? String == "cloud-init")
        #expect(obj["elapsed"] as? Double == 12.3)
        #expect(!e.jsonLine.contains("\n"))
        #expect(e.plainLine == "[  12.3s] node2: cloud-init (x)")
        #expect(ClusterEvent.note("hi", elapsed: 1).plainLine == "[   1.0s] hi")
    }

    @Test("the lock is exclusive per cluster and names its holder")
    func lock() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lock-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let state = StateDir(root: dir)
        let held = try ClusterLock.acquire(state: state, name: "one", purpose: "cluster up")
        #expect(ClusterLock.isHeld(state: state, name: "one") == true)
        #expect {
            try ClusterLock.acquire(state: state, name: "one", purpose: "cluster up")
        } throws: { e in (e as? VMCtlError)?.exitCode == 2 && "\(e)".contains("pid \(getpid())") }
        // Another cluster is independent.
        let other = try ClusterLock.acquire(state: state, name: "two", purpose: "cluster up")
        other.release()
        held.release()
        #expect(ClusterLock.isHeld(state: state, name: "one") == false)
    }
}
