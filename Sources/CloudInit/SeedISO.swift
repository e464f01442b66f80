import Blocking
import Foundation

/// A NoCloud seed: an ISO 9660 image with volume id `cidata`, built by xorrisofs.
public enum SeedISO {
    /// The files a seed holds, by name.
    public static func files(for config: SeedConfig) throws -> [String: String] {
        ["meta-data": try config.metaData(), "user-data": try config.userData(),
         "network-config": try config.networkConfig()]
    }

    /// Writes a seed ISO with `files` to `path`: built beside it under a temporary name
    /// and renamed into place, so a failure leaves no half-written ISO. xorrisofs runs on a
    /// thread of its own: N nodes' seeds are made at once, not one after another on the pool.
    public static func write(_ files: [String: String], to path: String) async throws {
        let fm = FileManager.default
        let dir = (path as NSString).deletingLastPathComponent
        let staging = "\(dir)/.seed-\(UUID().uuidString.prefix(8))"
        try fm.createDirectory(atPath: staging, withIntermediateDirectories: true)
        defer { try? fm.removeItem(atPath: staging) }
        for (name, content) in files {
            try content.write(toFile: "\(staging)/\(name)", atomically: false, encoding: .utf8)
        }
        let tmp = "\(path).tmp-\(getpid())"
        do {
            try await Command("xorrisofs", ["-quiet", "-output", tmp, "-volid", "cidata", "-joliet", "-rock", staging]).checkedAsync()
            try? fm.removeItem(atPath: path)
            try fm.moveItem(atPath: tmp, toPath: path)
        } catch {
            try? fm.removeItem(atPath: tmp)
            throw error
        }
    }

    /// Reads the files back out of a seed ISO (for tests and diagnostics), with xorriso on a
    /// thread of its own.
    public static func read(_ path: String) async throws -> [String: String] {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("seed-read-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try await Command("xorriso", ["-osirrox", "on", "-indev", path, "-extract", "/", dir]).checkedAsync()
        var out: [String: String] = [:]
        for name in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] {
            out[name] = try String(contentsOfFile: "\(dir)/\(name)", encoding: .utf8)
        }
        return out
    }
}
