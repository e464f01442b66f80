import Foundation
import Testing
@testable import VMCtlSupport
@testable import Images
@testable import Machines
@testable import Clusters
@testable import Media

@Suite("Image paths: recipe files stay in the image root, image names and hashes stay in the store")
struct ImagePathTests {
    /// A scratch tree with Debian's absolute `var/run -> /run`, relative links, a link that
    /// climbs far above the root, a link to a host directory, and a loop; plus a host
    /// directory outside it that must stay untouched.
    static func makeTree() throws -> (root: String, outside: String, base: String) {
        let fm = FileManager.default
        let base = fm.temporaryDirectory.appendingPathComponent("vmctl-rootpath-\(UUID().uuidString)").path
        let root = "\(base)/root", outside = "\(base)/outside"
        for d in ["\(root)/etc", "\(root)/usr/lib", "\(root)/run", outside] {
            try fm.createDirectory(atPath: d, withIntermediateDirectories: true)
        }
        try fm.createDirectory(atPath: "\(root)/var", withIntermediateDirectories: true)
        try fm.createSymbolicLink(atPath: "\(root)/var/run", withDestinationPath: "/run")
        try fm.createSymbolicLink(atPath: "\(root)/lib", withDestinationPath: "usr/lib")
        try fm.createSymbolicLink(atPath: "\(root)/etc/alt", withDestinationPath: "../usr/lib")
        try fm.createSymbolicLink(atPath: "\(root)/up", withDestinationPath: "../../../../../../..\(outside)")
        try fm.createSymbolicLink(atPath: "\(root)/host", withDestinationPath: outside)
        try fm.createSymbolicLink(atPath: "\(root)/loop1", withDestinationPath: "loop2")
        try fm.createSymbolicLink(atPath: "\(root)/loop2", withDestinationPath: "/loop1")
        try "secret\n".write(toFile: "\(outside)/victim", atomically: false, encoding: .utf8)
        try "node\n".write(toFile: "\(root)/etc/hostname", atomically: false, encoding: .utf8)
        try fm.createSymbolicLink(atPath: "\(root)/etc/victim", withDestinationPath: "\(outside)/victim")
        return (root, outside, base)
    }

    static func content(_ path: String) -> String? { try? String(contentsOfFile: path, encoding: .utf8) }

