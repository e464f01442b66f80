import Foundation
import CloudInit

/// What turns a clone restored from a warm snapshot into a distinct machine, before anyone
/// can reach it: sent by vmctl over the clone's own virtio-serial port (it exists before the
/// network does) as a shell script the template's agent runs as root, then prints the same
/// readiness line a cold boot prints. Order matters: the clock and the RNG first (keys and
/// logs after them are dated and random), the cluster NIC's MAC before its address (the
/// restored NIC carries the template's MAC), sshd last (only with the clone's own host key).
public struct WarmIdentity: Sendable {
    /// The virtio-serial port's name: `/dev/virtio-ports/org.vmctl.identity` in the guest.
    public static let portName = "org.vmctl.identity"
    /// The line that ends the script on the port.
    public static let endMarker = "__VMCTL_IDENTITY_END__"
    /// Printed on the serial console when the clone has applied its identity.
    public static let appliedMarker = "vmctl-identity"
    /// What the clone keeps of its identity's arrival (until its next boot): `cluster test` reads it.
    public static let recordPath = "/run/vmctl-identity"

    public var hostname: String
    /// 32 lowercase hex digits, as /etc/machine-id holds it.
    public var machineID: String
    public var user: String
    public var authorizedKeys: [String]
    public var hostKey: SeedConfig.HostKey
    public var etcHosts: String
    /// Each NIC that differs from the template's: the template's MAC, the clone's MAC, its addresses (CIDR).
    public var nics: [(templateMAC: String, mac: String, addresses: [String])]
    /// Seconds since the epoch, when the script is sent.
    public var now: Double
    /// Fresh host randomness for the guest's kernel RNG (credited, then the CRNG reseeded).
    public var entropy: [UInt8]

    public init(hostname: String, machineID: String, user: String, authorizedKeys: [String], hostKey: SeedConfig.HostKey,
                etcHosts: String, nics: [(templateMAC: String, mac: String, addresses: [String])],
                now: Double = Date().timeIntervalSince1970, entropy: [UInt8] = WarmIdentity.randomBytes(64)) {
        self.hostname = hostname; self.machineID = machineID; self.user = user; self.authorizedKeys = authorizedKeys
        self.hostKey = hostKey; self.etcHosts = etcHosts; self.nics = nics; self.now = now; self.entropy = entropy
    }

    public static func randomBytes(_ n: Int) -> [UInt8] {
        var g = SystemRandomNumberGenerator()
        return (0..<n).map { _ in UInt8.random(in: 0...255, using: &g) }
    }

    /// A fresh machine id (what `systemd-machine-id-setup` would write).
    public static func newMachineID() -> String {
        randomBytes(16).map { String(format: "%02x", $0) }.joined()
    }

    /// `content` written to `path` (double-quoted: `$home` expands) with `mode`, through base64
    /// (no quoting of keys or names).
    static func file(_ path: String, _ content: String, mode: String) -> String {
        let b64 = Data(content.utf8).base64EncodedString()
        return "umask 077; printf '%s' '\(b64)' | base64 -d > \"\(path).vmctl-new\" && chmod \(mode) \"\(path).vmctl-new\" && mv -f \"\(path).vmctl-new\" \"\(path)\""
    }

    /// The script, ending with `endMarker` on a line of its own. Every name in it comes from
    /// vmctl's validated spec; contents travel base64-encoded.
    public func script(then more: String = "") -> String {
        let home = "$home"
        var lines = [
            "set -u",
            "home=$(getent passwd \(user) | cut -d: -f6); [ -n \"$home\" ] || { echo 'no user \(user)'; exit 1; }",
            // On the serial console (vmctl's log of the node) and in the journal.
            "say() { echo \"\(Self.appliedMarker) $*\" > /dev/ttyS0; logger -t \(Self.appliedMarker) \"$*\" 2>/dev/null; }",
            // The clock: the template's stopped when it was saved.
            "date -u -s @\(String(format: "%.3f", now)) >/dev/null",
            // The kernel RNG: the template's pool state is shared by every clone of it.
            "python3 -c 'import base64,fcntl,struct,sys; b=base64.b64decode(sys.argv[1]); f=open(\"/dev/random\",\"wb\"); "
                + "fcntl.ioctl(f,0x40085203,struct.pack(\"ii\",len(b)*8,len(b))+b); fcntl.ioctl(f,0x5207)' "
                + "'\(Data(entropy).base64EncodedString())' && say rng reseeded with \(entropy.count) host bytes",
            Self.file("/etc/hostname", hostname + "\n", mode: "644"),
            "hostname '\(hostname)'",
            Self.file("/etc/machine-id", machineID + "\n", mode: "444"),
            Self.file("/etc/hosts", etcHosts, mode: "644"),
            "rm -f /etc/ssh/ssh_host_*",
            Self.file("/etc/ssh/ssh_host_ed25519_key", hostKey.privateKey.hasSuffix("\n") ? hostKey.privateKey : hostKey.privateKey + "\n", mode: "600"),
            Self.file("/etc/ssh/ssh_host_ed25519_key.pub", hostKey.publicKey + "\n", mode: "644"),
            "install -d -m 700 -o \(user) -g \(user) \"\(home)/.ssh\"",
            Self.file("\(home)/.ssh/authorized_keys", authorizedKeys.joined(separator: "\n") + "\n", mode: "600"),
            "chown \(user):\(user) \"\(home)/.ssh/authorized_keys\"",
        ]
        for n in nics {
            lines.append("dev=$(grep -l -x '\(n.templateMAC)' /sys/class/net/*/address | head -1 | cut -d/ -f5)")
            lines.append("[ -n \"$dev\" ] || { say failed: no NIC with MAC \(n.templateMAC); exit 1; }")
            if n.mac != n.templateMAC {
                // virtio-net changes its MAC live (it tells QEMU); otherwise down, change, up.
                lines.append("ip link set dev \"$dev\" address \(n.mac) 2>/dev/null || { ip link set dev \"$dev\" down; ip link set dev \"$dev\" address \(n.mac); }")
            }
            lines.append("ip link set dev \"$dev\" up")
            for a in n.addresses {
                lines.append("ip addr replace \(a) dev \"$dev\"")
            }
        }
        lines += [
            "systemctl unmask --runtime ssh.service >/dev/null 2>&1; systemctl unmask --runtime sshd.service >/dev/null 2>&1",
            "systemctl start ssh.service 2>/dev/null || systemctl start sshd.service",
            "echo \"hostname=\(hostname) machine-id=\(machineID) applied=$(date -u +%s)\" > \(Self.recordPath)",
            "say applied \(hostname)",
        ]
        if !more.isEmpty { lines.append(more) }
        lines.append(Self.endMarker)
        return lines.joined(separator: "\n") + "\n"
    }
}
