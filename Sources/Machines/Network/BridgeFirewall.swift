import Blocking
import Foundation

/// Traffic forwarded across a guests' bridge, allowed explicitly and for that bridge only,
/// instead of seed 004's `net.bridge.bridge-nf-call-iptables=0` (which let all bridged traffic
/// bypass the firewall). The global `bridge-nf-call-*` switches are never touched: bridge
/// filtering stays as the host has it. With nftables: a table of vmctl's own per bridge
/// (`inet vmctl_br0`) whose forward chain accepts what enters and leaves through the bridge.
/// With firewalld running: the bridge joins firewalld's `trusted` zone (runtime) instead.
///
/// nftables evaluates every base chain on a hook: an accept here does not undo a drop in
/// another table (an iptables FORWARD policy of DROP, as Docker sets, still drops); such a host
/// needs its own rule, and `vmctl doctor` cannot guess it.
public enum BridgeFirewall {
    public static func table(_ bridge: String) -> String {
        "vmctl_" + String(bridge.map { $0.isLetter || $0.isNumber ? $0 : "_" })
    }

    /// The table, written whole (applied atomically with `nft -f`, replacing an older one).
    public static func ruleset(_ bridge: String) -> String {
        let t = table(bridge)
        return """
            table inet \(t)
            delete table inet \(t)
            table inet \(t) {
              chain forward {
                type filter hook forward priority filter - 5; policy accept;
                iifname "\(bridge)" oifname "\(bridge)" accept comment "vmctl: guests on \(bridge), the site and each other"
              }
            }

            """
    }

    static var firewalldRunning: Bool {
        guard Command.locate("firewall-cmd") != nil, let o = try? Command("firewall-cmd", ["--state"]).run() else { return false }
        return o.status == 0 && o.stdout.contains("running")
    }

    /// Adds the rules for `bridge` (idempotent); returns the line saying what was done.
    @discardableResult
    public static func allow(_ bridge: String) async throws -> String {
        if firewalldRunning {
            _ = try await Command("firewall-cmd", ["--zone=trusted", "--add-interface=\(bridge)"]).checkedAsync()
            return "firewalld: \(bridge) joined the trusted zone (runtime); bridge-nf-call-* left as they are"
        }
        guard Command.locate("nft") != nil else {
            return "nft is not installed: no accept rules for \(bridge) (bridge-nf-call-* left as they are; apt install nftables)"
        }
        _ = try await Command("nft", ["-f", "-"]).checkedAsync(input: Data(ruleset(bridge).utf8))
        return "nftables: table inet \(table(bridge)) accepts traffic forwarded across \(bridge); bridge-nf-call-* left as they are"
    }

    /// Whether vmctl's rules for `bridge` are in place.
    public static func present(_ bridge: String) -> Bool {
        guard Command.locate("nft") != nil else { return false }
        return (try? Command("nft", ["list", "table", "inet", table(bridge)]).run().status) == 0
    }

    /// Removes them (nothing when there are none).
    public static func remove(_ bridge: String) async {
        if firewalldRunning {
            _ = try? await Command("firewall-cmd", ["--zone=trusted", "--remove-interface=\(bridge)"]).checkedAsync()
        }
        if present(bridge) { _ = try? await Command("nft", ["delete", "table", "inet", table(bridge)]).checkedAsync() }
    }
}
