import Blocking
import Foundation

/// The installer ISO: UEFI El Torito (Debian's signed shim and CD GRUB, so Secure Boot
/// machines start it), the image's own kernel and initrd, and the compressed system disk.
/// An extra initrd archive adds `boot=vmctl-installer` to initramfs-tools: instead of
/// mounting a root it writes the disk image to the machine's first disk and powers off.
public struct InstallerISO: Sendable {
    public static let volumeID = "VMCTL_INSTALL"
    /// What the installer prints on its console (and the serial port) when it is done.
    public static let doneMarker = "vmctl-installed"

    public let image: Image
    public let title: String

    public init(image: Image, title: String) { self.image = image; self.title = title }

    /// Sourced by initramfs-tools' /init for `boot=vmctl-installer`; defines `mountroot`.
    public static func installerScript(title: String) -> String {
        """
        # vmctl installer: writes /install/disk.img.gz from the installer medium to the first
        # disk (or vmctl.target=/dev/X), then powers off. Sourced by initramfs-tools' /init.
        say() { echo "vmctl-installer: $*" > /dev/console; return 0; }
        fail() {
            say "FAILED: $*"
            echo "vmctl-failed installer: $*" > /dev/ttyS0 2>/dev/null
            sleep 10; echo o > /proc/sysrq-trigger; sleep 60
        }
        mountroot() {
            target=""
            for x in $(cat /proc/cmdline); do
                case "$x" in vmctl.target=*) target="${x#vmctl.target=}" ;; esac
            done
            modprobe -q isofs 2>/dev/null; modprobe -q sr_mod 2>/dev/null; modprobe -q usb_storage 2>/dev/null
            mkdir -p /run/vmctl-medium
            say "looking for the installer medium (volume \(volumeID))"
            medium=""
            i=0
            while [ -z "$medium" ] && [ $i -lt 120 ]; do
                # Any CD-ROM or disk that holds this installer (the ISO may also be dd'ed to a stick).
                for dev in /dev/sr* /dev/sd* /dev/vd* /dev/nvme*n* /dev/mmcblk*; do
                    [ -b "$dev" ] || continue
                    if mount -t iso9660 -o ro "$dev" /run/vmctl-medium 2>/dev/null; then
                        if [ -f /run/vmctl-medium/install/disk.img.gz ]; then medium=$dev; break; fi
                        umount /run/vmctl-medium
                    fi
                done
                [ -n "$medium" ] || { sleep 0.5; i=$((i + 1)); }
            done
            [ -n "$medium" ] || fail "the installer medium did not appear (block devices: $(ls /sys/block | tr '\\n' ' '))"
            say "installer medium: $medium"
            mname=${medium##*/}
            if [ -z "$target" ]; then
                for d in /sys/block/*; do
                    n=${d##*/}
                    case "$n" in loop*|ram*|sr*|zram*|fd*|dm-*|md*) continue ;; esac
                    case "$mname" in "$n"*) continue ;; esac
                    [ "$(cat "$d/size")" -gt 0 ] || continue
                    target=/dev/$n
                    break
                done
            fi
            [ -n "$target" ] && [ -b "$target" ] || fail "no disk to install to"
            need=$(cat /run/vmctl-medium/install/disk.size)
            have=$(( $(cat /sys/class/block/${target##*/}/size) * 512 ))
            [ "$have" -ge "$need" ] || fail "$target has $have bytes; the system needs $need"
            say "writing \(title) to $target ($have bytes): everything on it is replaced"
            zcat /run/vmctl-medium/install/disk.img.gz > "$target" || fail "writing $target failed"
            sync
            umount /run/vmctl-medium
            say "done"
            echo "\(doneMarker) $target" > /dev/ttyS0 2>/dev/null
            echo "\(doneMarker) $target" > /dev/console
            sleep 2
            echo o > /proc/sysrq-trigger
            sleep 60
        }

        """
    }

    /// GRUB's menu on the ISO (the CD GRUB finds it through /.disk/info).
    public func grubConfig() -> String {
        """
        set default=0
        set timeout=3
        menuentry 'Install \(title.replacingOccurrences(of: "'", with: "")) to the first disk (erases it)' {
          linux /install/vmlinuz boot=vmctl-installer console=tty0 console=ttyS0,115200 loglevel=4
          initrd /install/initrd.img /install/installer.cpio
        }

        """
    }

    /// Writes the ISO to `output`, with `diskGz` (the compressed system disk of `diskBytes`).
    public func write(diskGz: String, diskBytes: UInt64, to output: String) async throws {
        for t in ["xorrisofs", "mformat", "mmd", "mcopy", "cpio"] { _ = try Command.require(t) }
        let fm = FileManager.default
        let efi = image.efiDirectory
        let shim = "\(efi)/shimx64.efi", grub = "\(efi)/gcdx64.efi", mm = "\(efi)/mmx64.efi"
        guard fm.fileExists(atPath: shim), fm.fileExists(atPath: grub) else {
            throw VMCtlError("image \(image.name) has no signed EFI loaders in \(efi): rebuild it (`vmctl image build \(image.name) --force`)")
        }
        let stage = (output as NSString).deletingLastPathComponent + "/.iso-\(getpid())-\(UUID().uuidString.prefix(8))"
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
        // The installer, as a second initrd archive GRUB loads after the image's own.
        try Data(Self.installerScript(title: title).utf8).write(to: URL(fileURLWithPath: "\(stage)/initrd/scripts/vmctl-installer"))
        try await Command("/bin/sh", ["-c", "cd \"$1\" && find scripts | cpio --quiet -o -H newc -R 0:0 > \"$2\"", "sh",
                                      "\(stage)/initrd", "\(stage)/install/installer.cpio"]).checkedAsync()
        try fm.removeItem(atPath: "\(stage)/initrd")
        // The El Torito EFI image: a small FAT with the removable-media loader path.
        let efiImg = "\(stage)/boot/grub/efi.img"
        let loaders = [(shim, "BOOTX64.EFI"), (grub, "grubx64.efi")] + (fm.fileExists(atPath: mm) ? [(mm, "mmx64.efi")] : [])
        var bytes: UInt64 = 1 << 20
        for (f, _) in loaders { bytes += ((try? fm.attributesOfItem(atPath: f)[.size] as? UInt64) ?? 0) ?? 0 }
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
        let tmp = output + ".tmp-\(getpid())"
        defer { try? fm.removeItem(atPath: tmp) }
        do {
            try await Command("xorrisofs", ["-quiet", "-o", tmp, "-V", Self.volumeID, "-R", "-J", "-joliet-long",
                                            "-e", "boot/grub/efi.img", "-no-emul-boot", stage]).checkedAsync()
        } catch let e as CommandError {
            throw VMCtlError("xorrisofs could not write the installer ISO: \(e)")
        }
        try? fm.removeItem(atPath: output)
        try fm.moveItem(atPath: tmp, toPath: output)
    }
}
