import Blocking
import Foundation
import Testing
@testable import VMCtlSupport
@testable import Clusters
@testable import Swarm

/// `vmctl swarm` on real VMs with a real Docker engine in each (same serialized suite as the
/// other VM tests).
extension RealVMTests {
    @Test("swarm: init forms a 3-node swarm (labels vm-capable) and again changes nothing; case00 up on two distinct nodes (as docker service ps says) → test → exec-list → one-shot exec → Ansible ping and the validation playbook through vmctl's inventory → down leaves no stack and no container; case02 without media refused with nothing deployed; case01 up (the VM runner's guest emulated inside the node) → test (SSH into the runner's guest) → exec → down leaves no stack, container or QEMU")
    func swarmCase00() async throws {
        let name = "it-swarm"
        try await VMFixture.withCluster(name) {
            let initial = try await VMFixture.vmctl(["swarm", "init", "--name", name, "--memory", "1G"])
            try #require(initial.status == 0, "swarm init failed:\n\(initial.out)\n\(initial.err)")
            func node1(_ cmd: String) async throws -> String {
                let r = try await VMFixture.vmctl(["cluster", "ssh", "--name", name, "node1", "--", cmd])
                try #require(r.status == 0, "\(cmd): \(r.err)")
                return r.out
            }
            let nodes = try await node1("sudo docker node ls --format '{{.Hostname}} {{.Status}} {{.ManagerStatus}}'")
            #expect(nodes.split(separator: "\n").sorted() == ["node1 Ready Leader", "node2 Ready ", "node3 Ready "].map { Substring($0) }
                    || nodes.split(separator: "\n").count == 3, "\(nodes)")
            // Each node's label says what that node itself reports: /dev/kvm and VMX or SVM.
            for n in ["node1", "node2", "node3"] {
                let label = try await node1("sudo docker node inspect -f '{{index .Spec.Labels \"vm-capable\"}}' \(n)")
                let truth = try await VMFixture.vmctl(["cluster", "ssh", "--name", name, n, "--",
                                                       "if [ -e /dev/kvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo; then echo true; else echo false; fi"])
                #expect(label == truth.out && ["true\n", "false\n"].contains(label), "\(n): label \(label), node says \(truth.out)")
            }
            let again = try await VMFixture.vmctl(["swarm", "init", "--name", name, "--memory", "1G"])
            #expect(again.status == 0, "\(again.err)")
            #expect(try await node1("sudo docker node ls -q | wc -l") == "3\n")

            let up = try await VMFixture.vmctl(["swarm", "case00", "up", "--name", name])
            try #require(up.status == 0, "case00 up failed:\n\(up.out)\n\(up.err)")
            let placement = try #require(SwarmManager(clusters: ClusterManager(state: VMFixture.state), name: name).placement(.case00))
            #expect(placement.services["web-a"] != placement.services["web-b"])

            let list = try await VMFixture.vmctl(["swarm", "case00", "exec-list", "--name", name, "--json"])
            let cs = try JSONDecoder().decode([SwarmManager.Container].self, from: Data(list.out.utf8))
            #expect(cs.map(\.service) == ["case00_web-a", "case00_web-b"] && Set(cs.map(\.node)).count == 2, "\(cs)")
            #expect(cs.allSatisfy { $0.overlayIP.split(separator: ".").count == 4 }, "\(cs)")
            for c in cs {
                let where_ = try await node1("sudo docker service ps \(c.service) --filter desired-state=running --format '{{.Node}}'")
                #expect(where_ == "\(c.node)\n", "\(c.service): docker says \(where_), exec-list \(c.node)")
            }
            let text = try await VMFixture.vmctl(["swarm", "case00", "exec-list", "--name", name])
            #expect(text.out.hasPrefix("CONTAINER") && text.out.split(separator: "\n").count == 3, "\(text.out)")

            let test = try await VMFixture.vmctl(["swarm", "case00", "test", "--name", name])
            #expect(test.status == 0 && test.out.contains(" 0 failed"), "\(test.out)\(test.err)")
            #expect(test.out.contains("pings web-b") && test.out.contains("gets HTTP from web-a"), "\(test.out)")

            let exec = try await VMFixture.vmctl(["swarm", "case00", "exec", cs[0].container, "--name", name, "--", "cat", "/www/cgi-bin/index"])
            #expect(exec.status == 0 && exec.out.contains("container=%s"), "\(exec.out)\(exec.err)")

            // The same validation through Ansible, with vmctl's inventory (strict host keys).
            if let bin = ProcessInfo.processInfo.environment["VMCTL_ANSIBLE"], !bin.isEmpty {
                let inv = try await VMFixture.vmctl(["cluster", "inventory", "--name", name])
                let invPath = "\(VMFixture.home)/inventory.ini"
                try inv.out.write(toFile: invPath, atomically: true, encoding: .utf8)
                let env = ["ANSIBLE_HOST_KEY_CHECKING": "True", "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCAL_TEMP": "\(VMFixture.home)/ansible-tmp",
                           "PATH": "\(bin):/usr/bin:/bin", "HOME": VMFixture.home]
                let ping = try Command("\(bin)/ansible", ["all", "-i", invPath, "-m", "ping"], environment: env).run()
                #expect(ping.status == 0 && ping.stdout.components(separatedBy: "SUCCESS").count == 4, "\(ping.stdout)\(ping.stderr)")
                let play = try Command("\(bin)/ansible-playbook", ["-i", invPath, "\(SwarmManager.stacksDirectory())/validate-case00.yml"],
                                       environment: env).run()
                #expect(play.status == 0 && play.stdout.contains("failed=0"), "\(play.stdout)\(play.stderr)")
            } else {
                Issue.record("VMCTL_ANSIBLE is not set: `make test` makes the venv with ansible-core")
            }

            let down = try await VMFixture.vmctl(["swarm", "case00", "down", "--name", name])
            #expect(down.status == 0, "\(down.err)")
            for n in ["node1", "node2", "node3"] {
                let left = try await VMFixture.vmctl(["cluster", "ssh", "--name", name, n, "--", "sudo docker ps -aq | wc -l"])
                #expect(left.out == "0\n", "\(n) still has containers: \(left.out)\(left.err)")
            }
            #expect(try await node1("sudo docker stack ls -q | wc -l") == "0\n")
            #expect(try await node1("sudo docker node ls -q | wc -l") == "3\n", "the swarm stays")

            // case02 needs Windows media: refused before anything is deployed.
            let noMedia = try await VMFixture.vmctl(["swarm", "case02", "up", "--name", name])
            #expect(noMedia.status == 2 && noMedia.err.contains("--iso PATH or WINDOWS_ISO") && noMedia.err.contains("nothing was deployed"),
                    "\(noMedia.out)\(noMedia.err)")
            #expect(try await node1("sudo docker stack ls -q | wc -l") == "0\n")
            #expect(SwarmManager(clusters: ClusterManager(state: VMFixture.state), name: name).placement(.case02) == nil)

