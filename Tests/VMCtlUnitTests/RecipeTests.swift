import Foundation
import Blocking
import Testing
@testable import VMCtlSupport
@testable import Images
@testable import Machines
@testable import Clusters
@testable import Media

@Suite("Recipes: parsing, layering, stage hashing")
struct RecipeTests {
    static let good = """
        name: demo
        packages: [openssh-server, sudo]
        files:
          - path: /etc/motd
            content: hello
        commands:
          - echo hi
        checks:
          - name: pid1
            run: cat /proc/1/comm
            expect: systemd
        """

    @Test("the recipes known are the checkout's recipes, not the cloud image catalog beside them; an unknown name lists them")
    func knownRecipes() throws {
        let store = RecipeStore.locate()
        let names = store.names()
        #expect(names.contains("debian-12") && names.contains("cluster-os-node") && !names.contains("catalog"), "\(names)")
        #expect(throws: VMCtlError.self) { try store.load("no-such-recipe") }
        do { _ = try store.load("no-such-recipe") } catch {
            #expect("\(error)".contains("(known: \(names.joined(separator: ", ")))"), "\(error)")
        }
    }

    @Test("a valid recipe parses with defaults filled in")
    func parses() throws {
        let r = try RecipeStore.parse(Self.good, file: "demo.yaml")
        #expect(r.name == "demo")
        #expect(r.packages == ["openssh-server", "sudo"])
        #expect(r.resolvedSuite == "bookworm")
        #expect(r.resolvedKernel == "linux-image-cloud-amd64")
        #expect(r.resolvedUser == "vmctl")
        #expect(r.checks?.first?.expect == "systemd")
        try r.validate()
    }

    @Test("malformed YAML names the line")
    func malformed() {
        let bad = "name: demo\npackages: [a, b\nfiles:\n  - path: /x\n"
        #expect {
            try RecipeStore.parse(bad, file: "demo.yaml")
        } throws: { e in
            let m = "\(e)"
            return m.contains("demo.yaml") && m.contains("line ") && m.contains("malformed YAML")
        }
    }

    @Test("a wrongly typed field names the field and its line")
    func wrongType() {
        let bad = "name: demo\npackages:\n  - a\nfiles:\n  - path: [not, a, string]\n"
        #expect {
            try RecipeStore.parse(bad, file: "demo.yaml")
        } throws: { e in "\(e)".contains("line 5") && "\(e)".contains("files[0].path") }
        #expect {
            try RecipeStore.parse("packages: [a]\n", file: "x.yaml")
        } throws: { e in "\(e)".contains("missing field 'name'") }
    }

    @Test("validation refuses bad names, relative paths, bad modes and sizes")
    func validation() {
        var r = Recipe(name: "Bad_Name")
        #expect(throws: VMCtlError.self) { try r.validate() }
        r = Recipe(name: "ok")
        r.files = [.init(path: "etc/x", content: "a")]
        #expect(throws: VMCtlError.self) { try r.validate() }
        r.files = [.init(path: "/etc/x", content: "a", mode: "999")]
        #expect(throws: VMCtlError.self) { try r.validate() }
        r.files = nil
        r.rootSize = "lots"
        #expect(throws: VMCtlError.self) { try r.validate() }
    }

    @Test("layering appends lists and lets the child override scalars")
    func layering() {
        var base = Recipe(name: "base")
        base.packages = ["a"]
        base.user = "vmctl"
        base.checks = [.init(name: "one", run: "true")]
        var child = Recipe(name: "child")
        child.base = "base"
        child.packages = ["b"]
        child.kernel = "linux-image-amd64"
        child.checks = [.init(name: "two", run: "true")]
        let r = child.layered(over: base)
        #expect(r.name == "child")
        #expect(r.packages == ["a", "b"])
        #expect(r.user == "vmctl")
        #expect(r.resolvedKernel == "linux-image-amd64")
        #expect(r.checks?.map(\.name) == ["one", "two"])
    }

    @Test("changing a file redoes only the later stages; changing packages redoes all")
    func stageKeys() throws {
        let r = try RecipeStore.parse(Self.good, file: "demo.yaml")
        let k = ImageBuilder.keys(for: r, mirror: "http://deb.debian.org/debian")
        var fileChanged = r
        fileChanged.files = [.init(path: "/etc/motd", content: "changed")]
        let k2 = ImageBuilder.keys(for: fileChanged, mirror: "http://deb.debian.org/debian")
        #expect(k2.rootfs == k.rootfs)
        #expect(k2.customize != k.customize)
        #expect(k2.disk != k.disk)
        var pkgChanged = r
        pkgChanged.packages = ["openssh-server", "sudo", "curl"]
        let k3 = ImageBuilder.keys(for: pkgChanged, mirror: "http://deb.debian.org/debian")
        #expect(k3.rootfs != k.rootfs && k3.customize != k.customize)
        // Package order does not matter; the mirror does.
        var reordered = r
        reordered.packages = ["sudo", "openssh-server"]
        #expect(ImageBuilder.keys(for: reordered, mirror: "http://deb.debian.org/debian") == k)
        #expect(ImageBuilder.keys(for: r, mirror: "http://other/debian").rootfs != k.rootfs)
    }

    @Test("the store loads the repo's debian-12 recipe and refuses unknown names with the list")
    func store() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("images").path
        let store = RecipeStore(directory: dir)
        let r = try store.load("debian-12")
        #expect(r.packages?.contains("openssh-server") == true)
        #expect(r.packages?.contains("cloud-init") == true)
        #expect(r.resolvedKernel == "linux-image-cloud-amd64")
        #expect {
            try store.load("no-such-image")
        } throws: { e in "\(e)".contains("no recipe 'no-such-image'") && "\(e)".contains("debian-12") }
    }

    @Test("sizes parse and format")
    func sizes() {
        #expect(ByteSize.parse("2G") == 2 << 30)
        #expect(ByteSize.parse("1536M") == 1536 << 20)
        #expect(ByteSize.parse("20GiB") == 20 << 30)
        #expect(ByteSize.parse("0G") == nil)
        #expect(ByteSize.parse("lots") == nil)
        #expect(ByteSize.format(2 << 30) == "2.0 GiB")
    }
}

