import VMCtlSupport

/// A machine that did not come up: which, why, and the end of its serial log.
public struct NodeFailure: Error, CustomStringConvertible, Sendable {
    public let node: String
    public let reason: String
    public let serialTail: String
    /// What kind of failure, for a controller's status (`node-timeout`, `node-failed`, …).
    public var code: VMCtlError.Code
    public init(node: String, reason: String, serialTail: String, code: VMCtlError.Code = .nodeFailed) {
        self.node = node; self.reason = reason; self.serialTail = serialTail; self.code = code
    }
    public var description: String {
        "\(node): \(reason)" + (serialTail.isEmpty ? "" : "\n  last serial output:\n    "
            + serialTail.split(separator: "\n").joined(separator: "\n    "))
    }
}
