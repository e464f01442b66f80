import Foundation
import Testing
@testable import Libvirt

@Suite("Warm start: a saved stream without guest RAM's untouched zero pages")
struct MigrationStreamTests {
    /// QEMU 7.2's stream as libvirt saves it, built record by record.
    struct Stream {
        var bytes: [UInt8] = []
        mutating func u8(_ v: UInt8) { bytes.append(v) }
        mutating func be32(_ v: UInt32) { for s in stride(from: 24, through: 0, by: -8) { u8(UInt8(truncatingIfNeeded: v >> UInt32(s))) } }
        mutating func be64(_ v: UInt64) { for s in stride(from: 56, through: 0, by: -8) { u8(UInt8(truncatingIfNeeded: v >> UInt64(s))) } }
        mutating func name(_ s: String) { u8(UInt8(s.utf8.count)); bytes += Array(s.utf8) }
        /// A page record: `fill` for a zero-page record (its byte), `data` for a page; `block` nil continues.
        mutating func record(_ page: UInt64, block: String?, fill: UInt8? = nil, data: UInt8 = 0, flags extra: UInt64 = 0) {
            be64(page * 4096 | (fill == nil ? 0x08 : 0x02) | (block == nil ? 0x20 : 0) | extra)
            if let b = block { name(b) }
            if let f = fill { u8(f) } else { bytes += [UInt8](repeating: data, count: 4096) }
        }
        mutating func section(_ type: UInt8, _ body: (inout Stream) -> Void) {
            u8(type); be32(3)
            if type == 0x01 { name("ram"); be32(0); be32(4) }
            body(&self)
            be64(0x10); u8(0x7E); be32(3)
        }
    }

    static let prefix = [UInt8](repeating: 0xAB, count: 100)
    static let devices: [UInt8] = [0x04, 0, 0, 0, 4, 5] + Array("apic\u{0}".utf8) + [0x00]

    /// A stream of a 16-page guest RAM block and a 2-page firmware block.
    static func stream(ramPart: (inout Stream) -> Void, ramEnd: (inout Stream) -> Void) -> [UInt8] {
        var s = Stream(bytes: prefix)
        s.be32(0x5145_564D); s.be32(3)
        s.u8(0x07); s.be32(10); s.bytes += Array("pc-q35-7.2".utf8)
        s.section(0x01) { s in
            s.be64((16 + 2) * 4096 | 0x04)
            s.name("pc.ram"); s.be64(16 * 4096)
            s.name("pc.bios"); s.be64(2 * 4096)
        }
        s.section(0x02, ramPart)
        s.section(0x03, ramEnd)
        return s.bytes + devices
    }

    /// What a loading QEMU ends with: fresh RAM zero, firmware holding its own bytes (0xFF)
    /// before the stream; then the devices' bytes.
    static func load(_ bytes: [UInt8]) -> (ram: [UInt8], bios: [UInt8], rest: [UInt8]) {
        var ram = [UInt8](repeating: 0, count: 16 * 4096), bios = [UInt8](repeating: 0xFF, count: 2 * 4096)
        var at = prefix.count + 8 + 1 + 4 + 10
        func u8() -> UInt8 { at += 1; return bytes[at - 1] }
        func be(_ n: Int) -> UInt64 { (0..<n).reduce(0) { v, _ in v << 8 | UInt64(u8()) } }
        func name() -> String { let n = Int(u8()); at += n; return String(decoding: bytes[at - n..<at], as: UTF8.self) }
        _ = u8(); _ = be(4); _ = name(); _ = be(8); let total = be(8) & ~0xFFF
        var sum: UInt64 = 0
        while sum < total { _ = name(); sum += be(8) }
        _ = be(8); _ = be(5)
        var block = ""
        for _ in 0..<2 {
            _ = be(5)
            while true {
                let w = be(8), page = Int(w / 4096), flags = w & 0xFFF
                if flags == 0x10 { break }
                if flags & 0x20 == 0 { block = name() }
                let content = flags & 0x02 != 0 ? [UInt8](repeating: u8(), count: 4096) : Array(bytes[at..<at + 4096])
                if flags & 0x08 != 0 { at += 4096 }
                if block == "pc.ram" { ram.replaceSubrange(page * 4096..<(page + 1) * 4096, with: content) }
                else { bios.replaceSubrange(page * 4096..<(page + 1) * 4096, with: content) }
            }
            _ = be(5)
        }
        return (ram, bios, Array(bytes[at...]))
    }

