import ArgumentParser

struct NetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "net",
        abstract: "The host's network for guests on the site's LAN (bridges).",
        discussion: """
            EXAMPLES:
              vmctl net bridge create br0 --uplink eth0   uplink's addresses and routes move to br0
              vmctl vnode 7 --network bridge=br0          vnode07 gets its address from the site's DHCP
              vmctl net bridge rm br0                     undo exactly what create made
            """,
        subcommands: [NetBridgeCommand.self])
}

struct NetBridgeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bridge",
        abstract: "Make or remove a bridge with the host's uplink enslaved (replaces seed 004's create-bridge.sh).",
        subcommands: [NetBridgeCreate.self, NetBridgeRm.self])
}
