import Blocking
import Foundation
import Testing
@testable import VMCtlSupport
@testable import Swarm
@testable import Images
@testable import Clusters
import Yams

@Suite("swarm: placement, exec-list, the seed's make goals")
struct SwarmTests {
    @Test("placement: one distinct node per service, chosen at random; too few nodes refused")
    func placement() throws {
        var seen: Set<[String]> = []
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<40 {
            let p = try SwarmManager.place(["web-a", "web-b"], on: ["node1", "node2", "node3"], using: &rng)
            #expect(Set(p.services.keys) == ["web-a", "web-b"] && p.services["web-a"] != p.services["web-b"])
            seen.insert([p.services["web-a"]!, p.services["web-b"]!])
        }
        #expect(seen.count > 1, "placement is random, not fixed: \(seen)")
        #expect { try SwarmManager.place(["web-a", "web-b"], on: ["node1"], using: &rng) } throws: {
            (($0 as? VMCtlError)?.code == .wrongState) && "\($0)".contains("2 distinct ones are needed")
        }
    }

    @Test("a kept placement file that places no node for a service is wrong-state naming the file, not a crash")
    func placementMissingService() throws {
        let file = "/state/clusters/sw/swarm-case01.json"
        let kept = try JSONDecoder().decode(SwarmManager.Placement.self, from: Data(#"{"services":{"web-a":"node1"}}"#.utf8))
        #expect(try kept.node(for: "web-a", file: file) == "node1")
        #expect { try kept.node(for: "vm-runner", file: file) } throws: {
            ($0 as? VMCtlError)?.code == .wrongState && "\($0)".contains(file) && "\($0)".contains("vm-runner")
        }
    }

    @Test("case01: web services on distinct nodes, the runner on a vm-capable node; none capable: any node, with a note")
    func runnerPlacement() throws {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<30 {
            let (p, note) = try SwarmManager.place(.case01, on: ["node1", "node2", "node3"], vmCapable: ["node3"], using: &rng)
            #expect(p.services["vm-runner"] == "node3" && note == nil)
            #expect(p.services["web-a"] != p.services["web-b"] && p.services.count == 3)
        }
        let (p, note) = try SwarmManager.place(.case01, on: ["node1", "node2"], vmCapable: ["node9"], using: &rng)
        #expect(["node1", "node2"].contains(p.services["vm-runner"]!) && note?.contains("no node is labelled vm-capable=true") == true)
        let (w, _) = try SwarmManager.place(.case02, on: ["node1"], vmCapable: ["node1"], using: &rng)
        #expect(w.services == ["win-runner": "node1"])
        #expect(SwarmManager.parseLabels("node1 true\nnode2 false\nnode3 <no value>\nnode4 true\n") == ["node1", "node4"])
    }

    @Test("runner MACs: 52:54:00:a0:CASE:SLOT, as the stacks pass them")
    func runnerMACs() throws {
        #expect(SwarmManager.Case.case01.runnerMAC() == "52:54:00:a0:01:01")
        #expect(SwarmManager.Case.case02.runnerMAC(slot: 3) == "52:54:00:a0:02:03")
        #expect(SwarmManager.Case.case00.runnerMAC() == nil)
        for c in [SwarmManager.Case.case01, .case02] {
            let text = try String(contentsOfFile: "\(SwarmManager.stacksDirectory())/\(c.stackFile)", encoding: .utf8)
            let stack = try #require(try Yams.load(yaml: text) as? [String: Any])
            let svc = try #require((stack["services"] as? [String: Any])?[c.runner!] as? [String: Any])
            let env = try #require(svc["environment"] as? [String: Any])
            #expect("\(env["RUNNER_MAC_PREFIX"]!):01" == c.runnerMAC(), "\(c)")
            #expect(env["RUNNER_CASE"] as? String == c.rawValue)
            // Least privilege: no privileged, every capability dropped, QEMU as nobody.
            #expect(svc["privileged"] == nil && svc["cap_drop"] as? [String] == ["ALL"] && svc["user"] as? String == "65534:65534", "\(c)")
            #expect(!text.contains("docker.sock"))
            let services = Set((stack["services"] as? [String: Any])?.keys.map { $0 } ?? [])
            #expect(services == Set(c.services), "\(c): \(services)")
        }
    }

    @Test("the runner's memory: RUNNER_MEMORY or the case's default; nonsense refused")
    func runnerMemory() throws {
        #expect(try SwarmManager.runnerMemoryMiB(.case01, environment: [:]) == 192)
        #expect(try SwarmManager.runnerMemoryMiB(.case02, environment: [:]) == 4096)
        #expect(try SwarmManager.runnerMemoryMiB(.case02, environment: ["RUNNER_MEMORY": "512M"]) == 512)
        for bad in ["lots", "0", "1M", "-4G"] {
            #expect(throws: VMCtlError.self) { try SwarmManager.runnerMemoryMiB(.case01, environment: ["RUNNER_MEMORY": bad]) }
        }
    }

    @Test("case02's media: both named when missing, from flags or WINDOWS_ISO/VIRTIO_ISO, exit 2")
    func windowsMedia() throws {
        #expect { try SwarmManager.WindowsMedia.resolve(iso: nil, virtioISO: nil, environment: [:]) } throws: {
            let e = $0 as? VMCtlError
            return e?.code == .usage && "\(e!)".contains("--iso PATH or WINDOWS_ISO") && "\(e!)".contains("--virtio-iso PATH or VIRTIO_ISO")
                && "\(e!)".contains("nothing was deployed")
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("media-\(getpid())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        _ = FileManager.default.createFile(atPath: "\(dir)/w.iso", contents: Data("x".utf8))
        _ = FileManager.default.createFile(atPath: "\(dir)/v.iso", contents: Data("y".utf8))
        #expect { try SwarmManager.WindowsMedia.resolve(iso: "\(dir)/w.iso", virtioISO: dir, environment: [:]) } throws: {
            "\($0)".contains("\(dir) is not a readable file") && !"\($0)".contains("WINDOWS_ISO")
        }
        let m = try SwarmManager.WindowsMedia.resolve(iso: nil, virtioISO: "\(dir)/v.iso", environment: ["WINDOWS_ISO": "\(dir)/w.iso"])
        #expect(m.iso == "\(dir)/w.iso" && m.virtioISO == "\(dir)/v.iso")
    }

    @Test("exec-list: a header, then exactly CONTAINER NODE OVERLAY_IP SERVICE per container")
    func execList() {
        let cs = SwarmManager.parseContainers("/case00_web-a.1.x1y2 case00_web-a 10.0.1.3\n/case00_web-b.1.z9 case00_web-b 10.0.1.5\n", node: "node2")
        #expect(cs == [.init(container: "case00_web-a.1.x1y2", node: "node2", overlayIP: "10.0.1.3", service: "case00_web-a"),
                       .init(container: "case00_web-b.1.z9", node: "node2", overlayIP: "10.0.1.5", service: "case00_web-b")])
        let lines = SwarmManager.formatList(cs).split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
        #expect(lines[0] == ["CONTAINER", "NODE", "OVERLAY_IP", "SERVICE"])
        #expect(lines[1] == ["case00_web-a.1.x1y2", "node2", "10.0.1.3", "case00_web-a"])
        #expect(lines.count == 3)
    }

    @Test("make: the container is the goal after -exec (or CONTAINER=); a name that is also a target is refused")
    func makeGoals() throws {
        let repo = (RecipeStore.locate().directory as NSString).deletingLastPathComponent
        func make(_ args: [String]) throws -> Command.Output {
            try Command("make", ["-s", "-n", "-C", repo] + args).run()
        }
        let a = try make(["ansible-swarm-poc-qemu-case00-exec", "case00_web-a.1.abc"])
        #expect(a.status == 0 && a.stdout.contains("swarm case00 exec case00_web-a.1.abc --name swarm"), "\(a.stdout)\(a.stderr)")
        let b = try make(["ansible-swarm-poc-qemu-case00-exec", "CONTAINER=c1", "SWARM=lab"])
        #expect(b.stdout.contains("swarm case00 exec c1 --name lab"), "\(b.stdout)")
        let d = try make(["ansible-swarm-poc-qemu-case01-exec", "case01_vm-runner.1.xyz"])
        #expect(d.stdout.contains("swarm case01 exec case01_vm-runner.1.xyz --name swarm"), "\(d.stdout)\(d.stderr)")
        let c = try make(["ansible-swarm-poc-qemu-case00-exec", "test"])
        #expect(c.status != 0 && c.stderr.contains("container name 'test' is also a make target"), "\(c.stderr)")
        for (goal, verb) in [("ansible-swarm", "swarm init"), ("ansible-swarm-poc-qemu-case00-up", "swarm case00 up"),
                             ("ansible-swarm-poc-qemu-case00-down", "swarm case00 down"), ("ansible-swarm-poc-qemu-case00-test", "swarm case00 test"),
                             ("ansible-swarm-poc-qemu-case00-exec-list", "swarm case00 exec-list"),
                             ("ansible-swarm-poc-qemu-case01-up", "swarm case01 up"), ("ansible-swarm-poc-qemu-case01-test", "swarm case01 test"),
                             ("ansible-swarm-poc-qemu-case01-exec-list", "swarm case01 exec-list"), ("ansible-swarm-poc-qemu-case01-down", "swarm case01 down"),
                             ("ansible-swarm-poc-qemu-case02-up", "swarm case02 up"), ("ansible-swarm-poc-qemu-case02-down", "swarm case02 down")] {
            #expect(try make([goal]).stdout.contains(verb), "\(goal)")
        }
    }
}

