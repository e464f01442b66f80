import Foundation
import VMCtlSupport
import Images
import Clusters

/// `swarm CASE test`: each check run from inside the case's containers.
extension SwarmManager {
    /// One check's outcome.
    public struct Check: Sendable {
        public var name: String
        public var passed: Bool
        public var detail: String
    }

    /// From inside each normal service's container: ping and HTTP to every other normal
    /// service by name over the overlay; the services on distinct nodes, as placed. Then the
    /// runner's checks (case01: SSH into its guest; case02: RDP or WinRM through the published port).
    public func test(_ c: Case) async throws -> [Check] {
        let s = try cluster()
        let all = try await containers(c)
        let webNames = Set(c.webServices.map { "\(c.rawValue)_\($0)" })
        let cs = all.filter { webNames.contains($0.service) }
        var checks: [Check] = []
        let placed = placement(c)
        let nodes = Set(cs.map(\.node))
        if !c.webServices.isEmpty {
            checks.append(Check(name: "\(c.rawValue): \(cs.count) service container(s) on \(nodes.count) distinct node(s)",
                                passed: cs.count == c.webServices.count && nodes.count == c.webServices.count,
                                detail: cs.map { "\($0.service)@\($0.node)" }.joined(separator: ", ")))
        }
        for x in all {
            let short = x.service.replacingOccurrences(of: "\(c.rawValue)_", with: "")
            if let want = placed?.services[short] {
                checks.append(Check(name: "\(x.service) runs on its placed node \(want)", passed: x.node == want, detail: "on \(x.node)"))
            }
        }
        for x in cs {
            for y in cs where y.service != x.service {
                let target = y.service.replacingOccurrences(of: "\(c.rawValue)_", with: "")
                let ping = try? await run(s, "sudo docker exec \(x.container) ping -c 1 -W 5 \(target) >/dev/null && echo ok", on: x.node, timeout: .seconds(60))
                checks.append(Check(name: "\(x.service) (\(x.node)) pings \(target) over \(c.network)", passed: ping?.hasPrefix("ok") == true,
                                    detail: ping == nil ? "no answer" : ""))
                // No -T: busybox-static 1.35's wget crashes with it (SIGSEGV); the SSH command's timeout bounds it.
                let http = try? await run(s, "sudo docker exec \(x.container) wget -q -O - http://\(target)/cgi-bin/index", on: x.node,
                                          timeout: .seconds(60))
                let ok = http?.contains("service=\(y.service) node=\(y.node)") == true
                checks.append(Check(name: "\(x.service) (\(x.node)) gets HTTP from \(target) (\(y.node))", passed: ok,
                                    detail: http?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "no answer"))
            }
        }
        if let runner = c.runner {
            guard let x = all.first(where: { $0.service == "\(c.rawValue)_\(runner)" }) else {
                checks.append(Check(name: "\(c.rawValue)_\(runner) runs", passed: false, detail: "no container"))
                return checks
            }
            checks.append(try await privilegeCheck(s, x))
            checks += c == .case01 ? try await guestChecks(s, c, x) : try await windowsChecks(s, x)
        }
        return checks
    }

    /// The runner container is not privileged, has every capability dropped, runs QEMU as nobody.
    func privilegeCheck(_ s: ClusterState, _ x: Container) async throws -> Check {
        let got = try await run(s, "sudo docker inspect -f '{{.HostConfig.Privileged}} {{.HostConfig.CapDrop}} {{.Config.User}}' \(x.container)", on: x.node)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        return Check(name: "\(x.service): not privileged, every capability dropped, QEMU as nobody", passed: got == "false [ALL] 65534:65534", detail: got)
    }

