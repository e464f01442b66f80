import Blocking
import Foundation

/// The uncompressed kernel (`vmlinux`) inside a distribution's `vmlinuz`, kept beside it when it
/// can boot through PVH (an ELF with Xen's 32-bit entry note; Debian's kernels have
/// `CONFIG_PVH=y`). Why: with a bzImage, QEMU copies the whole compressed kernel into its own
/// memory and keeps it there for reboots (13.5 MiB of heap in every node for Debian's cloud
/// kernel); an ELF kernel is loaded from a mapping of the file, pages the host's page cache
/// shares between all nodes. The guest also skips decompressing itself under TCG.
///
/// The payload's place is in the bzImage's setup header (boot protocol 2.08+: `payload_offset`,
/// `payload_length`), its format in its first bytes, and its size once uncompressed in its
/// last four (the kernel build appends them; gzip's trailer holds the same). The host's own
/// decompressor does the work; anything unexpected (another format, a tool missing, a size
/// that differs, no PVH note) means no vmlinux, and the image boots its bzImage as before.
public enum PVHKernel {
    public static let fileName = "vmlinux"

    /// Where a payload starts and ends in a bzImage, and the tool that decompresses it.
    public struct Payload: Equatable, Sendable {
        public var range: Range<Int>
        public var tool: String
        public var arguments: [String]
        /// The uncompressed size the kernel build recorded.
        public var size: UInt32
    }

    /// The compressed payload of a bzImage, or nil if `data` is not one or its format is not
    /// one this knows.
    public static func payload(of data: Data) -> Payload? {
        let b = [UInt8](data)
        func u16(_ o: Int) -> Int { o + 2 <= b.count ? Int(b[o]) | Int(b[o + 1]) << 8 : -1 }
        func u32(_ o: Int) -> UInt32 {
            o + 4 <= b.count ? UInt32(b[o]) | UInt32(b[o + 1]) << 8 | UInt32(b[o + 2]) << 16 | UInt32(b[o + 3]) << 24 : 0
        }
        guard b.count > 0x250, u32(0x202) == 0x5372_6448, u16(0x206) >= 0x208 else { return nil }
        let setupSects = b[0x1f1] == 0 ? 4 : Int(b[0x1f1])
        let start = (setupSects + 1) * 512 + Int(u32(0x248))
        let length = Int(u32(0x24c))
        guard length > 8, start + length <= b.count else { return nil }
        let head = Array(b[start..<start + 6])
        let size = u32(start + length - 4)
        // Every format but gzip carries the size as four bytes after its own stream; the tools
        // get the stream alone.
        let stream = start..<(start + length - 4)
        if head.starts(with: [0x1f, 0x8b]) {
            return Payload(range: start..<(start + length), tool: "gzip", arguments: ["-dc"], size: size)
        }
        if head.starts(with: [0x02, 0x21, 0x4c, 0x18]) {
            return Payload(range: stream, tool: "lz4", arguments: ["-dc"], size: size)
        }
        if head.starts(with: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]) {
            return Payload(range: stream, tool: "xz", arguments: ["-dc", "--single-stream"], size: size)
        }
        if head.starts(with: [0x28, 0xb5, 0x2f, 0xfd]) {
            return Payload(range: stream, tool: "zstd", arguments: ["-dc"], size: size)
        }
        return nil
    }

    /// Whether `data` is an ELF kernel with a PVH entry: a note named "Xen" of type 18
    /// (XEN_ELFNOTE_PHYS32_ENTRY) in a PT_NOTE segment. ELF64 and ELF32, little-endian.
    public static func hasPVHEntry(_ data: Data) -> Bool {
        let b = [UInt8](data)
        guard b.count > 0x40, b[0] == 0x7f, b[1] == 0x45, b[2] == 0x4c, b[3] == 0x46, b[5] == 1 else { return false }
        func u(_ o: Int, _ n: Int) -> Int? {
            guard o >= 0, o + n <= b.count else { return nil }
            var v = 0
            for i in (0..<n).reversed() { v = v << 8 | Int(b[o + i]) }
            return v
        }
        let is64 = b[4] == 2
        guard let phoff = is64 ? u(0x20, 8) : u(0x1c, 4), let phentsize = u(is64 ? 0x36 : 0x2a, 2),
              let phnum = u(is64 ? 0x38 : 0x2c, 2), phentsize > 0, phnum < 256 else { return false }
        for i in 0..<phnum {
            let ph = phoff + i * phentsize
            guard let type = u(ph, 4), type == 4 else { continue }  // PT_NOTE
            guard let off = is64 ? u(ph + 8, 8) : u(ph + 4, 4), let size = is64 ? u(ph + 32, 8) : u(ph + 16, 4),
                  off + size <= b.count else { continue }
            var at = off
            while at + 12 <= off + size {
                guard let namesz = u(at, 4), let descsz = u(at + 4, 4), let ntype = u(at + 8, 4) else { break }
                let name = at + 12
                let desc = name + (namesz + 3) & ~3
                if namesz == 4, ntype == 18, desc <= b.count, Array(b[name..<name + 4]) == [0x58, 0x65, 0x6e, 0] { return true }
                at = desc + (descsz + 3) & ~3
            }
        }
        return false
    }

    /// Writes the vmlinux of `bzImage` to `output` and returns true, or leaves nothing there
    /// and returns false (the reason in `note`).
    @discardableResult
    public static func extract(bzImage: String, to output: String, note: (String) -> Void = { _ in }) -> Bool {
        let fm = FileManager.default
        let packed = output + ".payload"
        defer { try? fm.removeItem(atPath: packed) }
        func fail(_ why: String) -> Bool {
            try? fm.removeItem(atPath: output)
            note("no PVH kernel beside \((bzImage as NSString).lastPathComponent): \(why); it boots as a bzImage")
            return false
        }
        guard let data = fm.contents(atPath: bzImage) else { return fail("cannot read it") }
        guard let p = payload(of: data) else { return fail("not a bzImage with a payload of gzip, xz, lz4 or zstd") }
        guard Command.locate(p.tool) != nil else { return fail("\(p.tool) is not installed") }
        guard fm.createFile(atPath: packed, contents: data.subdata(in: p.range)) else { return fail("cannot write \(packed)") }
        // The status is not the test (a tool may complain of what follows its stream); the
        // recorded size and the ELF note are.
        _ = try? Command("/bin/sh", ["-c", "exec \"$0\" \"$@\" < \"$PACKED\" > \"$OUT\"", p.tool] + p.arguments,
                         environment: ["PACKED": packed, "OUT": output, "PATH": "/usr/bin:/bin"]).run()
        guard let elf = fm.contents(atPath: output) else { return fail("\(p.tool) wrote nothing") }
        guard elf.count == Int(p.size) else { return fail("\(p.tool) gave \(elf.count) bytes, the kernel records \(p.size)") }
        guard hasPVHEntry(elf) else { return fail("the kernel has no PVH entry (CONFIG_PVH)") }
        return true
    }
}
