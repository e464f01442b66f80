import CLibvirt
import Foundation

/// A libvirt failure, carrying libvirt's own code, domain and message.
public struct LibvirtError: Error, CustomStringConvertible, Sendable {
    /// What vmctl was doing ("define domain node1").
    public let operation: String
    /// libvirt's virErrorNumber (`VIR_ERR_…`), 0 when libvirt set none.
    public let code: Int32
    /// libvirt's virErrorDomain (`VIR_FROM_…`): the part of libvirt that raised it.
    public let domain: Int32
    /// For `VIR_ERR_SYSTEM_ERROR`, the errno of the failed system call (libvirt's `int1`); else 0.
    public let systemErrno: Int32
    /// libvirt's message.
    public let message: String

    public init(operation: String, code: Int32, domain: Int32 = 0, systemErrno: Int32 = 0, message: String) {
        self.operation = operation
        self.code = code
        self.domain = domain
        self.systemErrno = systemErrno
        self.message = message
    }

    /// Reads libvirt's thread-local last error. Call it right after the failing call,
    /// in the same synchronous function: never across an `await`.
    ///
    /// `operation` is evaluated only after the error is copied: most libvirt calls (even
    /// `virDomainGetName`) reset the thread's last error on entry.
    public static func last(_ operation: @autoclosure () -> String) -> LibvirtError {
        var code: Int32 = 0, domain: Int32 = 0, systemErrno: Int32 = 0
        var message = "unknown libvirt error"
        if let err = virGetLastError() {
            code = err.pointee.code
            domain = err.pointee.domain
            // virReportSystemError puts errno in int1; other errors use it for other things.
            if code == Int32(VIR_ERR_SYSTEM_ERROR.rawValue) { systemErrno = err.pointee.int1 }
            message = err.pointee.message.map { String(cString: $0) } ?? message
        }
        return LibvirtError(operation: operation(), code: code, domain: domain, systemErrno: systemErrno, message: message)
    }

    /// What a failure means to a caller, decided by libvirt's code, domain and errno, never
    /// by its message (which is translated and reworded between releases).
    public enum Kind: Sendable, Equatable {
        /// No such domain (`VIR_ERR_NO_DOMAIN`).
        case noDomain
        /// A domain of that name or UUID exists already (`VIR_ERR_DOM_EXIST`; libvirt 9's domain
        /// list reports a duplicate as `VIR_ERR_OPERATION_FAILED` from `VIR_FROM_DOMAIN`).
        case domainExists
        /// Not applicable in the domain's state (`VIR_ERR_OPERATION_INVALID`: already off, …).
        case operationInvalid
        /// Held by another process: a resource libvirt calls busy (`VIR_ERR_RESOURCE_BUSY`) or
        /// a lock it could not take (`VIR_ERR_SYSTEM_ERROR` with `EAGAIN`, e.g. an embedded
        /// driver's `run/qemu/driver.pid` locked by another process).
        case busy
        /// libvirt could not be reached (`VIR_ERR_NO_CONNECT`, or a system error in the RPC or
        /// remote layer: no daemon socket).
        case connectionFailed
        /// Anything else.
        case other
    }

    public var kind: Kind {
        switch code {
        case Self.errNoDomain: .noDomain
        case Self.errDomExist: .domainExists
        case Self.errOperationFailed where domain == Self.fromDomain: .domainExists
        case Self.errOperationInvalid: .operationInvalid
        case Self.errResourceBusy: .busy
        case Self.errSystem where systemErrno == EAGAIN || systemErrno == EWOULDBLOCK: .busy
        case Self.errNoConnect: .connectionFailed
        case Self.errSystem where domain == Self.fromRPC || domain == Self.fromRemote: .connectionFailed
        default: .other
        }
    }

    public var isNoDomain: Bool { kind == .noDomain }
    public var isOperationInvalid: Bool { kind == .operationInvalid }

    public var description: String { "\(operation): \(message)" }

    static let errNoDomain = Int32(VIR_ERR_NO_DOMAIN.rawValue)
    static let errDomExist = Int32(VIR_ERR_DOM_EXIST.rawValue)
    static let errOperationFailed = Int32(VIR_ERR_OPERATION_FAILED.rawValue)
    static let errOperationInvalid = Int32(VIR_ERR_OPERATION_INVALID.rawValue)
    static let errResourceBusy = Int32(VIR_ERR_RESOURCE_BUSY.rawValue)
    static let errSystem = Int32(VIR_ERR_SYSTEM_ERROR.rawValue)
    static let errNoConnect = Int32(VIR_ERR_NO_CONNECT.rawValue)
    static let fromDomain = Int32(VIR_FROM_DOMAIN.rawValue)
    static let fromRPC = Int32(VIR_FROM_RPC.rawValue)
    static let fromRemote = Int32(VIR_FROM_REMOTE.rawValue)
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
