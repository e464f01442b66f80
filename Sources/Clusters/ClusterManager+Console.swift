import Foundation
import Machines
import SSH
import VMCtlSupport

extension ClusterManager {
    /// Attaches the terminal to a node's serial console through libvirt until Ctrl-]
    /// (or the guest goes away). Holds the cluster's lock meanwhile: the embedded driver
    /// allows one process per root.
    ///
    /// The console stream is event-driven (see `Stream`): guest output arrives on `output`,
    /// keystrokes read on a thread of their own are queued with `send`, and the stream is
    /// closed only here, after both sides have stopped using it.
    public func console(_ name: String, node: String) async throws {
        let s = try existing(name)
        let plan = try select(s, [node])[0]
        let lock = try ClusterLock.acquire(state: state, name: name, purpose: "cluster console \(plan.name)")
        defer { lock.release() }
        try await connected(s) { connection in
            try await machine(s, plan, connection: connection, image: nil).attachConsole(hint: "`vmctl cluster start --name \(name)`")
        }
    }

    /// Copies a local file to `node:path` or `node:path` to a local file, over libssh2,
    /// streaming (neither side is held in memory). A copy made on the node is created with
    /// umask 077 (0600); a local copy is written to a 0600 temporary file beside the
    /// destination and renamed into place. `mode` (from `--mode`) sets the copy's mode instead.
    /// A directory as destination receives the file under its own name.
    public func copy(_ name: String, from source: String, to destination: String, mode: mode_t? = nil) async throws {
        let s = try existing(name)
        func split(_ arg: String) -> (String, String)? {
            guard let colon = arg.firstIndex(of: ":"), !arg.hasPrefix("/"), !arg.hasPrefix(".") else { return nil }
            return (String(arg[..<colon]), String(arg[arg.index(after: colon)...]))
        }
        switch (split(source), split(destination)) {
        case (nil, let (node, path)?):
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: source, isDirectory: &isDir), !isDir.boolValue,
                  let input = FileHandle(forReadingAtPath: source) else {
                throw VMCtlError.usage("cannot read \(source): give a readable file (cp copies one file, not a directory)")
            }
            defer { try? input.close() }
            let plan = try select(s, [node])[0]
            let command = FileCopy.receiveCommand(path: path.isEmpty ? "." : path,
                                                  sourceName: (source as NSString).lastPathComponent, mode: mode)
            let r = try await SSHSession.run(try sshTarget(s, node: plan), command, stdin: input, stdout: { _ in },
                                             timeout: .seconds(3600))
            guard r.status == 0 else { throw VMCtlError("copy to \(plan.name):\(path) failed: \(r.stderr)") }
        case (let (node, path)?, nil):
            let plan = try select(s, [node])[0]
            let file = try FileCopy.Incoming(destination: FileCopy.localDestination(destination, remotePath: path),
                                             mode: mode ?? FileCopy.defaultMode)
            do {
                let r = try await SSHSession.run(try sshTarget(s, node: plan), "cat \(Shell.quote(path))", stdin: nil,
                                                 stdout: { try file.write($0) }, timeout: .seconds(3600))
                guard r.status == 0 else { throw VMCtlError("copy from \(plan.name):\(path) failed: \(r.stderr)") }
                try file.commit()
            } catch {
                file.discard()
                throw error
            }
        default:
            throw VMCtlError.usage("cp needs exactly one side as NODE:PATH, e.g. `vmctl cluster cp ./f node1:/tmp/f`")
        }
    }
}
