import Blocking
import CLibvirt
import Foundation

/// An open libvirt connection (`virConnectPtr`).
///
/// Every call that reaches libvirt is async and runs on a thread of its own (libvirt calls
/// block: an embedded driver's define or start takes seconds), and reads libvirt's
/// thread-local error on that same thread. The handle is guarded: `close` waits for calls in
/// progress before `virConnectClose` runs, so no call ever uses a freed connection.
public final class Connection: Sendable {
    let handle: GuardedHandle
    /// The URI this connection was opened with.
    public let uri: String

    /// `onClose` runs once, after libvirt has closed the connection (its opener releases
    /// what it held for it: an embedded root's hold, `EmbeddedRoots`).
    private init(handle: virConnectPtr, uri: String, onClose: (@Sendable () -> Void)?) {
        // virConnectClose may block (an embedded driver shuts down; a remote one says goodbye).
        self.handle = GuardedHandle(handle, label: "libvirt") { virConnectClose($0); onClose?() }
        self.uri = uri
    }

    /// Opens `uri` (e.g. `qemu:///embed?root=/var/lib/vmctl/clusters/a/libvirt`) on a thread
    /// of its own, starting libvirt's event loop first if needed.
    public static func open(_ uri: String, onClose: (@Sendable () -> Void)? = nil) async throws -> Connection {
        try await onOwnThread("libvirt.open") {
            try LibvirtEventLoop.start()
            guard let h = virConnectOpen(uri) else {
                throw LibvirtError.last("connect to \(uri)")
            }
            return Connection(handle: h, uri: uri, onClose: onClose)
        }
    }

    /// Closes the connection and returns once libvirt has (on a thread of its own, after any
    /// call in progress); later calls throw, later closes do nothing. Close the connection's
    /// domains first: a domain handle keeps libvirt's connection object alive.
    public func close() async {
        await handle.close()
    }

    /// Runs `body`, then closes the connection (awaited) whether `body` threw or not: the
    /// async code's `defer { close() }`.
    public func closing<T: Sendable>(after body: (Connection) async throws -> T) async throws -> T {
        let result: Result<T, any Error>
        do { result = .success(try await body(self)) } catch { result = .failure(error) }
        await close()
        return try result.get()
    }

    var closedError: LibvirtError {
        LibvirtError(operation: "use connection \(uri)", code: 0, message: "connection is closed")
    }

    /// Runs `body` with the connection's handle on a thread of its own named `libvirt.<what>`.
    /// `body` makes the blocking libvirt calls and reads libvirt's error right after a failing
    /// one, on that same thread.
    func call<T: Sendable>(_ what: String, _ body: @escaping @Sendable (virConnectPtr) throws -> T) async throws -> T {
        try await onOwnThread("libvirt.\(what)") { [self] in
            try handle.use(orThrow: closedError) { try body($0) }
        }
    }

    /// The hypervisor's version as libvirt reports it (major*1_000_000 + minor*1000 + release).
    public func hypervisorVersion() async throws -> UInt {
        try await call("version") { c in
            var v: UInt = 0
            try check(virConnectGetVersion(c, &v), "read hypervisor version")
            return v
        }
    }

    /// libvirt's own version (major*1_000_000 + minor*1000 + release).
    public func libraryVersion() async throws -> UInt {
        try await call("version") { c in
            var v: UInt = 0
            try check(virConnectGetLibVersion(c, &v), "read libvirt version")
            return v
        }
    }

    /// Defines (persistently) a domain from XML; replaces an inactive definition of the same name.
    public func define(xml: String) async throws -> Domain {
        try await call("define") { [self] c in
            guard let d = virDomainDefineXML(c, xml) else {
                throw LibvirtError.last("define domain")
            }
            return Domain(handle: d, connection: self)
        }
    }

    /// Starts a guest from libvirt's save file at `path` (a regular file, or a FIFO a writer
    /// fills with a header, the XML, then the stream), as the XML in the file says: paused
    /// when `paused`, else running. No cache bypass: that would need O_DIRECT, which a FIFO lacks.
    public func restore(from path: String, paused: Bool = false) async throws {
        let flags = paused ? VIR_DOMAIN_SAVE_PAUSED.rawValue : VIR_DOMAIN_SAVE_RUNNING.rawValue
        try await call("restore") { c in _ = try check(virDomainRestoreFlags(c, path, nil, flags), "restore a guest from \(path)") }
    }

    /// The domain called `name`, or nil when there is none.
    public func domain(named name: String) async throws -> Domain? {
        try await call("lookup") { [self] c in
            guard let d = virDomainLookupByName(c, name) else {
                let err = LibvirtError.last("look up domain \(name)")
                if err.isNoDomain { return nil }
                throw err
            }
            return Domain(handle: d, connection: self)
        }
    }

    /// Every domain, running or defined.
    public func allDomains() async throws -> [Domain] {
        try await call("list") { [self] c in
            var list: UnsafeMutablePointer<virDomainPtr?>?
            let n = try check(virConnectListAllDomains(c, &list, 0), "list domains")
            defer { free(list) }
            var out: [Domain] = []
            for i in 0..<Int(n) {
                if let d = list?[i] { out.append(Domain(handle: d, connection: self)) }
            }
            return out
        }
    }
}
