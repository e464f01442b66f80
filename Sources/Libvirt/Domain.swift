import Blocking
import CLibvirt
import Foundation

/// A libvirt domain (`virDomainPtr`). Like `Connection`, every call that reaches libvirt is
/// async and runs on a thread of its own; the handle is guarded against a close mid-call.
public final class Domain: Sendable {
    let handle: GuardedHandle
    // Keeps the connection open while the domain handle lives.
    let connection: Connection
    /// The domain's name (read once: libvirt keeps it in the handle).
    public let name: String

    /// Wraps a handle libvirt just returned; called on the wrapper's own thread.
    init(handle: virDomainPtr, connection: Connection) {
        name = virDomainGetName(handle).map { String(cString: $0) } ?? ""
        // virDomainFree drops a reference: it does not block while the connection is open.
        self.handle = GuardedHandle(handle, label: "libvirt.domain") { virDomainFree($0) }
        self.connection = connection
    }

    /// Frees the handle (the domain itself is untouched); returns at once. A call in
    /// progress keeps the handle until it returns; later calls throw.
    public func close() {
        handle.closeNow()
    }

    var closedError: LibvirtError {
        LibvirtError(operation: "use domain \(name)", code: 0, message: "domain handle is closed")
    }

    /// Runs `body` with the domain's handle on a thread of its own named `libvirt.<what>`.
    func call<T: Sendable>(_ what: String, _ body: @escaping @Sendable (virDomainPtr) throws -> T) async throws -> T {
        try await onOwnThread("libvirt.\(what)") { [self] in
            try handle.use(orThrow: closedError) { try body($0) }
        }
    }

    /// Lifecycle states vmctl cares about.
    public enum State: String, Sendable, Codable {
        case running, blocked, paused, shuttingDown = "shutting-down", shutOff = "shut-off", crashed, suspended, unknown
    }

    /// The current state.
    public func state() async throws -> State {
        let name = self.name
        let st = try await call("state") { d in
            var st: Int32 = 0
            var reason: Int32 = 0
            try check(virDomainGetState(d, &st, &reason, 0), "read state of \(name)")
            return st
        }
        switch UInt32(st) {
        case VIR_DOMAIN_RUNNING.rawValue: return .running
        case VIR_DOMAIN_BLOCKED.rawValue: return .blocked
        case VIR_DOMAIN_PAUSED.rawValue: return .paused
        case VIR_DOMAIN_SHUTDOWN.rawValue: return .shuttingDown
        case VIR_DOMAIN_SHUTOFF.rawValue: return .shutOff
        case VIR_DOMAIN_CRASHED.rawValue: return .crashed
        case VIR_DOMAIN_PMSUSPENDED.rawValue: return .suspended
        default: return .unknown
        }
    }

    /// Waits until libvirt's own work on the domain is done, by taking a query job and letting
    /// it go (`virDomainMemoryStats` takes one in the QEMU driver). An embedded driver that finds
    /// a QEMU running when it opens its root reconnects to it in a thread of its own, under a
    /// modify job; until that ends, the domain's state says "running" even when the QEMU died
    /// with no libvirt attached. The query waits behind the reconnect, which marks a dead QEMU
    /// shut off. Whatever the query answers is ignored: only the waiting matters.
    public func settle() async {
        _ = try? await call("settle") { d in
            var stats = [virDomainMemoryStatStruct](repeating: virDomainMemoryStatStruct(), count: 1)
            return virDomainMemoryStats(d, &stats, 1, 0)
        }
    }

    /// The state once libvirt has settled (`settle`): never "running" for a dead QEMU.
    public func settledState() async throws -> State {
        await settle()
        return try await state()
    }

    /// Whether the domain runs, once libvirt has settled (`settle`).
    public func settledActive() async throws -> Bool {
        await settle()
        return try await isActive()
    }

    /// Whether the domain is running (or paused) now.
    public func isActive() async throws -> Bool {
        let name = self.name
        return try await call("state") { try check(virDomainIsActive($0), "read state of \(name)") == 1 }
    }

    /// Starts a defined domain; `paused` leaves its vCPUs stopped until `resume` (so a console
    /// stream can be attached before the guest prints anything).
    public func start(paused: Bool = false) async throws {
        let name = self.name
        let flags = paused ? VIR_DOMAIN_START_PAUSED.rawValue : 0
        try await call("start") { _ = try check(virDomainCreateWithFlags($0, flags), "start \(name)") }
    }

    /// Lets a paused domain run.
    public func resume() async throws {
        let name = self.name
        try await call("resume") { _ = try check(virDomainResume($0), "resume \(name)") }
    }

    /// Pulls the plug. Not an error when the domain is already off.
    public func destroy() async throws {
        let name = self.name
        try await call("destroy") { d in
            if virDomainDestroy(d) < 0 {
                let err = LibvirtError.last("stop \(name)")
                if err.isOperationInvalid { return }
                throw err
            }
        }
    }

    /// Asks the guest to shut down (ACPI); returns at once.
    public func shutdown() async throws {
        let name = self.name
        try await call("shutdown") { _ = try check(virDomainShutdown($0), "shut down \(name)") }
    }

