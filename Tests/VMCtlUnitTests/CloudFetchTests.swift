import Crypto
import Foundation
import Testing
@testable import VMCtlSupport
@testable import Images
import Blocking

/// `image fetch` against an HTTP server on 127.0.0.1 (scripts/test-http-server.py): Range
/// resumes, checksum refusal, never a partial file under the final name.
@Suite("image fetch: streamed, resumed, verified")
struct CloudFetchTests {
    /// A server of the test's own over `dir`, logging requests to `log`; stopped by PID.
    final class Server {
        let process = Process()
        let port: Int
        init(dir: String, log: String, cutAfter: Int?) throws {
            let script = RecipeStore.locate().directory + "/../scripts/test-http-server.py"
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["python3", script, dir, log] + (cutAfter.map { ["--cut-after", String($0)] } ?? [])
            let out = Pipe()
            process.standardOutput = out
            try process.run()
            let line = String(decoding: out.fileHandleForReading.availableData, as: UTF8.self)
            guard let p = Int(line.trimmingCharacters(in: .whitespacesAndNewlines)) else {
                process.terminate()
                throw VMCtlError("test server did not start: \(line)")
            }
            port = p
        }
        func stop() { if process.isRunning { kill(process.processIdentifier, SIGTERM); process.waitUntilExit() } }
    }

