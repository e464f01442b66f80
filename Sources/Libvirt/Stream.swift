import CLibvirt
import Foundation

/// A libvirt data stream (`virStreamPtr`), here for a domain's serial console.
public final class Stream: @unchecked Sendable {
    private var handle: virStreamPtr?
    private let connection: Connection

    /// A new blocking stream on `connection`.
    public init(connection: Connection) throws {
        guard let s = virStreamNew(try connection.raw(), 0) else { throw LibvirtError.last("create stream") }
        handle = s
        self.connection = connection
    }

    deinit { close() }

    /// Finishes and frees the stream; later calls do nothing.
    public func close() {
        if let h = handle {
            _ = virStreamAbort(h)
            virStreamFree(h)
        }
        handle = nil
    }

    func raw() throws -> virStreamPtr {
        guard let h = handle else { throw LibvirtError(operation: "use stream", code: 0, message: "stream is closed") }
        return h
    }

    /// Sends bytes; returns how many were taken.
    public func send(_ data: Data) throws -> Int {
        let h = try raw()
        let n = data.withUnsafeBytes { virStreamSend(h, $0.baseAddress?.assumingMemoryBound(to: CChar.self), data.count) }
        if n < 0 { throw LibvirtError.last("write to console") }
        return Int(n)
    }

    /// Receives up to `max` bytes; empty at end of stream.
    public func receive(max: Int = 4096) throws -> Data {
        let h = try raw()
        var buf = [CChar](repeating: 0, count: max)
        let n = virStreamRecv(h, &buf, max)
        if n < 0 { throw LibvirtError.last("read from console") }
        return buf.withUnsafeBytes { Data($0.prefix(Int(n))) }
    }
}

extension Domain {
    /// Connects `stream` to the domain's first serial console (taking it over if another client has it).
    public func openConsole(_ stream: Stream) throws {
        try check(virDomainOpenConsole(try rawHandle(), nil, try stream.raw(), UInt32(VIR_DOMAIN_CONSOLE_FORCE.rawValue)),
                  "open console of \(name)")
    }
}
