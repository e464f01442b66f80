import Foundation
import VMCtlSupport
import Clusters
import SSH

/// VM runners: the runner key on every node, the runner image, its memory, its guest.
extension SwarmManager {
    /// Where the swarm's runner key lives on the host (made once per swarm) and on every node.
    public var runnerKey: KeyPair { KeyPair(privateKeyPath: "\(ClusterPaths(state: clusters.state, name: name).directory)/vmrunner_ed25519") }
    public static let nodeKeyDirectory = "/var/lib/vmrunner/keys"

    /// The runner's key on every node (`/var/lib/vmrunner/keys/id_ed25519`, 0600, and `.pub`),
    /// made for this swarm on first use; and the runner image on `node`, imported from the
    /// node's own files (rootfs.tar, assembled at image build).
    func prepareRunner(_ s: ClusterState, on node: String, events: @Sendable (String) -> Void) async throws {
        let key = runnerKey
        if !FileManager.default.fileExists(atPath: key.privateKeyPath) {
            try? FileManager.default.removeItem(atPath: key.publicKeyPath)
            _ = try await KeyPair.generate(at: key.privateKeyPath, comment: "vmrunner@\(name)")
        }
        let priv = Data(try key.privateKey().utf8), pub = Data((try key.publicKeyLine() + "\n").utf8)
        let dir = Self.nodeKeyDirectory
        let all = try clusters.select(s, [])
        for (file, mode, data) in [("id_ed25519", "0600", priv), ("id_ed25519.pub", "0644", pub)] {
            // Every node at once; each file written beside and renamed into place.
            let cmd = "sudo install -d -m 0755 \(dir) && sudo install -m \(mode) /dev/stdin \(dir)/\(file).new && sudo mv \(dir)/\(file).new \(dir)/\(file)"
            for r in await clusters.exec(s, nodes: all, command: cmd, input: data, timeout: .seconds(120)) where r.error != nil || r.status != 0 {
                throw VMCtlError("\(r.node): cannot install the runner key at \(dir)/\(file): \(r.error.map { "\($0)" } ?? r.stderr)")
            }
        }
        events("runner key installed on every node at \(dir)/id_ed25519 (mounted at /vm/keys)")
        let imported = try await run(s, "sudo /usr/local/lib/vmctl-runner/import", on: node, timeout: .seconds(600))
        if !imported.isEmpty { events("\(node): \(imported.trimmingCharacters(in: .whitespacesAndNewlines))") }
    }

    /// What a node keeps beside the runner's guest: QEMU itself, Docker, the node's own system.
    public static let runnerOverheadMiB = 512

    /// The runner's guest memory in MiB: RUNNER_MEMORY, else the case's default (192M for the
    /// Linux guest, 4G for Windows), as QEMU's `-m` reads it.
    public static func runnerMemoryMiB(_ c: Case, environment: [String: String]) throws -> Int {
        let text = environment["RUNNER_MEMORY"].flatMap { $0.isEmpty ? nil : $0 } ?? (c == .case02 ? "4G" : "192M")
        guard let bytes = ByteSize.parse(text), bytes >= 64 << 20, bytes <= 1 << 40 else {
            throw VMCtlError.usage("RUNNER_MEMORY '\(text)' is not a size from 64M up, like 192M or 4G")
        }
        return Int(bytes >> 20)
    }

    /// The case's running runner container.
    func runnerContainer(_ c: Case, runner: String) async throws -> Container {
        guard let x = try await containers(c).first(where: { $0.service == "\(c.rawValue)_\(runner)" }) else {
            throw VMCtlError(.notFound, message: "\(c.rawValue): no running \(runner) container")
        }
        return x
    }

    /// Waits until the runner's guest says its SSH server runs (its serial console, in the
    /// container's log), saying how the guest is accelerated.
    func waitGuest(_ s: ClusterState, _ c: Case, runner: String, timeout: Duration, events: @Sendable (String) -> Void) async throws {
        let start = ContinuousClock.now
        var said = false
        var log = ""
        var x = try await runnerContainer(c, runner: runner)
        while ContinuousClock.now - start < timeout {
            if let text = try? await self.log(s, of: x) {
                log = text
                if !said, let accel = text.split(separator: "\n").first(where: { $0.hasPrefix("vmrunner: accel") }) {
                    events("\(runner) on \(x.node): \(accel.dropFirst("vmrunner: ".count))")
                    said = true
                }
                if text.contains("vmrunner-guest: ssh ready") {
                    events(String(format: "%@: its guest answers SSH (%.0f s after its task was running)", runner, (ContinuousClock.now - start).secondsDouble))
                    return
                }
            } else {
                // Found once; again only when its log cannot be read (Swarm replaced the container).
                x = try await runnerContainer(c, runner: runner)
            }
            try await Task.sleep(for: .seconds(5))
        }
        throw VMCtlError(.nodeTimeout, message: "\(c.rawValue): \(runner)'s guest did not start its SSH server within \(timeout.components.seconds) s; its console:\n"
                         + log.split(separator: "\n").suffix(15).joined(separator: "\n"))
    }
}
