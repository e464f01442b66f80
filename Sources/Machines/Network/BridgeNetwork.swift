import CloudInit
internal import Libvirt

/// A NIC on a Linux bridge of the host (a tap libvirt makes and enslaves): the guest is on the
/// bridge's LAN and asks the site's DHCP server for its address, matched by its MAC. vmctl
/// learns the address from the guest's ready line and reaches SSH there (port 22).
public struct BridgeNetwork: NetworkAttachment, LibvirtAttachment {
    public var mac: String
    public var bridge: String

    public init(mac: String, bridge: String) { self.mac = mac; self.bridge = bridge }

    var nic: DomainSpec.NIC { DomainSpec.NIC(mode: .bridge(name: bridge), mac: mac) }

    public var guestInterface: SeedConfig.Interface {
        SeedConfig.Interface(id: "lan", mac: mac, addresses: [], dhcp: true)
    }
}
