import Foundation

/// libvirt's QEMU save file (what `virDomainSave` writes, libvirt 9.0 `qemu_saveimage.h`): a
/// 92-byte header in host byte order, the domain XML and an optional cookie (each NUL-ended,
/// then zero padding: `dataLength` covers all three), then QEMU's migration stream. Nothing
/// ties the stream to the domain's name or UUID: a restore without an alternative XML takes
/// the XML in the file as the only authority, so a clone's file is this header and the
/// clone's XML in front of the template's stream.
public struct SaveImage: Sendable, Equatable {
    public static let magic = Array("LibvirtQemudSave".utf8)
    /// What an unfinished save says instead (libvirt refuses to restore it).
    public static let partialMagic = Array("LibvirtQemudPart".utf8)
    public static let version: UInt32 = 2
    public static let headerSize = 92

    /// The domain XML as saved.
    public var xml: String
    /// libvirt's save cookie (`<cookie>` with the CPU it expanded), if any.
    public var cookie: String?
    public var wasRunning: Bool
    /// Where QEMU's migration stream starts in the file this was read from.
    public var streamOffset: UInt64

    public init(xml: String, cookie: String?, wasRunning: Bool, streamOffset: UInt64 = 0) {
        self.xml = xml; self.cookie = cookie; self.wasRunning = wasRunning; self.streamOffset = streamOffset
    }

    public struct FormatError: Error, CustomStringConvertible {
        public let path: String, reason: String
        public var description: String { "\(path) is not a usable libvirt save file: \(reason)" }
    }

    /// Reads the header, XML and cookie of the save file at `path` (not the stream).
    public static func read(_ path: String) throws -> SaveImage {
        guard let h = FileHandle(forReadingAtPath: path) else { throw FormatError(path: path, reason: "cannot be opened") }
        defer { try? h.close() }
        let head = [UInt8](try h.read(upToCount: headerSize) ?? Data())
        guard head.count == headerSize else { throw FormatError(path: path, reason: "shorter than its header") }
        if Array(head[0..<16]) == partialMagic { throw FormatError(path: path, reason: "the save did not finish") }
        guard Array(head[0..<16]) == magic else { throw FormatError(path: path, reason: "no libvirt save header") }
        func u32(_ at: Int) -> UInt32 { head[at..<at + 4].reversed().reduce(0) { $0 << 8 | UInt32($1) } }
        guard u32(16) == version else { throw FormatError(path: path, reason: "save format version \(u32(16)), not 2") }
        guard u32(28) == 0 else { throw FormatError(path: path, reason: "compressed saves are not supported") }
        let dataLength = Int(u32(20)), cookieOffset = Int(u32(32))
        let data = [UInt8](try h.read(upToCount: dataLength) ?? Data())
        guard data.count == dataLength, dataLength > 0 else { throw FormatError(path: path, reason: "its XML is cut short") }
        func cString(from: Int) -> String? {
            guard from < data.count, let end = data[from...].firstIndex(of: 0) else { return nil }
            return String(decoding: data[from..<end], as: UTF8.self)
        }
        guard let xml = cString(from: 0), xml.contains("<domain") else { throw FormatError(path: path, reason: "no domain XML") }
        let cookie = cookieOffset > 0 ? cString(from: cookieOffset) : nil
        return SaveImage(xml: xml, cookie: cookie, wasRunning: u32(24) != 0,
                         streamOffset: UInt64(headerSize + dataLength))
    }

    /// The header, XML and cookie as libvirt writes them, for `xml` (a clone's): what goes in
    /// front of the template's stream. Padded to a 4 KiB boundary, as room for a longer XML.
    public func encoded() -> Data {
        var data = Array(xml.utf8) + [0]
        let cookieOffset = cookie == nil ? 0 : UInt32(data.count)
        if let c = cookie { data += Array(c.utf8) + [0] }
        let total = Self.headerSize + data.count
        data += [UInt8](repeating: 0, count: (4096 - total % 4096) % 4096)
        var out = Self.magic
        for v in [Self.version, UInt32(data.count), wasRunning ? 1 : 0, 0, cookieOffset] + [UInt32](repeating: 0, count: 14) {
            out += withUnsafeBytes(of: v.littleEndian) { Array($0) }
        }
        return Data(out + data)
    }
}
