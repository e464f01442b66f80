import Foundation
import VMCtlSupport

/// An image recipe: `images/NAME.yaml`. A new image is a new file, not new code.
public struct Recipe: Codable, Sendable, Equatable {
    /// A file placed in the image: inline `content`, or `source` relative to the recipe's directory.
    public struct File: Codable, Sendable, Equatable {
        public var path: String
        public var content: String?
        public var source: String?
        public var mode: String?
        public init(path: String, content: String? = nil, source: String? = nil, mode: String? = nil) {
            self.path = path; self.content = content; self.source = source; self.mode = mode
        }
    }

    /// A check `cluster test` runs on every node: the command must exit 0 and, when
    /// `expect` is set, print a line containing it.
    public struct Check: Codable, Sendable, Equatable {
        public var name: String
        public var run: String
        public var expect: String?
        /// Which nodes run it (as for bootstrap steps); cluster-wide checks such as `sinfo`
        /// run once, on `first`. Default: all.
        public var on: String?
        public init(name: String, run: String, expect: String? = nil, on: String? = nil) {
            self.name = name; self.run = run; self.expect = expect; self.on = on
        }
    }

    /// A release binary fetched at build time by URL and verified by SHA-256 (e.g. K3s, which
    /// Debian does not package). Downloads are cached by checksum.
    public struct Fetch: Codable, Sendable, Equatable {
        public var url: String
        public var sha256: String
        public var path: String
        public var mode: String?
        public init(url: String, sha256: String, path: String, mode: String? = nil) {
            self.url = url; self.sha256 = sha256; self.path = path; self.mode = mode
        }
    }

    /// What changes for real hardware (USB stick, installer ISO): the generic kernel with its
    /// drivers, firmware components, the signed bootloader, first-boot growth, Wi-Fi. The
    /// hardware variant is `NAME-hw`: this recipe with the block laid over it.
    public struct Hardware: Codable, Sendable, Equatable {
        public var kernel: String?
        public var components: [String]?
        public var packages: [String]?
        public var files: [File]?
        public var commands: [String]?
        /// Kernel command line for GRUB on the bootable disk (root= is added by vmctl).
        public var cmdline: String?
        public init() {}

        func layered(over base: Hardware?) -> Hardware {
            var h = base ?? Hardware()
            h.kernel = kernel ?? h.kernel
            h.components = components ?? h.components
            h.packages = (h.packages ?? []) + (packages ?? [])
            h.files = (h.files ?? []) + (files ?? [])
            h.commands = (h.commands ?? []) + (commands ?? [])
            h.cmdline = cmdline ?? h.cmdline
            return h
        }
    }

    public var name: String
    public var description: String?
    /// Another recipe this one extends: lists are appended, scalars overridden.
    public var base: String?
    public var distribution: String?
    public var suite: String?
    public var components: [String]?
    public var mirror: String?
    /// mmdebstrap variant (`apt`, `minbase`, …).
    public var variant: String?
    /// The kernel package: `linux-image-cloud-amd64` for VMs, `linux-image-amd64` for hardware.
    public var kernel: String?
    public var packages: [String]?
    /// dpkg `path-exclude` patterns (docs, man pages, locales) to keep the image lean.
    public var excludePaths: [String]?
    public var files: [File]?
    /// Shell commands run in the image's root (chroot) after files are placed.
    public var commands: [String]?
    /// Kernel command line for direct kernel boot (root=/dev/vda is added by vmctl).
    public var cmdline: String?
    /// The account vmctl creates and logs in as.
    public var user: String?
    /// Size of the root filesystem in the base image (e.g. `2G`); node disks are grown on top.
    public var rootSize: String?
    public var checks: [Check]?
    /// Named groups of nodes for bootstrap steps (`controller: [first]`).
    public var roles: [String: [String]]?
    /// Steps run over SSH once every node is up, in order.
    public var bootstrap: [BootstrapStep]?
    /// Release binaries to download, verify and place in the image.
    public var fetch: [Fetch]?
    /// Overrides for the hardware variant (`NAME-hw`).
    public var hardware: Hardware?
    /// Also build the partitioned UEFI disk (`disk.raw`): set for hardware variants.
    public var bootable: Bool?
    /// Build a cloud image the way distributions publish them instead: one qcow2
    /// (`disk.qcow2`) with a GPT, the signed shim and GRUB on an EFI system partition and the
    /// root filesystem; no CIDATA partition (the seed comes from outside, as in any cloud),
    /// and no kernel or initrd for direct boot. Machines boot it through firmware.
    public var cloudImage: Bool?

    /// Suffix of the hardware variant's name.
    public static let hardwareSuffix = "-hw"

    enum CodingKeys: String, CodingKey {
        case name, description, base, distribution, suite, components, mirror, variant, kernel, packages
        case excludePaths = "exclude_paths", files, commands, cmdline, user, rootSize = "root_size", checks, roles, bootstrap, fetch, hardware, bootable
        case cloudImage = "cloud_image"
    }

    public init(name: String) { self.name = name }

