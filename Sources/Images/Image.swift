import Foundation
import VMCtlSupport

/// A built image in the store: a qcow2 root filesystem plus its kernel and initrd (vmctl's
/// own images, booted directly), or one partitioned qcow2 with its own bootloader (a cloud
/// image, booted through firmware).
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
    /// For bootable images: the partitioned UEFI disk's layout (`disk.raw`, or `disk.qcow2`
    /// for a cloud image).
    public var layout: DiskLayout?
    /// A cloud image (recipe `cloud_image: true`): only `disk.qcow2`, no kernel or initrd.
    public var cloudImage: Bool?
    public static let rawDiskName = "disk.raw"
    public static let cloudDiskName = "disk.qcow2"

    public var isCloudImage: Bool { cloudImage ?? false }
    /// The qcow2 that machines' overlays sit on: the root filesystem, or a cloud image's whole disk.
    public var rootDisk: String { "\(directory)/\(isCloudImage ? Self.cloudDiskName : "root.qcow2")" }
    /// The distribution's compressed kernel (what GRUB, the installer ISO and the KVM probe boot).
    public var kernel: String { "\(directory)/vmlinuz" }
    /// What direct kernel boot loads: the PVH `vmlinux` kept beside the bzImage when the build
    /// could extract one (see PVHKernel: QEMU maps it, shared between nodes, instead of holding
    /// a copy of the bzImage in each node's memory), else the bzImage.
    public var bootKernel: String {
        let pvh = "\(directory)/\(PVHKernel.fileName)"
        return FileManager.default.fileExists(atPath: pvh) ? pvh : kernel
    }
    public var initrd: String { "\(directory)/initrd.img" }
    /// The bootable raw disk, when the image has one.
    public var rawDisk: String? { layout == nil || isCloudImage ? nil : "\(directory)/\(Self.rawDiskName)" }
    /// Signed EFI loaders kept beside a bootable image: shimx64.efi, gcdx64.efi, mmx64.efi.
    public var efiDirectory: String { "\(directory)/efi" }
    public var shortHash: String { String(hash.prefix(12)) }

    /// What QEMU (libvirt-qemu) opens of an image: its directory (by name only), the base
    /// disk, kernel, initrd and bootable disk, read-only. The manifest stays root's.
    public func shareWithQemu(at dir: String? = nil) throws {
        let dir = dir ?? directory
        try FileAccess.directory(dir, qemu: true)
        for f in ["root.qcow2", "vmlinuz", PVHKernel.fileName, "initrd.img", Self.rawDiskName, Self.cloudDiskName] where FileManager.default.fileExists(atPath: "\(dir)/\(f)") {
            // A shared libvirtd (dynamic ownership) may hold it relabelled for a running guest:
            // taking it back would break its bookkeeping, and QEMU can read it either way.
            if FileAccess.qemuCanRead("\(dir)/\(f)") { continue }
            try FileAccess.shareWithQemu("\(dir)/\(f)")
        }
    }
}

/// The image cache under the state dir: `store/HASH/` per build, `tags/NAME.json` → hash.
public struct ImageStore: Sendable {
    public let state: StateDir
    public init(state: StateDir) { self.state = state }

    private struct Tag: Codable { var hash: String }

    /// Refuses an image name that is not a recipe name (so it cannot name a path outside `tags/`).
    public static func checkName(_ name: String) throws {
        guard Recipe.isValidName(name) else {
            throw VMCtlError.usage("image name '\(name)' is not valid: use a recipe name (lower-case letters, digits, '.' and '-', "
                + "e.g. debian-12 or debian-12-hw)")
        }
    }

    /// Refuses a store hash that is not 64 lower-case hex digits (so it cannot name a path outside `store/`).
    public static func checkHash(_ hash: String) throws {
        guard hash.utf8.count == 64, hash.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) }) else {
            throw VMCtlError.usage("image hash '\(hash.prefix(80))' is not valid: expected 64 lower-case hex digits")
        }
    }

    /// The current image for `name`, or a not-found error saying how to build it.
    public func image(named name: String) throws -> Image {
        try Self.checkName(name)
        guard let img = try? find(name) else {
            throw VMCtlError(.imageNotBuilt, message: "image '\(name)' is not built: run `vmctl image build \(name)`")
        }
        return img
    }

    /// The current image for `name`, or nil.
    public func find(_ name: String) throws -> Image? {
        try Self.checkName(name)
        let tagPath = "\(state.imageTags)/\(name).json"
        guard FileManager.default.fileExists(atPath: tagPath) else { return nil }
        let tag = try AtomicFile.readJSON(Tag.self, from: tagPath)
        return try image(hash: tag.hash)
    }

    /// The image stored under `hash`, or nil.
    public func image(hash: String) throws -> Image? {
        try Self.checkHash(hash)
        let m = "\(state.imageStore)/\(hash)/manifest.json"
        guard FileManager.default.fileExists(atPath: m) else { return nil }
        return try AtomicFile.readJSON(Image.self, from: m)
    }

    /// Points `name` at `image`: atomically, and durably (AtomicFile syncs `tags/` after the rename).
    func tag(_ image: Image) throws {
        try Self.checkName(image.name)
        try Self.checkHash(image.hash)
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
        try Self.checkName(name)
        let img = try image(named: name)
        guard usedBy.isEmpty else {
            throw VMCtlError(.inUse, message: "image \(name) is in use by cluster(s) \(usedBy.joined(separator: ", ")): "
                + "run `vmctl cluster clean --name NAME` for each first")
        }
        let fm = FileManager.default
        try fm.removeItem(atPath: "\(state.imageTags)/\(name).json")
        // Another tag may share the same build (same inputs); keep it then.
        if !list().contains(where: { $0.hash == img.hash }) { try? fm.removeItem(atPath: img.directory) }
    }
}
