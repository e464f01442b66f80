/// A product-level failure with a message a person can act on: what failed, why, what to do.
public struct VMCtlError: Error, CustomStringConvertible, Sendable {
    /// 1 for failures, 2 for usage, not-found and wrong-state errors.
    public let exitCode: Int32
    public let message: String
    public var description: String { message }

    public init(_ message: String, exitCode: Int32 = 1) {
        self.message = message
        self.exitCode = exitCode
    }

    /// Bad input, something not found, or the wrong state for the verb: exit 2.
    public static func usage(_ message: String) -> VMCtlError { VMCtlError(message, exitCode: 2) }
}

import Blocking

/// The path of a tool, or an error naming the package that provides it.
public func locateTool(_ name: String) throws -> String {
    do { return try Command.require(name) } catch { throw VMCtlError("\(error)") }
}
