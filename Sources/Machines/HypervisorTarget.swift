import Crypto
import Foundation
internal import Libvirt
import VMCtlSupport

/// Which libvirt a command talks to. Default: an embedded QEMU driver rooted in the
/// cluster's own directory (no daemon; one process per root at a time, so each cluster
/// gets its own root and two clusters can be worked on at once). `--connect` picks a
/// local URI instead; remote URIs wait for the multi-host work.
public struct HypervisorTarget: Sendable, Equatable, Codable {
    public let uri: String
    /// The embedded driver's root directory, when embedded.
    public let embeddedRoot: String?

    /// Embedded driver rooted at `root`.
    public static func embedded(root: String) -> HypervisorTarget {
        HypervisorTarget(uri: "qemu:///embed?root=\(shortRoot(root))", embeddedRoot: root)
    }

    /// The target for an explicit `--connect` URI, or the embedded default.
    public static func resolve(connect: String?, defaultRoot: String) throws -> HypervisorTarget {
        guard let uri = connect?.trimmingCharacters(in: .whitespaces), !uri.isEmpty else {
            return .embedded(root: defaultRoot)
        }
        try validate(uri)
        if uri.hasPrefix("qemu:///embed") {
            guard let root = URLComponents(string: uri)?.queryItems?.first(where: { $0.name == "root" })?.value else {
                throw VMCtlError.usage("--connect \(uri): an embedded URI needs ?root=DIR")
            }
            return .embedded(root: root)
        }
        return HypervisorTarget(uri: uri, embeddedRoot: nil)
    }

    /// Local URIs only, for now.
    public static func validate(_ uri: String) throws {
        guard let scheme = uri.split(separator: ":").first.map(String.init), uri.contains("://") else {
            throw VMCtlError.usage("--connect '\(uri)' is not a libvirt URI (e.g. qemu:///system)")
        }
        let afterScheme = uri.dropFirst(scheme.count + 3)
        let host = afterScheme.prefix { $0 != "/" && $0 != "?" }
        if scheme.contains("+") || !host.isEmpty {
            throw VMCtlError.usage("--connect \(uri): remote libvirt URIs are not supported yet (they come with "
                + "multi-host site files); use a local URI such as qemu:///system, or omit --connect for the embedded driver")
        }
        guard ["qemu", "test"].contains(scheme) else {
            throw VMCtlError.usage("--connect \(uri): vmctl drives QEMU; use a qemu:/// URI")
        }
    }

    private init(uri: String, embeddedRoot: String?) {
        self.uri = uri
        self.embeddedRoot = embeddedRoot
    }

    /// UNIX socket paths are limited to 108 bytes and libvirt puts QEMU's monitor socket
    /// deep under the root: a long root is reached through a short symlink instead, kept in
    /// a directory only vmctl's user can write (`/run/vmctl` as root, else
    /// `$XDG_RUNTIME_DIR/vmctl`). Pure: `linkShortRoot` makes the link.
    package static func shortRoot(_ root: String) -> String {
        guard root.utf8.count > 48, let dir = runtimeDirectory else { return root }
        let digest = SHA256.hash(data: Data(root.utf8)).prefix(6).map { String(format: "%02x", $0) }.joined()
        return "\(dir)/\(digest)"
    }

    /// Where short links live: never a predictable directory in /tmp.
    static var runtimeDirectory: String? {
        if getuid() == 0 { return "/run/vmctl" }
        guard let xdg = ProcessInfo.processInfo.environment["XDG_RUNTIME_DIR"], !xdg.isEmpty else { return nil }
        return "\(xdg)/vmctl"
    }

    /// Makes (or repairs) the short link to `root` inside a directory checked to be ours.
    static func linkShortRoot(_ root: String) throws {
        let link = shortRoot(root)
        guard link != root, let dir = runtimeDirectory else { return }
        // QEMU (libvirt-qemu) passes through the link to reach its monitor socket.
        try FileAccess.directory(dir, qemu: true)
        if (try? FileManager.default.destinationOfSymbolicLink(atPath: link)) != root {
            unlink(link)
            guard symlink(root, link) == 0 else {
                throw VMCtlError("cannot link \(link) to \(root): \(String(cString: strerror(errno)))")
            }
        }
    }

    /// Removes the short link to `root`, if there is one.
    package static func unlinkShortRoot(_ root: String) {
        let link = shortRoot(root)
        if link != root, (try? FileManager.default.destinationOfSymbolicLink(atPath: link)) == root { unlink(link) }
    }