    /// This recipe laid over `base`: lists appended (base first), scalars from this recipe win.
    public func layered(over base: Recipe) -> Recipe {
        var r = base
        r.name = name
        r.description = description ?? base.description
        r.base = nil
        r.distribution = distribution ?? base.distribution
        r.suite = suite ?? base.suite
        r.components = components ?? base.components
        r.mirror = mirror ?? base.mirror
        r.variant = variant ?? base.variant
        r.kernel = kernel ?? base.kernel
        r.packages = (base.packages ?? []) + (packages ?? [])
        r.excludePaths = (base.excludePaths ?? []) + (excludePaths ?? [])
        r.files = (base.files ?? []) + (files ?? [])
        r.commands = (base.commands ?? []) + (commands ?? [])
        r.cmdline = cmdline ?? base.cmdline
        r.user = user ?? base.user
        r.rootSize = rootSize ?? base.rootSize
        r.checks = (base.checks ?? []) + (checks ?? [])
        r.roles = (base.roles ?? [:]).merging(roles ?? [:]) { _, mine in mine }
        r.bootstrap = (base.bootstrap ?? []) + (bootstrap ?? [])
        r.fetch = (base.fetch ?? []) + (fetch ?? [])
        r.hardware = hardware.map { $0.layered(over: base.hardware) } ?? base.hardware
        r.bootable = bootable ?? base.bootable
        r.cloudImage = cloudImage ?? base.cloudImage
        return r
    }

    /// The hardware variant: this recipe with its `hardware` block applied, built as a
    /// bootable UEFI disk. Files and commands come after the recipe's own, so they override.
    public func hardwareVariant() throws -> Recipe {
        guard let h = hardware else {
            throw VMCtlError.usage("recipe \(name) has no `hardware:` block (kernel, bootloader, drivers), "
                + "so it has no USB/ISO variant; add one or base it on debian-12")
        }
        var r = self
        r.name = name + Self.hardwareSuffix
        r.description = (description ?? name) + " (hardware variant)"
        r.kernel = h.kernel ?? "linux-image-amd64"
        r.components = h.components ?? components
        r.packages = (packages ?? []) + (h.packages ?? [])
        r.files = (files ?? []) + (h.files ?? [])
        r.commands = (commands ?? []) + (h.commands ?? [])
        r.cmdline = h.cmdline ?? cmdline
        r.hardware = nil
        r.bootable = true
        r.cloudImage = nil
        return r
    }

    // Defaults, applied where a recipe is silent.
    public var resolvedDistribution: String { distribution ?? "debian" }
    public var resolvedSuite: String { suite ?? "bookworm" }
    public var resolvedComponents: [String] { components ?? ["main"] }
    public var resolvedVariant: String { variant ?? "apt" }
    public var resolvedKernel: String { kernel ?? "linux-image-cloud-amd64" }
    public var resolvedUser: String { user ?? "vmctl" }
    public var resolvedRootSize: String { rootSize ?? "2G" }
    public var resolvedCmdline: String { cmdline ?? "console=ttyS0" }
    public var isBootable: Bool { bootable ?? false }
    public var isCloudImage: Bool { cloudImage ?? false }

    /// Checks the recipe makes sense before anything is built.
    public func validate() throws {
        guard Self.isValidName(name) else {
            throw VMCtlError.usage("recipe name '\(name)' is not valid: use lower-case letters, digits and '-'")
        }
        guard ["debian", "ubuntu"].contains(resolvedDistribution) else {
            throw VMCtlError.usage("recipe \(name): distribution '\(resolvedDistribution)' is not supported (debian, ubuntu)")
        }
        if isCloudImage && isBootable {
            throw VMCtlError.usage("recipe \(name): cloud_image and bootable exclude each other "
                + "(a cloud image is one qcow2 booted through firmware; bootable adds a USB disk): keep one")
        }
        guard ByteSize.parse(resolvedRootSize) != nil else {
            throw VMCtlError.usage("recipe \(name): root_size '\(resolvedRootSize)' is not a size like 2G or 1536M")
        }
        for f in (files ?? []) + (hardware?.files ?? []) {
            guard f.path.hasPrefix("/") else { throw VMCtlError.usage("recipe \(name): file path '\(f.path)' must be absolute") }
            try Self.checkGuestPath(f.path, recipe: name, what: "file")
            guard (f.content == nil) != (f.source == nil) else {
                throw VMCtlError.usage("recipe \(name): file \(f.path) needs exactly one of content or source")
            }
            if let m = f.mode, UInt16(m, radix: 8) == nil {
                throw VMCtlError.usage("recipe \(name): file \(f.path) has mode '\(m)', not an octal mode like 0644")
            }
        }
        for step in bootstrap ?? [] { try step.validate(recipe: name) }
        for f in fetch ?? [] {
            guard f.sha256.range(of: "^[0-9a-f]{64}$", options: .regularExpression) != nil else {
                throw VMCtlError.usage("recipe \(name): fetch \(f.url) needs sha256 as 64 lower-case hex digits")
            }
            guard f.path.hasPrefix("/"), URL(string: f.url)?.scheme != nil else {
                throw VMCtlError.usage("recipe \(name): fetch needs an absolute path and a URL (got \(f.path), \(f.url))")
            }
            try Self.checkGuestPath(f.path, recipe: name, what: "fetch")
        }
        let user = resolvedUser
        guard user.range(of: "^[a-z_][a-z0-9_-]{0,31}$", options: .regularExpression) != nil else {
            throw VMCtlError.usage("recipe \(name): user '\(user)' is not a valid Linux user name")
        }
    }

    /// Refuses a file or fetch path with a `..` component or naming the root itself: it must name a file in the image.
    static func checkGuestPath(_ path: String, recipe: String, what: String) throws {
        let parts = path.split(separator: "/", omittingEmptySubsequences: true)
        if parts.contains("..") {
            throw VMCtlError.usage("recipe \(recipe): \(what) path '\(path)' contains a '..' component; "
                + "write the path inside the image without '..', e.g. /etc/app/conf")
        }
        if path.hasSuffix("/") || (parts.last.map({ $0 == "." }) ?? true) {
            throw VMCtlError.usage("recipe \(recipe): \(what) path '\(path)' names a directory, not a file; give the file's full path")
        }
    }

    public static func isValidName(_ s: String) -> Bool {
        s.range(of: "^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$", options: .regularExpression) != nil
    }
}
