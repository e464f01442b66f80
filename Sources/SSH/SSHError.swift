import CLibSSH2

/// An SSH failure: what vmctl was doing and what libssh2 (or the socket) said.
public struct SSHError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable, Equatable {
        /// TCP connect failed (refused, unreachable).
        case connect
        /// The server's host key is not the pinned one: never retried, never ignored.
        case hostKeyMismatch
        /// Authentication was refused.
        case auth
        /// A deadline passed.
        case timeout
        /// A command printed more than vmctl captures (`OutputCapture.defaultLimit`).
        case outputLimit
        /// Anything else libssh2 reported.
        case protocolError
    }
    public let kind: Kind
    public let operation: String
    public let message: String
    public var description: String { "\(operation): \(message)" }

    public init(_ kind: Kind, _ operation: String, _ message: String) {
        self.kind = kind; self.operation = operation; self.message = message
    }

    /// The session's last error, read right after the failing call.
    static func last(_ session: OpaquePointer?, _ operation: String, code: Int32) -> SSHError {
        var msg: UnsafeMutablePointer<CChar>?
        var len: Int32 = 0
        if let s = session { libssh2_session_last_error(s, &msg, &len, 0) }
        let text = msg.map { String(cString: $0) } ?? "libssh2 error \(code)"
        let kind: Kind = code == LIBSSH2_ERROR_TIMEOUT ? .timeout
            : (code == LIBSSH2_ERROR_AUTHENTICATION_FAILED || code == LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED) ? .auth
            : .protocolError
        return SSHError(kind, operation, text)
    }
}
