/// A product-level failure: a stable `code` a script or controller can act on, a `message` a
/// person can act on (what failed, why, what to do), and the `cause` underneath, if any.
/// It prints as its message; `debugDescription` adds the code and the cause.
public struct VMCtlError: Error, CustomStringConvertible, CustomDebugStringConvertible, Sendable {
    public let code: Code
    public let message: String
    /// The error this one explains (a `LibvirtError`, an `SSHError`, …); never shown to a person
    /// unless the message already says it.
    public let cause: (any Error & Sendable)?

    public init(_ code: Code, message: String, cause: (any Error & Sendable)? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    /// The exit status the CLI ends with: 1 for failures, 2 for usage, not-found and
    /// wrong-state errors, 130 when cancelled.
    public var exitCode: Int32 { code.exitStatus }

    public var description: String { message }

    /// `code: "message" (cause: …)`, for logs and reports.
    public var debugDescription: String {
        "\(code): \"\(message)\"" + (cause.map { " (cause: \"\($0)\")" } ?? "")
    }

    /// A failure with no more specific code: `exitCode` 2 means `usage`, 130 `cancelled`,
    /// anything else `failure` (exit status 1).
    public init(_ message: String, exitCode: Int32 = 1) {
        self.init(exitCode == 2 ? .usage : exitCode == 130 ? .cancelled : .failure, message: message)
    }

    /// Bad input: exit 2.
    public static func usage(_ message: String) -> VMCtlError { VMCtlError(.usage, message: message) }
}

extension VMCtlError {
    /// What kind of failure, as a stable kebab-case string (`image-not-built`). A struct over a
    /// private enum, so adding a code breaks no caller; the strings never change once published.
    public struct Code: Hashable, Sendable, Codable, CustomStringConvertible {
        private enum Value: String, CaseIterable, Sendable {
            case failure
            case usage
            case notFound = "not-found"
            case wrongState = "wrong-state"
            case nameInUse = "name-in-use"
            case locked
            case inUse = "in-use"
            case imageNotBuilt = "image-not-built"
            case nodeTimeout = "node-timeout"
            case nodeFailed = "node-failed"
            case hostKeyMismatch = "host-key-mismatch"
            case sshFailed = "ssh-failed"
            case libvirtBusy = "libvirt-busy"
            case libvirtUnavailable = "libvirt-unavailable"
            case libvirtFailed = "libvirt-failed"
            case cancelled
            case hostMemory = "host-memory"
        }
        private let value: Value
        private init(_ value: Value) { self.value = value }

        /// Something failed; no more specific code applies. Exit 1.
        public static let failure = Code(.failure)
        /// Bad input: a flag, a name, a recipe. Exit 2.
        public static let usage = Code(.usage)
        /// The cluster, node, recipe or domain named does not exist. Exit 2.
        public static let notFound = Code(.notFound)
        /// The thing exists but is in the wrong state for the verb (not running, half-made). Exit 2.
        public static let wrongState = Code(.wrongState)
        /// The name is taken by something else (a cluster with another spec). Exit 2.
        public static let nameInUse = Code(.nameInUse)
        /// Another vmctl process holds the cluster's lock. Exit 2.
        public static let locked = Code(.locked)
        /// Something still uses what is to be removed or replaced (an image used by clusters). Exit 2.
        public static let inUse = Code(.inUse)
        /// The image has no build yet: `vmctl image build NAME`. Exit 2.
        public static let imageNotBuilt = Code(.imageNotBuilt)
        /// A node did not become ready (or stop) within its deadline. Exit 1.
        public static let nodeTimeout = Code(.nodeTimeout)
        /// A node did not come up for another reason (it stopped, reported a failure, nodes
        /// failed in different ways). Exit 1.
        public static let nodeFailed = Code(.nodeFailed)
        /// A node's SSH host key is not the pinned one. Exit 1.
        public static let hostKeyMismatch = Code(.hostKeyMismatch)
        /// Any other SSH failure (connect, authentication, protocol). Exit 1.
        public static let sshFailed = Code(.sshFailed)
        /// The embedded libvirt root is held open by another process. Exit 2.
        public static let libvirtBusy = Code(.libvirtBusy)
        /// libvirt could not be reached or opened at all. Exit 1.
        public static let libvirtUnavailable = Code(.libvirtUnavailable)
        /// Any other libvirt failure. Exit 1.
        public static let libvirtFailed = Code(.libvirtFailed)
        /// Interrupted (Ctrl-C, SIGTERM); what the command made was removed. Exit 130.
        public static let cancelled = Code(.cancelled)
        /// The host has not enough memory for what was asked (more nodes, bigger nodes). Exit 2.
        public static let hostMemory = Code(.hostMemory)

        /// Every code, in a stable order.
        public static var all: [Code] { Value.allCases.map(Code.init) }

        /// The code spelled `text` (`image-not-built`), if there is one.
        public init?(_ text: String) {
            guard let v = Value(rawValue: text) else { return nil }
            self.init(v)
        }

        /// The stable kebab-case string.
        public var description: String { value.rawValue }

        /// The CLI's exit status for this code: 2 when the person can fix the command or wait
        /// for another to finish, 130 when interrupted, 1 otherwise.
        public var exitStatus: Int32 {
            switch value {
            case .usage, .notFound, .wrongState, .nameInUse, .locked, .inUse, .imageNotBuilt, .libvirtBusy, .hostMemory: 2
            case .cancelled: 130
            case .failure, .nodeTimeout, .nodeFailed, .hostKeyMismatch, .sshFailed, .libvirtUnavailable, .libvirtFailed: 1
            }
        }

        public init(from decoder: any Decoder) throws {
            let text = try decoder.singleValueContainer().decode(String.self)
            guard let code = Code(text) else {
                throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath,
                                                        debugDescription: "unknown vmctl error code '\(text)'"))
            }
            self = code
        }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.singleValueContainer()
            try c.encode(value.rawValue)
        }
    }
}

import Blocking

/// The path of a tool, or an error naming the package that provides it.
public func locateTool(_ name: String) throws -> String {
    do { return try Command.require(name) } catch { throw VMCtlError(.failure, message: "\(error)", cause: error) }
}
