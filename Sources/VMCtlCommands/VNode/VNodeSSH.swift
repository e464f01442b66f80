import ArgumentParser
import Foundation
import VNodes
import VMCtlSupport

struct VNodeSSH: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ssh",
        abstract: "A shell on a vnode, or one command (OpenSSH with the pool's key and strict host keys).")
    @OptionGroup var pool: VNodePoolOptions

    @Argument(help: "vnode07, or just 7.")
    var node: String

    @Argument(parsing: .postTerminator, help: "A command to run instead of a shell (after --).")
    var command: [String] = []

    func run() async throws {
        let m = try pool.manager()
        let r = try m.record(node, stem: pool.stem)
        guard r.hostKey != nil else {
            throw VMCtlError(.wrongState, message: "\(r.name) has no host key yet (its install did not get that far): `vmctl vnode \(r.number)`")
        }
        // Plain OpenSSH gets the terminal: known_hosts pins the node's key under its name and address.
        try OpenSSH.exec(config: m.paths.sshConfig(r.stem), host: r.name, command: command)
    }
}
