import Crypto
import Foundation

/// Locally administered MACs for a cluster's NICs, a function of its name.
public enum MACAddress {
    /// Which of a node's NICs a MAC is for: the byte that tells them apart in the address.
    public enum Role: UInt8, Sendable, CaseIterable {
        case management = 0x10
        case cluster = 0x20
    }

    /// A MAC that depends only on the cluster's name, the NIC's role and the node's index, so
    /// a cluster made again under the same name gets the same MACs (DHCP reservations keep
    /// matching) whatever subnet and ports it is given: `52:54:RR:HH:HH:II`, RR the role,
    /// HH:HH the first two bytes of the SHA-256 of the name, II the node's index (1…255).
    /// Within a cluster no two NICs share a MAC (role and index differ); two clusters share
    /// MACs only when their names' hashes agree in those 16 bits, and each cluster segment is
    /// private to its cluster. 0x52 is locally administered (bit 1) unicast (bit 0 clear), and
    /// RR is never 00, so these never meet the 52:54:00 addresses libvirt and QEMU pick.
    public static func stable(role: Role, cluster: String, index: Int) -> String {
        precondition((1...255).contains(index), "node index \(index) does not fit one byte of a MAC")
        let hash = Array(SHA256.hash(data: Data(cluster.utf8)))
        return String(format: "52:54:%02x:%02x:%02x:%02x", role.rawValue, hash[0], hash[1], index)
    }
}