    /// From inside the runner container: SSH to its guest at 127.0.0.1:2222 with the node's
    /// /var/lib/vmrunner/keys/id_ed25519 (mounted at /vm/keys), the guest's host key pinned
    /// from the line the runner printed before it booted the guest; the guest is the runner's
    /// own (its hostname, kernel command line and deterministic MAC) running the node's kernel.
    func guestChecks(_ s: ClusterState, _ c: Case, _ x: Container) async throws -> [Check] {
        let log = try await self.log(s, of: x)
        guard let line = log.split(separator: "\n").first(where: { $0.hasPrefix("vmrunner: guest host key ssh-ed25519 ") }) else {
            return [Check(name: "\(x.service): the runner printed its guest's host key", passed: false, detail: String(log.suffix(400)))]
        }
        let hostKey = line.dropFirst("vmrunner: guest host key ".count)
        try await run(s, "sudo docker exec -i -u 0 \(x.container) sh -c 'cat > /tmp/vmctl_known_hosts'", on: x.node,
                      input: Data("[127.0.0.1]:2222 \(hostKey)\n".utf8))
        let ssh = "sudo docker exec -u 0 \(x.container) ssh -p 2222 -i /vm/keys/id_ed25519 -o BatchMode=yes -o StrictHostKeyChecking=yes "
            + "-o UserKnownHostsFile=/tmp/vmctl_known_hosts -o GlobalKnownHostsFile=/dev/null -o ConnectTimeout=60 root@127.0.0.1 "
            + "'hostname; uname -r; cat /proc/cmdline; cat /sys/class/net/eth0/address'"
        var answer: String?
        var failure = ""
        do { answer = try await run(s, ssh, on: x.node, timeout: .seconds(180)) } catch { failure = "\(error)" }
        let kernel = try await run(s, "uname -r", on: x.node).trimmingCharacters(in: .whitespacesAndNewlines)
        let f = (answer ?? "").split(separator: "\n").map(String.init)
        let name = "\(x.service) (\(x.node)): SSH from inside the runner to its guest at 127.0.0.1:2222 with /vm/keys/id_ed25519, host key pinned"
        guard f.count == 4 else { return [Check(name: name, passed: false, detail: answer ?? failure)] }
        let mac = c.runnerMAC() ?? ""
        return [Check(name: name, passed: true, detail: ""),
                Check(name: "\(x.service): the guest is the runner's (hostname vmrunner-guest, vmctl.runner=\(c.rawValue) on its kernel command line)",
                      passed: f[0] == "vmrunner-guest" && f[2].split(separator: " ").contains("vmctl.runner=\(c.rawValue)"), detail: "\(f[0]); \(f[2])"),
                Check(name: "\(x.service): the guest's kernel is the node's (\(kernel))", passed: f[1] == kernel, detail: f[1]),
                Check(name: "\(x.service): the guest's MAC is the deterministic \(mac)", passed: f[3] == mac, detail: f[3])]
    }

    /// case02: RDP (an X.224 connection confirm to a connection request) or WinRM (an HTTP
    /// answer on /wsman) through the service's published ports, from the manager.
    func windowsChecks(_ s: ClusterState, _ x: Container) async throws -> [Check] {
        let rdp = "exec 3<>/dev/tcp/127.0.0.1/3389 && printf '\\003\\000\\000\\023\\016\\340\\000\\000\\000\\000\\000\\001\\000\\010\\000\\003\\000\\000\\000' >&3 "
            + "&& timeout 20 head -c 2 <&3 | od -An -tx1 | tr -d ' \\n'"
        let winrm = "exec 3<>/dev/tcp/127.0.0.1/5985 && printf 'POST /wsman HTTP/1.1\\r\\nHost: localhost\\r\\nContent-Length: 0\\r\\n\\r\\n' >&3 "
            + "&& timeout 20 head -c 9 <&3"
        let a = (try? await run(s, "bash -c \(Shell.quote(rdp))", timeout: .seconds(60)))?.trimmingCharacters(in: .whitespacesAndNewlines)
        let b = (try? await run(s, "bash -c \(Shell.quote(winrm))", timeout: .seconds(60)))?.trimmingCharacters(in: .whitespacesAndNewlines)
        return [Check(name: "\(x.service): Windows answers RDP (3389) or WinRM (5985) through the published ports",
                      passed: a == "0300" || b == "HTTP/1.1", detail: "RDP: \(a ?? "no answer"); WinRM: \(b ?? "no answer")")]
    }
}
