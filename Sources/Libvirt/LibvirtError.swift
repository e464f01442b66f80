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
    ///
    /// `operation` is evaluated only after the error is copied: most libvirt calls (even
    /// `virDomainGetName`) reset the thread's last error on entry.
    public static func last(_ operation: @autoclosure () -> String) -> LibvirtError {
        var code: Int32 = 0
        var message = "unknown libvirt error"
        if let err = virGetLastError() {
            code = err.pointee.code
            message = err.pointee.message.map { String(cString: $0) } ?? message
        }
        return LibvirtError(operation: operation(), code: code, message: message)
    }

    public var isNoDomain: Bool { code == Int32(VIR_ERR_NO_DOMAIN.rawValue) }
    public var isOperationInvalid: Bool { code == Int32(VIR_ERR_OPERATION_INVALID.rawValue) }

    public var description: String { "\(operation): \(message)" }
}

/// Turns libvirt's "-1 means failure" convention into a thrown error.
@discardableResult
func check(_ rc: Int32, _ operation: @autoclosure () -> String) throws -> Int32 {
    if rc < 0 { throw LibvirtError.last(operation()) }  // operation() runs after the copy
    return rc
}

/// Silences libvirt's default printer, which writes every error to stderr even when
/// the caller handles it. Errors reach the user through `LibvirtError` instead.
func silenceDefaultErrorPrinter() {
    virSetErrorFunc(nil) { _, _ in }
}
