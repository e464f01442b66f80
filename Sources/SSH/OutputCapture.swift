import Foundation

/// One output stream of a remote command collected in memory, up to `limit` bytes: a guest
/// that prints without end makes `append` throw instead of growing vmctl until it runs out.
public struct OutputCapture: Sendable {
    /// What vmctl keeps of one stream of a command whose output it captures: 16 MiB.
    public static let defaultLimit = 16 << 20

    /// Most bytes kept.
    public let limit: Int
    /// `stdout` or `stderr`, for the error.
    public let stream: String
    /// What was captured so far (never more than `limit` bytes).
    public private(set) var data = Data()

    /// An empty capture of `stream` that refuses more than `limit` bytes.
    public init(stream: String, limit: Int = OutputCapture.defaultLimit) {
        self.stream = stream; self.limit = limit
    }

    /// Adds `piece`; throws `OutputLimitExceeded` (keeping nothing of `piece`) when the total
    /// would pass the limit.
    public mutating func append(_ piece: Data) throws {
        guard piece.count <= limit - data.count else { throw OutputLimitExceeded(stream: stream, limit: limit) }
        data.append(piece)
    }

    /// The capture as text (UTF-8, invalid bytes as U+FFFD).
    public var text: String { String(decoding: data, as: UTF8.self) }
}

/// A captured stream passed its limit (see `OutputCapture`).
public struct OutputLimitExceeded: Error, CustomStringConvertible, Sendable, Equatable {
    public let stream: String
    public let limit: Int
    public init(stream: String, limit: Int) { self.stream = stream; self.limit = limit }
    public var description: String {
        "output exceeded \(Self.size(limit)) on \(stream) (vmctl keeps at most \(Self.size(limit)) of a command's output; "
            + "send it to a file on the guest instead)"
    }

    /// `16 MiB`, `1 KiB`, `100 bytes`.
    static func size(_ n: Int) -> String {
        if n >= 1 << 20 && n % (1 << 20) == 0 { return "\(n >> 20) MiB" }
        if n >= 1 << 10 && n % (1 << 10) == 0 { return "\(n >> 10) KiB" }
        return "\(n) bytes"
    }
}
