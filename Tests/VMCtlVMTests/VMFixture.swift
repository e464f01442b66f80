import Foundation
import Testing
@testable import VMCtlSupport
@testable import Images
@testable import Machines
@testable import Clusters
@testable import Media

/// Runs the real `vmctl` binary against a state dir of the tests' own, and finds what it
/// left behind. Every test tears down its clusters through `withCluster`, even on failure.
enum VMFixture {
    /// `VMCTL_TEST_HOME` (`make test` makes one with `mktemp -d` and removes it), else a new
    /// private directory from `mkdtemp` for this test process: never a predictable path.
    static let home: String = {
        if let h = ProcessInfo.processInfo.environment["VMCTL_TEST_HOME"], !h.isEmpty { return h }
        var template = Array("/var/tmp/vmctl-tests.XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { fatalError("mkdtemp: \(String(cString: strerror(errno)))") }
        return String(cString: made)
    }()
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path
    static var binary: String {
        let me = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var dir = me.deletingLastPathComponent()
        // Inside the .xctest bundle on some layouts.
        while !FileManager.default.fileExists(atPath: dir.appendingPathComponent("vmctl").path) && dir.path != "/" {
            dir.deleteLastPathComponent()
        }
        return dir.appendingPathComponent("vmctl").path
    }
    static var state: StateDir { StateDir(root: home) }

    static var environment: [String: String] {
        var env = ProcessInfo.processInfo.environment
        env["VMCTL_HOME"] = home
        env["VMCTL_RECIPES"] = "\(repo)/images"
        env["VMCTL_BINARY"] = binary
        return env
    }

    struct Run { var status: Int32; var out: String; var err: String }

    /// Runs vmctl with `args` and waits; inside network namespace `namespace` (`ip netns exec`) if given.
    @discardableResult
    static func vmctl(_ args: [String], env extra: [String: String] = [:], namespace: String? = nil) async throws -> Run {
        try await Task.detached {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: namespace == nil ? binary : "/usr/sbin/ip")
            p.arguments = namespace.map { ["netns", "exec", $0, binary] + args } ?? args
            p.environment = environment.merging(extra) { $1 }
            let out = Pipe(), err = Pipe()
            p.standardOutput = out
            p.standardError = err
            p.standardInput = FileHandle.nullDevice
            try p.run()
            let errData = ErrBox()
            let t = Thread { errData.data = err.fileHandleForReading.readDataToEndOfFile() }
            t.start()
            let o = out.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            while errData.data == nil { usleep(1000) }
            return Run(status: p.terminationStatus, out: String(decoding: o, as: UTF8.self),
                       err: String(decoding: errData.data!, as: UTF8.self))
        }.value
    }

    final class ErrBox: @unchecked Sendable { var data: Data? }

    /// Builds (or reuses) debian-12 once per test process.
    static func ensureImage() async throws {
        let r = try await vmctl(["image", "build", "debian-12"])
        try #require(r.status == 0, "image build failed: \(r.out)\(r.err)")
    }

    /// Runs `body` with cluster `name` cleaned before and after, whatever happens.
    static func withCluster(_ name: String, _ body: () async throws -> Void) async throws {
        _ = try? await vmctl(["cluster", "clean", "--name", name])
        do {
            try await body()
        } catch {
            _ = try? await vmctl(["cluster", "clean", "--name", name])
            throw error
        }
        _ = try? await vmctl(["cluster", "clean", "--name", name])
    }

    /// Starts `vmctl cluster up` in the background and returns once every node is booting
    /// (QEMU running; warm nodes: being restored), so a test can interrupt it mid-boot.
    static func upUntilBooting(_ name: String, nodes: Int, stderr: Any) async throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = ["cluster", "up", String(nodes), "--name", name, "--memory", "1G"]
        p.environment = environment
        p.standardOutput = FileHandle.nullDevice
        p.standardError = stderr
        try p.run()
        let stateFile = ClusterPaths(state: state, name: name).stateFile
        let deadline = Date().addingTimeInterval(120)
        while Date() < deadline {
            // Every node booting (or being restored) and its QEMU running.
            if let s = try? AtomicFile.readJSON(ClusterState.self, from: stateFile),
               s.nodes.allSatisfy({ $0.phase == .booting }),
               leftovers(cluster: name).filter({ $0.contains("qemu-system") }).count >= nodes { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        try await Task.sleep(for: .seconds(1))
        return p
    }

    /// Processes of ours still alive for `cluster`: QEMU guests and the switch.
    static func leftovers(cluster: String) -> [String] {
        let pids = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return pids.compactMap { pid -> String? in
            guard Int(pid) != nil, let raw = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return nil }
            let cmd = String(decoding: raw.map { $0 == 0 ? 32 : $0 }, as: UTF8.self)
            let qemu = cmd.contains("qemu-system") && cmd.contains("guest=\(cluster)-node")
            let sw = cmd.contains("switch-daemon") && cmd.contains("\(home)/clusters/\(cluster)/")
            return qemu || sw ? "\(pid): \(cmd.prefix(120))" : nil
        }
    }

    /// QEMU processes of `image usb --verify` guests still running.
    static func leftoverVerifyGuests() -> [String] {
        let pids = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return pids.compactMap { pid -> String? in
            guard Int(pid) != nil, let raw = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return nil }
            let cmd = String(decoding: raw.map { $0 == 0 ? 32 : $0 }, as: UTF8.self)
            return cmd.contains("qemu-system") && cmd.contains("guest=vmctl-verify-") ? "\(pid): \(cmd.prefix(120))" : nil
        }
    }

    /// Runs a host tool and returns its standard output.
    static func run(_ tool: String, _ args: [String]) async throws -> String {
        try await Task.detached {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: tool)
            p.arguments = args
            let out = Pipe()
            p.standardOutput = out
            p.standardError = out
            try p.run()
            let data = out.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            return String(decoding: data, as: UTF8.self)
        }.value
    }
}
