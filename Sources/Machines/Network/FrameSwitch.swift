import Foundation
import VMCtlSupport

/// A learning Ethernet switch in user space for one cluster's private segment.
///
/// QEMU nodes connect with `-netdev stream,addr.type=unix` and exchange frames each
/// prefixed by a 4-byte big-endian length (QEMU's stream/socket framing). Debian's QEMU
/// has no VDE backend, so vmctl brings this instead: no root, no tap, nothing on the host's
/// network; frames only move between the cluster's own guests.
///
/// Bounded under abuse: the MAC table holds at most `MACTable.capacity` entries that age out
/// (flooding when full), each port buffers at most one read batch inbound and `maxQueue`
/// bytes outbound, and frames are parsed in place.
public final class FrameSwitch {
    public let socketPath: String
    private var listener: Int32 = -1
    private var ports: [Int32: Port] = [:]
    private var table: MACTable
    private let now: () -> Double
    private var scratch = [UInt8](repeating: 0, count: 64 * 1024)

    private final class Port {
        /// Received bytes; frames before `inStart` were handled already.
        var inbound: [UInt8] = []
        /// Queued bytes; those before `outStart` were written already.
        var outbound: [UInt8] = []
        var outStart = 0
        var queued: Int { outbound.count - outStart }
    }

    /// Frames queued for a slow port beyond this are dropped, as a real switch would.
    static let maxQueue = 4 << 20
    /// The largest frame accepted (QEMU's limit plus room for VLAN tags); a longer length
    /// prefix means the peer is not speaking the protocol, and it is disconnected.
    static let maxFrame = 65536 + 64
    /// Reads per port per round: a port that never stops sending cannot starve the others
    /// or grow its inbound buffer.
    static let readsPerRound = 16

    /// A switch for `socketPath` with a MAC table of `tableCapacity` entries aged after
    /// `aging` seconds on the clock `now` (monotonic seconds; injectable for tests).
    public init(socketPath: String, tableCapacity: Int = 4096, aging: Double = 300,
                now: @escaping () -> Double = FrameSwitch.monotonicSeconds) {
        self.socketPath = socketPath
        self.table = MACTable(capacity: tableCapacity, aging: aging)
        self.now = now
    }

    /// Seconds on the monotonic clock.
    public static func monotonicSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// MACs learned now (expired ones until the next sweep); for tests and diagnostics.
    var learnedCount: Int { table.count }

    /// Detaches from the terminal, writes the pid file, and switches frames until killed.
    /// With `logs`, also keeps the cluster's serial logs under their cap.
    public func serveForever(pidFile: String, logs: SerialLogRotator? = nil) throws {
        setsid()
        signal(SIGHUP, SIG_IGN)
        signal(SIGINT, SIG_IGN)
        signal(SIGPIPE, SIG_IGN)
        // vmctl ignores SIGTERM (it becomes cancellation) and ignored signals survive exec:
        // restore the default so `down` and `clean` can stop the switch.
        signal(SIGTERM, SIG_DFL)
        try listen()
        try AtomicFile.write("\(getpid())\n", to: pidFile)
        var nextSweep = now() + 60
        var nextLogCheck = now()
        while true {
            step(timeoutMs: logs == nil ? 5000 : 250)
            let t = now()
            if t >= nextSweep { table.sweep(now: t); nextSweep = t + 60 }
            if let logs, t >= nextLogCheck { logs.check(); nextLogCheck = t + 0.25 }
        }
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
            fds.append(pollfd(fd: fd, events: Int16(POLLIN) | (p.queued == 0 ? 0 : Int16(POLLOUT)), revents: 0))
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
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            ports[fd] = Port()
        }
    }

    private func drop(_ fd: Int32) {
        close(fd)
        ports[fd] = nil
        table.forget(port: fd)
    }

    /// Reads what the port sent (a bounded number of chunks) and forwards every complete frame.
    private func readFrom(_ fd: Int32) {
        for _ in 0..<Self.readsPerRound {
            guard let port = ports[fd] else { return }
            let n = scratch.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) { drop(fd); return }
            if n < 0 { return }
            port.inbound.append(contentsOf: scratch[0..<n])
            guard parse(port, from: fd) else { drop(fd); return }
            flushAll()
            if n < scratch.count { return }
        }
    }

    /// Forwards each complete frame of `port.inbound` where it lies, then keeps only the
    /// unfinished tail (one move per read, never per frame). False on a bad length prefix.
    private func parse(_ port: Port, from fd: Int32) -> Bool {
        let t = now()
        var off = 0
        var ok = true
        // Read in place: forwarding only ever touches other ports' outbound queues.
        let total = port.inbound.withUnsafeBufferPointer { b -> Int in
            while b.count - off >= 4 {
                let len = Int(b[off]) << 24 | Int(b[off + 1]) << 16 | Int(b[off + 2]) << 8 | Int(b[off + 3])
                guard len <= Self.maxFrame else { ok = false; break }
                guard b.count - off - 4 >= len else { break }
                forward(UnsafeBufferPointer(rebasing: b[off..<(off + 4 + len)]), from: fd, now: t)
                off += 4 + len
            }
            return b.count
        }
        if off == total { port.inbound.removeAll(keepingCapacity: true) }
        else if off > 0 { port.inbound.removeFirst(off) }
        return ok
    }

    /// Queues one frame (`wire`: length prefix and frame) for its destination port, or for
    /// every other port when the destination is a group address, unknown or expired.
    private func forward(_ wire: UnsafeBufferPointer<UInt8>, from source: Int32, now t: Double) {
        guard wire.count >= 4 + 14 else { return }
        let dst = MACTable.key(wire, at: 4), src = MACTable.key(wire, at: 10)
        if !MACTable.isGroup(src) { table.learn(src, port: source, now: t) }
        if !MACTable.isGroup(dst), let port = table.port(for: dst, now: t) {
            if port != source { enqueue(wire, to: port) }
            return
        }
        for fd in ports.keys where fd != source { enqueue(wire, to: fd) }
    }

    private func enqueue(_ wire: UnsafeBufferPointer<UInt8>, to fd: Int32) {
        guard let p = ports[fd], p.queued + wire.count <= Self.maxQueue else { return }
        p.outbound.append(contentsOf: wire)
    }

    private func flushAll() {
        for (fd, p) in ports where p.queued > 0 { flush(fd) }
    }

    private func flush(_ fd: Int32) {
        guard let p = ports[fd], p.queued > 0 else { return }
        let n = p.outbound.withUnsafeBytes { write(fd, $0.baseAddress! + p.outStart, p.queued) }
        if n > 0 {
            p.outStart += n
            if p.outStart == p.outbound.count {
                p.outbound.removeAll(keepingCapacity: p.outbound.capacity <= 256 * 1024)
                p.outStart = 0
            } else if p.outStart >= 1 << 20 {
                // Written bytes are dropped in large steps, not after every write.
                p.outbound.removeFirst(p.outStart)
                p.outStart = 0
            }
        } else if n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR {
            drop(fd)
        }
    }
}
