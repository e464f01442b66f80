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
        let c = try make(["ansible-swarm-poc-qemu-case00-exec", "test"])
        #expect(c.status != 0 && c.stderr.contains("container name 'test' is also a make target"), "\(c.stderr)")
        for (goal, verb) in [("ansible-swarm", "swarm init"), ("ansible-swarm-poc-qemu-case00-up", "swarm case00 up"),
                             ("ansible-swarm-poc-qemu-case00-down", "swarm case00 down"), ("ansible-swarm-poc-qemu-case00-test", "swarm case00 test"),
                             ("ansible-swarm-poc-qemu-case00-exec-list", "swarm case00 exec-list")] {
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