    @Test("writes through absolute and relative links land inside the tree; nothing outside is touched")
    func placeInsideRoot() throws {
        let (root, outside, base) = try Self.makeTree()
        defer { try? FileManager.default.removeItem(atPath: base) }
        let marker = "vmctl-rootpath-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: "/run/\(marker)") }  // only there if the test fails
        let outsideBefore = try FileManager.default.contentsOfDirectory(atPath: outside).sorted()

        let old = umask(0o077)
        defer { umask(old) }
        try CustomizeStage.place(.init(path: "/var/run/\(marker)/flag", content: "a", mode: "0640"), in: root)
        try CustomizeStage.place(.init(path: "/lib/app/one", content: "b"), in: root)
        try CustomizeStage.place(.init(path: "/etc/alt/two", content: "c"), in: root)
        try CustomizeStage.place(.init(path: "/up/three", content: "d"), in: root)
        try CustomizeStage.place(.init(path: "/host/four", content: "e"), in: root)
        try CustomizeStage.place(.init(path: "/etc/victim", content: "replaced"), in: root)
        umask(old)

        // /var/run -> /run is followed inside the root, never to the host's /run.
        #expect(!FileManager.default.fileExists(atPath: "/run/\(marker)"))
        #expect(Self.content("\(root)/run/\(marker)/flag") == "a")
        #expect(Self.content("\(root)/usr/lib/app/one") == "b")
        #expect(Self.content("\(root)/usr/lib/two") == "c")
        // `..` stops at the root; absolute targets start again at the root.
        #expect(Self.content("\(root)\(outside)/three") == "d")
        #expect(Self.content("\(root)\(outside)/four") == "e")
        // The last component, a link, is replaced rather than followed.
        var st = stat()
        #expect(lstat("\(root)/etc/victim", &st) == 0 && st.st_mode & S_IFMT == S_IFREG)
        #expect(Self.content("\(root)/etc/victim") == "replaced")
        #expect(Self.content("\(outside)/victim") == "secret\n")
        #expect(try FileManager.default.contentsOfDirectory(atPath: outside).sorted() == outsideBefore)
        // Modes: the recipe's for the file, 0755 for made directories whatever the umask.
        #expect(stat("\(root)/run/\(marker)/flag", &st) == 0 && st.st_mode & 0o7777 == 0o640)
        #expect(stat("\(root)/run/\(marker)", &st) == 0 && st.st_mode & 0o7777 == 0o755)
        #expect(stat("\(root)/usr/lib/app/one", &st) == 0 && st.st_mode & 0o7777 == 0o644)
        // The links themselves are still there.
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: "\(root)/var/run") == "/run")
    }

    @Test("fetched files take the same path; a symlink loop, a file in the way and a directory as target are refused")
    func copyAndLoops() throws {
        let (root, _, base) = try Self.makeTree()
        defer { try? FileManager.default.removeItem(atPath: base) }
        let src = "\(base)/download"
        try Data(repeating: 7, count: 3 << 20).write(to: URL(fileURLWithPath: src))
        let dest = try RootPath.copy(src, to: "/var/run/bin/tool", in: root, mode: 0o755)
        #expect(dest == "\(root)/run/bin/tool")
        #expect(FileManager.default.contents(atPath: dest) == Data(repeating: 7, count: 3 << 20))
        #expect(throws: VMCtlError.self) { try RootPath.write(Data("x".utf8), to: "/loop1/x", in: root, mode: 0o644) }
        #expect(throws: VMCtlError.self) { try RootPath.write(Data("x".utf8), to: "/etc/hostname/x", in: root, mode: 0o644) }
        #expect(throws: VMCtlError.self) { try RootPath.write(Data("x".utf8), to: "/etc", in: root, mode: 0o644) }
        #expect(throws: VMCtlError.self) { try RootPath.write(Data("x".utf8), to: "/", in: root, mode: 0o644) }
    }

    @Test("recipe validation refuses '..' in file and fetch paths, with a usage error")
    func validateDotDot() throws {
        let sha = String(repeating: "a", count: 64)
        var r = Recipe(name: "t")
        r.files = [.init(path: "/etc/../../run/x", content: "x")]
        #expect { try r.validate() } throws: { e in
            (e as? VMCtlError)?.exitCode == 2 && "\(e)".contains("'..'") && "\(e)".contains("/etc/../../run/x")
        }
        r.files = [.init(path: "/etc/..", content: "x")]
        #expect(throws: VMCtlError.self) { try r.validate() }
        r.files = [.init(path: "/etc/", content: "x")]
        #expect(throws: VMCtlError.self) { try r.validate() }
        r.files = [.init(path: "/etc/a..b/c.conf", content: "x")]
        #expect(throws: Never.self) { try r.validate() }
        r.files = nil
        r.fetch = [.init(url: "https://example.org/k3s", sha256: sha, path: "/usr/local/bin/../../../k3s")]
        #expect { try r.validate() } throws: { e in (e as? VMCtlError)?.exitCode == 2 && "\(e)".contains("'..'") }
        r.fetch = [.init(url: "https://example.org/k3s", sha256: sha, path: "/usr/local/bin/k3s")]
        #expect(throws: Never.self) { try r.validate() }
        var h = Recipe.Hardware()
        h.files = [.init(path: "/../x", content: "x")]
        r.hardware = h
        #expect(throws: VMCtlError.self) { try r.validate() }
    }

    @Test("image names and hashes are checked before they become paths in the store")
    func storeNames() throws {
        let state = StateDir(root: FileManager.default.temporaryDirectory.appendingPathComponent("vmctl-store-\(UUID())").path)
        defer { try? FileManager.default.removeItem(atPath: state.root) }
        let store = ImageStore(state: state)
        for bad in ["../x", "a/b", "", "..", ".", "../../etc/passwd", "UPPER", "-x"] {
            #expect { try store.image(named: bad) } throws: { e in
                (e as? VMCtlError)?.exitCode == 2 && "\(e)".hasPrefix("image name '\(bad)' is not valid:") && !"\(e)".contains("\n")
            }
            #expect(throws: VMCtlError.self) { try store.find(bad) }
            #expect(throws: VMCtlError.self) { try store.remove(bad, usedBy: []) }
        }
        for good in ["debian-12", "debian-12-hw", "cluster-os-node", "cluster-os-node-hw", "k3s.v1"] {
            #expect(throws: Never.self) { try ImageStore.checkName(good) }
            #expect { try store.image(named: good) } throws: { e in "\(e)".contains("is not built") }
            #expect(try store.find(good) == nil)
        }
        let hash = String(repeating: "0123456789abcdef", count: 4)
        #expect(try store.image(hash: hash) == nil)
        for bad in ["../x", String(hash.dropLast()), hash.uppercased(), hash + "0", "../" + String(hash.dropFirst(3)), ""] {
            #expect { try store.image(hash: bad) } throws: { e in (e as? VMCtlError)?.exitCode == 2 && "\(e)".contains("64 lower-case hex") }
        }
    }
}