            // case01: case00's services plus the VM runner, its guest emulated inside the emulated node.
            let up1 = try await VMFixture.vmctl(["swarm", "case01", "up", "--name", name])
            try #require(up1.status == 0, "case01 up failed:\n\(up1.out)\n\(up1.err)")
            #expect(up1.out.contains("vm-runner on ") && up1.out.contains(": accel ") && up1.out.contains("its guest answers SSH"), "\(up1.out)")
            let p1 = try #require(SwarmManager(clusters: ClusterManager(state: VMFixture.state), name: name).placement(.case01))
            let runnerNode = try #require(p1.services["vm-runner"])
            #expect(p1.services["web-a"] != p1.services["web-b"])
            #expect(try await node1("sudo docker node inspect -f '{{index .Spec.Labels \"vm-capable\"}}' \(runnerNode)") == "true\n",
                    "the runner goes to a vm-capable node")
            func on(_ node: String, _ cmd: String) async throws -> String {
                let r = try await VMFixture.vmctl(["cluster", "ssh", "--name", name, node, "--", cmd])
                return r.out
            }
            #expect(try await on(runnerNode, "pgrep -c -f -- '[-]name vmrunner-case01'") == "1\n", "the runner's QEMU runs on \(runnerNode)")
            let test1 = try await VMFixture.vmctl(["swarm", "case01", "test", "--name", name])
            #expect(test1.status == 0 && test1.out.contains(" 0 failed"), "\(test1.out)\(test1.err)")
            #expect(test1.out.contains("pass  case01_vm-runner (\(runnerNode)): SSH from inside the runner to its guest at 127.0.0.1:2222")
                    && test1.out.contains("pass  case01_vm-runner: the guest's MAC is the deterministic 52:54:00:a0:01:01")
                    && test1.out.contains("pass  case01_web-a"), "\(test1.out)")
            let list1 = try await VMFixture.vmctl(["swarm", "case01", "exec-list", "--name", name, "--json"])
            let cs1 = try JSONDecoder().decode([SwarmManager.Container].self, from: Data(list1.out.utf8))
            #expect(cs1.map(\.service) == ["case01_vm-runner", "case01_web-a", "case01_web-b"], "\(cs1)")
            if let runner = cs1.first(where: { $0.service == "case01_vm-runner" }) {
                let who = try await VMFixture.vmctl(["swarm", "case01", "exec", runner.container, "--name", name, "--", "id", "-u"])
                #expect(who.out == "65534\n", "the runner runs as nobody: \(who.out)\(who.err)")
            }
            let down1 = try await VMFixture.vmctl(["swarm", "case01", "down", "--name", name])
            #expect(down1.status == 0, "\(down1.err)")
            for n in ["node1", "node2", "node3"] {
                #expect(try await on(n, "sudo docker ps -aq | wc -l") == "0\n", "\(n) still has containers")
                #expect(try await on(n, "pgrep -c -x qemu-system-x86 || true") == "0\n", "\(n) still runs a QEMU")
            }
            #expect(try await node1("sudo docker stack ls -q | wc -l") == "0\n")
        }
    }
}
