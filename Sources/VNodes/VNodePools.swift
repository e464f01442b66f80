import Foundation
import Yams
import VMCtlSupport
import Machines

/// Pools of vnode names ("stems", as the seed calls them): disjoint name ranges, each with its
/// prefix (`vnode00`–`vnode30`), default distro, network and login key. Read from a small YAML
/// file (`/etc/vmctl/vnodes.yaml`, `--pools`); with none, one built-in pool `vnode00`–`vnode30`.
///
/// ```yaml
/// stems:
///   - prefix: vnode
///     range: 0-30
///     distro: f42          # default: the catalog's latest Fedora
///     network: user        # user (a loopback SSH forward); part 2 adds bridge=BR
///     login-key: /etc/vmctl/vnode_ed25519   # default: a key vmctl makes for the pool
///   - prefix: fit
///     range: 1-40
///     mac-byte: 1          # default: the stem's position in this list
/// ```
public struct VNodePools: Sendable, Equatable {
    public var stems: [Stem]

    public struct Stem: Sendable, Equatable, Codable {
        public var prefix: String
        public var first: Int
        public var last: Int
        /// nil: the catalog's default (its latest Fedora).
        public var distro: String?
        public var network: String
        /// A private key file every node of the pool accepts; nil: vmctl makes one per pool.
        public var loginKey: String?
        /// The MAC's fifth byte: 0 for the first stem (the seed's `52:54:00:00:00:nn`).
        public var macByte: Int

        public init(prefix: String, first: Int, last: Int, distro: String? = nil, network: String = "user",
                    loginKey: String? = nil, macByte: Int = 0) {
            self.prefix = prefix; self.first = first; self.last = last; self.distro = distro
            self.network = network; self.loginKey = loginKey; self.macByte = macByte
        }

        /// `vnode07`: the prefix and the number's two digits.
        public func name(_ n: Int) -> String { prefix + String(format: "%02d", n) }

        /// `52:54:00:00:00:07` for vnode07: the number's two decimal digits written as the last
        /// byte (vnode18 → `…:18`, as the seed's DHCP reservations are written); the stem's
        /// `mac-byte` before it.
        public func mac(_ n: Int) -> String { String(format: "52:54:00:00:%02x:", macByte) + String(format: "%02d", n) }

        public var rangeText: String { "\(name(first))–\(name(last))" }
    }

    public init(stems: [Stem]) { self.stems = stems }

    /// The pool that works with no configuration.
    public static let builtIn = VNodePools(stems: [Stem(prefix: "vnode", first: 0, last: 30)])

    /// Where the pools file is looked for when `--pools` is not given.
    public static let defaultPath = "/etc/vmctl/vnodes.yaml"

    /// `path`, else `VMCTL_VNODE_POOLS`, else `/etc/vmctl/vnodes.yaml` if it exists, else the built-in pool.
    public static func load(_ path: String?, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> VNodePools {
        let chosen = path ?? environment["VMCTL_VNODE_POOLS"].flatMap { $0.isEmpty ? nil : $0 }
        if chosen == nil && !FileManager.default.fileExists(atPath: defaultPath) { return builtIn }
        let file = chosen ?? defaultPath
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
            throw VMCtlError(.notFound, message: "cannot read the vnode pools file \(file)")
        }
        return try parse(text, source: file)
    }

    public static func parse(_ text: String, source: String = "pools") throws -> VNodePools {
        func bad(_ why: String) -> VMCtlError { .usage("\(source): \(why)") }
        guard let root = try Yams.load(yaml: text) as? [String: Any], let list = root["stems"] as? [[String: Any]], !list.isEmpty else {
            throw bad("expected `stems:`, a list of pools (prefix, range)")
        }
        var stems: [Stem] = []
        for (i, s) in list.enumerated() {
            guard let prefix = s["prefix"] as? String, prefix.range(of: "^[a-z][a-z-]*$", options: .regularExpression) != nil else {
                throw bad("stem \(i + 1): prefix must be lowercase letters (and dashes), e.g. vnode")
            }
            let range = (s["range"].map { "\($0)" } ?? "").split(separator: "-").compactMap { Int($0) }
            guard range.count == 2, range[0] >= 0, range[0] <= range[1], range[1] <= 99 else {
                throw bad("\(prefix): range must be FIRST-LAST within 0-99 (two digits, the MAC's last byte), e.g. 0-30")
            }
            let byte = (s["mac-byte"] as? Int) ?? i
            guard (0...255).contains(byte) else { throw bad("\(prefix): mac-byte must be 0-255") }
            let network = (s["network"] as? String) ?? "user"
            guard (try? VNodeNetwork(network)) != nil else { throw bad("\(prefix): network must be user or bridge=NAME (got '\(network)')") }
            stems.append(Stem(prefix: prefix, first: range[0], last: range[1], distro: s["distro"] as? String, network: network,
                              loginKey: s["login-key"] as? String, macByte: byte))
        }
        for a in stems {
            for b in stems where a != b {
                if b.prefix.hasPrefix(a.prefix) {
                    throw bad("prefixes \(a.prefix) and \(b.prefix) overlap: one name could belong to both; pools must be disjoint")
                }
                if a.macByte == b.macByte { throw bad("\(a.prefix) and \(b.prefix) share mac-byte \(a.macByte)") }
            }
        }
        return VNodePools(stems: stems)
    }

