import CloudInit
internal import Libvirt

/// QEMU user-mode networking: the guest's SSH forwarded from 127.0.0.1, and with `restrict`
/// (the default) nothing the guest sends leaves through the host. Static address, so no
/// DHCP wait.
public struct UserModeNetwork: NetworkAttachment, LibvirtAttachment {
    public var mac: String
    /// The 127.0.0.1 port forwarded to the guest's port 22.
    public var sshPort: Int
    /// When true the guest cannot open connections out through the host.
    public var restrict: Bool

    /// The fixed slirp address and gateway (QEMU's defaults).
    public static let address = "10.0.2.15/24"
    public static let gateway = "10.0.2.2"
    /// QEMU's built-in DNS forwarder, given to the guest only when it may reach out.
    public static let nameserver = "10.0.2.3"

    public init(mac: String, sshPort: Int, restrict: Bool = true) {
        self.mac = mac; self.sshPort = sshPort; self.restrict = restrict
    }

    var nic: DomainSpec.NIC {
        DomainSpec.NIC(mode: .user(.init(forwards: [.init(host: sshPort, guest: 22)], restrict: restrict)), mac: mac)
    }

    public var guestInterface: SeedConfig.Interface {
        SeedConfig.Interface(id: "mgmt", mac: mac, addresses: [Self.address], gateway: Self.gateway,
                             nameservers: restrict ? [] : [Self.nameserver])
    }

    public var sshEndpoint: SSHEndpoint? { SSHEndpoint(host: "127.0.0.1", port: sshPort) }
}
