import Blocking
import CloudInit
import Foundation
import SSH
import VMCtlSupport
import Images
import Machines

/// `vmctl image usb NAME`: the hardware variant of a recipe as media for real machines:
/// `PREFIX-usb.img.gz` (the bootable GPT disk, for `dd` to a USB stick) and
/// `PREFIX-installer.iso` (UEFI El Torito installer that writes that disk to the first disk).
/// The login user's key, the host key and any Wi-Fi profile are chosen now and written to
/// the disk's CIDATA partition, so the cached image carries no secrets.
public struct USBMedia: Sendable {
    public struct Options: Sendable {
        public var outputDirectory: String
        /// File prefix; default: the recipe name without a trailing `-node`.
        public var prefix: String?
        /// An existing public key to authorize; default: a new key pair written beside the media.
        public var authorizedKeyFile: String?
        public var wifi: WifiProfile?
        public var iso: Bool
        /// Also keep the uncompressed disk (`PREFIX-usb.img`, sparse).
        public var raw: Bool
        /// The installer ISO writes the one internal disk it finds without asking (`--verify` needs it).
        public var unattended: Bool
        public init(outputDirectory: String, prefix: String? = nil, authorizedKeyFile: String? = nil,
                    wifi: WifiProfile? = nil, iso: Bool = true, raw: Bool = false, unattended: Bool = false) {
            self.outputDirectory = outputDirectory; self.prefix = prefix; self.authorizedKeyFile = authorizedKeyFile
            self.wifi = wifi; self.iso = iso; self.raw = raw; self.unattended = unattended
        }
    }

    /// What was written: read back by `--verify` and by tests.
    public struct Manifest: Codable, Sendable, Equatable {
        public var image: String
        public var imageHash: String
        public var user: String
        public var usbImage: String
        public var rawImage: String?
        public var installerISO: String?
        /// Size of the uncompressed disk.
        public var diskBytes: UInt64
        public var rootFSUUID: String
        /// The login key vmctl generated (nil when `--authorized-key` was given).
        public var privateKey: String?
        public var hostKey: HostKeyPin
        public var knownHosts: String
        public var wifi: Bool
        /// The installer ISO installs without asking (`--unattended`).
        public var unattended: Bool
    }

    public let state: StateDir
    public let recipes: RecipeStore
    public init(state: StateDir, recipes: RecipeStore) { self.state = state; self.recipes = recipes }

    public static func defaultPrefix(for recipe: String) -> String {
        recipe.hasSuffix("-node") ? String(recipe.dropLast(5)) : recipe
    }

    public static func manifestPath(directory: String, prefix: String) -> String { "\(directory)/\(prefix)-usb.json" }

    /// Checks everything the user supplied, and every tool the run will need, before anything
    /// is built or written.
    public func validate(_ name: String, _ o: Options, verify: Bool = false) throws -> Recipe {
        try Self.checkInstallMode(o, verify: verify)
        let base = name.hasSuffix(Recipe.hardwareSuffix) ? String(name.dropLast(Recipe.hardwareSuffix.count)) : name
        let recipe = try recipes.load(base + Recipe.hardwareSuffix)
        if let k = o.authorizedKeyFile {
            guard let line = try? String(contentsOfFile: k, encoding: .utf8),
                  (try? HostKeyPin(openSSHLine: line.trimmingCharacters(in: .whitespacesAndNewlines))) != nil else {
                throw VMCtlError.usage("--authorized-key \(k) is not a readable OpenSSH public key (ssh-ed25519 AAAA…)")
            }
        }
        let prefix = o.prefix ?? Self.defaultPrefix(for: base)
        guard Recipe.isValidName(prefix) else { throw VMCtlError.usage("--prefix '\(prefix)' must be letters, digits and '-'") }
        try ImageBuilder.preflight()
        for t in ["sfdisk", "mformat", "mmd", "mcopy", "gzip", "cp"] + (o.iso ? ["xorrisofs", "cpio"] : []) {
            _ = try Command.require(t)
        }
        if verify, let missing = MediaVerifier.missingFirmware() {
            throw VMCtlError("--verify needs UEFI firmware: \(missing) is missing: run scripts/install-prereqs.sh (ovmf)")
        }
        try FileManager.default.createDirectory(atPath: o.outputDirectory, withIntermediateDirectories: true)
        guard access(o.outputDirectory, W_OK) == 0 else {
            throw VMCtlError.usage("cannot write to \(o.outputDirectory): choose another --output")
        }
        return recipe
    }

