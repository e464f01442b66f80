import Foundation
import VMCtlSupport

/// The terminal handed to plain OpenSSH (`cluster ssh`, `vnode ssh`, `swarm CASE exec`): vmctl's
/// own process becomes `ssh -F CONFIG [-t] HOST [-- WORD...]`, with the strict known_hosts the
/// config names. Returns only when ssh could not be started.
enum OpenSSH {
    static func exec(config: String, host: String, terminal: Bool = false, command: [String] = []) throws -> Never {
        let ssh = try locateTool("ssh")
        let args = [ssh, "-F", config] + (terminal ? ["-t"] : []) + [host] + (command.isEmpty ? [] : ["--"] + command)
        var cargs = args.map { strdup($0) } + [nil]
        execv(ssh, &cargs)
        throw VMCtlError("cannot run \(ssh): \(String(cString: strerror(errno)))")
    }
}
