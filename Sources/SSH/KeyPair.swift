import Foundation

/// An ed25519 key pair on disk, made by `ssh-keygen` (files 0600, public 0644).
public struct KeyPair: Sendable, Equatable {
    public let privateKeyPath: String
    public var publicKeyPath: String { privateKeyPath + ".pub" }

    public init(privateKeyPath: String) { self.privateKeyPath = privateKeyPath }

    /// Generates a new pair at `path` (which must not exist yet).
    public static func generate(at path: String, comment: String) throws -> KeyPair {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/ssh-keygen")
        p.arguments = ["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        p.standardInput = FileHandle.nullDevice
        do { try p.run() } catch {
            throw SSHError(.protocolError, "generate key pair", "cannot run ssh-keygen (\(error)): install openssh-client")
        }
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            throw SSHError(.protocolError, "generate key pair \(path)", text.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        chmod(path, 0o600)
        return KeyPair(privateKeyPath: path)
    }

    /// The private key's text (OpenSSH format).
    public func privateKey() throws -> String { try String(contentsOfFile: privateKeyPath, encoding: .utf8) }

    /// The public key line (`ssh-ed25519 AAAA… comment`).
    public func publicKeyLine() throws -> String {
        try String(contentsOfFile: publicKeyPath, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The public key as a host-key pin.
    public func pin() throws -> HostKeyPin { try HostKeyPin(openSSHLine: publicKeyLine()) }
}
