import Foundation
import VMCtlSupport
import Machines

/// What the user asked for with `cluster up`: compared on a second `up` to decide between
/// "start what is stopped" and "different spec: clean first".
public struct ClusterSpec: Codable, Sendable, Equatable {
    public var nodes: Int
    public var image: String
    public var cpus: Int
    public var memoryMiB: Int
    public var diskGiB: Int
    public var guestInternet: Bool

    public init(nodes: Int, image: String = "debian-12", cpus: Int = 2, memoryMiB: Int = 2048, diskGiB: Int = 20,
                guestInternet: Bool = false) {
        self.nodes = nodes; self.image = image; self.cpus = cpus; self.memoryMiB = memoryMiB
        self.diskGiB = diskGiB; self.guestInternet = guestInternet
    }

    /// Most nodes one `up` will make.
    public static let maxNodes = 64

    /// Refuses nonsense before anything is created. `freeMemoryMiB` is what the host has
    /// available; nodes are planned at what they cost once idle (`HostMemory.perNodeMiB`),
    /// under TCG unless `tcg` is false, with QEMU's guest RAM in huge pages if `hugePages`.
    public func validate(freeMemoryMiB: Int?, tcg: Bool = true, hugePages: Bool = HostMemory.hugePagesKept) throws {
        guard nodes >= 1 else { throw VMCtlError.usage("a cluster needs at least 1 node (got \(nodes))") }
        guard nodes <= Self.maxNodes else {
            throw VMCtlError.usage("\(nodes) nodes is more than vmctl makes at once (max \(Self.maxNodes))")
        }
        guard (1...64).contains(cpus) else { throw VMCtlError.usage("--cpus must be 1…64 (got \(cpus))") }
        guard memoryMiB >= 256 else { throw VMCtlError.usage("--memory must be at least 256M (got \(memoryMiB) MiB)") }
        guard (3...4096).contains(diskGiB) else { throw VMCtlError.usage("--disk must be 3G…4T (got \(diskGiB) GiB)") }
        if let free = freeMemoryMiB {
            let each = HostMemory.perNodeMiB(memoryMiB: memoryMiB, tcg: tcg, hugePages: hugePages)
            let fit = HostMemory.fit(memoryMiB: memoryMiB, tcg: tcg, availableMiB: free, hugePages: hugePages)
            if nodes > fit {
                throw VMCtlError(.hostMemory, message: "\(nodes) nodes of \(memoryMiB) MiB need about \(nodes * each) MiB of host memory "
                    + "(\(each) MiB each: guest, \(tcg ? "TCG translation cache, " : "")QEMU) and this host has \(free) MiB available "
                    + "(\(HostMemory.reserveMiB) MiB kept for itself): \(fit) fit; use fewer nodes or a smaller --memory")
            }
        }
    }

    /// A one-line warning when a node gets more vCPUs than the host has cores, else nil: the
    /// vCPUs then take turns on the cores and booting slows right down (64 vCPUs on 2 cores:
    /// 126 s instead of 16 s).
    public func cpuWarning(hostCores: Int) -> String? {
        guard hostCores > 0, cpus > hostCores else { return nil }
        return "warning: \(cpus) vCPUs per node but this host has \(hostCores) core\(hostCores == 1 ? "" : "s"): "
            + "the guests will boot and run much slower; --cpus \(hostCores) or fewer avoids that"
    }

    /// A DNS label: what cluster names must be.
    public static func isValidName(_ s: String) -> Bool {
        s.range(of: "^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$", options: .regularExpression) != nil
    }

    /// `node3`, `3` or `03` → 3 (within 1…count).
    public static func nodeIndex(_ s: String, count: Int) throws -> Int {
        let digits = s.hasPrefix("node") ? String(s.dropFirst(4)) : s
        guard let i = Int(digits), (1...max(count, 1)).contains(i) else {
            throw VMCtlError(.notFound, message: "no node '\(s)': nodes are node1…node\(count) (or just 1…\(count))")
        }
        return i
    }
}
