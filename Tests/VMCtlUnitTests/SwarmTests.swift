import Blocking
import Foundation
import Testing
@testable import VMCtlSupport
@testable import Swarm
@testable import Images

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
