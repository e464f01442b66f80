import Blocking
import Foundation
import VMCtlSupport

/// A Linux bridge on the host with its uplink enslaved (`vmctl net bridge create br0 --uplink
/// eth0`), so guests on it are on the site's LAN with hairpin to the host and to each other,
/// which macvtap (`type=direct`) cannot give. Replaces seed 004's `create-bridge.sh`: the
/// uplink's addresses and routes move to the bridge, and the change is rolled back when the
/// bridge has no address within the timeout. Through NetworkManager where it manages the
/// uplink (persistent, as on the seed's Fedora host); with iproute2 otherwise (runtime only).
/// What was made is recorded (`STATE/net/BRIDGE.json`) so `remove` undoes exactly that.
public struct HostBridge: Sendable {
    public let state: StateDir
    public init(state: StateDir) { self.state = state }

    /// What `create` did, for `remove`.
    public struct Record: Codable, Sendable, Equatable {
        public var bridge: String
        public var uplink: String
        /// `iproute2` or `networkmanager`.
        public var method: String
        /// The uplink's IPv4 addresses (CIDR) and routes before, restored on the uplink by `remove`.
        public var addresses: [String]
        public var routes: [Route]
        /// NetworkManager: the uplink's connection before, and the connections vmctl added.
        public var previousConnection: String?
        public var connections: [String]
    }

    public struct Route: Codable, Sendable, Equatable {
        public var destination: String
        public var gateway: String?
        public var metric: Int?
        var arguments: [String] {
            [destination] + (gateway.map { ["via", $0] } ?? []) + (metric.map { ["metric", String($0)] } ?? [])
        }
    }

    var directory: String { "\(state.root)/net" }
    func recordPath(_ bridge: String) -> String { "\(directory)/\(bridge).json" }

    public func record(_ bridge: String) -> Record? { try? AtomicFile.readJSON(Record.self, from: recordPath(bridge)) }

    /// Whether a bridge of that name exists on this host (in this network namespace).
    public static func exists(_ bridge: String) -> Bool {
        FileManager.default.fileExists(atPath: "/sys/class/net/\(bridge)/bridge")
    }

    /// The interface of the default route, the likely uplink (for messages).
    public static func defaultUplink() -> String? {
        guard let out = try? Command("ip", ["-j", "-4", "route", "show", "default"]).checked(),
              let routes = try? JSONSerialization.jsonObject(with: Data(out.utf8)) as? [[String: Any]] else { return nil }
        return routes.first?["dev"] as? String
    }

    /// The exact command that makes `bridge`, for a message that refuses to make it implicitly.
    public static func createCommand(_ bridge: String) -> String {
        "vmctl net bridge create \(bridge) --uplink \(defaultUplink() ?? "eth0")"
    }

    /// A Linux interface name vmctl accepts: letters, digits, . _ -, at most 15.
    public static func validName(_ name: String) -> Bool {
        name.range(of: "^[a-zA-Z][a-zA-Z0-9_.-]{0,14}$", options: .regularExpression) != nil
    }

    /// Makes the bridge with `uplink` enslaved and the uplink's addresses and routes moved to it;
    /// rolls back when it has no IPv4 address after `timeout`. `events` gets each step.
    public func create(_ bridge: String, uplink: String, timeout: Duration, useNetworkManager: Bool? = nil,
                       events: @Sendable (String) -> Void) async throws -> Record {
        guard Self.validName(bridge), Self.validName(uplink) else {
            throw VMCtlError.usage("interface names are letters, digits, . _ - (at most 15): '\(bridge)', '\(uplink)'")
        }
        guard !FileManager.default.fileExists(atPath: "/sys/class/net/\(bridge)") else {
            throw VMCtlError(.nameInUse, message: "an interface called \(bridge) exists already; vmctl leaves it alone (vnodes can use it as it is)")
        }
        guard FileManager.default.fileExists(atPath: "/sys/class/net/\(uplink)") else {
            throw VMCtlError(.notFound, message: "no interface called \(uplink) (`ip link` lists them)")
        }
        guard !FileManager.default.fileExists(atPath: "/sys/class/net/\(uplink)/master") else {
            throw VMCtlError(.wrongState, message: "\(uplink) is already enslaved to a bridge or bond")
        }
        _ = try Command.require("ip")
        try FileAccess.directoryWithParents(directory)
        var nm = useNetworkManager ?? false
        if useNetworkManager == nil { nm = try await Self.networkManagerManages(uplink) }
        events("moving \(uplink)'s addresses and routes to \(bridge): connectivity through \(uplink) drops for a few seconds")
        let record = nm ? try await createWithNetworkManager(bridge, uplink: uplink, timeout: timeout, events: events)
            : try await createWithIproute2(bridge, uplink: uplink, timeout: timeout, events: events)
        try AtomicFile.writeJSON(record, to: recordPath(bridge))
        return record
    }

