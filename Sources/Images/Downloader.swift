import Blocking
import Crypto
import Foundation
import VMCtlSupport

/// Downloads release binaries for recipes, verifies their SHA-256 and caches them by checksum.
/// A file whose checksum does not match is never kept.
public struct Downloader: Sendable {
    public let cache: String
    /// Most one download attempt may take (curl `--max-time`; no retry starts after it either);
    /// connecting gets 20 s.
    public let timeout: Duration
    public init(cache: String, timeout: Duration = .seconds(900)) { self.cache = cache; self.timeout = timeout }

    /// The cached path of `f`, downloading and verifying it first if needed.
    public func fetch(_ f: Recipe.Fetch) async throws -> String {
        let path = "\(cache)/\(f.sha256)"
        if FileManager.default.fileExists(atPath: path) { return path }
        guard let url = URL(string: f.url) else { throw VMCtlError.usage("fetch: '\(f.url)' is not a URL") }
        let limit = Int(timeout.components.seconds)
        let data = try await onOwnThread("fetch") { try Self.download(url, seconds: limit) }
        let got = SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
        guard got == f.sha256 else {
            throw VMCtlError("fetch \(f.url): checksum mismatch (expected \(f.sha256), got \(got)); nothing was kept")
        }
        try AtomicFile.write(data, to: path, mode: 0o644)
        return path
    }

    /// `url`'s content; curl gives up on an attempt after `seconds` (20 s without a connection).
    static func download(_ url: URL, seconds: Int) throws -> Data {
        if url.isFileURL { return try Data(contentsOf: url) }
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("vmctl-fetch-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        do {
            try Command("curl", curlArguments(url, output: tmp, seconds: seconds)).checked()
        } catch let e as CommandError {
            throw VMCtlError("fetch \(url): \(e) (is the internet reachable from this host? curl gives up after \(seconds) s)")
        }
        return try Data(contentsOf: URL(fileURLWithPath: tmp))
    }

    /// curl's arguments: fail on HTTP errors, 20 s to connect, `seconds` per attempt, and two
    /// retries, none started once `seconds` have passed.
    static func curlArguments(_ url: URL, output: String, seconds: Int) -> [String] {
        ["-fsSL", "--retry", "2", "--connect-timeout", "20", "--max-time", String(seconds),
         "--retry-max-time", String(seconds), "-o", output, url.absoluteString]
    }
}
