import Blocking
import Foundation
internal import Libvirt
import SSH
import VMCtlSupport

extension MachineFiles {
    /// Where `compact` saves a running guest for the moment its QEMU is replaced.
    public var compactSave: String { "\(directory)/compact.save" }
}

extension Machine {
    /// What `compact` did to one running machine.
    public struct Compaction: Sendable, Codable, Equatable {
        public var node: String
        /// Its QEMU's resident memory before the save and after the restore (MiB, as the balloon's stats report it).
        public var rssBeforeMiB: Int?
        public var rssAfterMiB: Int?
        /// The save's size once its zero pages were left out.
        public var saveBytes: UInt64
        /// How long the guest was stopped: from the save's start to the restore's end.
        public var pausedSeconds: Double
        /// By how much the guest's wall clock was stepped forward (its clock stood still while it was saved).
        public var clockStepSeconds: Double
        /// Whether the restore loaded the save without its zero pages (else as libvirt wrote it).
        public var zeroPagesLeftOut: Bool
    }

    /// Replaces the QEMU of this running machine by a new one holding the same guest: saves
    /// the guest through libvirt, leaves the save's zero pages out, restores it and removes
    /// the save. The guest goes on where it stopped (its processes, boot, uptime, disks); what
    /// goes is what QEMU kept from running it until now, above all TCG's translation cache,
    /// which a boot fills (128 MiB) and QEMU never shrinks, and the heap its boot grew
    /// (issue: density). The guest's wall clock stood still while it was saved, so it is
    /// stepped forward over SSH by what the host measured. Connections through the machine's
    /// user-mode forwards are cut (slirp's side of them lived in the old QEMU); the guest's
    /// own, on a cluster segment, survive the pause like a short link loss.
    ///
    /// Once the save has begun, the restore is attempted even if the caller is cancelled: the
    /// guest exists only in the save until then. The save stays as libvirt wrote it until a
    /// restore succeeded: the copy without zero pages is tried first, then the save itself. A
    /// restore that fails keeps the save and says where it is; the domain stays defined and
    /// its disk as the guest left it.
    public func compact(deadline: ContinuousClock.Instant) async throws -> Compaction {
        guard let d = try await connection.domain(named: spec.name) else {
            throw VMCtlError(.notFound, message: "\(spec.hostname) has no domain on this host")
        }
        defer { d.close() }
        try await Self.checkOwned(d, name: spec.name, labels: spec.labels)
        guard try await d.state() == .running else {
            throw VMCtlError(.wrongState, message: "\(spec.hostname) is not running: only a running machine is compacted")
        }
        let target = try sshTarget()
        let rssBefore = (try? await d.memoryStats())?["rss"].map { Int($0 / 1024) }
        let save = spec.files.compactSave, lean = save + ".lean"
        unlink(save); unlink(lean)
        let began = ContinuousClock.now
        try await Self.save(d, to: save)
        // From here the guest lives only in `save`: it is kept as libvirt wrote it until a
        // restore succeeded, and the restore is tried whatever the caller's cancellation says.
        let memoryMiB = spec.memoryMiB
        let leaned = (try? await onOwnThread("compact.lean") {
            _ = try MigrationStream.leaveOutZeroPages(from: save, to: lean, prefix: try SaveImage.read(save).streamOffset,
                                                      block: "pc.ram", blockBytes: UInt64(memoryMiB) << 20)
        }) != nil
        var restored = false
        if leaned {
            restored = (try? await connection.restore(from: lean)) != nil
            unlink(lean)
        }
        if !restored {
            do {
                try await connection.restore(from: save)
            } catch {
                throw VMCtlError(.libvirtFailed, message: "\(spec.hostname) was saved to \(save) but did not come back: \(error). "
                    + "The save is kept: `vmctl cluster start` restores the guest from it")
            }
        }
        closeRestoredSockets()
        let bytes = ((try? FileManager.default.attributesOfItem(atPath: save))?[.size] as? UInt64) ?? 0
        unlink(save)
        let paused = (ContinuousClock.now - began).secondsDouble
        let step = try await Self.stepClock(target, node: spec.hostname, deadline: deadline)
        var rssAfter: Int?
        if let again = try await connection.domain(named: spec.name) {
            rssAfter = (try? await again.memoryStats())?["rss"].map { Int($0 / 1024) }
            again.close()
        }
        return Compaction(node: spec.hostname, rssBeforeMiB: rssBefore, rssAfterMiB: rssAfter, saveBytes: bytes,
                          pausedSeconds: paused, clockStepSeconds: step, zeroPagesLeftOut: leaned)
    }

    /// The guest an unfinished `compact` left in its save (its restore failed, or vmctl was
    /// killed between the save and the restore), restored into a new QEMU: the same boot
    /// goes on, its clock stepped over SSH, which also proves the pinned host key. The save
    /// goes once the restore succeeded (the guest then changes its disk, so the save no longer
    /// matches it). A save that does not restore is kept and
    /// the error says how to go on: the guest lives nowhere else, and a failure such as too
    /// little host memory passes. If the restored guest cannot be proven (no SSH by
    /// `deadline`, a cancellation), it is put back into a save before the error goes on.
    func resumeCompactSave(deadline: ContinuousClock.Instant, onNote: @Sendable (String) -> Void) async throws {
        let save = spec.files.compactSave
        try Self.checkCompactSave(spec.files, hostname: spec.hostname)
        unlink(save + ".lean")
        let target = try sshTarget()
        do {
            try await connection.restore(from: save)
        } catch {
            throw VMCtlError(.libvirtFailed, message: "\(spec.hostname): its running guest is in \(save), which an unfinished `compact` "
                + "kept, and it did not restore: \(error). The save is kept: start again once the cause is gone, or remove it to boot "
                + "the node from its disk (what ran in it is then lost)", cause: error)
        }
        closeRestoredSockets()
        unlink(save)
        let step: Double
        do {
            step = try await Self.stepClock(target, node: spec.hostname, deadline: deadline)
        } catch {
            try? await keepInSave()
            throw error
        }
        onNote("\(spec.hostname): restored from the save an unfinished `compact` kept (the same boot goes on; its clock stepped by "
               + String(format: "%+.1f s)", step))
    }

