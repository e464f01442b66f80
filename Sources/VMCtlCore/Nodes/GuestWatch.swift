import Blocking
import Foundation
import Libvirt
import SSH

/// Watches one running guest: its serial log for a marker line (inotify, no polling), its
/// domain for an early stop, and `vmctl-failed` lines the guest prints about itself.
public struct GuestWatch: Sendable {
    public let connection: Connection
    public let domainName: String
    /// The name used in errors (`node1`, `usb-secure`).
    public let node: String
    public let serialLog: String

    public init(connection: Connection, domainName: String, node: String, serialLog: String) {
        self.connection = connection; self.domainName = domainName; self.node = node; self.serialLog = serialLog
    }

    /// Returns the first line containing `marker` after `offset`; throws a `NodeFailure`
    /// with the log's tail when the guest stops, complains or runs out of time.
    public func waitFor(_ marker: String, from offset: UInt64, deadline: ContinuousClock.Instant,
                        onLine: @escaping @Sendable (String) -> Void = { _ in }) async throws -> String {
        let conn = connection
        let name = domainName
        let log = serialLog
        let guestSaid = GuestComplaint()
        let outcome = try await onOwnThreadCancellable("watch.\(node)") { flag in
            SerialLogWatcher.wait(path: log, from: offset, marker: marker, deadline: deadline, cancel: flag, stopIf: {
                if let complaint = guestSaid.line { return "the guest reported: \(complaint)" }
                guard let d = try? conn.domain(named: name) else { return "domain is gone" }
                defer { d.close() }
                return (try? d.isActive()) == false ? "the guest stopped" : nil
            }, onLine: { line in
                onLine(line)
                if line.contains("vmctl-failed") { guestSaid.line = line }
            })
        }
        switch outcome {
        case .found(let line):
            return line
        case .timedOut:
            throw NodeFailure(node: node, reason: "no '\(marker)' line on its serial console in time",
                              serialTail: SerialLogWatcher.tail(log))
        case .stopped(let why):
            throw NodeFailure(node: node, reason: why, serialTail: SerialLogWatcher.tail(log))
        case .cancelled:
            throw CancellationError()
        }
    }

    /// Waits until the domain is off (a guest that powers itself off).
    public func waitStopped(deadline: ContinuousClock.Instant) async throws {
        while ContinuousClock.now < deadline {
            try Task.checkCancellation()
            let conn = connection, name = domainName
            let active = try await onOwnThread("state.\(node)") { () -> Bool in
                guard let d = try conn.domain(named: name) else { return false }
                defer { d.close() }
                return try d.isActive()
            }
            if !active { return }
            try await Task.sleep(for: .milliseconds(500))
        }
        throw NodeFailure(node: node, reason: "did not power off in time", serialTail: SerialLogWatcher.tail(serialLog))
    }

    /// One authenticated command over libssh2 with the pinned key. sshd has announced
    /// itself already, so only a short, bounded retry covers the forwarder's first accept.
    public static func verifySSH(_ target: SSHTarget, node: String, serialLog: String,
                                 deadline: ContinuousClock.Instant) async throws {
        var lastError: Error?
        for attempt in 0..<20 {
            if ContinuousClock.now > deadline { break }
            do {
                let r = try await SSHSession.run(target, "true", timeout: .seconds(15))
                if r.status == 0 { return }
                lastError = VMCtlError("`true` exited \(r.status): \(r.stderr)")
            } catch let e as SSHError where e.kind == .hostKeyMismatch || e.kind == .auth {
                throw NodeFailure(node: node, reason: e.description, serialTail: "")
            } catch {
                lastError = error
            }
            try await Task.sleep(for: .milliseconds(200 * (attempt + 1)))
        }
        throw NodeFailure(node: node, reason: "SSH did not answer: \(lastError.map { "\($0)" } ?? "timed out")",
                          serialTail: SerialLogWatcher.tail(serialLog))
    }
}

/// A failure line the guest printed, handed from the log reader to its stop check.
final class GuestComplaint: @unchecked Sendable {
    private let lock = NSLock()
    private var value: String?
    var line: String? {
        get { lock.lock(); defer { lock.unlock() }; return value }
        set { lock.lock(); value = newValue; lock.unlock() }
    }
}
