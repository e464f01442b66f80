import Blocking
import Foundation
import VMCtlSupport

/// Assembles the partitioned UEFI disk of a bootable image from an image tree, with no loop
/// devices and no mounts: `sfdisk` writes the GPT onto a plain file, `mkfs.ext4 -d -E offset=`
/// writes the root filesystem in place, and mtools formats and fills the FAT partitions at
/// their offsets. The ESP holds Debian's Microsoft-signed shim and Debian-signed GRUB, so the
/// disk boots with Secure Boot on; GRUB loads the (signed) kernel from the root filesystem.
/// A layout with a BIOS boot partition also gets GRUB for BIOS (`BIOSBoot`), reading the same grub.cfg.
public struct BootableDisk: Sendable {
    /// Bumped when the disk's assembly changes (part of the image hash).
    public static let version = "1"

    public let layout: DiskLayout
    /// The kernel command line (without root=).
    public let cmdline: String
    public let title: String

    public init(layout: DiskLayout, cmdline: String, title: String) {
        self.layout = layout; self.cmdline = cmdline; self.title = title
    }

    /// Signed EFI binaries, as the shim-signed and grub-efi-amd64-signed packages install them.
    public static let shim = "/usr/lib/shim/shimx64.efi.signed"
    public static let mokManager = "/usr/lib/shim/mmx64.efi.signed"
    public static let grub = "/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed"
    /// GRUB's image for optical media (finds its config through `/.disk/info`).
    public static let grubCD = "/usr/lib/grub/x86_64-efi-signed/gcdx64.efi.signed"

    /// GRUB's configuration: find the root filesystem by UUID and boot the kernel the
    /// distribution keeps linked at /vmlinuz (so kernel upgrades keep booting).
    public func grubConfig() -> String {
        let uuid = layout.rootFSUUID
        return """
            set default=0
            set timeout=1
            search --no-floppy --fs-uuid --set=root \(uuid)
            menuentry '\(title.replacingOccurrences(of: "'", with: ""))' {
              linux /vmlinuz root=UUID=\(uuid) ro \(cmdline)
              initrd /initrd.img
            }

            """
    }

    /// Writes the disk for `tree` to `path`.
    public func write(tree: String, to path: String) async throws {
        for t in ["sfdisk", "mformat", "mmd", "mcopy", "mkfs.ext4"] { _ = try Command.require(t) }
        for f in [Self.shim, Self.grub] where !FileManager.default.fileExists(atPath: tree + f) {
            throw VMCtlError("the image has no \(f): a bootable disk needs the shim-signed and grub-efi-amd64-signed "
                + "packages (the debian-12 recipe's hardware block adds them)")
        }
        try? FileManager.default.removeItem(atPath: path)
        guard FileManager.default.createFile(atPath: path, contents: nil), truncate(path, off_t(layout.totalBytes)) == 0 else {
            throw VMCtlError("cannot create \(path): \(String(cString: strerror(errno)))")
        }
        try await Command("sfdisk", ["--quiet", "--no-reread", "--no-tell-kernel", path])
            .checkedAsync(input: Data(layout.sfdiskScript().utf8))
        let root = layout.partition(.root)
        do {
            try await Command("mkfs.ext4", ["-q", "-F", "-b", "4096", "-L", "root", "-U", layout.rootFSUUID,
                                            "-E", "offset=\(root.offset)", "-d", tree, path, "\(root.size / 1024)k"]).checkedAsync()
        } catch let e as CommandError {
            throw VMCtlError("the root filesystem did not fit its partition (\(ByteSize.format(root.size))): \(e)")
        }
        let esp = layout.partition(.esp)
        try await Self.format(path, esp, label: "EFI")
        // Beside the disk (a private build directory), not in a shared /tmp.
        let staging = try PrivateTemp.makeDirectory(in: (path as NSString).deletingLastPathComponent, prefix: ".esp")
        defer { try? FileManager.default.removeItem(atPath: staging) }
        try Data(grubConfig().utf8).write(to: URL(fileURLWithPath: "\(staging)/grub.cfg"))
        // shim, started as the removable-media path, loads grubx64.efi from its own directory;
        // Debian's GRUB reads its config from /EFI/debian.
        try await Self.mkdirs(path, esp, ["/EFI", "/EFI/BOOT", "/EFI/debian"])
        try await Self.copy(path, esp, [(tree + Self.shim, "/EFI/BOOT/BOOTX64.EFI"),
                                        (tree + Self.grub, "/EFI/BOOT/grubx64.efi"),
                                        ("\(staging)/grub.cfg", "/EFI/debian/grub.cfg"),
                                        ("\(staging)/grub.cfg", "/EFI/BOOT/grub.cfg")]
                                + (FileManager.default.fileExists(atPath: tree + Self.mokManager)
                                   ? [(tree + Self.mokManager, "/EFI/BOOT/mmx64.efi")] : []))
        if layout.has(.cidata) { try await Self.format(path, layout.partition(.cidata), label: "CIDATA") }
        if layout.has(.biosBoot) { try await BIOSBoot.install(tree: tree, disk: path, layout: layout, staging: staging) }
    }

    /// `file@@offset`: mtools' way to address a partition inside a disk image.
    static func mtoolsTarget(_ path: String, _ p: DiskLayout.Partition) -> String { "\(path)@@\(p.offset)" }

    static func format(_ path: String, _ p: DiskLayout.Partition, label: String) async throws {
        // -T: total sectors; -h/-s: a geometry mtools accepts for any size.
        try await Command("mformat", ["-i", mtoolsTarget(path, p), "-T", String(p.sectors), "-h", "64", "-s", "32",
                                      "-v", label, "::"]).checkedAsync()
    }

    static func mkdirs(_ path: String, _ p: DiskLayout.Partition, _ dirs: [String]) async throws {
        try await Command("mmd", ["-i", mtoolsTarget(path, p)] + dirs.map { "::\($0)" }).checkedAsync()
    }

    static func copy(_ path: String, _ p: DiskLayout.Partition, _ files: [(String, String)]) async throws {
        for (src, dst) in files {
            try await Command("mcopy", ["-o", "-i", mtoolsTarget(path, p), src, "::\(dst)"]).checkedAsync()
        }
    }

    /// Replaces the seed files on the disk's CIDATA partition (done per `image usb`, so the
    /// keys chosen then never enter the cached image). The files pass through `staging`, a
    /// directory private to the caller: they hold the host's private key.
    public static func writeSeed(_ files: [String: String], disk: String, layout: DiskLayout, staging parent: String) async throws {
        guard layout.has(.cidata) else { throw VMCtlError("the disk has no CIDATA partition to write the seed to") }
        let p = layout.partition(.cidata)
        try await format(disk, p, label: "CIDATA")
        let staging = "\(parent)/cidata"
        defer { try? FileManager.default.removeItem(atPath: staging) }
        try FileManager.default.createDirectory(atPath: staging, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        var pairs: [(String, String)] = []
        for (name, content) in files.sorted(by: { $0.key < $1.key }) {
            let f = "\(staging)/\(name)"
            try Data(content.utf8).write(to: URL(fileURLWithPath: f))
            pairs.append((f, "/\(name)"))
        }
        try await copy(disk, p, pairs)
    }
}
