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
    /// and renamed into place, so a failure leaves no half-written ISO.
    public static func write(_ files: [String: String], to path: String) throws {
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
            try Command("xorrisofs", ["-quiet", "-output", tmp, "-volid", "cidata", "-joliet", "-rock", staging]).checked()
            try? fm.removeItem(atPath: path)
            try fm.moveItem(atPath: tmp, toPath: path)
        } catch {
            try? fm.removeItem(atPath: tmp)
            throw error
        }
    }

    /// Reads the files back out of a seed ISO (for tests and diagnostics), with xorriso.
    public static func read(_ path: String) throws -> [String: String] {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("seed-read-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Command("xorriso", ["-osirrox", "on", "-indev", path, "-extract", "/", dir]).checked()
        var out: [String: String] = [:]
        for name in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] {
            out[name] = try String(contentsOfFile: "\(dir)/\(name)", encoding: .utf8)
        }
        return out
    }
}
