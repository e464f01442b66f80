import Blocking
import Crypto
import Foundation
import VMCtlSupport

/// The cache of downloaded cloud images (`vmctl image fetch`, `--cache-dir`): each published disk
/// under its own file name, present there only once its SHA-256 matched the distribution's
/// checksum file. A download streams to `NAME.part` (never held in memory), resumes with an HTTP
/// Range request after an interruption, and gets its final name by a rename after verification.
public struct CloudImageCache: Sendable {
    public let directory: String

    public init(directory: String) { self.directory = directory }

    /// The default: `STATE/images/cloud`, beside the image store (QEMU's group may read it).
    public static func standard(_ state: StateDir) -> CloudImageCache { CloudImageCache(directory: "\(state.images)/cloud") }

    public func path(of entry: CloudCatalog.Entry) -> String { "\(directory)/\(entry.cacheFileName)" }
    public func partialPath(of entry: CloudCatalog.Entry) -> String { path(of: entry) + ".part" }

    /// Whether the verified disk is there.
    public func isCached(_ entry: CloudCatalog.Entry) -> Bool { FileManager.default.fileExists(atPath: path(of: entry)) }

    /// What a fetch did about the checksum file's signature.
    public enum Signature: Sendable, Equatable {
        case verified(fingerprint: String)
        /// It could not be checked (no keyring, no signature file, no key): the one-line reason.
        case unverified(String)
    }

    /// The result of a fetch.
    public struct Fetched: Sendable {
        public var path: String
        /// nil when the file was there already (verified when it was fetched).
        public var sha256: String?
        public var signature: Signature
        /// false when the file was there already.
        public var downloaded: Bool
    }

    /// Downloads `entry` unless it is cached, verifies it and gives it its final name.
    /// `progress` shows curl's progress bar on stderr (for a terminal). A checksum mismatch
    /// deletes the download and throws (exit 2); a signature that does not verify, or verifies
    /// by another key than the pinned one, throws before the image is downloaded.
    public func fetch(_ entry: CloudCatalog.Entry, progress: Bool, note: @Sendable (String) -> Void = { _ in }) async throws -> Fetched {
        guard case .download(let url, let checksum) = entry.source else {
            throw VMCtlError.usage("\(entry.name) is built locally (`vmctl image build`), not downloaded")
        }
        try FileAccess.directoryWithParents(directory, qemu: true)
        let final = path(of: entry)
        let lock = try await FileLock.exclusive("\(directory)/.\(entry.cacheFileName).lock")
        defer { lock.release() }
        if FileManager.default.fileExists(atPath: final) {
            return Fetched(path: final, sha256: nil, signature: .unverified("verified when it was fetched"), downloaded: false)
        }
        let scratch = try PrivateTemp.makeDirectory(in: directory, prefix: ".fetch")
        defer { try? FileManager.default.removeItem(atPath: scratch) }

        // The checksum list first (small), and its signature: nothing large is fetched for a bad list.
        let sumsPath = "\(scratch)/checksums"
        try await Self.curl(checksum.url, to: sumsPath, resume: false, progress: false)
        var sigPath: String?
        if let s = checksum.signatureURL {
            sigPath = "\(scratch)/checksums.sig"
            do { try await Self.curl(s, to: sigPath!, resume: false, progress: false) } catch { sigPath = nil }
        }
        let signature = try await Self.verifySignature(of: sumsPath, detached: sigPath, checksum: checksum, scratch: scratch)
        let sumsText = (try? String(contentsOfFile: sumsPath, encoding: .utf8)) ?? ""
        let expected = try ChecksumFile.parse(sumsText, format: checksum.format)
            .sha256(of: entry.cacheFileName, source: checksum.url)

        let part = partialPath(of: entry)
        if FileManager.default.fileExists(atPath: part) {
            note("resuming \(entry.cacheFileName) at \(Self.size(part) >> 20) MiB")
        }
        try await Self.curl(url, to: part, resume: true, progress: progress)
        let got = try await onOwnThread("fetch.sha256") { try Self.sha256(of: part) }
        guard got == expected else {
            unlink(part)
            throw VMCtlError.usage("\(entry.cacheFileName): checksum mismatch (expected \(expected) from \(checksum.url), got \(got)); "
                + "the download was deleted and nothing was kept")
        }
        try FileAccess.shareWithQemu(part)
        guard rename(part, final) == 0 else { throw VMCtlError("cannot rename \(part): \(String(cString: strerror(errno)))") }
        try? AtomicFile.syncDirectory(directory)
        return Fetched(path: final, sha256: got, signature: signature, downloaded: true)
    }

    /// Removes `entry`'s cached disk and any partial download.
    public func remove(_ entry: CloudCatalog.Entry) {
        unlink(path(of: entry))
        unlink(partialPath(of: entry))
    }

    static func size(_ path: String) -> UInt64 {
        (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? UInt64) ?? 0
    }

    /// The file's SHA-256, read in 4 MiB chunks.
    static func sha256(of path: String) throws -> String {
        guard let h = FileHandle(forReadingAtPath: path) else { throw VMCtlError("cannot read \(path)") }
        defer { try? h.close() }
        var hasher = SHA256()
        while let chunk = try h.read(upToCount: 4 << 20), !chunk.isEmpty { hasher.update(data: chunk) }
        return hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }

