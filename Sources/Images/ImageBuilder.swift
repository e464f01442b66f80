import Blocking
import Crypto
import Foundation
import VMCtlSupport

/// Builds images from recipes in three cached stages:
/// 1. `rootfs`: packages, by mmdebstrap, into a tarball;
/// 2. `customize`: files, commands and the seal, into a directory;
/// 3. `disk`: mkfs.ext4 -d into a qcow2, plus kernel and initrd (or, for a cloud image, one
///    partitioned qcow2 with its own bootloader).
/// Each stage is keyed by the hash of its inputs, so changing a file redoes only stages 2–3.
/// Every stage writes to a temporary path and renames into place: an interrupted build
/// leaves nothing half-made in the cache.
public struct ImageBuilder: Sendable {
    /// Bumped when the builder's own behaviour changes, so old cached stages are not reused.
    static let builderVersion = "3"
    /// Bumped when the customize or disk stages change (the rootfs cache stays valid).
    static let customizeVersion = "2"

    public let state: StateDir
    public let recipes: RecipeStore
    /// Who uses an image (by disk hash): `build --force` refuses to replace a disk in use.
    /// The cluster layer knows; this one does not.
    public let users: @Sendable (_ diskHash: String) -> [String]
    public init(state: StateDir, recipes: RecipeStore, users: @escaping @Sendable (_ diskHash: String) -> [String] = { _ in [] }) {
        self.state = state; self.recipes = recipes; self.users = users
    }

    /// What the build is doing now, for progress output.
    public typealias Progress = @Sendable (String) -> Void

    /// Stage hashes for a recipe: pure, so tests can check which inputs move which stage.
    public struct StageKeys: Sendable, Equatable {
        public var rootfs: String
        public var customize: String
        public var disk: String
    }

    /// The stage keys for `recipe` with packages fetched from `mirror`.
    public static func keys(for recipe: Recipe, mirror: String) -> StageKeys {
        func h(_ parts: [String]) -> String {
            var hasher = SHA256()
            for p in parts { hasher.update(data: Data(p.utf8)); hasher.update(data: Data([0])) }
            return hasher.finalize().map { String(format: "%02x", $0) }.joined()
        }
        let rootfs = h(["rootfs", builderVersion, recipe.resolvedDistribution, recipe.resolvedSuite,
                        recipe.resolvedComponents.joined(separator: ","), mirror, recipe.resolvedVariant,
                        recipe.resolvedKernel] + (recipe.packages ?? []).sorted() + ["--"] + (recipe.excludePaths ?? []))
        var custom = ["customize", customizeVersion, rootfs, recipe.resolvedUser]
        for f in recipe.files ?? [] { custom += [f.path, f.mode ?? "0644", f.content ?? ""] }
        for f in recipe.fetch ?? [] { custom += ["fetch", f.sha256, f.path, f.mode ?? "0755"] }
        custom.append("--")
        custom += recipe.commands ?? []
        let customize = h(custom)
        // The manifest carries what the recipe says about using the image (login user,
        // kernel command line, checks, bootstrap), so those are inputs too.
        let enc = JSONEncoder()
        enc.outputFormatting = .sortedKeys
        let usage = [recipe.resolvedCmdline,
                     String(decoding: (try? enc.encode(recipe.checks ?? [])) ?? Data(), as: UTF8.self),
                     String(decoding: (try? enc.encode(recipe.bootstrap ?? [])) ?? Data(), as: UTF8.self),
                     String(decoding: (try? enc.encode(recipe.roles ?? [:])) ?? Data(), as: UTF8.self)]
        let bootable = recipe.isBootable ? ["bootable", BootableDisk.version]
            : recipe.isCloudImage ? ["cloud", BootableDisk.version] : []
        // pvh1: the disk stage keeps a PVH vmlinux beside the bzImage (PVHKernel).
        let kernel = recipe.isCloudImage ? [] : ["pvh1"]
        let disk = h(["disk", customizeVersion, customize, recipe.resolvedRootSize] + usage + bootable + kernel)
        return StageKeys(rootfs: rootfs, customize: customize, disk: disk)
    }

