import Foundation
import SSH
import Machines

/// One node's answer to `cluster exec`.
public struct NodeExecResult: Sendable, Codable {
    public var node: String
    public var status: Int32?
    public var stdout: String
    public var stderr: String
    public var error: String?
}

/// Which output of a remote command a piece of streamed `cluster exec` output is.
public enum ExecStream: Sendable { case stdout, stderr }

/// What `cluster status` / `info` report per node.
public struct NodeStatus: Sendable, Codable {
    public var node: String
    public var state: String
    public var sshPort: Int
    /// How to reach the node's display: a UNIX socket path (root only), or `127.0.0.1:PORT`
    /// for clusters made before VNC moved off TCP.
    public var vnc: String
    public var managementIP: String
    public var clusterIP: String?
    public var diskBytes: UInt64
    public var image: String
    public var uptimeSeconds: Int?
    public var domain: String
    /// A running node's link to the cluster segment (`up`, `switch-dead`, `switch-restarted`); nil otherwise.
    public var clusterLink: ClusterLink? = nil
}

extension ClusterManager {
    /// Selects nodes by name (`node2`, `2`); all when `names` is empty.
    public func select(_ s: ClusterState, _ names: [String]) throws -> [NodePlan] {
        if names.isEmpty { return s.nodes.map(\.plan) }
        return try names.flatMap { $0.split(separator: ",").map(String.init) }.map { n in
            let i = try ClusterSpec.nodeIndex(n, count: s.nodes.count)
            return s.nodes[i - 1].plan
        }
    }

    /// Runs `command` on `nodes` in parallel over libssh2; one result per node, in node order.
    /// Output is captured, at most `OutputCapture.defaultLimit` (16 MiB) per stream and node:
    /// past that the node's result is an error saying so.
    public func exec(_ s: ClusterState, nodes: [NodePlan], command: String, input: Data? = nil,
                     timeout: Duration = .seconds(300)) async -> [NodeExecResult] {
        await eachNode(nodes) { node in
            let r = try await SSHSession.run(try self.sshTarget(s, node: node), command, input: input, timeout: timeout)
            return NodeExecResult(node: node.name, status: r.status, stdout: r.stdout, stderr: r.stderr, error: nil)
        }
    }

    /// Runs `command` on `nodes` in parallel, handing each piece of output to `output` as it
    /// arrives, so nothing is held in memory. `output` is called from several threads at once
    /// (one per node) and orders its own writes; `finished` is called as each node ends.
    /// Results carry status or error only, in node order.
    public func exec(_ s: ClusterState, nodes: [NodePlan], command: String, timeout: Duration,
                     output: @escaping @Sendable (_ node: String, _ stream: ExecStream, _ piece: Data) throws -> Void,
                     finished: @escaping @Sendable (NodeExecResult) -> Void = { _ in }) async -> [NodeExecResult] {
        await eachNode(nodes) { node in
            let name = node.name
            let r = try await SSHSession.run(try self.sshTarget(s, node: node), command, stdin: nil,
                                             stdout: { try output(name, .stdout, $0) },
                                             stderr: { try output(name, .stderr, $0) }, timeout: timeout)
            return NodeExecResult(node: name, status: r.status, stdout: "", stderr: "", error: nil)
        } finished: { finished($0) }
    }

    /// `body` on every node in parallel; a failure becomes that node's error. In node order.
    private func eachNode(_ nodes: [NodePlan], _ body: @escaping @Sendable (NodePlan) async throws -> NodeExecResult,
                          finished: @escaping @Sendable (NodeExecResult) -> Void = { _ in }) async -> [NodeExecResult] {
        await withTaskGroup(of: (Int, NodeExecResult).self) { group in
            for (i, node) in nodes.enumerated() {
                group.addTask {
                    let result: NodeExecResult
                    do {
                        result = try await body(node)
                    } catch let e as SSHError where e.kind == .timeout {
                        result = NodeExecResult(node: node.name, status: nil, stdout: "", stderr: "",
                                                error: "\(e) (--timeout sets the limit)")
                    } catch {
                        result = NodeExecResult(node: node.name, status: nil, stdout: "", stderr: "", error: "\(error)")
                    }
                    finished(result)
                    return (i, result)
                }
            }
            var out: [(Int, NodeExecResult)] = []
            for await r in group { out.append(r) }
            return out.sorted { $0.0 < $1.0 }.map(\.1)
        }
    }

    /// Live per-node status: from libvirt when no other vmctl holds the cluster, else from state.
    public func status(_ name: String) async throws -> (ClusterState, [NodeStatus]) {
        let s = try existing(name)
        var live: [String: Machine.PowerState] = [:]
        if !ClusterLock.isHeld(state: state, name: name), let lock = try? ClusterLock.acquire(state: state, name: name, purpose: "cluster status") {
            defer { lock.release() }
            if let connection = try? await host(of: s).connect() {
                do {
                    var m: [String: Machine.PowerState] = [:]
                    for n in s.nodes {
                        m[n.plan.domainName] = try await machine(s, n.plan, connection: connection, image: nil).powerState()
                    }
                    live = m
                } catch {}
                await connection.close()
            }
        }
        let sw = switchStatus(name)
        let rows = s.nodes.map { n -> NodeStatus in
            let st = live[n.plan.domainName]
            let stateText = st.map { $0 == .running && n.phase == .verified ? "running" : $0.rawValue } ?? n.phase.rawValue
            let disk = ((try? FileManager.default.attributesOfItem(atPath: n.plan.disk))?[.size] as? UInt64) ?? 0
            let up = (st == .running) ? n.bootedAt.map { Int(Date().timeIntervalSince($0)) } : nil
            return NodeStatus(node: n.plan.name, state: stateText, sshPort: n.plan.sshPort, vnc: n.plan.vncPort.map { "127.0.0.1:\($0)" } ?? n.plan.vncSocket,
                              managementIP: UserModeNetwork(mac: n.plan.mgmtMAC, sshPort: n.plan.sshPort).guestAddress ?? "-", clusterIP: n.plan.clusterIP, diskBytes: disk, image: s.spec.image,
                              uptimeSeconds: up, domain: n.plan.domainName,
                              clusterLink: Self.link(n, running: st == .running, switch: sw))
        }
        return (s, rows)
    }
}