    /// curl to `output`: fail on HTTP errors, follow redirects, 20 s to connect; with `resume`,
    /// continue a partial file by a Range request (started again from zero if the server
    /// cannot resume). With `progress`, curl's bar goes to stderr.
    static func curl(_ url: String, to output: String, resume: Bool, progress: Bool) async throws {
        let args = curlArguments(url, output: output, resume: resume && size(output) > 0, progress: progress)
        var (status, err, http) = try await onOwnThread("fetch.curl") { try runCurl(args, progress: progress) }
        // curl 33: the server does not do ranges; 36: bad resume offset; HTTP 416: range past the end.
        if resume, [33, 36].contains(status) || http == 416 {
            unlink(output)
            (status, err, http) = try await onOwnThread("fetch.curl") { try runCurl(curlArguments(url, output: output, resume: false, progress: progress), progress: progress) }
        }
        guard status == 0 else {
            throw VMCtlError("download of \(url) failed (curl exit \(status): \(err.trimmingCharacters(in: .whitespacesAndNewlines)))"
                + (resume ? "; what arrived is kept and the next fetch resumes it" : ""))
        }
    }

    static func curlArguments(_ url: String, output: String, resume: Bool, progress: Bool) -> [String] {
        // The body goes to `output`; stdout carries only the last response's HTTP status.
        var a = ["-fL", "--connect-timeout", "20", "--retry", "2", "-o", output, "--write-out", "%{http_code}"]
        a += progress ? ["-#"] : ["-sS"]
        if resume { a += ["-C", "-"] }
        return a + ["--", url]
    }

    /// Runs curl: its exit status, its stderr (unless `progress`: then the bar goes to the
    /// terminal) and the HTTP status it printed (`--write-out`; nil when none came).
    static func runCurl(_ args: [String], progress: Bool) throws -> (status: Int32, stderr: String, http: Int?) {
        if !progress {
            let o = try Command("curl", args).run()
            return (o.status, o.stderr, Int(o.stdout.trimmingCharacters(in: .whitespacesAndNewlines)))
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: try Command.require("curl"))
        p.arguments = args
        p.standardInput = FileHandle.nullDevice
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let printed = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, "", Int(String(decoding: printed, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)))
    }

    /// Checks the checksum file's signature with gpgv against the first keyring that exists,
    /// and the signer against the pinned fingerprint. A bad signature or another signer throws;
    /// what cannot be checked is returned as `.unverified(reason)`.
    static func verifySignature(of file: String, detached: String?, checksum: CloudCatalog.Checksum,
                                scratch: String) async throws -> Signature {
        let text = (try? String(contentsOfFile: file, encoding: .utf8)) ?? ""
        let clearsigned = text.contains("-----BEGIN PGP SIGNED MESSAGE-----")
        if detached == nil && !clearsigned {
            return .unverified(checksum.signatureURL == nil ? "\(checksum.url) is not signed"
                               : "no signature could be downloaded from \(checksum.signatureURL!)")
        }
        guard let keyring = checksum.keyrings.first(where: { FileManager.default.fileExists(atPath: $0) }) else {
            return .unverified(checksum.keyrings.isEmpty ? "the catalog names no keyring for \(checksum.url)"
                               : "no keyring to check it with (\(checksum.keyrings.joined(separator: ", ")) not installed)")
        }
        guard Command.locate("gpgv") != nil else { return .unverified("gpgv is not installed (apt install gpgv)") }
        let ring = try await binaryKeyring(keyring, scratch: scratch)
        let args = ["--homedir", scratch, "--status-fd", "1", "--keyring", ring] + (detached.map { [$0, file] } ?? [file])
        let o = try await onOwnThread("fetch.gpgv") { try Command("gpgv", args).run() }
        let status = o.stdout
        if status.contains("[GNUPG:] BADSIG") || status.contains("[GNUPG:] ERRSIG") && !status.contains("NO_PUBKEY") {
            throw VMCtlError.usage("the signature of \(checksum.url) does not verify with \(keyring): refused, nothing downloaded")
        }
        guard o.status == 0, let valid = status.split(separator: "\n").first(where: { $0.hasPrefix("[GNUPG:] VALIDSIG ") }) else {
            if status.contains("NO_PUBKEY") {
                return .unverified("\(keyring) does not hold the key that signed \(checksum.url)")
            }
            throw VMCtlError.usage("the signature of \(checksum.url) does not verify with \(keyring): refused, nothing downloaded")
        }
        let fields = valid.split(separator: " ").map(String.init)
        let signer = fields.count > 2 ? fields[2] : ""
        let primary = fields.last ?? ""
        if let pinned = checksum.fingerprint, pinned != signer.uppercased(), pinned != primary.uppercased() {
            throw VMCtlError.usage("\(checksum.url) is signed by \(primary), not by the pinned key \(pinned): refused")
        }
        return .verified(fingerprint: primary)
    }

    /// gpgv reads binary keyrings: an armored key file is dearmored into `scratch` first.
    static func binaryKeyring(_ path: String, scratch: String) async throws -> String {
        guard let head = FileHandle(forReadingAtPath: path).flatMap({ try? $0.read(upToCount: 64) }),
              String(decoding: head, as: UTF8.self).hasPrefix("-----BEGIN PGP") else { return path }
        let out = "\(scratch)/keyring.gpg"
        _ = try await Command("gpg", ["--batch", "--homedir", scratch, "--dearmor", "-o", out, path]).checkedAsync()
        return out
    }
}