@Suite("Fetched release binaries")
struct FetchTests {
    @Test("a download is verified by SHA-256, cached by checksum, and refused when it does not match")
    func verifyAndCache() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fetch-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let payload = Data("#!/bin/sh\necho k3s stand-in\n".utf8)
        try payload.write(to: URL(fileURLWithPath: "\(dir)/release.bin"))
        // A real HTTP server on 127.0.0.1, so the download path is the one a release URL takes.
        var port = 0
        for p in 28_000..<28_100 where Allocation.portIsFree(p) { port = p; break }
        let server = Process()
        server.executableURL = URL(fileURLWithPath: try Command.require("python3"))
        server.arguments = ["-m", "http.server", String(port), "--bind", "127.0.0.1", "--directory", dir]
        server.standardOutput = FileHandle.nullDevice
        server.standardError = FileHandle.nullDevice
        try server.run()
        defer { kill(server.processIdentifier, SIGKILL); server.waitUntilExit() }
        for _ in 0..<100 where Allocation.portIsFree(port) { try await Task.sleep(for: .milliseconds(50)) }
        let url = "http://127.0.0.1:\(port)/release.bin"
        let sum = "1d4b1b4d1b8b7c2c9e8f0a3d3c4f5e6a7b8c9d0e1f2a3b4c5d6e7f8091a2b3c4"   // wrong on purpose
        let dl = Downloader(cache: "\(dir)/cache")
        await #expect {
            _ = try await dl.fetch(.init(url: url, sha256: sum, path: "/usr/local/bin/k3s"))
        } throws: { e in "\(e)".contains("checksum mismatch") }
        #expect(!FileManager.default.fileExists(atPath: "\(dir)/cache/\(sum)"))

        let real = try Command("sha256sum", ["\(dir)/release.bin"]).checked().split(separator: " ")[0]
        let path = try await dl.fetch(.init(url: url, sha256: String(real), path: "/usr/local/bin/k3s"))
        #expect(FileManager.default.contents(atPath: path) == payload)
        // Cached: the source can go away.
        try FileManager.default.removeItem(atPath: "\(dir)/release.bin")
        #expect(try await dl.fetch(.init(url: url, sha256: String(real), path: "/x")) == path)
        let missing = try await dl.fetch(.init(url: "http://127.0.0.1:\(port)/gone", sha256: String(real), path: "/x"))
        #expect(missing == path)   // same checksum: served from the cache, never fetched
    }

    @Test("fetch entries need a 64-hex checksum, a URL and an absolute path")
    func validation() {
        var r = Recipe(name: "k")
        r.fetch = [.init(url: "https://example.invalid/k3s", sha256: "abc", path: "/usr/local/bin/k3s")]
        #expect(throws: VMCtlError.self) { try r.validate() }
        r.fetch = [.init(url: "https://example.invalid/k3s", sha256: String(repeating: "a", count: 64), path: "usr/bin/k3s")]
        #expect(throws: VMCtlError.self) { try r.validate() }
        r.fetch = [.init(url: "https://example.invalid/k3s", sha256: String(repeating: "a", count: 64), path: "/usr/local/bin/k3s")]
        #expect(throws: Never.self) { try r.validate() }
    }
}
