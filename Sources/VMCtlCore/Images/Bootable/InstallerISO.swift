import Blocking
import Foundation

/// The installer ISO: UEFI El Torito (Debian's signed shim and CD GRUB, so Secure Boot
/// machines start it), the image's own kernel and initrd, and the compressed system disk.
/// An extra initrd archive adds `boot=vmctl-installer` to initramfs-tools: instead of
/// mounting a root it writes the disk image to the machine's internal disk and powers off.
/// The ISO is also a hybrid disk (its EFI image appended as an MBR EFI partition), so the
/// same file works from a CD, a BMC's virtual media, or `dd` to a USB stick.
public struct InstallerISO: Sendable {
    public static let volumeID = "VMCTL_INSTALL"
    /// What the installer prints on its console (and the serial port) when it is done.
    public static let doneMarker = "vmctl-installed"

    public let image: Image
    public let title: String

    public init(image: Image, title: String) { self.image = image; self.title = title }

    /// Sourced by initramfs-tools' /init for `boot=vmctl-installer`; defines `mountroot`.
    /// The target is `vmctl.target=` or else the one internal disk that can hold the system:
    /// never the installer medium, a removable or USB-attached disk, or a disk too small;
    /// with several candidates it refuses and lists them. A disk that already holds this
    /// very medium's system (same GPT disk GUID) is left alone unless `vmctl.force=1`, so a
    /// machine that boots the installer again does not wipe itself.
    public static func installerScript(title: String) -> String {
        """
        # vmctl installer: writes /install/disk.img.gz from the installer medium to the
        # machine's internal disk (or vmctl.target=/dev/X), then powers off.
        # VMCTL_SYS/VMCTL_DEV: other roots for /sys and /dev (unit tests run the choice on fake trees).
        SYS=${VMCTL_SYS:-/sys}; DEV=${VMCTL_DEV:-/dev}
        say() { echo "vmctl-installer: $*" > /dev/console; return 0; }
        power_off() { sleep "$1"; echo o > /proc/sysrq-trigger; while :; do sleep 3600; done; }
        fail() {
            say "FAILED: $*"
            echo "vmctl-failed installer: $*" > /dev/ttyS0 2>/dev/null
            power_off 30
        }
        # disk_of NAME: the whole disk a block device belongs to (sdb1 -> sdb, nvme0n1p2 -> nvme0n1).
        disk_of() {
            n=${1##*/}
            if [ -e "$SYS/class/block/$n/partition" ]; then n=$(basename "$(dirname "$(readlink -f "$SYS/class/block/$n")")"); fi
            echo "$n"
        }
        disks_report() {
            for d in "$SYS"/block/*; do printf '%s(%sMiB) ' "${d##*/}" $(( $(cat "$d/size") / 2048 )); done
        }
        # pick_target NEED MEDIUM_DISK: prints the one internal disk of at least NEED bytes that
        # is not the medium; or says on stderr why there is none or no single one, and returns 1.
        pick_target() {
            need=$1 candidates=""
            for d in "$SYS"/block/*; do
                n=${d##*/}
                case "$n" in loop*|ram*|sr*|zram*|fd*|dm-*|md*|nbd*|mmcblk*boot*|*rpmb) continue ;; esac
                [ "$n" = "$2" ] && continue
                [ -e "$DEV/$n" ] || continue            # hidden NVMe multipath paths have no node
                [ "$(cat "$d/removable" 2>/dev/null)" = 1 ] && continue
                case "$(readlink -f "$d")" in */usb*) continue ;; esac
                [ $(( $(cat "$d/size") * 512 )) -ge "$1" ] || continue
                candidates="$candidates $DEV/$n"
            done
            set -- $candidates
            if [ $# -eq 0 ]; then echo "no internal disk of at least $need bytes (disks: $(disks_report))" >&2; return 1; fi
            if [ $# -gt 1 ]; then
                echo "several disks could be the target:$candidates; boot again with vmctl.target=/dev/X (press e in the menu)" >&2
                return 1
            fi
            echo "$1"
        }
        mountroot() {
            target=""; force=""
            for x in $(cat /proc/cmdline); do
                case "$x" in
                    vmctl.target=*) target="${x#vmctl.target=}" ;;
                    vmctl.force=1) force=1 ;;
                esac
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
            [ -n "$medium" ] || fail "the installer medium did not appear (disks: $(disks_report))"
            mdisk=$(disk_of "$medium")
            say "installer medium: $medium (disk $mdisk)"
            need=$(cat /run/vmctl-medium/install/disk.size)
            if [ -n "$target" ]; then
                target=$(readlink -f "$target")
                [ -b "$target" ] || fail "vmctl.target=$target is not a block device (disks: $(disks_report))"
                [ "$(disk_of "$target")" != "$mdisk" ] || fail "vmctl.target=$target is the installer medium itself"
            else
                # Give the kernel a moment to finish probing disks behind slow controllers.
                sleep 2
                target=$(pick_target "$need" "$mdisk" 2>/run/vmctl-why) || fail "$(cat /run/vmctl-why)"
            fi
            have=$(( $(cat "$SYS/class/block/${target##*/}/size") * 512 ))
            [ "$have" -ge "$need" ] || fail "$target has $have bytes; the system needs $need"
            dd if="$target" of=/run/vmctl-target.guid bs=8 skip=71 count=2 2>/dev/null
            if [ -z "$force" ] && cmp -s /run/vmctl-target.guid /run/vmctl-medium/install/disk.guid; then
                say "$target already holds this system: nothing written. Remove the installer medium and boot from the disk (vmctl.force=1 installs again)"
                echo "vmctl-already-installed $target" > /dev/ttyS0 2>/dev/null
                umount /run/vmctl-medium
                power_off 10
            fi
            say "writing \(title) to $target ($have bytes): everything on it is replaced"
            zcat /run/vmctl-medium/install/disk.img.gz > "$target" || fail "writing $target failed"
            sync
            umount /run/vmctl-medium
            say "done"
            echo "\(doneMarker) $target" > /dev/ttyS0 2>/dev/null
            echo "\(doneMarker) $target" > /dev/console
            power_off 2
        }

        """
    }

    /// GRUB's menu on the ISO (the CD GRUB finds it through /.disk/info).
    public func grubConfig() -> String {
        """
        set default=0
        set timeout=3
        menuentry 'Install \(title.replacingOccurrences(of: "'", with: "")) to the internal disk (erases it)' {
          linux /install/vmlinuz boot=vmctl-installer console=tty0 console=ttyS0,115200 loglevel=4
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
