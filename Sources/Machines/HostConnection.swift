import Foundation
internal import Libvirt

/// An open connection to a `MachineHost`: the one handle the layers above Machines hold. What
/// they do through it is done to machines (found by name and labels, listed, removed, a
/// throwaway guest booted from media); libvirt's own types stay inside the machine layer.
public final class HostConnection: Sendable {
    let libvirt: Connection

    init(_ libvirt: Connection) { self.libvirt = libvirt }

    /// The libvirt URI this connection was opened with.
    public var uri: String { libvirt.uri }

    /// Closes the connection (after any call in progress); later calls throw.
    public func close() async { await libvirt.close() }

    /// Runs `body`, then closes the connection (awaited) whether `body` threw or not.
    public func closing<T: Sendable>(after body: (HostConnection) async throws -> T) async throws -> T {
        let result: Result<T, any Error>
        do { result = .success(try await body(self)) } catch { result = .failure(error) }
        await close()
        return try result.get()
    }

    /// The hypervisor's and libvirt's versions (major*1_000_000 + minor*1000 + release): what a
    /// warm snapshot is only valid for.
    public func versions() async throws -> (qemu: UInt, libvirt: UInt) {
        (try await libvirt.hypervisorVersion(), try await libvirt.libraryVersion())
    }

    /// Names of the machines on the host whose labels satisfy `matches`.
    public func machineNames(where matches: ([String: String]) -> Bool) async throws -> [String] {
        var out: [String] = []
        for d in try await libvirt.allDomains() {
            defer { d.close() }
            if let labels = try await Self.labels(d), matches(labels) { out.append(d.name) }
        }
        return out.sorted()
    }

    /// Destroys and undefines every machine whose labels satisfy `matches`; returns their names.
    /// Every match is tried; the first failure is thrown after that. Files are the owners'
    /// business (a machine's `remove` deletes its own directory).
    @discardableResult
    public func removeMachines(where matches: ([String: String]) -> Bool) async throws -> [String] {
        var removed: [String] = []
        var firstError: (any Error)?
        for d in try await libvirt.allDomains() {
            defer { d.close() }
            do {
                guard let labels = try await Self.labels(d), matches(labels) else { continue }
                if try await d.isActive() { try await d.destroy() }
                try await d.undefine()
                removed.append(d.name)
            } catch let e as LibvirtError where e.isNoDomain {
                continue  // removed meanwhile by someone else
            } catch {
                firstError = firstError ?? error
            }
        }
        if let firstError { throw firstError }
        return removed.sorted()
    }

    /// A listed domain's labels, or nil when it vanished since the listing (removed by
    /// another command): a listing races with removals and that is not an error.
    static func labels(_ d: Domain) async throws -> [String: String]? {
        do { return try await d.labels() } catch let e as LibvirtError where e.isNoDomain { return nil }
    }
}