    /// `--unattended` is about the installer ISO, and `--verify` boots that ISO with nobody at
    /// its console: it needs media that install without asking. It is not implied, since it
    /// makes the ISO erase a real machine's disk without a prompt.
    static func checkInstallMode(_ o: Options, verify: Bool) throws {
        if o.unattended && !o.iso {
            throw VMCtlError.usage("--unattended is about the installer ISO: drop it or --no-iso")
        }
        if verify && o.iso && !o.unattended {
            throw VMCtlError.usage("--verify installs from the ISO with nobody at its console: add --unattended (the ISO then "
                + "erases a machine's one internal disk without asking), or --no-iso to verify the USB image only")
        }
    }

    /// The files one run writes under the output directory, by prefix.
    struct Outputs {
        let gz, raw, iso, key, pub, knownHosts, manifest: String
        init(_ out: String, _ prefix: String) {
            gz = "\(out)/\(prefix)-usb.img.gz"; raw = "\(out)/\(prefix)-usb.img"; iso = "\(out)/\(prefix)-installer.iso"
            key = "\(out)/\(prefix)-usb.id_ed25519"; pub = key + ".pub"; knownHosts = "\(out)/\(prefix)-usb.known_hosts"
            manifest = USBMedia.manifestPath(directory: out, prefix: prefix)
        }
    }

