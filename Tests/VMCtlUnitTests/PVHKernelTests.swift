import Foundation
import Testing
@testable import Blocking
@testable import Images

@Suite("PVH kernel: the vmlinux inside a bzImage, kept only when it is whole and has a PVH entry")
struct PVHKernelTests {
    /// A little-endian ELF64 with one PT_NOTE segment holding `notes` (name, type), and `pad`
    /// bytes after it.
    static func elf(notes: [(String, UInt32)], pad: Int = 4096) -> Data {
        var n = Data()
        for (name, type) in notes {
            var nm = Array(name.utf8) + [0]
            let namesz = UInt32(nm.count)
            while nm.count % 4 != 0 { nm.append(0) }
            n += le(namesz, 4) + le(4, 4) + le(type, 4) + Data(nm) + le(0x0100_0000, 4)
        }
        var h = Data(count: 64)
        h.replaceSubrange(0..<6, with: [0x7f, 0x45, 0x4c, 0x46, 2, 1])
        h.replaceSubrange(0x20..<0x28, with: le(64, 8))       // e_phoff
        h.replaceSubrange(0x36..<0x38, with: le(56, 2))       // e_phentsize
        h.replaceSubrange(0x38..<0x3a, with: le(1, 2))        // e_phnum
        var ph = Data(count: 56)
        ph.replaceSubrange(0..<4, with: le(4, 4))             // PT_NOTE
        ph.replaceSubrange(8..<16, with: le(120, 8))          // p_offset
        ph.replaceSubrange(32..<40, with: le(UInt64(n.count), 8))
        return h + ph + n + Data(repeating: 0x90, count: pad)
    }

    static func le<T: FixedWidthInteger>(_ v: T, _ n: Int) -> Data {
        Data((0..<n).map { UInt8(truncatingIfNeeded: UInt64(v) >> (8 * UInt64($0))) })
    }

    /// A bzImage's setup header (boot protocol 2.15, 2 setup sectors) around `payload`.
    static func bzImage(payload: Data) -> Data {
        var d = Data(count: 3 * 512 + 100)
        d[0x1f1] = 2
        d.replaceSubrange(0x202..<0x206, with: le(0x5372_6448, 4))
        d.replaceSubrange(0x206..<0x208, with: le(0x20f, 2))
        d.replaceSubrange(0x248..<0x24c, with: le(100, 4))
        d.replaceSubrange(0x24c..<0x250, with: le(UInt32(payload.count), 4))
        return d + payload + Data(repeating: 0xcc, count: 512)
    }

    static func scratch() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vmctl-pvh-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    /// `tool args` over `data`, through files (the payload as the kernel build makes it).
    static func compress(_ data: Data, _ tool: String, _ args: [String], in dir: String) throws -> Data {
        try data.write(to: URL(fileURLWithPath: "\(dir)/plain"))
        _ = try Command("/bin/sh", ["-c", "\"$0\" \"$@\" < \(dir)/plain > \(dir)/packed", tool] + args).checked()
        return try Data(contentsOf: URL(fileURLWithPath: "\(dir)/packed"))
    }

    @Test func findsThePVHNoteAndNothingElse() {
        #expect(PVHKernel.hasPVHEntry(Self.elf(notes: [("GNU", 3), ("Xen", 18)])))
        #expect(!PVHKernel.hasPVHEntry(Self.elf(notes: [("Xen", 17), ("GNU", 18)])))
        #expect(!PVHKernel.hasPVHEntry(Self.elf(notes: [])))
        var big = Self.elf(notes: [("Xen", 18)])
        big[5] = 2  // big-endian: not read
        #expect(!PVHKernel.hasPVHEntry(big))
        #expect(!PVHKernel.hasPVHEntry(Data("not an elf at all, but long enough to have a header of sixty-four bytes".utf8)))
        // A note segment that claims more than the file has is skipped, not read past the end.
        var cut = Self.elf(notes: [("Xen", 18)], pad: 0)
        cut = cut.prefix(130)
        #expect(!PVHKernel.hasPVHEntry(cut))
    }

    @Test func readsThePayloadFromTheSetupHeader() {
        let body = Data([0x02, 0x21, 0x4c, 0x18, 1, 2, 3, 4, 5, 6]) + Self.le(UInt32(4242), 4)
        let p = PVHKernel.payload(of: Self.bzImage(payload: body))
        #expect(p?.tool == "lz4")
        #expect(p?.size == 4242)
        #expect(p?.range == (3 * 512 + 100)..<(3 * 512 + 100 + body.count - 4))
        let gz = Data([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0]) + Self.le(UInt32(7), 4)
        #expect(PVHKernel.payload(of: Self.bzImage(payload: gz))?.range.count == gz.count)
        #expect(PVHKernel.payload(of: Self.bzImage(payload: Data("BZh91AY&SY and more".utf8))) == nil)
        #expect(PVHKernel.payload(of: Data(count: 4096)) == nil)
    }

    /// The whole path with the host's real decompressors: gzip (size in its own trailer) and
    /// xz (size appended, as the kernel build does); a payload whose recorded size is wrong, and
    /// an ELF without the note, leave no vmlinux.
    @Test func extractsWithTheHostsTools() throws {
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let kernel = Self.elf(notes: [("Xen", 18)], pad: 200_000)
        let cases: [(String, [String], Bool)] = [("gzip", ["-9c"], false), ("xz", ["-c", "--check=crc32"], true)]
        for (tool, args, append) in cases {
            var packed = try Self.compress(kernel, tool, args, in: dir)
            if append { packed += Self.le(UInt32(kernel.count), 4) }
            try Self.bzImage(payload: packed).write(to: URL(fileURLWithPath: "\(dir)/vmlinuz"))
            var why = ""
            #expect(PVHKernel.extract(bzImage: "\(dir)/vmlinuz", to: "\(dir)/vmlinux") { why = $0 }, "\(tool): \(why)")
            #expect(FileManager.default.contents(atPath: "\(dir)/vmlinux") == kernel)
            try FileManager.default.removeItem(atPath: "\(dir)/vmlinux")
        }
        var wrong = try Self.compress(kernel, "xz", ["-c"], in: dir)
        wrong += Self.le(UInt32(kernel.count + 1), 4)
        try Self.bzImage(payload: wrong).write(to: URL(fileURLWithPath: "\(dir)/vmlinuz"))
        var why = ""
        #expect(!PVHKernel.extract(bzImage: "\(dir)/vmlinuz", to: "\(dir)/vmlinux") { why = $0 })
        #expect(why.contains("records"))
        #expect(!FileManager.default.fileExists(atPath: "\(dir)/vmlinux"))
        let plain = Self.elf(notes: [("GNU", 3)], pad: 1000)
        try Self.bzImage(payload: try Self.compress(plain, "gzip", ["-c"], in: dir)).write(to: URL(fileURLWithPath: "\(dir)/vmlinuz"))
        #expect(!PVHKernel.extract(bzImage: "\(dir)/vmlinuz", to: "\(dir)/vmlinux") { why = $0 })
        #expect(why.contains("PVH"))
        #expect(!FileManager.default.fileExists(atPath: "\(dir)/vmlinux"))
    }
}
