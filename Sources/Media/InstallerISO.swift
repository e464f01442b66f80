import Blocking
import Foundation
import VMCtlSupport
import Images

/// The installer ISO: UEFI El Torito (Debian's signed shim and CD GRUB, so Secure Boot
/// machines start it), the image's own kernel and initrd, and the compressed system disk.
/// An extra initrd archive adds `boot=vmctl-installer` to initramfs-tools: instead of
/// mounting a root it writes the disk image to the machine's internal disk (named on the
/// kernel command line, confirmed on a console, or on unattended media the one disk it finds)
/// and powers off.
/// The ISO is also a hybrid disk (its EFI image appended as an MBR EFI partition), so the
/// same file works from a CD, a BMC's virtual media, or `dd` to a USB stick.
public struct InstallerISO: Sendable {
    public static let volumeID = "VMCTL_INSTALL"
    /// What the installer prints on its console (and the serial port) when it is done.
    public static let doneMarker = "vmctl-installed"

    public let image: Image
    public let title: String
    /// The installer writes the chosen disk without asking (`vmctl.unattended=1` in its menu).
    public let unattended: Bool

    public init(image: Image, title: String, unattended: Bool = false) {
        self.image = image; self.title = title; self.unattended = unattended
    }

    /// Sourced by initramfs-tools' /init for `boot=vmctl-installer`; defines `mountroot`.
    /// The target is `vmctl.target=`, else the one internal disk that can hold the system once
    /// two reads of the disks `vmctl.settle=` seconds apart agree: never the installer medium,
    /// a removable or USB-attached disk, or a disk too small; with several candidates it
    /// refuses and lists them. A chosen (not named) disk is written only with
    /// `vmctl.unattended=1` or once its name is typed on a console within `vmctl.confirm=`
    /// seconds. A disk that already holds this very medium's system (same GPT disk GUID, read
    /// at LBA 1 of the disk's own sector size) is left alone unless `vmctl.force=1`, so a
    /// machine that boots the installer again does not wipe itself.
    /// The script is `Resources/vmctl-installer.sh`, embedded in the binary at build time; its
    /// `@VMCTL_VOLUME_ID@`, `@VMCTL_DONE_MARKER@` and `@VMCTL_TITLE@` are filled in here (the
    /// title last, so a title cannot bring in a placeholder of its own).
    public static func installerScript(title: String) -> String {
        String(decoding: PackageResources.vmctl_installer_sh, as: UTF8.self)
            .replacingOccurrences(of: "@VMCTL_VOLUME_ID@", with: volumeID)
            .replacingOccurrences(of: "@VMCTL_DONE_MARKER@", with: doneMarker)
            .replacingOccurrences(of: "@VMCTL_TITLE@", with: title)
    }

    /// GRUB's menu on the ISO (the CD GRUB finds it through /.disk/info). Unattended media put
    /// `vmctl.unattended=1` on the kernel command line; the others ask before erasing a disk.
    public func grubConfig() -> String {
        let name = title.replacingOccurrences(of: "'", with: "")
        let entry = unattended ? "Install \(name) to the internal disk (erases it without asking)"
                               : "Install \(name) to the internal disk (asks before erasing it)"
        return """
            set default=0
            set timeout=3
            menuentry '\(entry)' {
              linux /install/vmlinuz boot=vmctl-installer\(unattended ? " vmctl.unattended=1" : "") console=tty0 console=ttyS0,115200 loglevel=4
              initrd /install/initrd.img /install/installer.cpio
            }

            """
    }

