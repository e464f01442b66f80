import ArgumentParser
import Foundation
import VMCtlSupport
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
        let c = try await VNodeManager.target(of: r).open()
        try await c.closing { c in
            guard let d = try await c.domain(named: r.name) else {
                throw VMCtlError(.notFound, message: "\(r.name) has no domain on \(r.uri): `vmctl vnode \(r.number)` reinstalls it")
            }
            defer { d.close() }
            guard try await d.isActive() else { throw VMCtlError(.wrongState, message: "\(r.name) is not running") }
            try await SerialConsole.attach(d, name: r.name)
        }
    }
}