    /// Builds (or reuses) the hardware image and writes the media. Everything is made in a
    /// private work directory and renamed into place only at the end, so a failed or
    /// interrupted run leaves the previous media, keys and manifest as they were; outputs an
    /// earlier run made that this one does not (an ISO, a raw disk, a login key) are removed
    /// then, since they would carry the old keys. The media carry the host key (and any
    /// Wi-Fi passphrase) on their CIDATA partition, so they are written readable by the owner only.
    public func write(_ name: String, _ o: Options, verify: Bool = false,
                      progress: @escaping ImageBuilder.Progress) async throws -> Manifest {
        let recipe = try validate(name, o, verify: verify)
        let prefix = o.prefix ?? Self.defaultPrefix(for: String(recipe.name.dropLast(Recipe.hardwareSuffix.count)))
        let fm = FileManager.default
        let out = o.outputDirectory
        Self.sweepAbandonedWork(in: out, lead: ".\(prefix)-work-")
        let img = try await ImageBuilder(state: state, recipes: recipes).build(recipe.name, progress: progress)
        guard let layout = img.layout, let raw = img.rawDisk else {
            throw VMCtlError("image \(img.name) has no bootable disk: rebuild it (`vmctl image build \(img.name) --force`)")
        }
        // mkdtemp (0700); the pid in the name lets a later run sweep it if this one dies.
        let work = try PrivateTemp.makeDirectory(in: out, prefix: ".\(prefix)-work-\(getpid())")
        defer { try? fm.removeItem(atPath: work) }
        let final = Outputs(out, prefix)
        let staged = Outputs(work, prefix)

        // Keys: the login key (new unless given) and the pinned host key.
        let authorized: String
        if let k = o.authorizedKeyFile {
            authorized = try String(contentsOfFile: k, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        } else {
            authorized = try await KeyPair.generate(at: staged.key, comment: "\(prefix)-usb login").publicKeyLine()
        }
        let hostKey = try await KeyPair.generate(at: "\(work)/ssh_host_ed25519_key", comment: "\(prefix) host key")
        var files: [SeedConfig.File] = []
        if let w = o.wifi { files.append(.init(path: WifiProfile.path, content: w.render(), permissions: "0600")) }
        let seed = SeedConfig(
            instanceID: "\(prefix)-\(img.shortHash)-\(UUID().uuidString.prefix(8).lowercased())",
            hostname: prefix,
            user: .init(name: img.user, authorizedKeys: [authorized]),
            hostKey: .init(privateKey: try hostKey.privateKey(), publicKey: try hostKey.publicKeyLine()),
            // Network: the hardware image runs DHCP on every wired NIC itself (MACs are unknown now).
            interfaces: [],
            files: files,
            bootcmd: Readiness.bootcmd(user: img.user))

        progress("\(prefix): CIDATA seed (user \(img.user), pinned host key\(o.wifi == nil ? "" : ", Wi-Fi profile"))")
        let disk = "\(work)/disk.raw"
        try await Command("cp", ["--sparse=always", raw, disk]).checkedAsync()
        // A GPT disk GUID of its own per medium: the installer recognises a disk it already
        // wrote by it, and two media from one image stay distinguishable.
        try await Command("sfdisk", ["--quiet", "--disk-id", disk, UUID().uuidString]).checkedAsync()
        try await BootableDisk.writeSeed(try SeedISO.files(for: seed), disk: disk, layout: layout, staging: work)
        let diskGUID = try Self.gptDiskGUID(disk)

        progress("\(prefix): compressing \(ByteSize.format(layout.totalBytes)) disk")
        try await Command("/bin/sh", ["-c", "gzip -1 -c \"$1\" > \"$2\"", "sh", disk, staged.gz]).checkedAsync()
        if o.raw { try fm.moveItem(atPath: disk, toPath: staged.raw) } else { try? fm.removeItem(atPath: disk) }
        if o.iso {
            progress("\(prefix): installer ISO (xorrisofs, EFI El Torito, hybrid for USB sticks)")
            let installer = InstallerISO(image: img, title: prefix, unattended: o.unattended)
            try await installer.write(diskGz: staged.gz, diskBytes: layout.totalBytes, diskGUID: diskGUID, to: staged.iso)
        }
        try AtomicFile.write(Self.knownHostsLine(hostname: prefix, publicKey: try hostKey.publicKeyLine()), to: staged.knownHosts)
        let manifest = Manifest(image: img.name, imageHash: img.hash, user: img.user, usbImage: final.gz,
                                rawImage: o.raw ? final.raw : nil, installerISO: o.iso ? final.iso : nil,
                                diskBytes: layout.totalBytes, rootFSUUID: layout.rootFSUUID,
                                privateKey: o.authorizedKeyFile == nil ? final.key : nil,
                                hostKey: try hostKey.pin(), knownHosts: final.knownHosts, wifi: o.wifi != nil,
                                unattended: o.iso && o.unattended)
        try AtomicFile.writeJSON(manifest, to: staged.manifest)

        // Into place, the manifest last; what this run did not make goes.
        for path in [staged.gz, staged.raw, staged.iso] where fm.fileExists(atPath: path) { chmod(path, 0o600) }
        let pairs = [(staged.gz, final.gz), (staged.raw, final.raw), (staged.iso, final.iso), (staged.key, final.key),
                     (staged.pub, final.pub), (staged.knownHosts, final.knownHosts), (staged.manifest, final.manifest)]
        for (src, dst) in pairs {
            if fm.fileExists(atPath: src) {
                guard rename(src, dst) == 0 else { throw VMCtlError("cannot move \(src) to \(dst): \(String(cString: strerror(errno)))") }
            } else {
                try? fm.removeItem(atPath: dst)
            }
        }
        return manifest
    }

    /// The 16 bytes of a disk's GPT disk GUID, as they stand in its header (LBA 1, offset 56).
    static func gptDiskGUID(_ disk: String) throws -> Data {
        guard let h = FileHandle(forReadingAtPath: disk) else { throw VMCtlError("cannot read \(disk)") }
        defer { try? h.close() }
        try h.seek(toOffset: DiskLayout.sectorSize + 56)
        guard let d = try h.read(upToCount: 16), d.count == 16 else { throw VMCtlError("\(disk) has no GPT header") }
        return d
    }

    /// The media's known_hosts: the host key under the machine's hostname (the prefix), not
    /// `*`, so the file vouches for that machine only. Its DHCP address is unknown when the
    /// media are written, so connect with the hostname as alias:
    /// `ssh -o HostKeyAlias=PREFIX -o UserKnownHostsFile=PREFIX-usb.known_hosts USER@ADDRESS`
    /// (OpenSSH then looks the key up by that name, whatever address the machine got).
    static func knownHostsLine(hostname: String, publicKey: String) -> String {
        "\(hostname) \(publicKey)\n"
    }

    /// Work directories of runs that died without cleaning up (a second Ctrl-C, SIGKILL):
    /// they hold a multi-GiB disk and a host key.
    /// `lead` is the name up to the owner's pid; `PrivateTemp` adds `.XXXXXX` after it
    /// (names without that suffix are from older versions and swept too).
    static func sweepAbandonedWork(in out: String, lead: String) {
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: out)) ?? [] where entry.hasPrefix(lead) {
            guard let pid = ownerPID(entry, lead: lead), pid != getpid(), kill(pid, 0) != 0, errno == ESRCH else { continue }
            try? FileManager.default.removeItem(atPath: "\(out)/\(entry)")
        }
    }

    /// The pid in a work directory's name `LEADpid.XXXXXX` (or the older `LEADpid`), or nil
    /// when the name is not one of those.
    static func ownerPID(_ entry: String, lead: String) -> pid_t? {
        guard entry.hasPrefix(lead) else { return nil }
        let rest = entry.dropFirst(lead.count)
        let digits = rest.prefix { $0 != "." }
        guard let pid = pid_t(digits), pid > 0 else { return nil }
        let tail = String(rest.dropFirst(digits.count))
        guard tail.isEmpty || PrivateTemp.isDirectory(String(digits) + tail, madeWith: String(digits)) else { return nil }
        return pid
    }
}
