import ArgumentParser
import Foundation
import VMCtlSupport
import Machines

struct NetBridgeCreate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "create",
        abstract: "Make BRIDGE, enslave --uplink and move its addresses and routes to it; roll back if BRIDGE has no address in time.",
        discussion: "Through NetworkManager (nmcli) where it manages the uplink: persistent, as on the seed's Fedora host. With iproute2 otherwise: it lasts until reboot (configure /etc/network/interfaces or systemd-networkd to keep it). Traffic forwarded across the bridge is accepted by an nftables table of vmctl's own (or firewalld's trusted zone); the global bridge-nf-call-* switches are never changed.")

    @Argument(help: "The bridge's name, e.g. br0.")
    var bridge: String

    @Option(help: "The interface that carries the host's LAN today, e.g. eth0.")
    var uplink: String

    @Option(help: "How long the bridge may take to have an IPv4 address before everything is rolled back (seconds, or 30s, 2m).")
    var timeout = TimeLimit(seconds: 30)

    @Flag(help: "Use iproute2 even where NetworkManager manages the uplink.")
    var iproute2 = false

    func run() async throws {
        let state = StateDir.resolve()
        try state.ensureWritable()
        let r = try await HostBridge(state: state).create(bridge, uplink: uplink, timeout: timeout.duration,
                                                           useNetworkManager: iproute2 ? false : nil) { say($0) }
        say(try await BridgeFirewall.allow(bridge))
        say("bridge \(bridge) made (\(r.method)); `vmctl net bridge rm \(bridge)` undoes it")
    }
}
