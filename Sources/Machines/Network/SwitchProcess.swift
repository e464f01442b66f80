import Blocking
import Foundation
import VMCtlSupport

/// Starts and stops a cluster's `FrameSwitch`, run as `vmctl switch-daemon` detached from
/// the terminal so the segment outlives the command that made it.
public struct SwitchProcess: Sendable {
    public let socketPath: String
    public let pidFile: String
    public let executable: String
    /// The cluster's `nodes` directory, whose serial logs the switch keeps under their cap.
    public let logsDirectory: String?

    public init(socketPath: String, pidFile: String, executable: String, logsDirectory: String? = nil) {
        self.socketPath = socketPath; self.pidFile = pidFile; self.executable = executable
        self.logsDirectory = logsDirectory
    }

    /// The vmctl binary: `VMCTL_BINARY`, this process if it is vmctl, else a `vmctl` beside it.
    public static func defaultExecutable() -> String {
        if let b = ProcessInfo.processInfo.environment["VMCTL_BINARY"], !b.isEmpty { return b }
        let me = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        if (me as NSString).lastPathComponent == "vmctl" { return me }
        return ((me as NSString).deletingLastPathComponent as NSString).appendingPathComponent("vmctl")
    }

    /// The running switch's pid, if its pid file names a live switch for this socket.
    public func runningPid() -> pid_t? {
        guard let text = try? String(contentsOfFile: pidFile, encoding: .utf8),
              let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 0,
              let cmd = try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8) else { return nil }
        // Only a process that is really this cluster's switch is ever signalled.
        return cmd.contains("switch-daemon") && cmd.contains(socketPath) ? pid : nil
    }

    /// When the running switch started (its pid file's time), or nil when none runs.
    /// Nodes booted before it are cut off: QEMU's stream netdev does not reconnect.
    public func startedAt() -> Date? {
        guard runningPid() != nil else { return nil }
        return (try? FileManager.default.attributesOfItem(atPath: pidFile))?[.modificationDate] as? Date
    }

    /// Starts the switch unless it runs already, and waits (at most `timeout`) until it
    /// listens: its pid file names it and its socket exists. The wait wakes when they appear
    /// (inotify) or when the daemon exits, on a thread of its own.
    public func start(timeout: Duration = .seconds(10)) async throws {
        if runningPid() != nil { return }
        try? FileManager.default.removeItem(atPath: pidFile)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = ["switch-daemon", "--socket", socketPath, "--pidfile", pidFile] + (logsDirectory.map { ["--logs", $0] } ?? [])
        p.standardInput = FileHandle.nullDevice
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        let exit = ProcessExit(p)
        do { try p.run() } catch {
            throw VMCtlError("cannot start the cluster switch (\(executable)): \(error); set VMCTL_BINARY to the vmctl binary")
        }
        let deadline = ContinuousClock.now + timeout
        do {
            try await onOwnThread("switch.start") { [self] in
                try SocketWait.wait(for: socketPath, also: [(pidFile as NSString).deletingLastPathComponent],
                                    deadline: deadline, exit: exit) {
                    FileManager.default.fileExists(atPath: socketPath) && runningPid() != nil
                }
            }
        } catch let failure as SocketWait.Failure {
            if p.isRunning { kill(p.processIdentifier, SIGKILL) }
            throw VMCtlError("the cluster switch did not start listening on \(socketPath): \(failure)")
        } catch {
            if p.isRunning { kill(p.processIdentifier, SIGKILL) }
            throw error
        }
    }

    /// Stops the switch if it runs. Returns whether one was stopped.
    @discardableResult
    public func stop() -> Bool {
        guard let pid = runningPid() else { try? FileManager.default.removeItem(atPath: pidFile); return false }
        kill(pid, SIGTERM)
        for _ in 0..<200 where kill(pid, 0) == 0 { usleep(10_000) }
        if kill(pid, 0) == 0 { kill(pid, SIGKILL) }
        try? FileManager.default.removeItem(atPath: pidFile)
        unlink(socketPath)
        return true
    }
}
