import Foundation

/// A built image in the store: a qcow2 root filesystem plus its kernel and initrd.
public struct Image: Codable, Sendable, Equatable {
    public var name: String
    /// Hash of every input that went into it; also its directory name in the store.
    public var hash: String
    public var created: Date
    public var directory: String
    /// The login user, kernel command line and checks come from the recipe.
    public var user: String
    public var cmdline: String
    public var checks: [Recipe.Check]
    public var sizeBytes: UInt64
    /// Cluster bootstrap from the recipe (nil for images without one).
    public var bootstrap: [BootstrapStep]?
    public var roles: [String: [String]]?
    /// For bootable images: the partitioned UEFI disk's layout (`disk.raw`).
    public var layout: DiskLayout?
    public static let rawDiskName = "disk.raw"

    public var rootDisk: String { "\(directory)/root.qcow2" }
    public var kernel: String { "\(directory)/vmlinuz" }
    public var initrd: String { "\(directory)/initrd.img" }
    /// The bootable raw disk, when the image has one.
    public var rawDisk: String? { layout == nil ? nil : "\(directory)/\(Self.rawDiskName)" }
    /// Signed EFI loaders kept beside a bootable image: shimx64.efi, gcdx64.efi, mmx64.efi.
    public var efiDirectory: String { "\(directory)/efi" }
    public var shortHash: String { String(hash.prefix(12)) }
}

/// The image cache under the state dir: `store/HASH/` per build, `tags/NAME.json` → hash.
public struct ImageStore: Sendable {
    public let state: StateDir
    public init(state: StateDir) { self.state = state }

    private struct Tag: Codable { var hash: String }

    /// The current image for `name`, or a not-found error saying how to build it.
    public func image(named name: String) throws -> Image {
        guard let img = try? find(name) else {
            throw VMCtlError.usage("image '\(name)' is not built: run `vmctl image build \(name)`")
        }
        return img
    }

    /// The current image for `name`, or nil.
    public func find(_ name: String) throws -> Image? {
        let tagPath = "\(state.imageTags)/\(name).json"
        guard FileManager.default.fileExists(atPath: tagPath) else { return nil }
        let tag = try AtomicFile.readJSON(Tag.self, from: tagPath)
        return try image(hash: tag.hash)
    }

    /// The image stored under `hash`, or nil.
    public func image(hash: String) throws -> Image? {
        let m = "\(state.imageStore)/\(hash)/manifest.json"
        guard FileManager.default.fileExists(atPath: m) else { return nil }
        return try AtomicFile.readJSON(Image.self, from: m)
    }

    /// Points `name` at `image` (atomically).
    func tag(_ image: Image) throws {
        try AtomicFile.writeJSON(Tag(hash: image.hash), to: "\(state.imageTags)/\(image.name)".appending(".json"))
    }

    /// Every tagged image.
    public func list() -> [Image] {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: state.imageTags)) ?? [])
            .filter { $0.hasSuffix(".json") }.map { String($0.dropLast(5)) }
        return names.compactMap { try? find($0) }.sorted { $0.name < $1.name }
    }

    /// Removes `name`'s tag and stored build. `usedBy` lists clusters whose disks sit on it:
    /// removal is refused while any does.
    public func remove(_ name: String, usedBy: [String]) throws {
        let img = try image(named: name)
        guard usedBy.isEmpty else {
            throw VMCtlError.usage("image \(name) is in use by cluster(s) \(usedBy.joined(separator: ", ")): "
                + "run `vmctl cluster clean --name NAME` for each first")
        }
        let fm = FileManager.default
        try fm.removeItem(atPath: "\(state.imageTags)/\(name).json")
        // Another tag may share the same build (same inputs); keep it then.
        if !list().contains(where: { $0.hash == img.hash }) { try? fm.removeItem(atPath: img.directory) }
    }
}