    static func scratch() throws -> String {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("vmctl-fetch-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }

    static func entry(port: Int, file: String, sums: String, format: ChecksumFile.Format) -> CloudCatalog.Entry {
        CloudCatalog.Entry(name: "t1", title: "test image", family: "test", release: 1,
                           source: .download(url: "http://127.0.0.1:\(port)/\(file)",
                                             checksum: .init(url: "http://127.0.0.1:\(port)/\(sums)", format: format, signatureURL: nil,
                                                             keyrings: [], fingerprint: nil)),
                           user: "debian", firmware: .bios)
    }

    @Test("an interrupted download resumes with a Range request; the SHA-256 (Ubuntu's and Fedora's formats) is checked before the final name")
    func resumeAndVerify() async throws {
        let dir = try Self.scratch(), served = "\(dir)/served", cacheDir = "\(dir)/cache", log = "\(dir)/requests.log"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: served, withIntermediateDirectories: true)
        // 6 MiB of varied bytes: the server drops the first transfer after 2 MiB.
        var bytes = Data(count: 6 << 20)
        bytes.withUnsafeMutableBytes { p in for i in 0..<p.count { p[i] = UInt8(truncatingIfNeeded: i &* 2654435761 >> 13) } }
        try bytes.write(to: URL(fileURLWithPath: "\(served)/disk.qcow2"))
        let sum = SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
        try "\(sum) *disk.qcow2\n".write(toFile: "\(served)/SHA256SUMS", atomically: true, encoding: .utf8)
        try "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n# disk.qcow2: \(bytes.count) bytes\nSHA256 (disk.qcow2) = \(sum)\n-----BEGIN PGP SIGNATURE-----\nxx\n-----END PGP SIGNATURE-----\n"
            .write(toFile: "\(served)/CHECKSUM", atomically: true, encoding: .utf8)
        let server = try Server(dir: served, log: log, cutAfter: 2 << 20)
        defer { server.stop() }
        let cache = CloudImageCache(directory: cacheDir)
        let e = Self.entry(port: server.port, file: "disk.qcow2", sums: "SHA256SUMS", format: .sha256sums)

        // First attempt: cut off. The partial download stays as .part, nothing under the final name.
        await #expect { try await cache.fetch(e, progress: false) } throws: { "\($0)".contains("next fetch resumes") }
        #expect(!FileManager.default.fileExists(atPath: cache.path(of: e)))
        let partial = CloudImageCache.size(cache.partialPath(of: e))
        #expect(partial == 2 << 20, "partial \(partial)")

        // Second: resumed from where it stopped, verified, renamed.
        let f = try await cache.fetch(e, progress: false)
        #expect(f.downloaded && f.sha256 == sum && f.path == cache.path(of: e))
        #expect(try Data(contentsOf: URL(fileURLWithPath: f.path)) == bytes)
        #expect(!FileManager.default.fileExists(atPath: cache.partialPath(of: e)))
        let requests = try String(contentsOfFile: log, encoding: .utf8)
        #expect(requests.contains("GET disk.qcow2 range=bytes=\(2 << 20)-"), "\(requests)")
        #expect(f.signature == .unverified("http://127.0.0.1:\(server.port)/SHA256SUMS is not signed"))
        // Cached: no download again.
        #expect(try await cache.fetch(e, progress: false).downloaded == false)

        // A partial copy longer than the file: the server answers the Range with HTTP 416, read
        // from curl's --write-out, and the download starts again from zero.
        cache.remove(e)
        var junk = bytes
        junk.append(Data(repeating: 7, count: 4096))
        try junk.write(to: URL(fileURLWithPath: cache.partialPath(of: e)))
        let again = try await cache.fetch(e, progress: false)
        #expect(again.downloaded && again.sha256 == sum, "\(again)")
        let retried = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n").suffix(2)
        #expect(retried == ["GET disk.qcow2 range=bytes=\(junk.count)-", "GET disk.qcow2 range=None"], "\(retried)")

        // Fedora's clearsigned format: its signed body is read; no keyring, so the signature is said to be unchecked.
        cache.remove(e)
        let fedora = Self.entry(port: server.port, file: "disk.qcow2", sums: "CHECKSUM", format: .fedora)
        let g = try await cache.fetch(fedora, progress: false)
        #expect(g.sha256 == sum)
        guard case .unverified(let why) = g.signature else { Issue.record("\(g.signature)"); return }
        #expect(why.contains("names no keyring"), "\(why)")
    }

    @Test("a corrupted copy is refused (exit 2), deleted, and never gets the final name")
    func corruptedRefused() async throws {
        let dir = try Self.scratch(), served = "\(dir)/served"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: served, withIntermediateDirectories: true)
        try Data(repeating: 7, count: 300_000).write(to: URL(fileURLWithPath: "\(served)/disk.qcow2"))
        try "\(String(repeating: "0", count: 64)) *disk.qcow2\n".write(toFile: "\(served)/SHA256SUMS", atomically: true, encoding: .utf8)
        let server = try Server(dir: served, log: "\(dir)/log", cutAfter: nil)
        defer { server.stop() }
        let cache = CloudImageCache(directory: "\(dir)/cache")
        let e = Self.entry(port: server.port, file: "disk.qcow2", sums: "SHA256SUMS", format: .sha256sums)
        await #expect { try await cache.fetch(e, progress: false) } throws: { err in
            (err as? VMCtlError)?.exitCode == 2 && "\(err)".contains("checksum mismatch") && "\(err)".contains("nothing was kept")
        }
        #expect(!FileManager.default.fileExists(atPath: cache.path(of: e)))
        #expect(!FileManager.default.fileExists(atPath: cache.partialPath(of: e)))
        // A checksum file that does not list the image is refused before the image is fetched.
        let other = Self.entry(port: server.port, file: "other.qcow2", sums: "SHA256SUMS", format: .sha256sums)
        await #expect { try await cache.fetch(other, progress: false) } throws: { "\($0)".contains("lists no SHA-256 for other.qcow2") }
        #expect(!(try String(contentsOfFile: "\(dir)/log", encoding: .utf8)).contains("GET other.qcow2"))
    }

    @Test("signatures: a clearsigned checksum file verified with gpgv against the keyring and the pinned fingerprint; another signer or a tampered list refused before any download")
    func signatures() async throws {
        let dir = try Self.scratch(), served = "\(dir)/served", gnupg = "\(dir)/gnupg"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for d in [served, gnupg] { try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true) }
        chmod(gnupg, 0o700)
        let bytes = Data(repeating: 42, count: 100_000)
        try bytes.write(to: URL(fileURLWithPath: "\(served)/disk.qcow2"))
        let sum = SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
        // A signing key of the test's own, the list clearsigned with it, its public keyring exported.
        func gpg(_ args: [String]) throws -> String {
            try Command("gpg", ["--batch", "--homedir", gnupg, "--pinentry-mode", "loopback", "--passphrase", ""] + args).checked()
        }
        _ = try gpg(["--quick-gen-key", "vmctl test signer <test@invalid>", "ed25519", "sign", "1d"])
        let fpr = try #require(try gpg(["--with-colons", "--list-keys"]).split(separator: "\n")
            .first { $0.hasPrefix("fpr:") }?.split(separator: ":", omittingEmptySubsequences: false)[9]).uppercased()
        try "SHA256 (disk.qcow2) = \(sum)\n".write(toFile: "\(dir)/CHECKSUM.txt", atomically: true, encoding: .utf8)
        _ = try gpg(["--clearsign", "-o", "\(served)/CHECKSUM", "\(dir)/CHECKSUM.txt"])
        _ = try gpg(["--export", "-o", "\(dir)/keyring.gpg"])
        let signed = try String(contentsOfFile: "\(served)/CHECKSUM", encoding: .utf8)
        try signed.replacingOccurrences(of: sum, with: String(repeating: "f", count: 64))
            .write(toFile: "\(served)/TAMPERED", atomically: true, encoding: .utf8)

        let server = try Server(dir: served, log: "\(dir)/log", cutAfter: nil)
        defer { server.stop() }
        let cache = CloudImageCache(directory: "\(dir)/cache")
        func entry(_ sums: String, fingerprint: String?) -> CloudCatalog.Entry {
            var e = Self.entry(port: server.port, file: "disk.qcow2", sums: sums, format: .fedora)
            e.source = .download(url: "http://127.0.0.1:\(server.port)/disk.qcow2",
                                 checksum: .init(url: "http://127.0.0.1:\(server.port)/\(sums)", format: .fedora, signatureURL: nil,
                                                 keyrings: ["/nonexistent/keyring.gpg", "\(dir)/keyring.gpg"], fingerprint: fingerprint))
            return e
        }
        await #expect { try await cache.fetch(entry("CHECKSUM", fingerprint: String(repeating: "A", count: 40)), progress: false) } throws: { e in
            (e as? VMCtlError)?.exitCode == 2 && "\(e)".contains("not by the pinned key")
        }
        await #expect { try await cache.fetch(entry("TAMPERED", fingerprint: fpr), progress: false) } throws: { e in
            (e as? VMCtlError)?.exitCode == 2 && "\(e)".contains("does not verify")
        }
        #expect(!(try String(contentsOfFile: "\(dir)/log", encoding: .utf8)).contains("GET disk.qcow2"), "nothing large fetched for a bad list")
        let f = try await cache.fetch(entry("CHECKSUM", fingerprint: fpr), progress: false)
        #expect(f.signature == .verified(fingerprint: fpr) && f.sha256 == sum)
    }
}
