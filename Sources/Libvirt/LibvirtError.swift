import CLibvirt

/// A libvirt failure, carrying libvirt's own code and message.
public struct LibvirtError: Error, CustomStringConvertible, Sendable {
    /// What vmctl was doing ("define domain node1").
    public let operation: String
    /// libvirt's virErrorNumber, 0 when libvirt set none.
    public let code: Int32
    /// libvirt's message.
    public let message: String

    public init(operation: String, code: Int32, message: String) {
        self.operation = operation
        self.code = code
        self.message = message
    }

    /// Reads libvirt's thread-local last error. Call it right after the failing call,
    /// in the same synchronous function: never across an `await`.
    public static func last(_ operation: String) -> LibvirtError {
        guard let err = virGetLastError() else {
            return LibvirtError(operation: operation, code: 0, message: "unknown libvirt error")
        }
        let message = err.pointee.message.map { String(cString: $0) } ?? "unknown libvirt error"
        return LibvirtError(operation: operation, code: err.pointee.code, message: message)
    }

    public var isNoDomain: Bool { code == Int32(VIR_ERR_NO_DOMAIN.rawValue) }
    public var isOperationInvalid: Bool { code == Int32(VIR_ERR_OPERATION_INVALID.rawValue) }

    public var description: String { "\(operation): \(message)" }
}

/// Turns libvirt's "-1 means failure" convention into a thrown error.
@discardableResult
func check(_ rc: Int32, _ operation: @autoclosure () -> String) throws -> Int32 {
    if rc < 0 { throw LibvirtError.last(operation()) }
    return rc
}

/// Silences libvirt's default printer, which writes every error to stderr even when
/// the caller handles it. Errors reach the user through `LibvirtError` instead.
func silenceDefaultErrorPrinter() {
    virSetErrorFunc(nil) { _, _ in }
}
