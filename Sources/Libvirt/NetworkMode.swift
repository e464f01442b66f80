/// How a guest NIC attaches. New modes (bridges for vnode, remote hosts' networks) are
/// new cases here, rendered in one place.
public enum NetworkMode: Sendable, Equatable, Codable {
    /// QEMU user-mode networking (slirp): no root, nothing leaves the host while `restrict`
    /// is set, and TCP ports forwarded from 127.0.0.1.
    case user(UserMode)
    /// A port on a user-space switch reached over a UNIX stream socket (QEMU's `stream`
    /// netdev, length-prefixed frames): a private L2 segment without root.
    case stream(socket: String)
    /// A Linux bridge on the host (needs root or a helper).
    case bridge(name: String)

    /// User-mode settings.
    public struct UserMode: Sendable, Equatable, Codable {
        /// Host 127.0.0.1 port → guest port.
        public var forwards: [PortForward]
        /// When true (the default) the guest cannot open connections out through the host.
        public var restrict: Bool
        public init(forwards: [PortForward], restrict: Bool = true) {
            self.forwards = forwards; self.restrict = restrict
        }
    }

    /// A TCP forward from 127.0.0.1:`host` to the guest's `guest` port.
    public struct PortForward: Sendable, Equatable, Codable {
        public var host: Int
        public var guest: Int
        public init(host: Int, guest: Int) { self.host = host; self.guest = guest }
    }

    /// Whether libvirt's XML can express this mode; the others go through `qemu:commandline`.
    var isNativeToLibvirt: Bool {
        if case .bridge = self { return true }
        return false
    }

    /// The `-netdev` option for modes libvirt cannot express.
    func netdevArgument(id: String) -> String? {
        switch self {
        case .user(let u):
            var parts = ["user", "id=\(id)", "restrict=\(u.restrict ? "on" : "off")"]
            for f in u.forwards { parts.append("hostfwd=tcp:127.0.0.1:\(f.host)-:\(f.guest)") }
            return parts.joined(separator: ",")
        case .stream(let socket):
            // QEMU's option parser treats "," as a separator; a literal comma is doubled.
            return "stream,id=\(id),server=off,addr.type=unix,addr.path=\(socket.replacingOccurrences(of: ",", with: ",,"))"
        case .bridge:
            return nil
        }
    }
}