@Suite("Ansible inventory")
struct InventoryTests {
    @Test("ini and yaml: a group per cluster and per role, each node at its loopback port, vmctl's key and pinned known_hosts")
    func render() {
        let hosts = [AnsibleInventory.Host(name: "node1", port: 40001), .init(name: "node2", port: 40002), .init(name: "node3", port: 40003)]
        let roles = ["manager": ["first"], "worker": ["rest"]]
        let ini = AnsibleInventory.render(cluster: "swarm", hosts: hosts, roles: roles, user: "vmctl", key: "/k/id_ed25519",
                                          knownHosts: "/k/known_hosts", format: .ini)
        let lines = ini.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        #expect(lines.prefix(4) == ["[swarm]", "node1 ansible_host=127.0.0.1 ansible_port=40001 ansible_user=vmctl",
                                    "node2 ansible_host=127.0.0.1 ansible_port=40002 ansible_user=vmctl",
                                    "node3 ansible_host=127.0.0.1 ansible_port=40003 ansible_user=vmctl"])
        #expect(ini.contains("[swarm_manager]\nnode1\n") && ini.contains("[swarm_worker]\nnode2\nnode3\n"))
        #expect(ini.contains("ansible_ssh_common_args='-o UserKnownHostsFile=/k/known_hosts -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes"))
        #expect(ini.contains("ansible_ssh_private_key_file=/k/id_ed25519"))
        let yaml = AnsibleInventory.render(cluster: "my-lab", hosts: hosts, roles: roles, user: "vmctl", key: "/k/id", knownHosts: "/k/kh", format: .yaml)
        let parsed = try? Yams.load(yaml: yaml) as? [String: Any]
        let group = ((parsed?["all"] as? [String: Any])?["children"] as? [String: Any])?["my_lab"] as? [String: Any]
        #expect((group?["hosts"] as? [String: Any])?.keys.sorted() == ["node1", "node2", "node3"], "\(yaml)")
        let children = group?["children"] as? [String: Any]
        #expect(((children?["my_lab_worker"] as? [String: Any])?["hosts"] as? [String: Any])?.keys.sorted() == ["node2", "node3"])
    }
}
