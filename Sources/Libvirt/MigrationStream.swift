import Foundation

/// QEMU's migration stream as libvirt saves it (QEMU 7.2 `migration/savevm.c`, `ram.c`): the
/// `QEVM` header, a configuration section, the iterative `ram` section (START with the RAM
/// blocks, PARTs and an END of page records), then every device's FULL section and EOF.
///
/// A saved guest's RAM is mostly pages it never touched, each a 9-byte zero-page record. On
/// load QEMU reads every such page of its fresh RAM to see whether it is zero already, and that
/// read faults the page in: about 480,000 faults for an idle 2 GiB guest, 0.4 s of a restore's
/// 0.6 s of QEMU CPU here. A fresh guest RAM block is zero, so those records say nothing:
/// `leaveOutZeroPages` writes the stream without them. Only in the guest RAM block (firmware
/// and ROM blocks hold other bytes before the load), and only for a page the stream has not
/// sent before (a later zero record overwrites an earlier page).
public enum MigrationStream {
    /// What the rewrite meets that it does not know: the stream is then left as it is.
    public struct Unsupported: Error, CustomStringConvertible {
        public let reason: String
        public var description: String { "QEMU migration stream not rewritten: \(reason)" }
    }

    /// What a rewrite left out.
    public struct Summary: Sendable, Equatable {
        public var zeroPagesLeftOut: Int
        public var bytesBefore: UInt64
        public var bytesAfter: UInt64
    }

    // Section types and RAM record flags (QEMU 7.2 migration/savevm.c, migration/ram.c).
    static let fileMagic: UInt32 = 0x5145_564D, fileVersion: UInt32 = 3
    static let sectionStart: UInt8 = 0x01, sectionPart: UInt8 = 0x02, sectionEnd: UInt8 = 0x03
    static let configuration: UInt8 = 0x07, footer: UInt8 = 0x7E
    static let flagZero: UInt64 = 0x02, flagMemSize: UInt64 = 0x04, flagPage: UInt64 = 0x08
    static let flagEOS: UInt64 = 0x10, flagContinue: UInt64 = 0x20
    static let pageSize = 4096

    /// Copies `source` to `destination`: its first `prefix` bytes (libvirt's header and XML) as
    /// they are, then the stream with the untouched zero pages of RAM block `block` (of
    /// `blockBytes`, guest RAM: `pc.ram` on q35) left out. Throws `Unsupported` for a stream of
    /// another shape (nothing is written to `destination` that is kept).
    public static func leaveOutZeroPages(from source: String, to destination: String, prefix: UInt64,
                                         block: String, blockBytes: UInt64) throws -> Summary {
        let input = try BufferedInput(path: source)
        let output = try BufferedOutput(path: destination)
        do {
            let left = try rewrite(input, output, prefix: prefix, block: block, blockBytes: blockBytes)
            try output.finish()
            return Summary(zeroPagesLeftOut: left, bytesBefore: input.consumed, bytesAfter: output.written)
        } catch {
            output.abandon()
            unlink(destination)
            throw error
        }
    }

