import CloudInit
internal import Libvirt

/// One NIC of a machine: how libvirt attaches it, what the guest configures on it, and
/// whether vmctl reaches the guest's SSH through it. A new way to attach a NIC (a bridge,
/// a remote host's network) is a new type in its own file, not a new case spread around.
public protocol NetworkAttachment: Sendable {
    /// The guest NIC's MAC address (also how cloud-init matches its configuration).
    var mac: String { get }
    /// The guest's configuration of this NIC (NoCloud network-config), matched by MAC.
    var guestInterface: SeedConfig.Interface { get }
    /// Where vmctl connects to reach the guest's port 22 over this NIC, if it can.
    var sshEndpoint: SSHEndpoint? { get }
    /// The guest's address on this NIC without its prefix length, when it is static.
    var guestAddress: String? { get }
}

/// An attachment the machine layer can hand to libvirt: every `NetworkAttachment` of
/// Machines is one (a new one outside Machines would not build into a domain).
protocol LibvirtAttachment: NetworkAttachment {
    /// The NIC as libvirt sees it.
    var nic: DomainSpec.NIC { get }
}

/// A host and port vmctl opens an SSH connection to.
public struct SSHEndpoint: Sendable, Equatable {
    public var host: String
    public var port: Int
    public init(host: String, port: Int) { self.host = host; self.port = port }
}

extension NetworkAttachment {
    public var sshEndpoint: SSHEndpoint? { nil }
    public var guestAddress: String? {
        guestInterface.addresses.first.map { String($0.split(separator: "/")[0]) }
    }
}
