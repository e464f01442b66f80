import Foundation
import Testing
@testable import VMCtlCore

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
