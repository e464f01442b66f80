/// What one guest's NoCloud seed says: identity, login, host key, network, extra config.
public struct SeedConfig: Sendable, Equatable {
    /// The account vmctl logs in with.
    public struct User: Sendable, Equatable {
        public var name: String
        public var authorizedKeys: [String]
        public init(name: String, authorizedKeys: [String]) { self.name = name; self.authorizedKeys = authorizedKeys }
    }

    /// The SSH host key vmctl generated for this guest, so its first connection is already strict.
    public struct HostKey: Sendable, Equatable {
        public var privateKey: String
        public var publicKey: String
        public init(privateKey: String, publicKey: String) { self.privateKey = privateKey; self.publicKey = publicKey }
    }

    /// One NIC, matched by MAC, with static addresses (no DHCP wait).
    public struct Interface: Sendable, Equatable {
        public var id: String
        public var mac: String
        /// CIDR form, e.g. `10.0.2.15/24`.
        public var addresses: [String]
        public var gateway: String?
        public var nameservers: [String]
        /// The address (and gateway, DNS, hostname) come from the site's DHCP server instead.
        public var dhcp: Bool
        public init(id: String, mac: String, addresses: [String], gateway: String? = nil, nameservers: [String] = [], dhcp: Bool = false) {
            self.id = id; self.mac = mac; self.addresses = addresses; self.gateway = gateway; self.nameservers = nameservers
            self.dhcp = dhcp
        }
    }

    /// A file cloud-init writes before SSH comes up.
    public struct File: Sendable, Equatable {
        public var path: String
        public var content: String
        public var permissions: String
        public init(path: String, content: String, permissions: String = "0644") {
            self.path = path; self.content = content; self.permissions = permissions
        }
    }

    public var instanceID: String
    public var hostname: String
    public var user: User
    public var hostKey: HostKey
    public var interfaces: [Interface]
    /// Lines for /etc/hosts beyond localhost and the node itself: address → names.
    public var hosts: [(address: String, names: [String])]
    public var files: [File]
    /// Shell commands run once, late in boot (cloud-init `runcmd`).
    public var runcmd: [String]
    /// Commands run early on every boot, as argument lists (cloud-init `bootcmd`, init stage).
    public var bootcmd: [[String]]

    public init(instanceID: String, hostname: String, user: User, hostKey: HostKey, interfaces: [Interface],
                hosts: [(address: String, names: [String])] = [], files: [File] = [], runcmd: [String] = [],
                bootcmd: [[String]] = []) {
        self.instanceID = instanceID; self.hostname = hostname; self.user = user; self.hostKey = hostKey
        self.interfaces = interfaces; self.hosts = hosts; self.files = files; self.runcmd = runcmd
        self.bootcmd = bootcmd
    }

    public static func == (a: SeedConfig, b: SeedConfig) -> Bool {
        a.instanceID == b.instanceID && a.hostname == b.hostname && a.user == b.user && a.hostKey == b.hostKey
            && a.interfaces == b.interfaces && a.files == b.files && a.runcmd == b.runcmd && a.bootcmd == b.bootcmd
            && a.hosts.map { "\($0.address) \($0.names)" } == b.hosts.map { "\($0.address) \($0.names)" }
    }
}
