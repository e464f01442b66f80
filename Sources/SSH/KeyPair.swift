import Blocking
import Foundation

/// An ed25519 key pair on disk, made by `ssh-keygen` (files 0600, public 0644).
public struct KeyPair: Sendable, Equatable {
    public let privateKeyPath: String
    public var publicKeyPath: String { privateKeyPath + ".pub" }

    public init(privateKeyPath: String) { self.privateKeyPath = privateKeyPath }

    /// Generates a new pair at `path` (which must not exist yet); ssh-keygen runs on a thread
    /// of its own.
    public static func generate(at path: String, comment: String) async throws -> KeyPair {
        try await Command("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path]).checkedAsync()
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
