import Foundation
import Testing
@testable import Images

/// `scripts/check-imports.py`, which `make build` runs: a target may import only its direct
/// dependencies, so a module reached through another layer (Libvirt through Machines) is refused.
@Suite("layers: imports only of direct dependencies")
struct LayerCheckTests {
    static let script = RecipeStore.locate().directory + "/../scripts/check-imports.py"

    static func check(_ root: String) throws -> (status: Int32, stderr: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", script, root]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return (p.terminationStatus, text)
    }

    @Test("a package whose top layer imports a module it reaches only through the middle one is refused, naming file and module; declared, it passes")
    func transitiveImportRefused() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("vmctl-layers-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        func write(_ path: String, _ text: String) throws {
            try FileManager.default.createDirectory(atPath: (("\(root)/\(path)") as NSString).deletingLastPathComponent,
                                                    withIntermediateDirectories: true)
            try text.write(toFile: "\(root)/\(path)", atomically: true, encoding: .utf8)
        }
        func package(topDependsOnBottom: Bool) throws {
            try write("Package.swift", """
                // swift-tools-version:6.0
                import PackageDescription
                let package = Package(name: "layers", targets: [
                    .target(name: "Bottom"),
                    .target(name: "Middle", dependencies: ["Bottom"]),
                    .target(name: "Top", dependencies: ["Middle"\(topDependsOnBottom ? ", \"Bottom\"" : "")]),
                ])
                """)
        }
        try package(topDependsOnBottom: false)
        try write("Sources/Bottom/B.swift", "public struct Handle {}\n")
        try write("Sources/Middle/M.swift", "internal import Bottom\npublic struct Machine {}\n")
        try write("Sources/Top/T.swift", "import Foundation\nimport Middle\n@testable import Bottom\nlet s = \"\"\"\nimport Nothing\n\"\"\"\n")
        let refused = try Self.check(root)
        #expect(refused.status == 1, "\(refused.stderr)")
        #expect(refused.stderr.contains("Sources/Top/T.swift:3: target Top imports Bottom"), "\(refused.stderr)")
        #expect(!refused.stderr.contains("Nothing") && !refused.stderr.contains("Foundation"), "\(refused.stderr)")
        try package(topDependsOnBottom: true)
        let passed = try Self.check(root)
        #expect(passed.status == 0, "\(passed.stderr)")
    }

    @Test("vmctl's own targets import only their direct dependencies")
    func ownPackage() throws {
        let r = try Self.check(RecipeStore.locate().directory + "/..")
        #expect(r.status == 0, "\(r.stderr)")
    }
}
