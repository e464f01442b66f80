import Blocking
import Foundation
internal import Libvirt
import SSH
import VMCtlSupport

/// Watches one running guest: its serial log for a marker line (inotify, no polling), its
/// domain for an early stop, and `vmctl-failed` lines the guest prints about itself.
public struct GuestWatch: Sendable {
    let connection: Connection
    public let domainName: String
    /// The name used in errors (`node1`, `usb-secure`).
    public let node: String
    public let serialLog: String

    init(connection: Connection, domainName: String, node: String, serialLog: String) {
        self.connection = connection; self.domainName = domainName; self.node = node; self.serialLog = serialLog
    }

    /// Returns the first line containing `marker` after `offset`; throws a `NodeFailure`
    /// with the log's tail when the guest stops, complains or runs out of time, and a
    /// `BootStall` when `stall` is given and the boot makes no progress before `stall.until`.
    public func waitFor(_ marker: String, from offset: UInt64, deadline: ContinuousClock.Instant,
                        stall: BootStall.Policy? = nil,
                        onLine: @escaping @Sendable (String) -> Void = { _ in }) async throws -> String {
        let log = serialLog
        let guestSaid = GuestComplaint()
        let progress = BootProgress(policy: stall, log: log)
        let domainGone = GuestComplaint()  // why the domain stopped, once the poller below sees it
        let outcome = try await withThrowingTaskGroup(of: SerialLogWatcher.Outcome?.self) { group in
            group.addTask {
                try await onOwnThreadCancellable("watch.\(node)") { flag in
                    SerialLogWatcher.wait(path: log, from: offset, marker: marker, deadline: deadline, cancel: flag, stopIf: {
                        if let complaint = guestSaid.line { return "the guest reported: \(complaint)" }
                        if let stalled = progress.stalled() { return BootStall.prefix + stalled }
                        return domainGone.line
                    }, onLine: { line in
                        onLine(line)
                        progress.saw(line)
                        if line.contains("vmctl-failed") { guestSaid.line = line }
                    })
                }
            }
            // The domain's state comes from libvirt (async, off the pool), once a second; the
            // log watcher sees the verdict on its next wake-up (at most a second later).
            group.addTask {
                while !Task.isCancelled {
                    if let gone = await self.notRunning() { domainGone.line = gone; return nil }
                    try? await Task.sleep(for: .seconds(1))
                }
                return nil
            }
            var outcome: SerialLogWatcher.Outcome?
            for try await o in group where o != nil {
                outcome = o
                break
            }
            group.cancelAll()
            return outcome ?? .cancelled
        }
        switch outcome {
        case .found(let line):
            return line
        case .stopped(let why) where why.hasPrefix(BootStall.prefix):
            throw BootStall(node: node, reason: String(why.dropFirst(BootStall.prefix.count)),
                            lastLine: SerialLogWatcher.tail(log, lines: 1))
        case .timedOut:
            throw NodeFailure(node: node, reason: "no '\(marker)' line on its serial console in time",
                              serialTail: SerialLogWatcher.tail(log), code: .nodeTimeout)
        case .stopped(let why) where stall != nil && why == Self.stoppedReason && !progress.reachedUserspace:
            // QEMU went away before userspace started (seen once in a fresh-clone run, at 6 s):
            // like a hung boot, the node is started again on the same disk and seed.
            throw BootStall(node: node, reason: "the guest stopped before userspace started",
                            lastLine: SerialLogWatcher.tail(log, lines: 1))
        case .stopped(let why):
            throw NodeFailure(node: node, reason: why, serialTail: SerialLogWatcher.tail(log))
        case .cancelled:
            throw CancellationError()
        }
    }

    /// Why the guest counts as stopped ("domain is gone", "the guest stopped"), or nil while
    /// it runs (or libvirt cannot say).
    func notRunning() async -> String? {
        guard let d = try? await connection.domain(named: domainName) else { return "domain is gone" }
        defer { d.close() }
        return (try? await d.isActive()) == false ? Self.stoppedReason : nil
    }

    /// Why the watch ends when the domain is no longer running.
    static let stoppedReason = "the guest stopped"

    /// Waits until the domain is off (a guest that powers itself off).
    public func waitStopped(deadline: ContinuousClock.Instant) async throws {
        while ContinuousClock.now < deadline {
            try Task.checkCancellation()
            guard let d = try await connection.domain(named: domainName) else { return }
            defer { d.close() }
            if try await !d.isActive() { return }
            try await Task.sleep(for: .milliseconds(500))
        }
        throw NodeFailure(node: node, reason: "did not power off in time", serialTail: SerialLogWatcher.tail(serialLog),
                          code: .nodeTimeout)
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
                throw NodeFailure(node: node, reason: e.description, serialTail: "", code: VMCtlError.Code(of: e))
            } catch {
                lastError = error
            }
            try await Task.sleep(for: .milliseconds(200 * (attempt + 1)))
        }
        throw NodeFailure(node: node, reason: "SSH did not answer: \(lastError.map { "\($0)" } ?? "timed out")",
                          serialTail: SerialLogWatcher.tail(serialLog), code: .nodeTimeout)
    }
}

