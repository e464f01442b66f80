import Blocking
import Foundation
import Libvirt
import VMCtlSupport

/// A host machines live on: a libvirt URI (the embedded driver in a directory of vmctl's,
/// or a shared `qemu:///system`), and how machine files reach it. It opens connections
/// (one embedded root per process, see `EmbeddedRoots`) and finds machines by their labels,
/// never by name prefix.
public struct MachineHost: Sendable {
    /// How a machine's files get to the host. Only local paths until multi-host site files
    /// (remote URIs) arrive.
    public enum FilePlacement: String, Sendable { case local }

    public let target: HypervisorTarget
    public let files: FilePlacement

    public init(_ target: HypervisorTarget, files: FilePlacement = .local) {
        self.target = target
        self.files = files
    }

    /// The libvirt URI.
    public var uri: String { target.uri }

    /// Opens a connection to the host.
    public func connect(sharedCapabilities: String? = nil) async throws -> Connection {
        try await target.open(sharedCapabilities: sharedCapabilities)
    }

    /// Names of the domains on `connection` whose labels satisfy `matches`.
    public static func domains(on connection: Connection,
                               where matches: ([String: String]) -> Bool) async throws -> [String] {
        var out: [String] = []
        for d in try await connection.allDomains() {
            defer { d.close() }
            if let labels = try await Self.labels(d), matches(labels) { out.append(d.name) }
        }
        return out.sorted()
    }

    /// Destroys and undefines every domain whose labels satisfy `matches`; returns their names.
    /// Every match is tried; the first failure is thrown after that. Files are the owners'
    /// business (a machine's `remove` deletes its own directory).
    @discardableResult
    public static func removeDomains(on connection: Connection,
                                     where matches: ([String: String]) -> Bool) async throws -> [String] {
        var removed: [String] = []
        var firstError: (any Error)?
        for d in try await connection.allDomains() {
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
