import Blocking
import CLibvirt
import Foundation

/// An open libvirt connection (`virConnectPtr`). libvirt connections are thread-safe.
public final class Connection: @unchecked Sendable {
    private var handle: virConnectPtr?
    /// The URI this connection was opened with.
    public let uri: String
    /// Runs once when the connection is closed (releases what its opener held for it).
    private let onClose: (@Sendable () -> Void)?

    /// Opens `uri` (e.g. `qemu:///embed?root=/var/lib/vmctl/clusters/a/libvirt`). Blocks.
    public init(uri: String, onClose: (@Sendable () -> Void)? = nil) throws {
        try LibvirtEventLoop.start()
        guard let h = virConnectOpen(uri) else {
            throw LibvirtError.last("connect to \(uri)")
        }
        self.handle = h
        self.uri = uri
        self.onClose = onClose
    }

    /// Opens a connection on a thread of its own.
    public static func open(_ uri: String, onClose: (@Sendable () -> Void)? = nil) async throws -> Connection {
        try await onOwnThread("libvirt.open") { try Connection(uri: uri, onClose: onClose) }
    }

    deinit { close() }

    /// Closes the connection now; later calls do nothing.
    public func close() {
        guard let h = handle else { return }
        handle = nil
        virConnectClose(h)
        onClose?()
    }

    func raw() throws -> virConnectPtr {
        guard let h = handle else {
            throw LibvirtError(operation: "use connection \(uri)", code: 0, message: "connection is closed")
        }
        return h
    }

    /// The hypervisor's version as libvirt reports it (major*1_000_000 + minor*1000 + release).
    public func hypervisorVersion() throws -> UInt {
        var v: UInt = 0
        try check(virConnectGetVersion(try raw(), &v), "read hypervisor version")
        return v
    }

    /// Defines (persistently) a domain from XML; replaces an inactive definition of the same name.
    public func define(xml: String) throws -> Domain {
        guard let d = virDomainDefineXML(try raw(), xml) else {
            throw LibvirtError.last("define domain")
        }
        return Domain(handle: d, connection: self)
    }

    /// The domain called `name`, or nil when there is none.
    public func domain(named name: String) throws -> Domain? {
        guard let d = virDomainLookupByName(try raw(), name) else {
            let err = LibvirtError.last("look up domain \(name)")
            if err.isNoDomain { return nil }
            throw err
        }
        return Domain(handle: d, connection: self)
    }

    /// Every domain, running or defined.
    public func allDomains() throws -> [Domain] {
        var list: UnsafeMutablePointer<virDomainPtr?>?
        let n = try check(virConnectListAllDomains(try raw(), &list, 0), "list domains")
        defer { free(list) }
        var out: [Domain] = []
        for i in 0..<Int(n) {
            if let d = list?[i] { out.append(Domain(handle: d, connection: self)) }
        }
        return out
    }
}
