import ArgumentParser
import Foundation
import VMCtlSupport
import Machines

struct NetBridgeRm: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rm",
        abstract: "Undo exactly what `net bridge create` made: the uplink gets its addresses and routes back, the accept rules go.")

    @Argument(help: "The bridge, e.g. br0.")
    var bridge: String

    func run() async throws {
        let hb = HostBridge(state: StateDir.resolve())
        guard hb.record(bridge) != nil else {
            // A bridge of the site's own: vmctl only takes back the accept rules vnode added.
            guard BridgeFirewall.present(bridge) else {
                throw VMCtlError(.notFound, message: "vmctl did not make a bridge \(bridge) and has no rules for it; nothing to undo")
            }
            await BridgeFirewall.remove(bridge)
            return say("\(bridge) was not made by vmctl and stays; its accept rules (table inet \(BridgeFirewall.table(bridge))) are removed")
        }
        try await hb.remove(bridge)
        await BridgeFirewall.remove(bridge)
        say("bridge \(bridge) removed; its uplink has its addresses and routes again, the accept rules are gone")
    }
}
