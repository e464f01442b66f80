import Foundation
internal import Libvirt
import VMCtlSupport

/// Copies a domain's console stream into its serial log (appending), for machines whose
/// console is captured through libvirt (`ConsoleCapture.stream`). It runs until the stream
/// ends (the guest stops) or the process exits; the log stays readable by the same watcher
/// as a log QEMU writes itself.
enum ConsolePump {
    static func start(_ stream: Libvirt.Stream, into log: String) {
        Task.detached {
            let fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
            guard fd >= 0 else { await stream.close(); return }
            defer { close(fd) }
            do {
                for try await chunk in stream.output {
                    try chunk.withUnsafeBytes { try AtomicFile.writeAll(fd, $0, path: log) }
                }
            } catch {}
            await stream.close()
        }
    }
}
