import Blocking
import Crypto
import Foundation

/// Downloads release binaries for recipes, verifies their SHA-256 and caches them by checksum.
/// A file whose checksum does not match is never kept.
public struct Downloader: Sendable {
    public let cache: String
    public init(cache: String) { self.cache = cache }

    /// The cached path of `f`, downloading and verifying it first if needed.
    public func fetch(_ f: Recipe.Fetch) async throws -> String {
        let path = "\(cache)/\(f.sha256)"
        if FileManager.default.fileExists(atPath: path) { return path }
        guard let url = URL(string: f.url) else { throw VMCtlError.usage("fetch: '\(f.url)' is not a URL") }
        let data = try await onOwnThread("fetch") { try Self.download(url) }
        let got = SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
        guard got == f.sha256 else {
            throw VMCtlError("fetch \(f.url): checksum mismatch (expected \(f.sha256), got \(got)); nothing was kept")
        }
        try AtomicFile.write(data, to: path, mode: 0o644)
        return path
    }

    private static func download(_ url: URL) throws -> Data {
        if url.isFileURL { return try Data(contentsOf: url) }
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("vmctl-fetch-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        do {
            try Command("curl", ["-fsSL", "--retry", "2", "--connect-timeout", "20", "-o", tmp, url.absoluteString]).checked()
        } catch let e as CommandError {
            throw VMCtlError("fetch \(url): \(e) (is the internet reachable from this host?)")
        }
        return try Data(contentsOf: URL(fileURLWithPath: tmp))
    }
}
