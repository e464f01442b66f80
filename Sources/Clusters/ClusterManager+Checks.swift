import Blocking
import Foundation
import SSH
import VMCtlSupport
import Images
import Machines

/// One integration check on one node.
public struct CheckResult: Sendable, Codable {
    public var node: String
    public var check: String
    public var passed: Bool
    public var detail: String
}

extension ClusterManager {
    /// `cluster test`: integration checks over SSH on every node, in parallel across nodes:
    /// systemd PID 1 and running, /dev/kmsg, cgroup v2, hostname, every node reaches every
    /// other by name over the cluster network (ping and TCP), plain OpenSSH with the pinned
    /// known_hosts, and the image recipe's own checks.
    public func test(_ name: String) async throws -> [CheckResult] {
        let s = try existing(name)
        guard s.phase == .running else {
            throw VMCtlError(.wrongState, message: "cluster \(name) is \(s.phase.rawValue), not running: `vmctl cluster start --name \(name)` first")
        }
        let image = try image(of: s)
        let p = paths(name)
        let nodes = bootstrapNodes(s)
        return await withTaskGroup(of: [CheckResult].self) { group in
            for node in s.nodes.map(\.plan) {
                group.addTask {
                    var checks: [(String, String, (ExecResult) -> String?)] = [
                        ("systemd is PID 1", "cat /proc/1/comm", { $0.stdout.trimmed == "systemd" ? nil : "PID 1 is \($0.stdout.trimmed)" }),
                        ("system running", "sudo systemctl is-system-running --wait; sudo systemctl --failed --no-legend --plain | head -5",
                         { $0.stdout.hasPrefix("running") ? nil
                             : "state: \(($0.stdout + $0.stderr).trimmed.replacingOccurrences(of: "\n", with: "; "))" }),
                        ("/dev/kmsg readable", "sudo dd if=/dev/kmsg of=/dev/null bs=8192 count=1 status=none && echo ok",
                         { $0.status == 0 ? nil : "exit \($0.status): \($0.stderr.trimmed)" }),
                        ("cgroup v2 mounted", "stat -fc %T /sys/fs/cgroup", { $0.stdout.trimmed == "cgroup2fs" ? nil : "found \($0.stdout.trimmed)" }),
                        ("hostname matches", "hostname", { $0.stdout.trimmed == node.name ? nil : "hostname is \($0.stdout.trimmed)" }),
                    ]
                    if let snapshot = s.nodes.first(where: { $0.plan.name == node.name })?.warmFrom {
                        // A restored clone ran no cloud-init of its own: what makes it itself is the identity.
                        // After a later cold boot, the seed (cloud-init) made it itself: the record is gone with /run.
                        checks.append(("warm identity applied (restored from \(snapshot)), or booted cold since",
                                       "sudo cat \(WarmIdentity.recordPath) 2>/dev/null || echo booted-cold",
                                       { $0.stdout.contains("hostname=\(node.name) ") || $0.stdout.trimmed == "booted-cold" ? nil
                                           : "found: \($0.stdout.trimmed)" }))
                    }
                    for peer in s.nodes.map(\.plan) where peer.name != node.name {
                        checks.append(("reaches \(peer.name) (ping, tcp/22)",
                                       "getent hosts \(peer.name) && ping -c1 -W3 \(peer.name) >/dev/null && nc -z -w3 \(peer.name) 22 && echo ok",
                                       { $0.status == 0 ? nil : "exit \($0.status): \(($0.stdout + $0.stderr).trimmed)" }))
                    }
                    // Recipe checks are templates: {{count}}, {{#peers}}…{{/peers}} and the like.
                    let scope = BootstrapStep.scope(for: nodes.first { $0.name == node.name }, nodes: nodes,
                                                    clusterFacts: s.bootstrap?.clusterFacts ?? [:])
                    for c in image.checks {
                        let on = (try? BootstrapStep.select(c.on ?? "all", nodes: nodes, roles: image.roles ?? [:])) ?? nodes
                        guard on.contains(where: { $0.name == node.name }) else { continue }
                        let run = (try? Template(c.run).render(scope)) ?? c.run
                        let expect = c.expect.map { (try? Template($0).render(scope)) ?? $0 }
                        let label = (try? Template(c.name).render(scope)) ?? c.name
                        checks.append((label, run, { r in
                            guard r.status == 0 else { return "exit \(r.status): \((r.stdout + r.stderr).trimmed.suffix(200))" }
                            if let e = expect, !r.stdout.contains(e) { return "expected '\(e)' in: \(r.stdout.trimmed.suffix(200))" }
                            return nil
                        }))
                    }
                    var results: [CheckResult] = []
                    do {
                        let target = try self.sshTarget(s, node: node)
                        var session = try await SSHSession.connect(target)
                        for (label, cmd, judge) in checks {
                            do {
                                // At most 120 s and 16 MiB per stream (OutputCapture.defaultLimit).
                                let r = try await session.exec(cmd, timeout: .seconds(120))
                                let why = judge(r)
                                results.append(CheckResult(node: node.name, check: label, passed: why == nil, detail: why ?? "ok"))
                            } catch {
                                results.append(CheckResult(node: node.name, check: label, passed: false, detail: "\(error)"))
                                if let e = error as? SSHError, e.kind == .timeout || e.kind == .outputLimit {
                                    // The abandoned command may still be writing on that connection: start afresh.
                                    await session.close()
                                    session = try await SSHSession.connect(target)
                                }
                            }
                        }
                        await session.close()
                    } catch {
                        results.append(CheckResult(node: node.name, check: "libssh2 session (pinned host key)", passed: false, detail: "\(error)"))
                    }
                    results.append(await Self.openSSHCheck(node: node.name, config: p.sshConfig))
                    return results
                }
            }
            var all: [CheckResult] = []
            for await r in group { all += r }
            return all.sorted { ($0.node.compare($1.node, options: .numeric) == .orderedAscending) }
        }
    }

    /// Plain OpenSSH with the written ssh_config: strict host-key checking against known_hosts.
    static func openSSHCheck(node: String, config: String) async -> CheckResult {
        let label = "OpenSSH, strict known_hosts"
        do {
            let out = try await Command("ssh", ["-F", config, "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", node, "hostname"]).checkedAsync()
            let ok = out.trimmed == node
            return CheckResult(node: node, check: label, passed: ok, detail: ok ? "ok" : "answered \(out.trimmed)")
        } catch {
            return CheckResult(node: node, check: label, passed: false, detail: "\(error)")
        }
    }
}

extension String {
    var trimmed: String { trimmingCharacters(in: .whitespacesAndNewlines) }
}
