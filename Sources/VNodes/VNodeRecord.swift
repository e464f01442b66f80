import Foundation
import SSH
import VMCtlSupport

/// What vmctl keeps about one vnode (`STATE/vnodes/STEM/NAME/vnode.json`, 0600, written
/// atomically): enough to find its domain again, reach it over SSH with its pinned key and
/// show it in `vnode list`.
public struct VNodeRecord: Codable, Sendable, Equatable {
    public var name: String
    public var stem: String
    public var number: Int
    public var distro: String
    public var user: String
    public var mac: String
    /// 127.0.0.1's port forwarded to the guest's SSH.
    public var sshPort: Int
    /// nil until the machine's host key exists.
    public var hostKey: HostKeyPin?
    /// The libvirt URI the domain lives on, and the embedded root when embedded.
    public var uri: String
    public var embeddedRoot: String?
    public var cpus: Int
    public var memoryMiB: Int
    public var diskGiB: Int
    public var firmware: String
    /// The cached base disk its overlay sits on.
    public var base: String
    public var created: Date
    /// When vmctl last started it.
    public var booted: Date?
    /// `installing`, `ready`.
    public var phase: String
    /// `user` (nil: the same) or `bridge=br0`.
    public var network: String?
    /// On a bridge: the address the site's DHCP gave it (from its ready line).
    public var guestAddress: String?

    public var onBridge: Bool { network?.hasPrefix("bridge=") == true }

    /// Where vmctl reaches its SSH: the loopback forward, or its LAN address.
    public var address: String { onBridge ? (guestAddress ?? "-") : "127.0.0.1:\(sshPort)" }
}

/// Where vnodes keep their files: one directory per pool (its login key, known_hosts and
/// ssh_config), one per node inside it (the machine's disk, seed, serial log, host key and record).
public struct VNodePaths: Sendable {
    public let state: StateDir
    public init(state: StateDir) { self.state = state }

    public var root: String { "\(state.root)/vnodes" }
    /// The embedded libvirt used when no libvirtd answers `qemu:///system`.
    public var libvirtRoot: String { "\(root)/libvirt" }
    public func stem(_ prefix: String) -> String { "\(root)/\(prefix)" }
    public func node(_ prefix: String, _ name: String) -> String { "\(stem(prefix))/\(name)" }
    public func record(_ prefix: String, _ name: String) -> String { "\(node(prefix, name))/vnode.json" }
    public func loginKey(_ prefix: String) -> String { "\(stem(prefix))/id_ed25519" }
    public func knownHosts(_ prefix: String) -> String { "\(stem(prefix))/known_hosts" }
    public func sshConfig(_ prefix: String) -> String { "\(stem(prefix))/ssh_config" }
    /// One vnode command changes a pool at a time.
    public func lock(_ prefix: String) -> String { "\(stem(prefix)).lock" }

    /// Every record there is, by pool then name.
    public func records() -> [VNodeRecord] {
        let fm = FileManager.default
        var out: [VNodeRecord] = []
        for stem in ((try? fm.contentsOfDirectory(atPath: root)) ?? []).sorted() where stem != "libvirt" {
            for name in ((try? fm.contentsOfDirectory(atPath: self.stem(stem))) ?? []).sorted() {
                if let r = try? AtomicFile.readJSON(VNodeRecord.self, from: record(stem, name)) { out.append(r) }
            }
        }
        return out
    }
}
