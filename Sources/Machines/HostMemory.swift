import Foundation

/// The host's memory as vmctl plans with it: what is available, what a node costs, how many fit.
public enum HostMemory {
    /// `MemAvailable` in MiB, or nil where /proc/meminfo cannot be read.
    public static func availableMiB(meminfo: String? = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8)) -> Int? {
        guard let text = meminfo else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("MemAvailable:") {
            return line.split(separator: " ").dropFirst().first.flatMap { Int($0) }.map { $0 / 1024 }
        }
        return nil
    }

    /// What the host keeps free for itself and for vmctl's own work (image builds, libvirt).
    public static let reserveMiB = 1024

    /// What the guest of an idle debian-12 node touches and keeps once its boot gave its free
    /// pages back (Readiness.returnFreePages): 166 MiB of guest RAM resident 70 s after a cold
    /// boot here, a warm clone's about its save (165–175 MiB). The planning figure for a node
    /// whose memory is larger; a node given less is planned at its full size.
    public static let idleGuestMiB = 170
    /// The same guest where QEMU keeps the host's transparent huge pages (`VMCTL_THP=1`, or a
    /// QEMU started by `qemu:///system`'s daemon): a touched 4 KiB page holds 2 MiB, and that
    /// guest's RAM was 220–259 MiB resident.
    public static let idleGuestHugePagesMiB = 260
    /// Whether vmctl's own QEMUs keep the host's huge pages (`VMCTL_THP=1`).
    public static var hugePagesKept: Bool { ProcessInfo.processInfo.environment["VMCTL_THP"] == "1" }
    /// Whether a node's QEMU will have huge pages: a shared libvirt's daemon starts QEMU with
    /// the host's setting, not vmctl's.
    public static func hugePages(sharedLibvirt: Bool) -> Bool { sharedLibvirt || hugePagesKept }
    /// QEMU's own memory beside the guest's RAM and the translation cache (69 MiB anonymous
    /// in that cold node, plus its share of the binary and libraries). With the guest's and a
    /// full 128 MiB translation cache: 378 MiB for a 2 GiB node, the MemAvailable drop per
    /// idle node measured for `cluster up 3 --cold` (scripts/density.sh).
    public static let qemuOverheadMiB = 80

    /// What one node of `memoryMiB` is planned to cost the host once booted and idle: its
    /// guest's resident memory (all of it without a balloon to give freed pages back), the
    /// translation cache under TCG, and QEMU itself.
    public static func perNodeMiB(memoryMiB: Int, tcg: Bool, levers: MemoryLevers = .standard,
                                  hugePages: Bool = hugePagesKept) -> Int {
        let guest = levers.balloon ? min(memoryMiB, hugePages ? idleGuestHugePagesMiB : idleGuestMiB) : memoryMiB
        let tb = tcg ? (levers.tbCacheMiB ?? 1024) : 0
        return guest + tb + qemuOverheadMiB
    }

    /// How many nodes of `memoryMiB` fit in `availableMiB` beside the reserve.
    public static func fit(memoryMiB: Int, tcg: Bool, availableMiB: Int, levers: MemoryLevers = .standard,
                           hugePages: Bool = hugePagesKept) -> Int {
        max(0, (availableMiB - reserveMiB) / perNodeMiB(memoryMiB: memoryMiB, tcg: tcg, levers: levers, hugePages: hugePages))
    }

    /// KSM (kernel same-page merging): nil where the kernel has none; else whether it runs and
    /// how many pages it shares now.
    public static func ksm(root: String = "/sys/kernel/mm/ksm") -> (running: Bool, sharingMiB: Int)? {
        func read(_ f: String) -> Int? {
            (try? String(contentsOfFile: "\(root)/\(f)", encoding: .utf8)).flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }
        guard let run = read("run") else { return nil }
        return (run == 1, (read("pages_sharing") ?? 0) * Int(getpagesize()) >> 20)
    }
}