/// A boot that stopped making progress before userspace came up: no serial output for a
/// while, or no early-boot marker in time. The caller resets the node (same disk and seed).
public struct BootStall: Error, CustomStringConvertible, Sendable {
    public let node: String
    public let reason: String
    /// The last thing the guest printed: where its boot stopped.
    public let lastLine: String
    public var description: String { "\(node): \(reason)" + (lastLine.isEmpty ? "" : "; last serial line: \(lastLine)") }
    static let prefix = "stalled: "

    /// When a boot counts as stalled: before a line containing `until` appears, the log has
    /// not grown for `silence`, or `limit` has passed since the watch began.
    public struct Policy: Sendable {
        public var until: String
        public var silence: Duration
        public var limit: Duration
        public init(until: String, silence: Duration, limit: Duration) {
            self.until = until; self.silence = silence; self.limit = limit
        }

        /// vmctl's default: userspace announces itself (`vmctl-booting`) within 240 s (60 s
        /// per node booting at once, when more), and the kernel is never silent for 90 s before
        /// that, 90 s per host core's worth of nodes when more nodes than cores boot at once
        /// (10 nodes on 2 cores each get a fifth of a core: a 20 s silence alone is 100 s
        /// then). `VMCTL_BOOT_STALL` (seconds of silence; the limit is 3× it) tunes both, for
        /// tests and very loaded hosts.
        public static func standard(nodes: Int = 1, hostCores: Int = ProcessInfo.processInfo.activeProcessorCount,
                                    environment: [String: String] = ProcessInfo.processInfo.environment) -> Policy {
            let share = max(1, Double(nodes) / Double(max(hostCores, 1)))
            let silence = environment["VMCTL_BOOT_STALL"].flatMap(Double.init).map { max($0, 1) } ?? (90 * share).rounded(.up)
            let limit = environment["VMCTL_BOOT_STALL"] == nil ? Double(max(240, 60 * nodes)) : silence * 3
            return Policy(until: Readiness.bootingMarker, silence: .milliseconds(Int(silence * 1000)),
                          limit: .milliseconds(Int(limit * 1000)))
        }
    }
}

/// What vmctl saw of a stalled boot before resetting it, for the user and for a report.
public struct StallEvidence: Sendable {
    public let stall: BootStall
    /// Which reset this is (1-based).
    public let attempt: Int
    /// QEMU's `info status` (`VM status: running` for a guest spinning or halted in the kernel).
    public let qemuStatus: String
    /// QEMU's `info registers -a`: each vCPU's instruction pointer and state.
    public let registers: String
    /// The last lines this boot printed ("" when it printed nothing).
    public let serialTail: String

    /// The first vCPU's instruction pointer and halt state, in one phrase ("RIP=… HLT=1").
    public var cpuSummary: String {
        let fields = registers.split(whereSeparator: \.isWhitespace)
        let rip = fields.first { $0.hasPrefix("RIP=") }, hlt = fields.first { $0.hasPrefix("HLT=") }
        return [rip, hlt].compactMap { $0.map(String.init) }.joined(separator: " ")
    }
}

/// What the stall check knows: when the log last grew and whether userspace has announced itself.
final class BootProgress: @unchecked Sendable {
    private let lock = NSLock()
    private let policy: BootStall.Policy?
    private let log: String
    private let start = ContinuousClock.now
    private var lastSize: UInt64
    private var lastGrowth = ContinuousClock.now
    private var reached = false

    init(policy: BootStall.Policy?, log: String) {
        self.policy = policy
        self.log = log
        lastSize = SerialLogWatcher.size(log)
    }

    /// Whether userspace has announced itself (a stall policy is set and its marker was seen).
    var reachedUserspace: Bool {
        lock.lock(); defer { lock.unlock() }
        return reached
    }

    func saw(_ line: String) {
        guard let p = policy, line.contains(p.until) else { return }
        lock.lock(); reached = true; lock.unlock()
    }

    /// Why the boot counts as stalled now, or nil.
    func stalled() -> String? {
        guard let p = policy else { return nil }
        lock.lock(); defer { lock.unlock() }
        if reached { return nil }
        let now = ContinuousClock.now
        let size = SerialLogWatcher.size(log)
        if size != lastSize { lastSize = size; lastGrowth = now }
        if now - lastGrowth > p.silence { return "no serial output for \(Int(p.silence.secondsDouble)) s before userspace started" }
        if now - start > p.limit { return "userspace did not start within \(Int(p.limit.secondsDouble)) s" }
        return nil
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
