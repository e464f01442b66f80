import Blocking
import CloudInit
import Foundation
import SSH

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
        public init(outputDirectory: String, prefix: String? = nil, authorizedKeyFile: String? = nil,
                    wifi: WifiProfile? = nil, iso: Bool = true, raw: Bool = false) {
            self.outputDirectory = outputDirectory; self.prefix = prefix; self.authorizedKeyFile = authorizedKeyFile
            self.wifi = wifi; self.iso = iso; self.raw = raw
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
    }

    public let state: StateDir
    public let recipes: RecipeStore
    public init(state: StateDir, recipes: RecipeStore) { self.state = state; self.recipes = recipes }

    public static func defaultPrefix(for recipe: String) -> String {
        recipe.hasSuffix("-node") ? String(recipe.dropLast(5)) : recipe
    }

    public static func manifestPath(directory: String, prefix: String) -> String { "\(directory)/\(prefix)-usb.json" }

    /// Checks everything the user supplied before anything is built or written.
    public func validate(_ name: String, _ o: Options) throws -> Recipe {
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
        try FileManager.default.createDirectory(atPath: o.outputDirectory, withIntermediateDirectories: true)
        guard access(o.outputDirectory, W_OK) == 0 else {
            throw VMCtlError.usage("cannot write to \(o.outputDirectory): choose another --output")
        }
        return recipe
    }

    /// Builds (or reuses) the hardware image and writes the media. Partial outputs are
    /// temporary files renamed into place, so an interrupted run leaves the old media intact.
    public func write(_ name: String, _ o: Options, progress: @escaping ImageBuilder.Progress) async throws -> Manifest {
        let recipe = try validate(name, o)
        let prefix = o.prefix ?? Self.defaultPrefix(for: String(recipe.name.dropLast(Recipe.hardwareSuffix.count)))
        let img = try await ImageBuilder(state: state, recipes: recipes).build(recipe.name, progress: progress)
        guard let layout = img.layout, let raw = img.rawDisk else {
            throw VMCtlError("image \(img.name) has no bootable disk: rebuild it (`vmctl image build \(img.name) --force`)")
        }
        let fm = FileManager.default
        let out = o.outputDirectory
        let work = "\(out)/.\(prefix)-work-\(getpid())"
        try? fm.removeItem(atPath: work)
        try fm.createDirectory(atPath: work, withIntermediateDirectories: true)
        defer { try? fm.removeItem(atPath: work) }

        // Keys: the login key (new unless given) and the pinned host key.
        let loginKeyPath = "\(out)/\(prefix)-usb.id_ed25519"
        var authorized: String
        var privateKey: String?
        if let k = o.authorizedKeyFile {
            authorized = try String(contentsOfFile: k, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        } else {
            let tmpKey = "\(work)/id_ed25519"
            let pair = try KeyPair.generate(at: tmpKey, comment: "\(prefix)-usb login")
            authorized = try pair.publicKeyLine()
            for (src, dst) in [(tmpKey, loginKeyPath), (tmpKey + ".pub", loginKeyPath + ".pub")] {
                try? fm.removeItem(atPath: dst)
                try fm.moveItem(atPath: src, toPath: dst)
            }
            privateKey = loginKeyPath
        }
        let hostKey = try KeyPair.generate(at: "\(work)/ssh_host_ed25519_key", comment: "\(prefix) host key")
        var files: [SeedConfig.File] = []
        if let w = o.wifi { files.append(.init(path: WifiProfile.path, content: w.render(), permissions: "0600")) }
        let seed = SeedConfig(
            instanceID: "\(prefix)-\(img.shortHash)-\(UUID().uuidString.prefix(8).lowercased())",
            hostname: prefix,
            user: .init(name: img.user, authorizedKeys: [authorized]),
            hostKey: .init(privateKey: try hostKey.privateKey(), publicKey: try hostKey.publicKeyLine()),
            // Network: the hardware image runs DHCP on every wired NIC itself (MACs are unknown now).
            interfaces: [],
            files: files)

        progress("\(prefix): CIDATA seed (user \(img.user), pinned host key\(o.wifi == nil ? "" : ", Wi-Fi profile"))")
        let disk = "\(work)/disk.raw"
        try await Command("cp", ["--sparse=always", raw, disk]).checkedAsync()
        try await BootableDisk.writeSeed(try SeedISO.files(for: seed), disk: disk, layout: layout)

        progress("\(prefix): compressing \(ByteSize.format(layout.totalBytes)) disk")
        let gz = "\(out)/\(prefix)-usb.img.gz"
        try await Command("/bin/sh", ["-c", "gzip -1 -c \"$1\" > \"$2\"", "sh", disk, "\(work)/disk.img.gz"]).checkedAsync()
        var rawImage: String?
        if o.raw {
            rawImage = "\(out)/\(prefix)-usb.img"
            try? fm.removeItem(atPath: rawImage!)
            try fm.moveItem(atPath: disk, toPath: rawImage!)
        } else {
            try? fm.removeItem(atPath: disk)
        }
        var iso: String?
        if o.iso {
            progress("\(prefix): installer ISO (xorrisofs, EFI El Torito)")
            let path = "\(out)/\(prefix)-installer.iso"
            try await InstallerISO(image: img, title: prefix).write(diskGz: "\(work)/disk.img.gz", diskBytes: layout.totalBytes, to: path)
            iso = path
        }
        try? fm.removeItem(atPath: gz)
        try fm.moveItem(atPath: "\(work)/disk.img.gz", toPath: gz)

        let pin = try hostKey.pin()
        let knownHosts = "\(out)/\(prefix)-usb.known_hosts"
        try AtomicFile.write("* \(try hostKey.publicKeyLine())\n", to: knownHosts)
        let manifest = Manifest(image: img.name, imageHash: img.hash, user: img.user, usbImage: gz, rawImage: rawImage, installerISO: iso,
                                diskBytes: layout.totalBytes, rootFSUUID: layout.rootFSUUID, privateKey: privateKey,
                                hostKey: pin, knownHosts: knownHosts, wifi: o.wifi != nil)
        try AtomicFile.writeJSON(manifest, to: Self.manifestPath(directory: out, prefix: prefix))
        return manifest
    }
}