    static func rewrite(_ i: BufferedInput, _ o: BufferedOutput, prefix: UInt64, block: String, blockBytes: UInt64) throws -> Int {
        try o.copy(from: i, count: Int(prefix))
        guard try i.be32() == fileMagic else { throw Unsupported(reason: "no QEVM header") }
        guard try i.be32() == fileVersion else { throw Unsupported(reason: "not stream version 3") }
        o.be32(fileMagic); o.be32(fileVersion)
        if try i.peek() == configuration {
            o.u8(try i.u8())
            let n = try i.be32(); o.be32(n)
            try o.copy(from: i, count: Int(n))
        }
        let pages = Int(blockBytes) / pageSize
        var seen = [UInt64](repeating: 0, count: (pages + 63) / 64)
        var ramSection: UInt32?, ended = false, left = 0
        let target = Array(block.utf8)
        var current: [UInt8]?  // the block the last record read named (QEMU's idstr, as bytes)
        while !ended {
            let type = try i.u8()
            let id = try i.be32()
            o.u8(type); o.be32(id)
            var named: [UInt8]?  // the block the last record written named
            switch type {
            case sectionStart:
                guard ramSection == nil else { throw Unsupported(reason: "a second iterative section") }
                let name = try i.idstr()
                guard name == Array("ram".utf8) else {
                    throw Unsupported(reason: "iterative section \(String(decoding: name, as: UTF8.self)), not ram")
                }
                ramSection = id
                o.idstr(name)
                o.be32(try i.be32()); o.be32(try i.be32())  // instance, version
                let total = try i.be64()
                guard total & flagMemSize != 0 else { throw Unsupported(reason: "no RAM size in ram's setup") }
                o.be64(total)
                var sum: UInt64 = 0, found = false
                while sum < total & ~UInt64(pageSize - 1) {
                    let b = try i.idstr(), length = try i.be64()
                    o.idstr(b); o.be64(length)
                    if b == target { found = length == blockBytes }
                    sum += length
                }
                guard found else { throw Unsupported(reason: "no RAM block \(block) of \(blockBytes) bytes") }
                guard try i.be64() == flagEOS else { throw Unsupported(reason: "ram's setup has fields past its blocks") }
                o.be64(flagEOS)
            case sectionPart, sectionEnd:
                guard id == ramSection else { throw Unsupported(reason: "section \(id) between ram's") }
                ended = type == sectionEnd
                while true {
                    let word = try i.be64()
                    let flags = word & UInt64(pageSize - 1), address = word & ~UInt64(pageSize - 1)
                    if flags == flagEOS { o.be64(word); break }
                    guard flags & ~(flagZero | flagPage | flagContinue) == 0, (flags & flagZero == 0) != (flags & flagPage == 0) else {
                        throw Unsupported(reason: "RAM record flags \(String(flags, radix: 16))")
                    }
                    if flags & flagContinue == 0 { current = try i.idstr() }
                    guard let recordBlock = current else { throw Unsupported(reason: "a RAM record names no block") }
                    let zero = flags & flagZero != 0
                    let fill: UInt8? = zero ? try i.u8() : nil
                    if recordBlock == target {
                        guard let page = Int(exactly: address / UInt64(pageSize)), page < pages else {
                            throw Unsupported(reason: "a page past the end of \(block)")
                        }
                        let bit = UInt64(1) << UInt64(page % 64), sentBefore = seen[page / 64] & bit != 0
                        seen[page / 64] |= bit
                        if fill == 0 && !sentBefore { left += 1; continue }
                    }
                    if named == recordBlock {
                        o.be64(address | (flags | flagContinue))
                    } else {
                        o.be64(address | (flags & ~flagContinue)); o.idstr(recordBlock); named = recordBlock
                    }
                    if let f = fill { o.u8(f) } else { try o.copy(from: i, count: pageSize) }
                    try o.flushIfFull()
                }
            default:
                throw Unsupported(reason: "section type \(type) before ram's end")
            }
            guard try i.u8() == footer, try i.be32() == id else { throw Unsupported(reason: "a section without its footer") }
            o.u8(footer); o.be32(id)
        }
        try o.copyRest(from: i)  // the devices' sections, unchanged
        return left
    }
}

/// Reads a file through a 1 MiB buffer.
final class BufferedInput {
    private let fd: Int32
    private var buffer = [UInt8](repeating: 0, count: 1 << 20)
    private var at = 0, end = 0
    private(set) var consumed: UInt64 = 0