    func createWithIproute2(_ bridge: String, uplink: String, timeout: Duration, events: @Sendable (String) -> Void) async throws -> Record {
        let addrs = try Self.addresses(uplink)
        let routes = try Self.routes(uplink)
        let mac = (try? String(contentsOfFile: "/sys/class/net/\(uplink)/address", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let record = Record(bridge: bridge, uplink: uplink, method: "iproute2", addresses: addrs, routes: routes,
                            previousConnection: nil, connections: [])
        do {
            try Self.ip(["link", "add", "name", bridge, "type", "bridge"])
            // The bridge takes the uplink's MAC: the site's DHCP reservation and ARP caches stay valid.
            if let mac { try Self.ip(["link", "set", bridge, "address", mac]) }
            try Self.ip(["link", "set", uplink, "master", bridge])
            try Self.ip(["link", "set", bridge, "up"])
            for a in addrs {
                try Self.ip(["addr", "del", a, "dev", uplink])
                try Self.ip(["addr", "add", a, "dev", bridge])
            }
            for r in routes { try Self.ip(["route", "replace"] + r.arguments + ["dev", bridge]) }
            if addrs.isEmpty, let dhclient = Command.locate("dhclient") {
                events("\(uplink) had no static address: asking DHCP on \(bridge)")
                _ = try? await Command(dhclient, ["-1", "-timeout", String(Int(timeout.components.seconds)), bridge]).checkedAsync()
            }
            try await Self.waitForAddress(bridge, timeout: timeout)
        } catch {
            rollBack(record)
            throw VMCtlError(.failure, message: "bridge \(bridge): \(error); rolled back: \(uplink) has its addresses and routes again, \(bridge) is gone")
        }
        events("\(bridge) is up with \(((try? Self.addresses(bridge)) ?? []).joined(separator: ", ")); made with iproute2, so it lasts "
            + "until reboot: to keep it, configure it in /etc/network/interfaces or systemd-networkd")
        return record
    }

    /// Undoes an iproute2 bridge: the uplink leaves it, the bridge goes, addresses and routes return.
    func rollBack(_ r: Record) {
        _ = try? Self.ip(["link", "set", r.uplink, "nomaster"])
        _ = try? Self.ip(["link", "del", r.bridge])
        _ = try? Self.ip(["link", "set", r.uplink, "up"])
        for a in r.addresses { _ = try? Self.ip(["addr", "replace", a, "dev", r.uplink]) }
        for route in r.routes { _ = try? Self.ip(["route", "replace"] + route.arguments + ["dev", r.uplink]) }
    }

    /// NetworkManager manages the uplink when `nmcli` says it is connected or connecting.
    static func networkManagerManages(_ uplink: String) async throws -> Bool {
        guard Command.locate("nmcli") != nil,
              let out = try? await Command("nmcli", ["-t", "-f", "DEVICE,STATE", "device", "status"]).checkedAsync() else { return false }
        return out.split(separator: "\n").contains { $0.hasPrefix("\(uplink):") && ($0.hasSuffix(":connected") || $0.contains(":connecting")) }
    }

    func createWithNetworkManager(_ bridge: String, uplink: String, timeout: Duration, events: @Sendable (String) -> Void) async throws -> Record {
        func nmcli(_ args: [String]) async throws -> String { try await Command("nmcli", args).checkedAsync() }
        let active = try await nmcli(["-g", "GENERAL.CONNECTION", "device", "show", uplink]).trimmingCharacters(in: .whitespacesAndNewlines)
        let port = "\(bridge)-port-\(uplink)"
        var add = ["connection", "add", "type", "bridge", "ifname", bridge, "con-name", bridge, "bridge.stp", "no"]
        if !active.isEmpty {
            // A static uplink's settings move to the bridge; a DHCP one stays DHCP.
            let method = try await nmcli(["-g", "ipv4.method", "connection", "show", active]).trimmingCharacters(in: .whitespacesAndNewlines)
            if method == "manual" {
                for key in ["ipv4.method", "ipv4.addresses", "ipv4.gateway", "ipv4.dns"] {
                    let v = try await nmcli(["-g", key, "connection", "show", active]).trimmingCharacters(in: .whitespacesAndNewlines)
                    if !v.isEmpty { add += [key, v.replacingOccurrences(of: "\\:", with: ":")] }
                }
            }
        }
        let record = Record(bridge: bridge, uplink: uplink, method: "networkmanager", addresses: try Self.addresses(uplink),
                            routes: try Self.routes(uplink), previousConnection: active.isEmpty ? nil : active, connections: [bridge, port])
        do {
            _ = try await nmcli(add)
            _ = try await nmcli(["connection", "add", "type", "bridge-slave", "ifname", uplink, "master", bridge, "con-name", port])
            _ = try await nmcli(["connection", "up", port])
            _ = try await nmcli(["connection", "up", bridge])
            try await Self.waitForAddress(bridge, timeout: timeout)
        } catch {
            try? await removeNetworkManager(record)
            throw VMCtlError(.failure, message: "bridge \(bridge): \(error); rolled back: \(uplink)'s connection \(active) is up again")
        }
        events("\(bridge) is up with \(((try? Self.addresses(bridge)) ?? []).joined(separator: ", ")) (NetworkManager connections \(bridge), \(port): persistent)")
        return record
    }

    func removeNetworkManager(_ r: Record) async throws {
        for c in r.connections { _ = try? await Command("nmcli", ["connection", "delete", c]).checkedAsync() }
        if let prev = r.previousConnection { _ = try? await Command("nmcli", ["connection", "up", prev]).checkedAsync() }
    }

    /// Undoes exactly what `create` made. Refused while guests' taps are still on the bridge.
    public func remove(_ bridge: String) async throws {
        guard let r = record(bridge) else {
            throw VMCtlError(.notFound, message: "vmctl did not make a bridge \(bridge) (no \(recordPath(bridge))); it leaves it alone")
        }
        let ports = ((try? FileManager.default.contentsOfDirectory(atPath: "/sys/class/net/\(bridge)/brif")) ?? []).filter { $0 != r.uplink }
        guard ports.isEmpty else {
            throw VMCtlError(.inUse, message: "\(bridge) still has guests on it (\(ports.sorted().joined(separator: ", "))): remove them first (`vmctl vnode rm`)")
        }
        if r.method == "networkmanager" { try await removeNetworkManager(r) } else { rollBack(r) }
        try? FileManager.default.removeItem(atPath: recordPath(bridge))
    }

    // MARK: iproute2

    static func ip(_ args: [String]) throws {
        do { try Command("ip", args).checked() } catch let e as CommandError {
            throw VMCtlError("ip \(args.joined(separator: " ")): \(e)")
        }
    }

    /// The interface's global IPv4 addresses (CIDR).
    public static func addresses(_ dev: String) throws -> [String] {
        let out = try Command("ip", ["-j", "-4", "addr", "show", "dev", dev, "scope", "global"]).checked()
        let links = (try? JSONSerialization.jsonObject(with: Data(out.utf8)) as? [[String: Any]]) ?? []
        return links.flatMap { ($0["addr_info"] as? [[String: Any]]) ?? [] }.compactMap { a in
            guard let local = a["local"] as? String, let len = a["prefixlen"] as? Int else { return nil }
            return "\(local)/\(len)"
        }
    }

    /// The interface's IPv4 routes other than the ones the kernel derives from its addresses.
    static func routes(_ dev: String) throws -> [Route] {
        let out = try Command("ip", ["-j", "-4", "route", "show", "dev", dev]).checked()
        let list = (try? JSONSerialization.jsonObject(with: Data(out.utf8)) as? [[String: Any]]) ?? []
        return list.compactMap { r in
            guard let dst = r["dst"] as? String, (r["protocol"] as? String) != "kernel" else { return nil }
            return Route(destination: dst, gateway: r["gateway"] as? String, metric: r["metric"] as? Int)
        }
    }

    static func waitForAddress(_ dev: String, timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let a = try? addresses(dev), !a.isEmpty { return }
            try await Task.sleep(for: .milliseconds(250))
        }
        throw VMCtlError(.nodeTimeout, message: "\(dev) had no IPv4 address after \(timeout.components.seconds) s")
    }
}
