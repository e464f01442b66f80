import CloudInit
internal import Libvirt

/// A port on vmctl's own L2 switch (`vmctl switch-daemon`), reached by QEMU's `stream`
/// netdev over a UNIX socket: a private segment between machines, no root, no host traffic.
public struct SwitchNetwork: NetworkAttachment, LibvirtAttachment {
    public var mac: String
    /// The switch's socket.
    public var socket: String
    /// The guest's static address on the segment (CIDR).
    public var address: String

    public init(mac: String, socket: String, address: String) {
        self.mac = mac; self.socket = socket; self.address = address
    }

    var nic: DomainSpec.NIC { DomainSpec.NIC(mode: .stream(socket: socket), mac: mac) }

    public var guestInterface: SeedConfig.Interface {
        SeedConfig.Interface(id: "cluster", mac: mac, addresses: [address])
    }
}
