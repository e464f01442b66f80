import Foundation
import VMCtlSupport
import Machines

/// The evidence of a failed `up`, kept after the rollback removed the cluster: each node's
/// serial log (and its rotated part), QEMU's log, the state as it was (secrets redacted) and
/// the error. `$STATE/reports/CLUSTER-TIME/`, root's alone; the newest 20 are kept.
enum FailureReport {
    static let keep = 20
    /// The most of each log that is copied (its end, where a boot stopped).
    static let maxLogBytes = 16 << 20

    /// Writes the report and returns its directory, or nil when there is nothing to report.
    static func write(state: StateDir, cluster s: ClusterState, error: Error, now: Date = Date()) -> String? {
        guard s.nodes.contains(where: { $0.bootedAt != nil }) else { return nil }
        let reports = "\(state.root)/reports"
        let stamp = Self.stamp(now)
        let dir = "\(reports)/\(s.name)-\(stamp)"
        do {
            try FileAccess.directory(reports)
            try FileAccess.directory(dir)
            var summary = "vmctl cluster up \(s.spec.nodes) --name \(s.name) --image \(s.spec.image) failed at \(stamp)\n\n\(error)\n\n"
            for n in s.nodes {
                summary += "\(n.plan.name): \(n.phase.rawValue)\(n.bootedAt.map { ", booted \($0)" } ?? "")\n"
                for (from, to) in [(n.plan.serialLog + ".1", "\(n.plan.name).serial.log.1"), (n.plan.serialLog, "\(n.plan.name).serial.log")] {
                    try copyTail(from, to: "\(dir)/\(to)")
                }
                if let root = s.embeddedRoot {
                    try copyTail("\(root)/log/qemu/\(n.plan.domainName).log", to: "\(dir)/\(n.plan.name).qemu.log")
                }
            }
            try AtomicFile.write(summary, to: "\(dir)/summary.txt")
            try AtomicFile.writeJSON(s.redacted(), to: "\(dir)/state.json")
            prune(reports)
            return dir
        } catch {
            return nil
        }
    }

    /// The evidence of a boot that stalled and is about to be reset, kept even when the reset
    /// boot succeeds (hung boots are rare, and the cause is in the first one): the stall, QEMU's
    /// run state and registers, and the node's serial and QEMU logs as they were.
    /// `$STATE/reports/CLUSTER-NODE-resetN-TIME/`, pruned with the failure reports.
    static func writeReset(state: StateDir, cluster: String, node: NodePlan, embeddedRoot: String?,
                           evidence e: StallEvidence, now: Date = Date()) -> String? {
        let reports = "\(state.root)/reports"
        let dir = "\(reports)/\(cluster)-\(node.name)-reset\(e.attempt)-\(stamp(now))"
        do {
            try FileAccess.directory(reports)
            try FileAccess.directory(dir)
            let summary = """
                vmctl reset \(node.name) of cluster \(cluster) (reset \(e.attempt)) at \(stamp(now))
                stall: \(e.stall)
                QEMU: \(e.qemuStatus)
                vCPU 0: \(e.cpuSummary)

                last serial lines of this boot:
                \(e.serialTail.isEmpty ? "(none)" : e.serialTail)

                registers (info registers -a):
                \(e.registers)

                """
            try AtomicFile.write(summary, to: "\(dir)/summary.txt")
            try copyTail(node.serialLog, to: "\(dir)/\(node.name).serial.log")
            if let root = embeddedRoot {
                try copyTail("\(root)/log/qemu/\(node.domainName).log", to: "\(dir)/\(node.name).qemu.log")
            }
            prune(reports)
            return dir
        } catch {
            return nil
        }
    }

    static func stamp(_ date: Date) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyyMMdd-HHmmss"
        return f.string(from: date)
    }

    /// Copies the last `maxLogBytes` of `from` (if it exists) to a new 0600 file.
    static func copyTail(_ from: String, to: String) throws {
        guard let h = FileHandle(forReadingAtPath: from) else { return }
        defer { try? h.close() }
        let size = (try? h.seekToEnd()) ?? 0
        try h.seek(toOffset: size > UInt64(maxLogBytes) ? size - UInt64(maxLogBytes) : 0)
        try AtomicFile.write(h.readToEnd() ?? Data(), to: to)
    }

    /// Removes all but the newest `keep` reports.
    static func prune(_ reports: String) {
        let fm = FileManager.default
        let all = ((try? fm.contentsOfDirectory(atPath: reports)) ?? []).map { "\(reports)/\($0)" }
        let dated = all.map { p in (p, ((try? fm.attributesOfItem(atPath: p))?[.modificationDate] as? Date) ?? .distantPast) }
        for (p, _) in dated.sorted(by: { $0.1 > $1.1 }).dropFirst(keep) { try? fm.removeItem(atPath: p) }
    }
}