    /// Removes the definition (and any NVRAM); the domain must be off or it becomes transient.
    public func undefine() async throws {
        let name = self.name
        let flags = VIR_DOMAIN_UNDEFINE_NVRAM.rawValue | VIR_DOMAIN_UNDEFINE_MANAGED_SAVE.rawValue
            | VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA.rawValue
        try await call("undefine") { h in
            if virDomainUndefineFlags(h, flags) == 0 { return }
            let err = LibvirtError.last("undefine \(name)")
            // Drivers without NVRAM or managed save (libvirt's test driver) refuse those flags
            // as invalid; a domain of theirs has neither, so a plain undefine is the same.
            guard err.code == Int32(VIR_ERR_INVALID_ARG.rawValue) else { throw err }
            _ = try check(virDomainUndefine(h), "undefine \(name)")
        }
    }

    /// The QEMU process id of a running embedded/system domain, from libvirt's pid file.
    public func id() async throws -> UInt32? {
        let v = try await call("id") { virDomainGetID($0) }
        return v == UInt32.max ? nil : v
    }

    /// The live (or inactive) XML description.
    public func xml() async throws -> String {
        let name = self.name
        return try await call("xml") { d in
            guard let c = virDomainGetXMLDesc(d, 0) else {
                throw LibvirtError.last("read XML of \(name)")
            }
            defer { free(c) }
            return String(cString: c)
        }
    }

    /// Saves the running guest's memory and device state to `path` (libvirt's save file) and
    /// stops it; the domain stays defined. Restored with `Connection.restore`.
    public func save(to path: String) async throws {
        let name = self.name
        try await call("save") { _ = try check(virDomainSaveFlags($0, path, nil, 0), "save \(name) to \(path)") }
    }

    /// Asks QEMU's human monitor (`info registers`, `info status`) through libvirt-qemu: for
    /// diagnosis only (libvirt marks the domain tainted, which changes nothing else).
    public func monitor(_ command: String) async throws -> String {
        let name = self.name
        return try await call("monitor") { d in
            var out: UnsafeMutablePointer<CChar>? = nil
            try check(virDomainQemuMonitorCommand(d, command, &out, UInt32(VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP.rawValue)),
                      "ask QEMU of \(name) '\(command)'")
            defer { free(out) }
            return out.map { String(cString: $0) } ?? ""
        }
    }

    /// vmctl's labels from the domain's `<metadata>` (empty when it has none: not vmctl's).
    public func labels() async throws -> [String: String] {
        let name = self.name
        let text: String? = try await call("metadata") { d in
            guard let c = virDomainGetMetadata(d, Int32(VIR_DOMAIN_METADATA_ELEMENT.rawValue),
                                               DomainSpec.metadataNamespace, 0) else {
                let err = LibvirtError.last("read metadata of \(name)")
                if err.code == Int32(VIR_ERR_NO_DOMAIN_METADATA.rawValue) { return nil }
                throw err
            }
            defer { free(c) }
            return String(cString: c)
        }
        return text.map(DomainSpec.parseLabels) ?? [:]
    }

    /// Memory and CPU time as libvirt reports them.
    public struct Info: Sendable {
        public var memoryKiB: UInt
        public var vcpus: UInt16
        public var cpuTimeNs: UInt64
    }

    /// Reads memory and CPU figures.
    public func info() async throws -> Info {
        let name = self.name
        return try await call("info") { d in
            var i = virDomainInfo()
            try check(virDomainGetInfo(d, &i), "read info of \(name)")
            return Info(memoryKiB: i.memory, vcpus: i.nrVirtCpu, cpuTimeNs: i.cpuTime)
        }
    }

    /// The balloon's view of memory (`virDomainMemoryStats`), in KiB by libvirt's tag names:
    /// `actual` (the balloon's target), `rss` (QEMU's resident memory on the host), and with
    /// the guest's stats period set `unused`, `available`, `usable`, `disk_caches`.
    public func memoryStats() async throws -> [String: UInt64] {
        let name = self.name
        return try await call("memstats") { d in
            var stats = [virDomainMemoryStatStruct](repeating: virDomainMemoryStatStruct(), count: Int(VIR_DOMAIN_MEMORY_STAT_NR.rawValue))
            let n = try check(virDomainMemoryStats(d, &stats, UInt32(stats.count), 0), "read memory stats of \(name)")
            var out: [String: UInt64] = [:]
            for s in stats.prefix(Int(n)) {
                let tag: String? = switch UInt32(s.tag) {
                case VIR_DOMAIN_MEMORY_STAT_ACTUAL_BALLOON.rawValue: "actual"
                case VIR_DOMAIN_MEMORY_STAT_RSS.rawValue: "rss"
                case VIR_DOMAIN_MEMORY_STAT_UNUSED.rawValue: "unused"
                case VIR_DOMAIN_MEMORY_STAT_AVAILABLE.rawValue: "available"
                case VIR_DOMAIN_MEMORY_STAT_USABLE.rawValue: "usable"
                case VIR_DOMAIN_MEMORY_STAT_DISK_CACHES.rawValue: "disk_caches"
                case VIR_DOMAIN_MEMORY_STAT_LAST_UPDATE.rawValue: "last_update"
                default: nil
                }
                if let tag { out[tag] = s.val }
            }
            return out
        }
    }

    /// Sets the memory the running guest may use, through its balloon (`virDomainSetMemoryFlags`,
    /// live): the guest gives pages back below its boot size, and takes them again up to it.
    public func setMemory(kiB: UInt) async throws {
        let name = self.name
        _ = try await call("setmem") { d in
            try check(virDomainSetMemoryFlags(d, kiB, UInt32(VIR_DOMAIN_AFFECT_LIVE.rawValue)), "set the memory of \(name)")
        }
    }
}
