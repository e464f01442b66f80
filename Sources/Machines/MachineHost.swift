import Foundation
internal import Libvirt

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
    /// An embedded root another process holds is waited for, saying so through `onWait`.
    public func connect(sharedCapabilities: String? = nil,
                        onWait: @Sendable (String) -> Void = { FileHandle.standardError.write(Data("vmctl: \($0)\n".utf8)) })
        async throws -> HostConnection {
        HostConnection(try await target.openLibvirt(sharedCapabilities: sharedCapabilities, onWait: onWait))
    }

    /// Where libvirt's own log lines go (a file in the state dir's logs).
    public static func logLibvirt(to path: String) { LibvirtEventLoop.setLogFile(path) }

    /// Whether a shared libvirt answers at `uri` (a libvirtd's socket exists and it opens).
    public static func answers(_ uri: String = "qemu:///system", socket: String = "/run/libvirt/libvirt-sock") async -> Bool {
        guard FileManager.default.fileExists(atPath: socket), let c = try? await Connection.open(uri) else { return false }
        await c.close()
        return true
    }
}