    public func stem(_ prefix: String) throws -> Stem {
        guard let s = stems.first(where: { $0.prefix == prefix }) else {
            throw VMCtlError.usage("no pool '\(prefix)': the pools are \(stems.map(\.prefix).joined(separator: ", "))")
        }
        return s
    }
}

/// How a vnode's one NIC attaches: `user` (QEMU user-mode, SSH through a loopback forward) or
/// `bridge=br0` (a tap on the host's bridge: the site's DHCP gives it an address by its MAC).
public enum VNodeNetwork: Sendable, Equatable {
    case user
    case bridge(String)

    public init(_ text: String) throws {
        if text == "user" { self = .user; return }
        if text.hasPrefix("bridge="), HostBridge.validName(String(text.dropFirst(7))) { self = .bridge(String(text.dropFirst(7))); return }
        throw VMCtlError.usage("--network takes user or bridge=NAME, e.g. bridge=br0 (got '\(text)')")
    }

    public var text: String {
        switch self { case .user: "user"; case .bridge(let b): "bridge=\(b)" }
    }
}

/// One node asked for on the command line (`3:f33`, `vnode4`, `vnode18:u18.04`).
public struct VNodeRequest: Sendable, Equatable {
    public var stem: VNodePools.Stem
    public var number: Int
    /// nil: the pool's default.
    public var distro: String?
    public var name: String { stem.name(number) }
    public var mac: String { stem.mac(number) }

    /// Parses every spec; numbers alone belong to `stem` (default: the first pool). Each bad spec
    /// is one clear error, before anything is created; a name given twice is refused.
    public static func parse(_ specs: [String], pools: VNodePools, stem: String? = nil) throws -> [VNodeRequest] {
        guard !specs.isEmpty else { throw VMCtlError.usage("name at least one node: e.g. `vmctl vnode 3:f33 vnode4`") }
        let home = try stem.map(pools.stem) ?? pools.stems[0]
        var out: [VNodeRequest] = []
        for spec in specs {
            let parts = spec.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            let (who, distro) = (parts[0], parts.count > 1 ? parts[1] : nil)
            guard !who.isEmpty else { throw VMCtlError.usage("'\(spec)': no node before ':' (e.g. 3:\(distro ?? "f33")")  }
            if let d = distro, d.isEmpty { throw VMCtlError.usage("'\(spec)': no distro after ':' (e.g. \(who):f33)") }
            let r = try resolve(who, pools: pools, home: home, spec: spec)
            if let dup = out.first(where: { $0.name == r.stem.name(r.number) }) {
                throw VMCtlError.usage("\(dup.name) is named twice ('\(spec)')")
            }
            out.append(VNodeRequest(stem: r.stem, number: r.number, distro: distro))
        }
        return out
    }

    static func resolve(_ who: String, pools: VNodePools, home: VNodePools.Stem, spec: String) throws -> (stem: VNodePools.Stem, number: Int) {
        let digits = who.reversed().prefix { $0.isASCII && $0.isNumber }
        let prefix = String(who.dropLast(digits.count))
        guard !digits.isEmpty, digits.count <= 2, let n = Int(String(digits.reversed())) else {
            throw VMCtlError.usage("'\(spec)': give a node number or name such as 3, 03 or \(home.name(3))")
        }
        let stem: VNodePools.Stem
        if prefix.isEmpty {
            stem = home
        } else {
            guard let s = pools.stems.first(where: { $0.prefix == prefix }) else {
                throw VMCtlError.usage("'\(spec)': no pool is called \(prefix) (pools: \(pools.stems.map(\.prefix).joined(separator: ", ")))")
            }
            stem = s
        }
        guard (stem.first...stem.last).contains(n) else {
            throw VMCtlError.usage("'\(spec)': \(stem.name(n)) is outside every pool (\(pools.stems.map(\.rangeText).joined(separator: ", ")))")
        }
        return (stem, n)
    }
}
