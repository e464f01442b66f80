import Blocking
import Foundation
import VMCtlSupport

/// GRUB for BIOS firmware (SeaBIOS, legacy boot) on a GPT disk, laid down as grub-bios-setup
/// would but on a plain file, without grub-install or a block device: the image's own
/// `grub-mkimage` makes `core.img` from its BIOS modules (package grub-pc-bin), which fills the
/// BIOS boot partition, and GRUB's `boot.img`, told where core.img starts, becomes the boot
/// code of the protective MBR. core.img's prefix is the ESP's `/EFI/debian`, so BIOS and UEFI
/// GRUB read the same grub.cfg. The patching is pure byte arithmetic: tests check it.
public enum BIOSBoot {
    /// GRUB's BIOS modules and images in an image tree, as grub-pc-bin installs them.
    public static let modules = "/usr/lib/grub/i386-pc"
    /// What core.img carries, so it needs nothing else from disk before reading grub.cfg:
    /// the BIOS disk driver, GPT, the ESP's FAT and the root's ext4, and what grub.cfg uses.
    static let coreModules = ["biosdisk", "part_gpt", "fat", "ext2", "search", "search_fs_uuid", "normal",
                              "linux", "configfile", "echo", "test"]

    // Offsets in boot.img (GRUB's include/grub/i386/pc/boot.h).
    static let bpbStart = 0x03, bpbEnd = 0x5a       // a BIOS parameter block: kept from the disk
    static let kernelSector = 0x5c                  // LBA of core.img's first sector (64-bit LE)
    static let bootDrive = 0x64                     // 0xff: the drive the BIOS booted from
    static let driveCheck = 0x66                    // a jump that trusts a floppy-like drive number
    static let ntMagic = 0x1b8, partitionEnd = 0x1fe // disk signature and partition table: kept
    /// The last block-list entry of diskboot.img (core.img's first sector): start LBA (8 bytes),
    /// sector count (2) and load segment (2) of the rest of core.img.
    static let blockList = 512 - 12
    static let loadSegment: UInt16 = 0x820

    /// Where core.img finds grub.cfg and its modules: the ESP of the disk it booted from.
    public static func prefix(espNumber: Int) -> String { "(,gpt\(espNumber))/EFI/debian" }

    /// The boot sector and core.img to write: `bootImage` (GRUB's boot.img) with the disk's own
    /// parameter block, signature and partition table from `sector0`, pointed at `coreLBA`;
    /// `coreImage` padded to whole sectors, its block list naming the sectors after its first.
    public static func patch(sector0: [UInt8], bootImage: [UInt8], coreImage: [UInt8], coreLBA: UInt64,
                             roomBytes: UInt64) throws -> (bootSector: [UInt8], core: [UInt8]) {
        guard sector0.count == 512, bootImage.count == 512 else {
            throw VMCtlError("GRUB's boot.img and the disk's first sector must be 512 bytes (got \(bootImage.count), \(sector0.count))")
        }
        let sectors = (coreImage.count + 511) / 512
        guard coreImage.count >= 512, UInt64(sectors) * 512 <= roomBytes, sectors - 1 <= Int(UInt16.max) else {
            throw VMCtlError("GRUB's core.img (\(coreImage.count) bytes) does not fit the BIOS boot partition (\(roomBytes) bytes)")
        }
        var boot = bootImage
        boot.replaceSubrange(bpbStart..<bpbEnd, with: sector0[bpbStart..<bpbEnd])
        boot.replaceSubrange(ntMagic..<partitionEnd, with: sector0[ntMagic..<partitionEnd])
        put(coreLBA, at: kernelSector, in: &boot)
        boot[bootDrive] = 0xff
        boot[driveCheck] = 0x90; boot[driveCheck + 1] = 0x90  // nop the jump: a hard disk, whatever the BIOS says
        var core = coreImage + [UInt8](repeating: 0, count: sectors * 512 - coreImage.count)
        put(coreLBA + 1, at: blockList, in: &core)
        put(UInt64(sectors - 1), at: blockList + 8, bytes: 2, in: &core)
        put(UInt64(loadSegment), at: blockList + 10, bytes: 2, in: &core)
        return (boot, core)
    }

    /// Writes `value` little-endian into `bytes` bytes at `offset`.
    static func put(_ value: UInt64, at offset: Int, bytes: Int = 8, in buffer: inout [UInt8]) {
        for i in 0..<bytes { buffer[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
    }

    /// Installs GRUB for BIOS into `disk` (laid out by `layout`, with a BIOS boot partition)
    /// from the image tree `tree`. `staging` is a private directory for core.img.
    static func install(tree: String, disk: String, layout: DiskLayout, staging: String) async throws {
        let fm = FileManager.default
        guard let bootImage = fm.contents(atPath: "\(tree)\(modules)/boot.img"), fm.fileExists(atPath: "\(tree)/usr/bin/grub-mkimage") else {
            throw VMCtlError("a BIOS boot path needs GRUB's BIOS modules and grub-mkimage in the image: add grub-pc-bin to the recipe's packages")
        }
        let core = "\(staging)/core.img"
        // The image's own grub-mkimage, chrooted so it reads the image's modules; it writes
        // only to standard output, nothing in the tree.
        let script = #"t=$1 p=$2 o=$3; shift 3; exec chroot "$t" /usr/bin/grub-mkimage -O i386-pc -d \#(modules) -p "$p" "$@" > "$o""#
        try await Command("/bin/sh", ["-c", script, "sh", tree, prefix(espNumber: layout.partition(.esp).number), core]
                          + coreModules).checkedAsync()
        guard let coreImage = fm.contents(atPath: core) else { throw VMCtlError("grub-mkimage wrote no core.img") }
        let part = layout.partition(.biosBoot)
        guard let handle = FileHandle(forUpdatingAtPath: disk) else { throw VMCtlError("cannot open \(disk) to install GRUB for BIOS") }
        defer { try? handle.close() }
        let sector0 = [UInt8](try handle.read(upToCount: 512) ?? Data())
        let (boot, coreBytes) = try patch(sector0: sector0, bootImage: [UInt8](bootImage), coreImage: [UInt8](coreImage),
                                          coreLBA: part.startSector, roomBytes: part.size)
        try handle.seek(toOffset: part.offset)
        try handle.write(contentsOf: Data(coreBytes))
        try handle.seek(toOffset: 0)
        try handle.write(contentsOf: Data(boot))
        try handle.synchronize()
    }
}
