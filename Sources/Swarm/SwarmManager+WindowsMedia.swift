import Foundation
import VMCtlSupport
import Clusters

/// case02's Windows media: the ISOs a user supplies, copied to the runner's node.
extension SwarmManager {
    /// Windows media for case02: both files must be readable before anything happens.
    public struct WindowsMedia: Sendable {
        public var iso: String
        public var virtioISO: String

        /// From `--iso`/`--virtio-iso`, else WINDOWS_ISO/VIRTIO_ISO; one error naming every
        /// missing piece (exit 2).
        public static func resolve(iso: String?, virtioISO: String?, environment: [String: String]) throws -> WindowsMedia {
            let a = iso ?? environment["WINDOWS_ISO"].flatMap { $0.isEmpty ? nil : $0 }
            let b = virtioISO ?? environment["VIRTIO_ISO"].flatMap { $0.isEmpty ? nil : $0 }
            var missing: [String] = []
            func check(_ path: String?, _ what: String) {
                guard let path else { missing.append("\(what): not given"); return }
                var dir: ObjCBool = false
                if !FileManager.default.fileExists(atPath: path, isDirectory: &dir) || dir.boolValue || !FileManager.default.isReadableFile(atPath: path) {
                    missing.append("\(what): \(path) is not a readable file")
                }
            }
            check(a, "the Windows installation ISO (--iso PATH or WINDOWS_ISO)")
            check(b, "the virtio-win drivers ISO (--virtio-iso PATH or VIRTIO_ISO)")
            guard missing.isEmpty, let a, let b else {
                throw VMCtlError.usage("case02 needs media vmctl cannot ship; nothing was deployed:\n  " + missing.joined(separator: "\n  "))
            }
            return WindowsMedia(iso: a, virtioISO: b)
        }
    }

    /// The media on the runner's node, at /var/lib/vmrunner/media (copied unless the same size is there).
    func copyMedia(_ s: ClusterState, _ media: WindowsMedia, to node: String, events: @Sendable (String) -> Void) async throws {
        try await run(s, "sudo install -d -m 0755 -o \"$(id -u)\" /var/lib/vmrunner/media", on: node)
        for (path, target) in [(media.iso, "windows.iso"), (media.virtioISO, "virtio-win.iso")] {
            let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? -1
            let there = try await run(s, "stat -c %s /var/lib/vmrunner/media/\(target) 2>/dev/null || echo -1", on: node)
            if Int(there.trimmingCharacters(in: .whitespacesAndNewlines)) == size { continue }
            events("copying \(path) to \(node):/var/lib/vmrunner/media/\(target)")
            try await clusters.copy(name, from: path, to: "\(node):/var/lib/vmrunner/media/\(target)", mode: 0o644)
        }
    }
}
