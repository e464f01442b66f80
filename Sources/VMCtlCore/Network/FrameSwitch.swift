import Foundation

/// A learning Ethernet switch in user space for one cluster's private segment.
///
/// QEMU nodes connect with `-netdev stream,addr.type=unix` and exchange frames each
/// prefixed by a 4-byte big-endian length (QEMU's stream/socket framing). Debian's QEMU
/// has no VDE backend, so vmctl brings this instead: no root, no tap, nothing on the host's
/// network; frames only move between the cluster's own guests.
public final class FrameSwitch {
    public let socketPath: String
    private var listener: Int32 = -1
    private var ports: [Int32: Port] = [:]
    private var table: [Data: Int32] = [:]

    private final class Port {
        var inbound = Data()
        var outbound = Data()
    }

    /// Frames queued for a slow port beyond this are dropped, as a real switch would.
    static let maxQueue = 4 << 20

    public init(socketPath: String) { self.socketPath = socketPath }

    /// Detaches from the terminal, writes the pid file, and switches frames until killed.
    public func serveForever(pidFile: String) throws {
        setsid()
        signal(SIGHUP, SIG_IGN)
        signal(SIGINT, SIG_IGN)
        signal(SIGPIPE, SIG_IGN)
        // vmctl ignores SIGTERM (it becomes cancellation) and ignored signals survive exec:
        // restore the default so `down` and `clean` can stop the switch.
        signal(SIGTERM, SIG_DFL)
        try listen()
        try AtomicFile.write("\(getpid())\n", to: pidFile)
        while true { step(timeoutMs: -1) }
    }

    /// Binds and listens on the socket path (replacing a stale socket).
    public func listen() throws {
        unlink(socketPath)
        listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(socketPath.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
            throw VMCtlError("switch socket path too long (\(bytes.count) bytes): use a shorter VMCTL_HOME")
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { buf in
            for (i, b) in bytes.enumerated() { buf[i] = b }
            buf[bytes.count] = 0
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0, Foundation.listen(listener, 64) == 0 else {
            throw VMCtlError("switch cannot listen on \(socketPath): \(String(cString: strerror(errno)))")
        }
        // QEMU (libvirt-qemu) connects: root:libvirt-qemu 0660 as root, else 0600.
        chmod(socketPath, 0o600)
        try FileAccess.shareWithQemu(socketPath, writable: true)
        _ = fcntl(listener, F_SETFL, fcntl(listener, F_GETFL) | O_NONBLOCK)
    }

    /// One round of the event loop: accept, read, forward, flush.
    public func step(timeoutMs: Int32) {
        var fds = [pollfd(fd: listener, events: Int16(POLLIN), revents: 0)]
        for (fd, p) in ports {
            fds.append(pollfd(fd: fd, events: Int16(POLLIN) | (p.outbound.isEmpty ? 0 : Int16(POLLOUT)), revents: 0))
        }
        guard poll(&fds, nfds_t(fds.count), timeoutMs) > 0 else { return }
        for f in fds {
            if f.fd == listener {
                if f.revents & Int16(POLLIN) != 0 { acceptAll() }
                continue
            }
            if f.revents & (Int16(POLLIN) | Int16(POLLHUP) | Int16(POLLERR)) != 0 { readFrom(f.fd) }
            if f.revents & Int16(POLLOUT) != 0 { flush(f.fd) }
        }
    }

    private func acceptAll() {
        while true {
            let fd = accept(listener, nil, nil)
            if fd < 0 { return }
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            ports[fd] = Port()
        }
    }

    private func drop(_ fd: Int32) {
        close(fd)
        ports[fd] = nil
        table = table.filter { $0.value != fd }
    }

    private func readFrom(_ fd: Int32) {
        guard let port = ports[fd] else { return }
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd, &buf, buf.count)
            if n > 0 { port.inbound.append(contentsOf: buf[0..<n]); continue }
            if n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK) { drop(fd); return }
            break
        }
        while port.inbound.count >= 4 {
            let b = [UInt8](port.inbound.prefix(4))
            let len = Int(b[0]) << 24 | Int(b[1]) << 16 | Int(b[2]) << 8 | Int(b[3])
            guard len <= 65536 + 64 else { drop(fd); return }
            guard port.inbound.count >= 4 + len else { break }
            let frame = Data(port.inbound.dropFirst(4).prefix(len))
            port.inbound = Data(port.inbound.dropFirst(4 + len))
            forward(frame, from: fd)
        }
    }

    private func forward(_ frame: Data, from source: Int32) {
        guard frame.count >= 14 else { return }
        let dst = Data(frame.prefix(6))
        let src = Data(frame.dropFirst(6).prefix(6))
        if src[src.startIndex] & 1 == 0 { table[src] = source }
        var wire = Data([UInt8(frame.count >> 24 & 0xff), UInt8(frame.count >> 16 & 0xff),
                         UInt8(frame.count >> 8 & 0xff), UInt8(frame.count & 0xff)])
        wire.append(frame)
        let targets: [Int32]
        if dst[dst.startIndex] & 1 == 0, let port = table[dst] { targets = port == source ? [] : [port] }
        else { targets = ports.keys.filter { $0 != source } }
        for t in targets {
            guard let p = ports[t], p.outbound.count + wire.count <= Self.maxQueue else { continue }
            p.outbound.append(wire)
            flush(t)
        }
    }

    private func flush(_ fd: Int32) {
        guard let p = ports[fd], !p.outbound.isEmpty else { return }
        let n = p.outbound.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if n > 0 { p.outbound = Data(p.outbound.dropFirst(n)) }
        else if n < 0 && errno != EAGAIN && errno != EWOULDBLOCK { drop(fd) }
    }
}
