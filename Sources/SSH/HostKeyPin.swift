import Foundation

/// A host's public key as vmctl generated it, pinned before the first connection:
/// no trust-on-first-use, no "accept anything".
public struct HostKeyPin: Sendable, Equatable, Codable {
    /// The OpenSSH key type, e.g. `ssh-ed25519`.
    public let type: String
    /// The key blob as base64 (the second field of an OpenSSH public key line).
    public let base64: String

    public init(type: String, base64: String) {
        self.type = type
        self.base64 = base64
    }

    /// Parses an OpenSSH public key line (`ssh-ed25519 AAAA… comment`).
    public init(openSSHLine line: String) throws {
        let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        guard fields.count >= 2, fields[0].hasPrefix("ssh-") || fields[0].hasPrefix("ecdsa-"),
              let blob = Data(base64Encoded: fields[1]), blob.count > 4 else {
            throw SSHError(.protocolError, "parse host key", "not an OpenSSH public key line: \(line.prefix(40))")
        }
        // The blob starts with its own type name; both must agree.
        let nameLen = Int(blob[0]) << 24 | Int(blob[1]) << 16 | Int(blob[2]) << 8 | Int(blob[3])
        guard blob.count >= 4 + nameLen,
              String(decoding: blob[4..<(4 + nameLen)], as: UTF8.self) == fields[0] else {
            throw SSHError(.protocolError, "parse host key", "key blob does not match its type \(fields[0])")
        }
        self.type = fields[0]
        self.base64 = fields[1]
    }

    /// True when `blob` (raw bytes as the server sent them) is this key.
    public func matches(blob: Data) -> Bool {
        Data(base64Encoded: base64) == blob
    }

    /// The `type base64` form used in known_hosts and authorized_keys.
    public var openSSHLine: String { "\(type) \(base64)" }

    /// OpenSSH's SHA256 fingerprint is not needed here; the whole key is compared.
}