    /// Refuses a save `compact` kept that no longer matches the machine's disk: one the disk
    /// was written after (by more than `slack`), or any while the domain runs (`running`). A
    /// guest writes its disk as it runs, so a disk newer than the save means the domain ran
    /// from it since: booted outside vmctl (`virsh start`), or left running when vmctl was
    /// killed between a restore and the save's removal. Restoring the save would then put a
    /// guest whose page cache and filesystem state are older than its disk back on it, and
    /// corrupt the filesystem. Libvirt finishes a save (its header) after the guest's last
    /// write, and a restore does not write the disk until the guest runs, so a save vmctl or
    /// libvirt made is never refused. The save is kept: the user decides.
    public static func checkCompactSave(_ files: MachineFiles, hostname: String, running: Bool = false,
                                        slack: TimeInterval = 2) throws {
        func modified(_ path: String) -> Date? {
            (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date
        }
        guard let saved = modified(files.compactSave) else { return }
        let at = { (d: Date) in d.formatted(.iso8601) }
        let why: String
        if running {
            why = "it runs from its disk, and the save an unfinished `compact` kept in \(files.compactSave) (\(at(saved))) is older"
        } else if let written = modified(files.disk), written.timeIntervalSince(saved) > slack {
            why = "its disk was written at \(at(written)), after the save an unfinished `compact` kept in \(files.compactSave) "
                + "(\(at(saved))): the domain has run from its disk since"
        } else {
            return
        }
        throw VMCtlError(.wrongState, message: "\(hostname): \(why), so the save no longer matches the disk, and restoring it would "
            + "corrupt the node's filesystem. It is not restored, and kept: remove it to boot the node from its disk")
    }

    /// Puts a running guest (back) into its compact save: the domain stops and the guest
    /// lives on in the save, which the next `ensure` restores. For undoing a start that
    /// restored it: powering it off would lose what ran in it. Nothing when it is not running.
    public func keepInSave() async throws {
        guard let d = try await connection.domain(named: spec.name) else { return }
        defer { d.close() }
        guard try await d.isActive() else { return }
        try await Self.save(d, to: spec.files.compactSave)
    }

    /// Saves the running guest of `d` to `save` (root's alone); a save that fails leaves no file.
    static func save(_ d: Domain, to save: String) async throws {
        do { try await d.save(to: save) } catch { unlink(save); throw error }
        chmod(save, 0o600)
    }

    /// Reads the guest's wall clock over SSH between two readings of the host's (after the
    /// session is open, so the handshake does not count), then steps it by the difference on
    /// the same session (the midpoint: half the command's round trip is the error). Returns
    /// the step. Retries until `deadline` while slirp's new forward comes up; a refused key or
    /// host key, or a cancellation, ends it at once.
    static func stepClock(_ target: SSHTarget, node: String, deadline: ContinuousClock.Instant) async throws -> Double {
        var lastError: (any Error)?
        while ContinuousClock.now < deadline {
            try Task.checkCancellation()
            do {
                let r = try await SSHSession.timedThen(target, "date +%s.%N", timeout: .seconds(30)) { first, before, after in
                    guard first.status == 0, let step = Machine.clockStep(hostBefore: before, hostAfter: after, guest: first.stdout) else {
                        throw VMCtlError(.sshFailed, message: "\(node): cannot read its clock (`date +%s.%N` said '\(first.stdout)' \(first.stderr))")
                    }
                    return Machine.stepCommand(step)
                }
                guard r.second.status == 0 else {
                    throw VMCtlError(.sshFailed, message: "\(node): its clock was not stepped: \(r.second.stderr)")
                }
                return clockStep(hostBefore: r.before, hostAfter: r.after, guest: r.first.stdout) ?? 0
            } catch let e as VMCtlError {
                throw e
            } catch let e as SSHError where e.kind == .auth || e.kind == .hostKeyMismatch {
                throw e
            } catch {
                lastError = error
                try await Task.sleep(for: .milliseconds(500))
            }
        }
        throw VMCtlError(.nodeTimeout, message: "\(node) did not answer SSH after it was restored: \(lastError.map { "\($0)" } ?? "no time left")")
    }

    /// The step that brings a guest clock that read `guest` (`date +%s.%N`) between the host's
    /// `hostBefore` and `hostAfter` to the host's time; nil when `guest` is not a number.
    static func clockStep(hostBefore: Double, hostAfter: Double, guest: String) -> Double? {
        guard let g = Double(guest.trimmingCharacters(in: .whitespacesAndNewlines)), g > 0 else { return nil }
        return (hostBefore + hostAfter) / 2 - g
    }

    /// Steps the guest's clock by `step` seconds from whatever it reads when this runs (so the
    /// SSH session's own time does not count), as root.
    static func stepCommand(_ step: Double) -> String {
        let s = String(format: "%.6f", step)
        return "t=$(date +%s.%N) && sudo -n date -s \"@$(awk -v t=\"$t\" -v d=\(s) 'BEGIN { printf \"%.6f\", t + d }')\" >/dev/null"
    }
}
