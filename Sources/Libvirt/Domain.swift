import CLibvirt
import Foundation

/// A libvirt domain (`virDomainPtr`).
public final class Domain: @unchecked Sendable {
    private var handle: virDomainPtr?
    // Keeps the connection open while the domain handle lives.
    private let connection: Connection

    init(handle: virDomainPtr, connection: Connection) {
        self.handle = handle
        self.connection = connection
    }

    deinit { close() }

    /// Frees the handle (the domain itself is untouched).
    public func close() {
        if let h = handle { virDomainFree(h) }
        handle = nil
    }

    func rawHandle() throws -> virDomainPtr { try raw() }

    private func raw() throws -> virDomainPtr {
        guard let h = handle else {
            throw LibvirtError(operation: "use domain", code: 0, message: "domain handle is closed")
        }
        return h
    }

    /// The domain's name.
    public var name: String {
        guard let h = handle, let c = virDomainGetName(h) else { return "" }
        return String(cString: c)
    }

    /// Lifecycle states vmctl cares about.
    public enum State: String, Sendable, Codable {
        case running, blocked, paused, shuttingDown = "shutting-down", shutOff = "shut-off", crashed, suspended, unknown
    }

    /// The current state.
    public func state() throws -> State {
        var st: Int32 = 0
        var reason: Int32 = 0
        try check(virDomainGetState(try raw(), &st, &reason, 0), "read state of \(name)")
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

    /// Whether the domain is running (or paused) now.
    public func isActive() throws -> Bool {
        try check(virDomainIsActive(try raw()), "read state of \(name)") == 1
    }

    /// Starts a defined domain.
    public func start() throws {
        try check(virDomainCreate(try raw()), "start \(name)")
    }

    /// Pulls the plug. Not an error when the domain is already off.
    public func destroy() throws {
        if virDomainDestroy(try raw()) < 0 {
            let err = LibvirtError.last("stop \(name)")
            if err.isOperationInvalid { return }
            throw err
        }
    }

    /// Asks the guest to shut down (ACPI); returns at once.
    public func shutdown() throws {
        try check(virDomainShutdown(try raw()), "shut down \(name)")
    }

    /// Removes the definition (and any NVRAM); the domain must be off or it becomes transient.
    public func undefine() throws {
        let flags = VIR_DOMAIN_UNDEFINE_NVRAM.rawValue | VIR_DOMAIN_UNDEFINE_MANAGED_SAVE.rawValue
            | VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA.rawValue
        let h = try raw()
        if virDomainUndefineFlags(h, flags) == 0 { return }
        let err = LibvirtError.last("undefine \(name)")
        // Drivers without NVRAM or managed save (libvirt's test driver) refuse those flags
        // as invalid; a domain of theirs has neither, so a plain undefine is the same.
        guard err.code == Int32(VIR_ERR_INVALID_ARG.rawValue) else { throw err }
        try check(virDomainUndefine(h), "undefine \(name)")
    }

    /// The QEMU process id of a running embedded/system domain, from libvirt's pid file.
    public func id() throws -> UInt32? {
        let v = virDomainGetID(try raw())
        return v == UInt32.max ? nil : v
    }

    /// The live (or inactive) XML description.
    public func xml() throws -> String {
        guard let c = virDomainGetXMLDesc(try raw(), 0) else {
            throw LibvirtError.last("read XML of \(name)")
        }
        defer { free(c) }
        return String(cString: c)
    }

    /// vmctl's labels from the domain's `<metadata>` (empty when it has none: not vmctl's).
    public func labels() throws -> [String: String] {
        guard let c = virDomainGetMetadata(try raw(), Int32(VIR_DOMAIN_METADATA_ELEMENT.rawValue),
                                           DomainSpec.metadataNamespace, 0) else {
            let err = LibvirtError.last("read metadata of \(name)")
            if err.code == Int32(VIR_ERR_NO_DOMAIN_METADATA.rawValue) { return [:] }
            throw err
        }
        defer { free(c) }
        return DomainSpec.parseLabels(String(cString: c))
    }

    /// Memory and CPU time as libvirt reports them.
    public struct Info: Sendable {
        public var memoryKiB: UInt
        public var vcpus: UInt16
        public var cpuTimeNs: UInt64
    }

    /// Reads memory and CPU figures.
    public func info() throws -> Info {
        var i = virDomainInfo()
        try check(virDomainGetInfo(try raw(), &i), "read info of \(name)")
        return Info(memoryKiB: i.memory, vcpus: i.nrVirtCpu, cpuTimeNs: i.cpuTime)
    }
}
