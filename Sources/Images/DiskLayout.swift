import Crypto
import Foundation

/// The partitioned disk of a bootable image: GPT with an EFI system partition, a small
/// `CIDATA` partition (cloud-init's NoCloud seed on hardware; a cloud image has none, its
/// seed comes from outside) and the root filesystem last, so it can grow to fill whatever
/// disk it is written to. Pure arithmetic: tests check it.
public struct DiskLayout: Codable, Sendable, Equatable {
    public static let sectorSize: UInt64 = 512
    /// Every partition starts on a 1 MiB boundary (what partitioners and SSDs expect).
    public static let alignment: UInt64 = 1 << 20
    /// The backup GPT: 32 sectors of entries plus its header.
    public static let backupGPTBytes: UInt64 = 33 * sectorSize

    public enum Role: String, Codable, Sendable { case biosBoot = "bios-boot", esp, cidata, root }

    public struct Partition: Codable, Sendable, Equatable {
        public var role: Role
        public var number: Int
        public var name: String
        /// GPT partition type GUID.
        public var type: String
        public var uuid: String
        public var offset: UInt64
        public var size: UInt64
        public var startSector: UInt64 { offset / DiskLayout.sectorSize }
        public var sectors: UInt64 { size / DiskLayout.sectorSize }
        public var end: UInt64 { offset + size }
    }

    /// GRUB's BIOS boot partition: raw space for core.img (no filesystem).
    public static let biosBootType = "21686148-6449-6E6F-744E-656564454649"
    public static let espType = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
    public static let basicDataType = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"
    /// The Discoverable Partitions Specification's "Linux root (x86-64)".
    public static let rootType = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"

    public var diskUUID: String
    /// UUID of the root ext4 filesystem (GRUB finds it, the kernel mounts it).
    public var rootFSUUID: String
    public var partitions: [Partition]
    public var totalBytes: UInt64

    public func partition(_ role: Role) -> Partition { partitions.first { $0.role == role }! }

    /// Whether the layout has a partition for `role` (a cloud image has no CIDATA).
    public func has(_ role: Role) -> Bool { partitions.contains { $0.role == role } }

    /// A layout for a root filesystem of at least `rootBytes`. UUIDs derive from `seed`
    /// (the image hash), so the same inputs give the same disk. `cidataBytes` 0: no CIDATA
    /// partition (a cloud image, whose seed comes from outside). `biosBootBytes` above 0: a BIOS
    /// boot partition first, for GRUB's core.img (a disk that also boots through BIOS).
    public static func plan(rootBytes: UInt64, espBytes: UInt64 = 64 << 20, cidataBytes: UInt64 = 8 << 20,
                            biosBootBytes: UInt64 = 0, seed: String) -> DiskLayout {
        func up(_ n: UInt64) -> UInt64 { (n + alignment - 1) / alignment * alignment }
        var offset = alignment
        var parts: [Partition] = []
        let wanted = [(Role.biosBoot, "BIOS", biosBootType, biosBootBytes), (.esp, "EFI", espType, espBytes),
                      (.cidata, "CIDATA", basicDataType, cidataBytes), (.root, "root", rootType, rootBytes)].filter { $0.3 > 0 }
        for (i, (role, name, type, size)) in wanted.enumerated() {
            let s = up(size)
            parts.append(Partition(role: role, number: i + 1, name: name, type: type,
                                   uuid: uuid(seed, "part-\(name)"), offset: offset, size: s))
            offset += s
        }
        // Room for the backup GPT after the last partition, rounded up to the alignment.
        let total = up(offset + backupGPTBytes)
        return DiskLayout(diskUUID: uuid(seed, "disk"), rootFSUUID: uuid(seed, "rootfs").lowercased(),
                          partitions: parts, totalBytes: total)
    }

    /// The input for `sfdisk` that writes this partition table onto a file.
    public func sfdiskScript() -> String {
        var lines = ["label: gpt", "label-id: \(diskUUID)", "unit: sectors", "first-lba: \(Self.alignment / Self.sectorSize)"]
        for p in partitions {
            lines.append("start=\(p.startSector), size=\(p.sectors), type=\(p.type), uuid=\(p.uuid), name=\"\(p.name)\"")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// A name-based UUID (version 5 layout over SHA-256), upper-case as GPT tools print it.
    static func uuid(_ seed: String, _ what: String) -> String {
        var b = Array(SHA256.hash(data: Data("\(seed)/\(what)".utf8)).prefix(16))
        b[6] = (b[6] & 0x0f) | 0x50
        b[8] = (b[8] & 0x3f) | 0x80
        let hex = b.map { String(format: "%02X", $0) }.joined()
        let i = hex.startIndex
        func s(_ a: Int, _ b: Int) -> Substring { hex[hex.index(i, offsetBy: a)..<hex.index(i, offsetBy: b)] }
        return "\(s(0, 8))-\(s(8, 12))-\(s(12, 16))-\(s(16, 20))-\(s(20, 32))"
    }

    /// Root filesystem size for a tree using `usedBytes` in `files` files: room for ext4's
    /// own metadata and journal plus some headroom, kept small (the root grows on first boot).
    public static func rootSize(usedBytes: UInt64, files: Int) -> UInt64 {
        let metadata = UInt64(files) * 4096 / 2     // half a block of slack per file, on average
        let raw = usedBytes + metadata
        let withHeadroom = raw + raw / 5 + (256 << 20)
        return (withHeadroom + (64 << 20) - 1) / (64 << 20) * (64 << 20)
    }
}
