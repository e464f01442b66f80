import Foundation
import SSH
import Machines

/// One guest as vmctl plans it, before anything exists: every choice that a reconciler
/// needs to recreate or resume it is here (ports, MACs, addresses, paths).
public struct NodePlan: Codable, Sendable, Equatable {
    /// `node1`…`nodeN`: the hostname and the name users type.
    public var name: String
    public var index: Int
    /// The libvirt domain name: `<cluster>-<node>`, unique even on a shared libvirt.
    public var domainName: String
    public var sshPort: Int
    /// A TCP VNC port (clusters made before VNC moved to a UNIX socket); nil now.
    public var vncPort: Int?
    public var mgmtMAC: String
    /// Address on the cluster segment (CIDR), when the node has one.
    public var clusterAddress: String?
    public var clusterMAC: String?
    /// The node's directory: disk, seed, serial log, host key.
    public var directory: String
    /// Pinned once the host key is generated.
    public var hostKey: HostKeyPin?

    public init(name: String, index: Int, domainName: String, sshPort: Int, vncPort: Int?, mgmtMAC: String,
                clusterAddress: String?, clusterMAC: String?, directory: String, hostKey: HostKeyPin?) {
        self.name = name; self.index = index; self.domainName = domainName; self.sshPort = sshPort
        self.vncPort = vncPort; self.mgmtMAC = mgmtMAC; self.clusterAddress = clusterAddress
        self.clusterMAC = clusterMAC; self.directory = directory; self.hostKey = hostKey
    }

    /// The node's files, named once by the machine layer.
    public var files: MachineFiles { MachineFiles(directory: directory) }
    public var disk: String { files.disk }
    public var seed: String { files.seed }
    public var serialLog: String { files.serialLog }
    public var hostKeyPath: String { files.hostKey }
    public var vncDirectory: String { files.vncDirectory }
    public var vncSocket: String { files.vncSocket }
    /// The cluster address without its prefix length.
    public var clusterIP: String? { clusterAddress.map { String($0.split(separator: "/")[0]) } }
}