    init(path: String) throws {
        fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw MigrationStream.Unsupported(reason: "cannot read \(path): \(String(cString: strerror(errno)))") }
    }
    deinit { close(fd) }

    /// Refills when fewer than `n` bytes are buffered; false at end of file.
    private func fill(_ n: Int) throws -> Bool {
        if end - at >= n { return true }
        buffer.withUnsafeMutableBytes { b in
            b.baseAddress!.copyMemory(from: b.baseAddress! + at, byteCount: end - at)
        }
        end -= at; at = 0
        while end < n {
            let got = buffer.withUnsafeMutableBytes { b in read(fd, b.baseAddress! + end, b.count - end) }
            if got < 0 && errno == EINTR { continue }
            guard got >= 0 else { throw MigrationStream.Unsupported(reason: "read: \(String(cString: strerror(errno)))") }
            if got == 0 { return false }
            end += got
        }
        return true
    }

    func peek() throws -> UInt8 {
        guard try fill(1) else { throw MigrationStream.Unsupported(reason: "the stream ends early") }
        return buffer[at]
    }
    func u8() throws -> UInt8 { let v = try peek(); at += 1; consumed += 1; return v }
    func be32() throws -> UInt32 { try (0..<4).reduce(0) { v, _ in v << 8 | UInt32(try u8()) } }
    func be64() throws -> UInt64 { try (0..<8).reduce(0) { v, _ in v << 8 | UInt64(try u8()) } }
    /// A length byte and that many bytes (QEMU's idstr), as they are.
    func idstr() throws -> [UInt8] {
        let n = Int(try u8())
        return try (0..<n).map { _ in try u8() }
    }
    /// Hands up to `max` buffered bytes (at least one) to `body`; nil at end of file.
    func chunk(max: Int, _ body: (UnsafeRawBufferPointer) throws -> Void) throws -> Int? {
        guard try fill(1) else { return nil }
        let n = min(max, end - at)
        try buffer.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[at..<at + n])) }
        at += n; consumed += UInt64(n)
        return n
    }
}

/// Writes a file through a 1 MiB buffer.
final class BufferedOutput {
    private var fd: Int32
    private var buffer: [UInt8] = []
    private(set) var written: UInt64 = 0

    init(path: String) throws {
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw MigrationStream.Unsupported(reason: "cannot write \(path): \(String(cString: strerror(errno)))") }
        buffer.reserveCapacity(1 << 20)
    }
    deinit { if fd >= 0 { close(fd) } }

    func u8(_ v: UInt8) { buffer.append(v); written += 1 }
    func be32(_ v: UInt32) { for s in stride(from: 24, through: 0, by: -8) { u8(UInt8(truncatingIfNeeded: v >> UInt32(s))) } }
    func be64(_ v: UInt64) { for s in stride(from: 56, through: 0, by: -8) { u8(UInt8(truncatingIfNeeded: v >> UInt64(s))) } }
    /// A length byte and the bytes (at most 255, as read).
    func idstr(_ b: [UInt8]) { u8(UInt8(b.count)); for c in b { u8(c) } }

    func copy(from input: BufferedInput, count: Int) throws {
        var left = count
        while left > 0 {
            guard let n = try input.chunk(max: left, { buffer.append(contentsOf: $0) }) else {
                throw MigrationStream.Unsupported(reason: "the stream ends early")
            }
            left -= n; written += UInt64(n)
            try flushIfFull()
        }
    }
    func copyRest(from input: BufferedInput) throws {
        while let n = try input.chunk(max: 1 << 20, { buffer.append(contentsOf: $0) }) {
            written += UInt64(n)
            try flushIfFull()
        }
    }
    /// Writes the buffer out once it holds 1 MiB.
    func flushIfFull() throws { if buffer.count >= 1 << 20 { try flush() } }

    private func flush() throws {
        try buffer.withUnsafeBytes { b in
            var done = 0
            while done < b.count {
                let w = write(fd, b.baseAddress! + done, b.count - done)
                if w < 0 && errno == EINTR { continue }
                guard w > 0 else { throw MigrationStream.Unsupported(reason: "write: \(String(cString: strerror(errno)))") }
                done += w
            }
        }
        buffer.removeAll(keepingCapacity: true)
    }
    /// Writes what is buffered, to disk, and closes.
    func finish() throws {
        try flush()
        guard fsync(fd) == 0 else { throw MigrationStream.Unsupported(reason: "fsync: \(String(cString: strerror(errno)))") }
        close(fd); fd = -1
    }
    func abandon() { if fd >= 0 { close(fd); fd = -1 } }
}
