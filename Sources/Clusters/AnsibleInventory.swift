import Foundation
import Images
import Machines

/// An Ansible inventory for a cluster (`vmctl cluster inventory`): a group per cluster and one
/// per role of its image's recipe (`swarm_manager`, `swarm_worker`), each node with
/// `ansible_host`/`ansible_port`/`ansible_user`, the cluster's key, and SSH arguments that pin
/// vmctl's own `known_hosts` with strict checking, so a user's Ansible run trusts exactly the
/// host keys vmctl generated.
public enum AnsibleInventory {
    public enum Format: String, Sendable, CaseIterable { case ini, yaml }

    public struct Host: Sendable, Equatable {
        public var name: String
        public var port: Int
    }

    /// Group names: the cluster's, with characters Ansible does not take in a group name as `_`.
    public static func group(_ s: String) -> String {
        String(s.map { $0.isLetter || $0.isNumber || $0 == "_" ? $0 : "_" })
    }

    public static func render(cluster: String, hosts: [Host], roles: [String: [String]], user: String, key: String,
                              knownHosts: String, format: Format) -> String {
        let g = group(cluster)
        let args = "-o UserKnownHostsFile=\(knownHosts) -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes"
        let roleGroups = roles.keys.sorted().map { role in
            ("\(g)_\(group(role))", (try? BootstrapStep.select(role, nodes: hosts.enumerated().map {
                BootstrapNode(name: $0.element.name, index: $0.offset + 1, address: "") }, roles: roles).map(\.name)) ?? [])
        }
        switch format {
        case .ini:
            var out = ["[\(g)]"]
            out += hosts.map { "\($0.name) ansible_host=127.0.0.1 ansible_port=\($0.port) ansible_user=\(user)" }
            for (name, members) in roleGroups { out += ["", "[\(name)]"] + members }
            out += ["", "[\(g):vars]", "ansible_ssh_private_key_file=\(key)", "ansible_ssh_common_args='\(args)'"]
            for (name, _) in roleGroups { out += ["", "[\(name):vars]", "ansible_ssh_private_key_file=\(key)", "ansible_ssh_common_args='\(args)'"] }
            return out.joined(separator: "\n") + "\n"
        case .yaml:
            var out = ["all:", "  children:", "    \(g):", "      hosts:"]
            out += hosts.map { "        \($0.name): {ansible_host: 127.0.0.1, ansible_port: \($0.port), ansible_user: \(user)}" }
            out += ["      vars:", "        ansible_ssh_private_key_file: \"\(key)\"", "        ansible_ssh_common_args: \"\(args)\""]
            if !roleGroups.isEmpty {
                out += ["      children:"]
                for (name, members) in roleGroups {
                    out += ["        \(name):", "          hosts:"] + members.map { "            \($0): {}" }
                }
            }
            return out.joined(separator: "\n") + "\n"
        }
    }
}

extension ClusterManager {
    /// The inventory of cluster `name` in `format`.
    public func inventory(_ name: String, format: AnsibleInventory.Format) throws -> String {
        let s = try existing(name)
        let p = paths(name)
        let roles = (try? ImageStore(state: state).find(s.spec.image))??.roles ?? [:]
        return AnsibleInventory.render(cluster: name, hosts: s.nodes.map { .init(name: $0.plan.name, port: $0.plan.sshPort) },
                                       roles: roles, user: s.user, key: p.privateKey, knownHosts: p.knownHosts, format: format)
    }
}
