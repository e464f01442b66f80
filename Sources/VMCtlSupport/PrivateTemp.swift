import Foundation

/// Work directories nobody else can predict or pre-create: `mkdtemp`, mode 0700.
public enum PrivateTemp {
    /// Characters `mkdtemp` replaces in the template.
    static let suffix = ".XXXXXX"

    /// Makes a new directory `parent/prefix.XXXXXX` (mode 0700, the parent created if missing)
    /// and returns its path.
    public static func makeDirectory(in parent: String, prefix: String) throws -> String {
        guard !prefix.isEmpty, !prefix.contains("/") else {
            throw VMCtlError("work directory prefix '\(prefix)' must be a plain name")
        }
        do {
            try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
        } catch {
            throw VMCtlError("cannot create \(parent) for a work directory: \(error.localizedDescription)")
        }
        var template = Array("\(parent)/\(prefix)\(suffix)".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buf in mkdtemp(buf.baseAddress!).map { String(cString: $0) } }
        guard let path = made else {
            throw VMCtlError("cannot create a work directory in \(parent): \(String(cString: strerror(errno)))")
        }
        chmod(path, 0o700)  // mkdtemp's mode already; stated for readers and odd libcs
        return path
    }

    /// Whether `entry` (a name in a parent directory) is one `makeDirectory` made with `prefix`.
    public static func isDirectory(_ entry: String, madeWith prefix: String) -> Bool {
        guard entry.hasPrefix(prefix + "."), entry.count == prefix.count + suffix.count else { return false }
        return entry.utf8.suffix(6).allSatisfy { c in
            (48...57).contains(c) || (65...90).contains(c) || (97...122).contains(c)
        }
    }
}