    /// The embedded driver's qemu.conf. No virtlogd runs, so QEMU writes logs itself.
    /// As root, QEMU runs as the unprivileged `libvirt-qemu` user in group `kvm` (so KVM, where
    /// usable, opens; and libvirt's capabilities cache stays valid), with its supplementary
    /// group `libvirt-qemu` (DAC): vmctl itself makes
    /// what QEMU opens `root:libvirt-qemu` and group-readable (`FileAccess`), so libvirt need
    /// not relabel anything (`dynamic_ownership = 0`). No AppArmor driver, because paths named
    /// only in `qemu:commandline` (switch sockets) are never labelled for it, and no cgroup or
    /// mount-namespace setup that needs systemd is attempted.
    public static func embeddedQemuConf(asRoot: Bool) -> String {
        var lines = ["# written by vmctl", "stdio_handler = \"file\""]
        if asRoot {
            lines += ["user = \"\(FileAccess.qemuUser)\"", "group = \"\(FileAccess.qemuProcessGroup)\"",
                      "dynamic_ownership = 0", "remember_owner = 0",
                      "security_driver = \"none\"", "namespaces = [ ]", "cgroup_controllers = [ ]"]
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Where an embedded root keeps libvirt's probe of QEMU's capabilities.
    static func capabilitiesDir(_ root: String) -> String { "\(root)/cache/qemu/capabilities" }

    /// Every new embedded root would probe QEMU's capabilities again (seconds per `up`).
    /// The probe names no path of its root, and libvirt itself discards it when QEMU or
    /// libvirt change (it records their ctimes and version), so roots share one copy.
    static func copyCapabilities(from: String, to: String) {
        let fm = FileManager.default
        guard let files = try? fm.contentsOfDirectory(atPath: from), !files.isEmpty else { return }
        try? fm.createDirectory(atPath: to, withIntermediateDirectories: true)
        for f in files where f.hasSuffix(".xml") && !fm.fileExists(atPath: "\(to)/\(f)") {
            try? fm.copyItem(atPath: "\(from)/\(f)", toPath: "\(to)/\(f).tmp")
            try? fm.moveItem(atPath: "\(to)/\(f).tmp", toPath: "\(to)/\(f)")
        }
    }

    /// Saves this root's capabilities probe into `sharedCache` for later roots.
    public func shareCapabilities(into sharedCache: String) {
        if let root = embeddedRoot { Self.copyCapabilities(from: Self.capabilitiesDir(root), to: sharedCache) }
    }

    /// Prepares the embedded root (qemu.conf, shared capabilities) and opens the connection
    /// on its own thread (`MachineHost.connect` is the public road).
    func openLibvirt(sharedCapabilities: String?, onWait: @Sendable (String) -> Void) async throws -> Connection {
        if let root = embeddedRoot {
            try FileAccess.requireQemuUser()
            // libvirt makes QEMU's own directories below the root and hands them to QEMU's user.
            try FileAccess.directoryWithParents(root, qemu: true)
            try FileAccess.directory("\(root)/etc")
            // libvirt runs inside vmctl and inherits its umask (077): the directories QEMU
            // must pass through to its own (monitor socket, master key, pid file) are made
            // here, traversable by QEMU's group; libvirt hands the ones below to QEMU's user.
            try FileAccess.directory("\(root)/lib", qemu: true)
            try FileAccess.directory("\(root)/run", qemu: true)
            try AtomicFile.write(Self.embeddedQemuConf(asRoot: getuid() == 0), to: "\(root)/etc/qemu.conf")
            try Self.linkShortRoot(root)
            if let shared = sharedCapabilities { Self.copyCapabilities(from: shared, to: Self.capabilitiesDir(root)) }
        }
        // One embedded root per process: a second root waits for the first to close.
        if let root = embeddedRoot {
            try await EmbeddedRoots.shared.acquire(root, onWait: onWait)
        }
        do {
            var release: (@Sendable () -> Void)?
            if let root = embeddedRoot { release = { EmbeddedRoots.shared.release(root) } }
            return try await Connection.open(uri, onClose: release)
        } catch let e as LibvirtError {
            if let root = embeddedRoot { EmbeddedRoots.shared.release(root) }
            throw openFailure(e)
        } catch {
            if let root = embeddedRoot { EmbeddedRoots.shared.release(root) }
            throw error
        }
    }

    /// What a failed open means: an embedded root that another process holds (libvirt
    /// cannot lock its `run/qemu/driver.pid`) is busy; anything else is no connection.
    func openFailure(_ e: LibvirtError) -> VMCtlError {
        if let root = embeddedRoot, e.kind == .busy {
            return VMCtlError(.libvirtBusy, message: "libvirt root \(root) is in use by another process: \(e.message)", cause: e)
        }
        return VMCtlError(.libvirtUnavailable, message: "cannot connect to \(uri): \(e.message)"
            + (embeddedRoot == nil ? " (is libvirtd running? try `virtlogd -d; libvirtd -d`, or omit --connect)" : ""),
            cause: e)
    }
}
