import Blocking
import Foundation
import Libvirt
import SSH

extension ClusterManager {
    /// Attaches the terminal to a node's serial console through libvirt until Ctrl-]
    /// (or the guest goes away). Holds the cluster's lock meanwhile: the embedded driver
    /// allows one process per root.
    public func console(_ name: String, node: String) async throws {
        let s = try existing(name)
        let plan = try select(s, [node])[0]
        let lock = try ClusterLock.acquire(state: state, name: name, purpose: "cluster console \(plan.name)")
        defer { lock.release() }
        let connection = try await target(of: s).open()
        defer { connection.close() }
        try await onOwnThread("console") {
            guard let d = try connection.domain(named: plan.domainName), try d.isActive() else {
                throw VMCtlError.usage("\(plan.name) is not running: `vmctl cluster start --name \(name)`")
            }
            defer { d.close() }
            let stream = try Stream(connection: connection)
            defer { stream.close() }
            try d.openConsole(stream)
            FileHandle.standardError.write(Data("connected to \(plan.name)'s serial console; Ctrl-] to leave\r\n".utf8))
            let terminal = RawTerminal()
            defer { terminal.restore() }
            let input = Thread {
                var b = [UInt8](repeating: 0, count: 256)
                while true {
                    let n = read(0, &b, b.count)
                    if n <= 0 { break }
                    if let i = b[0..<n].firstIndex(of: 0x1d) {  // Ctrl-]
                        if i > 0 { _ = try? stream.send(Data(b[0..<i])) }
                        break
                    }
                    if (try? stream.send(Data(b[0..<n]))) == nil { break }
                }
                stream.close()
            }
            input.start()
            while true {
                guard let data = try? stream.receive(), !data.isEmpty else { break }
                FileHandle.standardOutput.write(data)
            }
        }
    }

    /// Copies a local file to `node:path` or `node:path` to a local file, over libssh2.
    public func copy(_ name: String, from source: String, to destination: String) async throws {
        let s = try existing(name)
        func split(_ arg: String) -> (String, String)? {
            guard let colon = arg.firstIndex(of: ":"), !arg.hasPrefix("/"), !arg.hasPrefix(".") else { return nil }
            return (String(arg[..<colon]), String(arg[arg.index(after: colon)...]))
        }
        let quote: (String) -> String = { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }
        switch (split(source), split(destination)) {
        case (nil, let (node, path)?):
            guard let data = FileManager.default.contents(atPath: source) else {
                throw VMCtlError.usage("cannot read \(source)")
            }
            let plan = try select(s, [node])[0]
            let r = try await SSHSession.run(try sshTarget(s, node: plan), "cat > \(quote(path))", input: data, timeout: .seconds(600))
            guard r.status == 0 else { throw VMCtlError("copy to \(plan.name):\(path) failed: \(r.stderr)") }
        case (let (node, path)?, nil):
            let plan = try select(s, [node])[0]
            let r = try await SSHSession.run(try sshTarget(s, node: plan), "cat \(quote(path))", timeout: .seconds(600))
            guard r.status == 0 else { throw VMCtlError("copy from \(plan.name):\(path) failed: \(r.stderr)") }
            try AtomicFile.write(r.stdoutData, to: destination)
        default:
            throw VMCtlError.usage("cp needs exactly one side as NODE:PATH, e.g. `vmctl cluster cp ./f node1:/tmp/f`")
        }
    }
}

/// Puts the terminal in raw mode (if it is one) and restores it.
final class RawTerminal: @unchecked Sendable {
    private var saved = termios()
    private let active: Bool

    init() {
        active = isatty(0) == 1 && tcgetattr(0, &saved) == 0
        guard active else { return }
        var raw = saved
        cfmakeraw(&raw)
        tcsetattr(0, TCSANOW, &raw)
    }

    func restore() {
        if active { var t = saved; tcsetattr(0, TCSANOW, &t) }
    }
}