    /// Writes the ISO to `output`, with `diskGz` (the compressed system disk of `diskBytes`)
    /// and `diskGUID`, the 16 bytes of that disk's GPT disk GUID as they stand on disk (the
    /// installer compares them with its target's, to leave an installed machine alone).
    public func write(diskGz: String, diskBytes: UInt64, diskGUID: Data, to output: String) async throws {
        precondition(diskGUID.count == 16, "a GPT disk GUID is 16 bytes")
        for t in ["xorrisofs", "mformat", "mmd", "mcopy", "cpio"] { _ = try Command.require(t) }
        let fm = FileManager.default
        let efi = image.efiDirectory
        let shim = "\(efi)/shimx64.efi", grub = "\(efi)/gcdx64.efi", mm = "\(efi)/mmx64.efi"
        guard fm.fileExists(atPath: shim), fm.fileExists(atPath: grub) else {
            throw VMCtlError("image \(image.name) has no signed EFI loaders in \(efi): rebuild it (`vmctl image build \(image.name) --force`)")
        }
        let stage = try PrivateTemp.makeDirectory(in: (output as NSString).deletingLastPathComponent, prefix: ".iso")
        defer { try? fm.removeItem(atPath: stage) }
        for d in [".disk", "boot/grub", "EFI/BOOT", "install", "initrd/scripts"] {
            try fm.createDirectory(atPath: "\(stage)/\(d)", withIntermediateDirectories: true)
        }
        try Data("vmctl installer: \(title)\n".utf8).write(to: URL(fileURLWithPath: "\(stage)/.disk/info"))
        try Data(grubConfig().utf8).write(to: URL(fileURLWithPath: "\(stage)/boot/grub/grub.cfg"))
        try fm.copyItem(atPath: image.kernel, toPath: "\(stage)/install/vmlinuz")
        try fm.copyItem(atPath: image.initrd, toPath: "\(stage)/install/initrd.img")
        try fm.linkItem(atPath: diskGz, toPath: "\(stage)/install/disk.img.gz")
        try Data("\(diskBytes)\n".utf8).write(to: URL(fileURLWithPath: "\(stage)/install/disk.size"))
        try diskGUID.write(to: URL(fileURLWithPath: "\(stage)/install/disk.guid"))
        // The installer, as a second initrd archive GRUB loads after the image's own.
        try Data(Self.installerScript(title: title).utf8).write(to: URL(fileURLWithPath: "\(stage)/initrd/scripts/vmctl-installer"))
        try await Command("/bin/sh", ["-c", "cd \"$1\" && find scripts | cpio --quiet -o -H newc -R 0:0 > \"$2\"", "sh",
                                      "\(stage)/initrd", "\(stage)/install/installer.cpio"]).checkedAsync()
        try fm.removeItem(atPath: "\(stage)/initrd")
        // The El Torito EFI image: a small FAT with the removable-media loader path.
        let efiImg = "\(stage)/boot/grub/efi.img"
        let loaders = [(shim, "BOOTX64.EFI"), (grub, "grubx64.efi")] + (fm.fileExists(atPath: mm) ? [(mm, "mmx64.efi")] : [])
        var bytes: UInt64 = 1 << 20
        for (f, _) in loaders { bytes += (try? fm.attributesOfItem(atPath: f)[.size] as? UInt64) ?? 0 }
        let sectors = (bytes + bytes / 4) / 512 + 2048
        guard fm.createFile(atPath: efiImg, contents: nil), truncate(efiImg, off_t(sectors * 512)) == 0 else {
            throw VMCtlError("cannot create \(efiImg)")
        }
        try await Command("mformat", ["-i", efiImg, "-T", String(sectors), "-h", "64", "-s", "32", "-v", "EFIBOOT", "::"]).checkedAsync()
        try await Command("mmd", ["-i", efiImg, "::/EFI", "::/EFI/BOOT"]).checkedAsync()
        for (f, name) in loaders {
            try await Command("mcopy", ["-i", efiImg, f, "::/EFI/BOOT/\(name)"]).checkedAsync()
            try fm.copyItem(atPath: f, toPath: "\(stage)/EFI/BOOT/\(name)")
        }
        // xorrisofs writes to a name nobody else can have made, then it is renamed into place.
        let outDir = try PrivateTemp.makeDirectory(in: (output as NSString).deletingLastPathComponent, prefix: ".iso-out")
        defer { try? fm.removeItem(atPath: outDir) }
        let tmp = "\(outDir)/installer.iso"
        do {
            try await Command("xorrisofs", ["-quiet", "-o", tmp, "-V", Self.volumeID, "-R", "-J", "-joliet-long",
                                            "-e", "boot/grub/efi.img", "-no-emul-boot",
                                            "-append_partition", "2", "0xef", efiImg, stage]).checkedAsync()
        } catch let e as CommandError {
            throw VMCtlError("xorrisofs could not write the installer ISO: \(e)")
        }
        try? fm.removeItem(atPath: output)
        try fm.moveItem(atPath: tmp, toPath: output)
    }
}