    /// Builds `name` (or reuses every cached stage) and tags the result.
    public func build(_ name: String, force: Bool = false, progress: Progress = { _ in }) async throws -> Image {
        let recipe = try recipes.load(name)
        try Self.preflight()
        try state.ensureWritable()
        let mirror = recipe.mirror ?? AptMirror.detect(distribution: recipe.resolvedDistribution)
        let keys = Self.keys(for: recipe, mirror: mirror)
        let store = ImageStore(state: state)
        if force, case let users = self.users(keys.disk), !users.isEmpty {
            // Rebuilding in place would swap the base disk under running overlays.
            throw VMCtlError(.inUse, message: "image \(name) (\(keys.disk.prefix(12))) is in use by cluster(s) \(users.sorted().joined(separator: ", ")): "
                + "--force would replace the disk under them; run `vmctl cluster clean --name NAME` for each first")
        }
        if !force, let img = try store.image(hash: keys.disk) {
            try store.tag(img)
            progress("\(name): up to date (\(img.shortHash))")
            return img
        }
        let fm = FileManager.default
        // QEMU reaches base disks and kernels in the store by name; stages and tags are root's.
        try FileAccess.directory(state.images, qemu: true)
        try FileAccess.directory(state.imageStore, qemu: true)
        try FileAccess.directory(state.imageStages)
        try FileAccess.directory(state.imageTags)
        let tarball = "\(state.imageStages)/\(keys.rootfs).tar"
        if force || !fm.fileExists(atPath: tarball) {
            progress("\(name): stage rootfs: mmdebstrap \(recipe.resolvedSuite) (\(recipe.packages?.count ?? 0) packages)")
            try await RootfsStage(recipe: recipe, mirror: mirror).run(output: tarball)
        } else {
            progress("\(name): stage rootfs: cached")
        }
        let tree = "\(state.imageStages)/\(keys.customize).root"
        if force || !fm.fileExists(atPath: tree) {
            progress("\(name): stage customize: \(recipe.files?.count ?? 0) files, \(recipe.commands?.count ?? 0) commands, seal")
            try await CustomizeStage(recipe: recipe, downloads: "\(state.images)/downloads").run(tarball: tarball, output: tree)
        } else {
            progress("\(name): stage customize: cached")
        }
        progress("\(name): stage disk: " + (recipe.isCloudImage ? "cloud image as one qcow2 (GPT, bootloaders, root; no CIDATA)"
            : "mkfs.ext4 -d, qcow2, kernel (and its PVH vmlinux), initrd" + (recipe.isBootable ? ", UEFI disk (GPT, ESP, CIDATA)" : "")))
        let img = try await DiskStage(recipe: recipe, hash: keys.disk)
            .run(tree: tree, storeDir: state.imageStore, note: { progress("\(name): \($0)") })
        try store.tag(img)
        pruneStages(keep: [tarball, tree])
        progress("\(name): built \(img.shortHash) (\(ByteSize.format(img.sizeBytes)))")
        return img
    }

    /// Removes cached stage outputs that no tagged image's inputs lead to, except `keep`.
    /// Only customize trees are pruned (they are large); rootfs tarballs stay for warm rebuilds.
    private func pruneStages(keep: [String]) {
        let fm = FileManager.default
        let stages = (try? fm.contentsOfDirectory(atPath: state.imageStages)) ?? []
        let live = Set(ImageStore(state: state).list().compactMap { img -> String? in
            guard let r = try? recipes.load(img.name) else { return nil }
            let m = r.mirror ?? AptMirror.detect(distribution: r.resolvedDistribution)
            return Self.keys(for: r, mirror: m).customize
        })
        for s in stages where s.hasSuffix(".root") {
            let path = "\(state.imageStages)/\(s)"
            if keep.contains(path) || live.contains(String(s.dropLast(5))) { continue }
            try? fm.removeItem(atPath: path)
        }
    }

    /// Refuses early, with the fix, when a tool or privilege is missing.
    package static func preflight() throws {
        for t in ["mmdebstrap", "mkfs.ext4", "qemu-img", "tar", "chroot", "unshare"] { _ = try Command.require(t) }
        guard getuid() == 0 else {
            throw VMCtlError("image build needs root (mmdebstrap and chroot keep file ownership): run it with sudo")
        }
    }
}

/// The mirror apt on this host already uses, so builds need no other network.
public enum AptMirror {
    public static func detect(distribution: String) -> String {
        let fallback = distribution == "ubuntu" ? "http://archive.ubuntu.com/ubuntu" : "http://deb.debian.org/debian"
        var files = ["/etc/apt/sources.list"]
        if let extra = try? FileManager.default.contentsOfDirectory(atPath: "/etc/apt/sources.list.d") {
            files += extra.sorted().map { "/etc/apt/sources.list.d/\($0)" }
        }
        for f in files {
            guard let text = try? String(contentsOfFile: f, encoding: .utf8) else { continue }
            for line in text.split(separator: "\n") {
                let t = line.trimmingCharacters(in: .whitespaces)
                var url: String?
                if t.hasPrefix("URIs:") { url = t.dropFirst(5).split(separator: " ").first.map(String.init) }
                if t.hasPrefix("deb ") { url = t.split(separator: " ").dropFirst().first { !$0.hasPrefix("[") }.map(String.init) }
                if let u = url, u.hasSuffix("/\(distribution)") || u.hasSuffix("/\(distribution)/") {
                    return u.hasSuffix("/") ? String(u.dropLast()) : u
                }
            }
        }
        return fallback
    }
}
