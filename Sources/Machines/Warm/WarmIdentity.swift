import Foundation
import CloudInit

/// What turns a clone restored from a warm snapshot into a distinct machine, before anyone
/// can reach it: sent by vmctl over the clone's own virtio-serial port (it exists before the
/// network does) as directive lines the template's agent applies as root, then prints the
/// same readiness line a cold boot prints. Order matters: the clock and the RNG first (keys and
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

    /// What the agent applies itself, in the order the lines come (see `WarmAgent.python`).
    public enum Directive: String, CaseIterable, Sendable {
        /// `#vmctl-entropy BASE64`: credited to the kernel RNG, then the CRNG reseeded.
        case entropy = "#vmctl-entropy"
        /// `#vmctl-clock SECONDS`: the wall clock (the template's stopped when it was saved).
        case clock = "#vmctl-clock"
        /// `#vmctl-hostname NAME`: the kernel's hostname.
        case hostname = "#vmctl-hostname"
        /// `#vmctl-rm BASE64(GLOB)`: every file the glob matches removed.
        case remove = "#vmctl-rm"
        /// `#vmctl-file MODE OWNER BASE64(PATH) BASE64(CONTENT)`: written whole and renamed into
        /// place; a path starting `~/` is in OWNER's home.
        case file = "#vmctl-file"
        /// `#vmctl-log TEXT`: said on the serial console (after `vmctl-identity`) and in the journal.
        case log = "#vmctl-log"
        /// `#vmctl-nic TEMPLATE-MAC MAC CIDR,CIDR|-`: the NIC that has the template's MAC gets
        /// `MAC` (live, else down and up again), is brought up and given the addresses.
        case nic = "#vmctl-nic"
        /// `#vmctl-sshd UNIT…`: the first of these units systemd has is started; applied when
        /// its start job is done (sshd is `Type=notify`: it listens).
        case sshd = "#vmctl-sshd"
    }

    static func b64(_ s: String) -> String { Data(s.utf8).base64EncodedString() }

    static func file(_ path: String, _ content: String, mode: String, owner: String = "root") -> String {
        "\(Directive.file.rawValue) \(mode) \(owner) \(b64(path)) \(b64(content))"
    }

    /// What vmctl sends, ending with `endMarker` on a line of its own: directives the agent
    /// applies in order (RNG, clock, names, keys, the NICs, sshd), no shell. Every name in it
    /// comes from vmctl's validated spec; paths and contents travel base64-encoded.
    /// The agent prints the ready line once all of it worked.
    public func script() -> String {
        var lines = [
            "\(Directive.entropy.rawValue) \(Data(entropy).base64EncodedString())",
            "\(Directive.clock.rawValue) \(String(format: "%.3f", now))",
            Self.file("/etc/hostname", hostname + "\n", mode: "644"),
            "\(Directive.hostname.rawValue) \(hostname)",
            Self.file("/etc/machine-id", machineID + "\n", mode: "444"),
            Self.file("/etc/hosts", etcHosts, mode: "644"),
            "\(Directive.remove.rawValue) \(Self.b64("/etc/ssh/ssh_host_*"))",
            Self.file("/etc/ssh/ssh_host_ed25519_key", hostKey.privateKey.hasSuffix("\n") ? hostKey.privateKey : hostKey.privateKey + "\n", mode: "600"),
            Self.file("/etc/ssh/ssh_host_ed25519_key.pub", hostKey.publicKey + "\n", mode: "644"),
            Self.file("~/.ssh/authorized_keys", authorizedKeys.joined(separator: "\n") + "\n", mode: "600", owner: user),
            Self.file(Self.recordPath, "hostname=\(hostname) machine-id=\(machineID) applied=\(Int(now))\n", mode: "644"),
            "\(Directive.log.rawValue) rng reseeded with \(entropy.count) host bytes",
        ]
        lines += nics.map { n in
            "\(Directive.nic.rawValue) \(n.templateMAC) \(n.mac) \(n.addresses.isEmpty ? "-" : n.addresses.joined(separator: ","))"
        }
        lines += [
            "\(Directive.sshd.rawValue) ssh.service sshd.service",
            "\(Directive.log.rawValue) applied \(hostname)",
        ]
        lines.append(Self.endMarker)
        return lines.joined(separator: "\n") + "\n"
    }
}
