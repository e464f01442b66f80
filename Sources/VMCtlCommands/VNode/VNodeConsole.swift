import ArgumentParser
import Foundation
import Machines
import VNodes

struct VNodeConsole: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "console",
        abstract: "A vnode's serial console through libvirt; Ctrl-] leaves (the terminal is restored, never reset).")
    @OptionGroup var pool: VNodePoolOptions

    @Argument(help: "vnode07, or just 7.")
    var node: String

    func run() async throws {
        let m = try pool.manager()
        let r = try m.record(node, stem: pool.stem)
        let c = try await MachineHost(VNodeManager.target(of: r)).connect()
        try await c.closing { c in
            try await m.machine(r.name, stem: r.stem, on: c).attachConsole(hint: "`vmctl vnode \(r.number)` reinstalls it")
        }
    }
}
