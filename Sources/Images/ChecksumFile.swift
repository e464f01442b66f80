import Foundation
import VMCtlSupport

/// A distribution's list of SHA-256 checksums: Ubuntu's `SHA256SUMS` (`HEX *FILE`) or Fedora's
/// clearsigned `CHECKSUM` (`SHA256 (FILE) = HEX`). Only the signed part of a clearsigned file is
/// read: lines outside it could have been added by anyone.
public struct ChecksumFile: Sendable, Equatable {
    public enum Format: String, Sendable, Equatable {
        /// `HEX *FILE` or `HEX  FILE` per line (sha256sum's output).
        case sha256sums
        /// BSD-style `SHA256 (FILE) = HEX`, possibly clearsigned (Fedora).
        case fedora
    }

    /// File name → lowercase hex SHA-256.
    public var sums: [String: String]

    public init(sums: [String: String]) { self.sums = sums }

    public static func parse(_ text: String, format: Format) -> ChecksumFile {
        var sums: [String: String] = [:]
        for raw in signedBody(text).split(whereSeparator: \.isNewline) {
            var line = String(raw)
            if line.hasPrefix("- ") { line.removeFirst(2) }  // dash-escaping of a clearsigned text
            line = line.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            switch format {
            case .sha256sums:
                let parts = line.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
                guard parts.count == 2, isHex(parts[0]) else { continue }
                var name = parts[1].trimmingCharacters(in: .whitespaces)
                if name.hasPrefix("*") { name.removeFirst() }
                sums[name] = parts[0].lowercased()
            case .fedora:
                guard line.hasPrefix("SHA256 ("), let close = line.range(of: ") = ", options: .backwards) else { continue }
                let name = String(line[line.index(line.startIndex, offsetBy: 8)..<close.lowerBound])
                let hex = String(line[close.upperBound...])
                guard isHex(Substring(hex)) else { continue }
                sums[name] = hex.lowercased()
            }
        }
        return ChecksumFile(sums: sums)
    }

    /// The checksum listed for `file`, or an error naming the file and what the list has.
    public func sha256(of file: String, source: String) throws -> String {
        guard let s = sums[file] else {
            throw VMCtlError("\(source) lists no SHA-256 for \(file) (it lists \(sums.count) file(s)); the catalog's url and checksum disagree")
        }
        return s
    }

    /// The text between a clearsigned message's header and its signature; the whole text when
    /// it is not clearsigned.
    static func signedBody(_ text: String) -> String {
        guard let begin = text.range(of: "-----BEGIN PGP SIGNED MESSAGE-----") else { return text }
        let rest = text[begin.upperBound...]
        // Armor headers (Hash: …) end at the first empty line.
        guard let blank = rest.range(of: "\n\n") ?? rest.range(of: "\r\n\r\n") else { return "" }
        let body = rest[blank.upperBound...]
        let end = body.range(of: "-----BEGIN PGP SIGNATURE-----")?.lowerBound ?? body.endIndex
        return String(body[..<end])
    }

    static func isHex(_ s: Substring) -> Bool {
        s.count == 64 && s.allSatisfy { $0.isHexDigit }
    }
}
