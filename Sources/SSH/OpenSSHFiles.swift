/// Files that let plain OpenSSH (`ssh -F ssh_config node1`) reach guests with the same
/// strict host-key checking vmctl uses.
public enum OpenSSHFiles {
    /// One guest as OpenSSH should see it.
    public struct Host: Sendable, Equatable {
        public var alias: String
        public var hostName: String
        public var port: Int
        public var user: String
        public var hostKey: HostKeyPin
        public init(alias: String, hostName: String, port: Int, user: String, hostKey: HostKeyPin) {
            self.alias = alias; self.hostName = hostName; self.port = port; self.user = user; self.hostKey = hostKey
        }
    }

    /// The host pattern OpenSSH looks up: `[host]:port` unless the port is 22.
    public static func knownHostsPattern(host: String, port: Int) -> String {
        port == 22 ? host : "[\(host)]:\(port)"
    }

    /// A known_hosts file pinning every host's key under its address and its alias.
    public static func knownHosts(_ hosts: [Host]) -> String {
        hosts.map { h in
            "\(knownHostsPattern(host: h.hostName, port: h.port)),\(h.alias) \(h.hostKey.openSSHLine)\n"
        }.joined()
    }

    /// An ssh_config with strict checking against `knownHostsPath` and the cluster key.
    public static func sshConfig(_ hosts: [Host], identityFile: String, knownHostsPath: String) -> String {
        hosts.map { h in
            """
            Host \(h.alias)
              HostName \(h.hostName)
              Port \(h.port)
              User \(h.user)
              IdentityFile "\(identityFile)"
              IdentitiesOnly yes
              UserKnownHostsFile "\(knownHostsPath)"
              GlobalKnownHostsFile /dev/null
              StrictHostKeyChecking yes
              HostKeyAlias \(knownHostsPattern(host: h.hostName, port: h.port))
              LogLevel ERROR

            """
        }.joined()
    }
}
