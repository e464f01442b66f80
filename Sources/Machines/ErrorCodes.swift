internal import Libvirt
import SSH
import VMCtlSupport

extension VMCtlError.Code {
    /// The code `error` amounts to: a `VMCtlError`'s own, `cancelled` for cancellation, and for
    /// the errors of the layers below (which know nothing of vmctl's codes) their classification:
    /// a node's failure its own code, a stalled boot `node-timeout`, SSH `host-key-mismatch` or
    /// `ssh-failed`, libvirt `libvirt-unavailable` or `libvirt-failed`. Anything else is `failure`.
    /// Every code given to an error from below exits 1, as such errors always have.
    public init(of error: any Error) {
        switch error {
        case let e as VMCtlError: self = e.code
        case is CancellationError: self = .cancelled
        case let e as NodeFailure: self = e.code
        case is BootStall: self = .nodeTimeout
        case let e as SSHError: self = e.kind == .hostKeyMismatch ? .hostKeyMismatch : .sshFailed
        case let e as LibvirtError: self = e.kind == .connectionFailed ? .libvirtUnavailable : .libvirtFailed
        default: self = .failure
        }
    }

    /// The code every one of `errors` amounts to, or nil when they differ (or there are none):
    /// for one error that stands for several (nodes that did not come up).
    public init?(commonTo errors: [any Error]) {
        let codes = Set(errors.map(VMCtlError.Code.init(of:)))
        guard codes.count == 1, let only = codes.first else { return nil }
        self = only
    }
}