    func rewrite(_ bytes: [UInt8]) throws -> (MigrationStream.Summary, [UInt8]) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("stream-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Data(bytes).write(to: URL(fileURLWithPath: "\(dir)/in"))
        do {
            let summary = try MigrationStream.leaveOutZeroPages(from: "\(dir)/in", to: "\(dir)/out", prefix: UInt64(Self.prefix.count),
                                                                block: "pc.ram", blockBytes: 16 * 4096)
            return (summary, [UInt8](try Data(contentsOf: URL(fileURLWithPath: "\(dir)/out"))))
        } catch {
            #expect(!FileManager.default.fileExists(atPath: "\(dir)/out"), "a failed rewrite leaves no output")
            throw error
        }
    }

    @Test("untouched zero pages of guest RAM go; a page sent before, a non-zero fill and firmware zero pages stay; what QEMU loads is the same")
    func leavesOutOnlyUntouchedZeroPages() throws {
        let original = Self.stream(ramPart: { s in
            s.record(0, block: "pc.ram", data: 7)
            s.record(1, block: nil, fill: 0)       // goes
            s.record(2, block: nil, fill: 0)       // goes
            s.record(3, block: nil, fill: 0x5A)    // a non-zero fill stays
            s.record(0, block: "pc.bios", fill: 0) // firmware held other bytes: stays
            s.record(4, block: "pc.ram", fill: 0)  // goes
            s.record(5, block: nil, data: 9)       // continued from a dropped record: must name its block again
            s.record(1, block: "pc.bios", data: 3)
            s.record(8, block: "pc.ram", data: 5)
        }, ramEnd: { s in
            s.record(9, block: nil, fill: 0)       // continues pc.ram from the section before: goes
            s.record(10, block: nil, data: 6)      // continues too: named again, first kept in its section
            s.record(0, block: "pc.ram", fill: 0)  // page 0 was sent with data: this zero overwrites it, stays (now continued)
            s.record(6, block: nil, fill: 0)       // goes
        })
        let (summary, lean) = try rewrite(original)
        #expect(summary.zeroPagesLeftOut == 5)
        #expect(summary.bytesBefore == UInt64(original.count) && summary.bytesAfter == UInt64(lean.count))
        #expect(Array(lean.prefix(Self.prefix.count)) == Self.prefix, "libvirt's header and XML are kept as they are")
        let a = Self.load(original), b = Self.load(lean)
        #expect(a.ram == b.ram && a.bios == b.bios && a.rest == b.rest && b.rest == Self.devices)
        #expect(a.ram[0] == 0 && a.ram[3 * 4096] == 0x5A && a.ram[5 * 4096] == 9 && a.bios[0] == 0 && a.bios[4096] == 3)
        #expect(a.ram[8 * 4096] == 5 && a.ram[9 * 4096] == 0 && a.ram[10 * 4096] == 6)
        // Gone: four 9-byte records and a named one (16); block names written again for pages 5 and
        // 10 (7 each), left out for page 0 at the end (it now continues page 10's block).
        #expect(lean.count == original.count - (4 * 9 + 16) + 7 + 7 - 7)
    }

    @Test("a stream of another shape is refused with the reason and nothing written: other record kinds, another block size")
    func refusesWhatItDoesNotKnow() throws {
        let xbzrle = Self.stream(ramPart: { s in s.record(0, block: "pc.ram", fill: 0, flags: 0x40) }, ramEnd: { _ in })
        #expect(throws: MigrationStream.Unsupported.self) { try rewrite(xbzrle) }
        let plain = Self.stream(ramPart: { s in s.record(0, block: "pc.ram", fill: 0) }, ramEnd: { _ in })
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("stream-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Data(plain).write(to: URL(fileURLWithPath: "\(dir)/in"))
        let error = #expect(throws: MigrationStream.Unsupported.self) {
            try MigrationStream.leaveOutZeroPages(from: "\(dir)/in", to: "\(dir)/out", prefix: UInt64(Self.prefix.count),
                                                  block: "pc.ram", blockBytes: 32 * 4096)
        }
        #expect(error?.reason.contains("no RAM block pc.ram of 131072 bytes") == true)
        #expect(!FileManager.default.fileExists(atPath: "\(dir)/out"))
        #expect(throws: MigrationStream.Unsupported.self) { try rewrite(Array(plain.prefix(plain.count - 20))) }
    }
}
