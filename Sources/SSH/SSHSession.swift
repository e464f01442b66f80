import Blocking
import CLibSSH2
import Foundation
import Synchronization

/// The output of one remote command.
public struct ExecResult: Sendable, Equatable {
    public var status: Int32
    /// Standard output exactly as sent (binary-safe; `stdout` is its UTF-8 reading).
    public var stdoutData: Data
    public var stderr: String
    public var stdout: String { String(decoding: stdoutData, as: UTF8.self) }
    public init(status: Int32, stdout: String, stderr: String) {
        self.init(status: status, stdoutData: Data(stdout.utf8), stderr: stderr)
    }
    public init(status: Int32, stdoutData: Data, stderr: String) {
        self.status = status; self.stdoutData = stdoutData; self.stderr = stderr
    }
}

/// Where to connect and who to be.
public struct SSHTarget: Sendable, Equatable {
    public var host: String
    public var port: Int
    public var user: String
    public var key: KeyPair
    public var hostKey: HostKeyPin
    public init(host: String, port: Int, user: String, key: KeyPair, hostKey: HostKeyPin) {
        self.host = host; self.port = port; self.user = user; self.key = key; self.hostKey = hostKey
    }
}

private let libraryReady: Mutex<Bool> = Mutex(false)

/// An authenticated libssh2 session (`LIBSSH2_SESSION` plus its socket).
///
/// libssh2 blocks, so the public calls are async and each runs on a thread of its own:
/// `connect`, `exec`, `close` (which says goodbye to the server). Calls on one session take
/// turns (libssh2 allows one at a time), and the handle is guarded: a close waits for a call
/// in progress before the session is freed.
public final class SSHSession: Sendable {
    private let session: GuardedHandle
    private let fd: Int32
    // libssh2 allows one call on a session at a time: the calls' threads take turns here.
    private let turn = Mutex(())
    public let target: SSHTarget

    /// Connects, checks the host key against the pin, then authenticates, on a thread of its own.
    public static func connect(_ target: SSHTarget, timeout: Duration = .seconds(15)) async throws -> SSHSession {
        try await onOwnThread("ssh.connect") { try SSHSession(target, timeout: timeout) }
    }

    /// Connects, checks the host key against the pin, then authenticates. Blocks.
    init(_ target: SSHTarget, timeout: Duration = .seconds(15)) throws {
        self.target = target
        libraryReady.withLock { ready in
            if !ready { libssh2_init(0); ready = true }
        }
        let deadline = ContinuousClock.now + timeout
        let fd = try Self.connectSocket(host: target.host, port: target.port, timeout: timeout)
        guard let s = vmctl_ssh2_session_init() else {
            Foundation.close(fd)
            throw SSHError(.protocolError, "start SSH session", "libssh2_session_init failed")
        }
        self.fd = fd
        session = GuardedHandle(s, label: "ssh") { s in
            libssh2_session_set_blocking(s, 1)
            libssh2_session_set_timeout(s, 2000)
            _ = vmctl_ssh2_session_disconnect(s, "bye")
            libssh2_session_free(s)
            Foundation.close(fd)
        }
        do {
            try Self.handshakeAndAuthenticate(s, fd: fd, target: target, deadline: deadline)
        } catch {
            session.closeNow()
            throw error
        }
    }

    /// Says goodbye, frees the session and closes its socket on a thread of its own, after a
    /// call in progress; returns when done. Later calls throw; later closes do nothing.
    public func close() async {
        await session.close()
    }

    /// Closes on the calling thread (a thread of the session's own calls).
    func closeHere() {
        session.closeNow()
    }

    private static func connectSocket(host: String, port: Int, timeout: Duration) throws -> Int32 {
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        guard inet_pton(AF_INET, host, &addr.sin_addr) == 1 else {
            throw SSHError(.connect, "connect to \(host):\(port)", "not an IPv4 address")
        }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw SSHError(.connect, "connect to \(host):\(port)", String(cString: strerror(errno))) }
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Foundation.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if rc != 0 && errno != EINPROGRESS {
            let msg = String(cString: strerror(errno))
            Foundation.close(fd)
            throw SSHError(.connect, "connect to \(host):\(port)", msg)
        }
        if rc != 0 {
            var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            let ms = Int32(timeout.components.seconds * 1000)
            let n = poll(&p, 1, ms)
            var soErr: Int32 = 0
            var len = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &soErr, &len)
            if n <= 0 || soErr != 0 {
                Foundation.close(fd)
                let msg = n == 0 ? "timed out" : String(cString: strerror(soErr != 0 ? soErr : errno))
                throw SSHError(n == 0 ? .timeout : .connect, "connect to \(host):\(port)", msg)
            }
        }
        _ = fcntl(fd, F_SETFL, flags)
        return fd
    }

    private static func millisLeft(_ deadline: ContinuousClock.Instant) -> Int {
        let left = deadline - ContinuousClock.now
        return max(1, Int(left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000))
    }

    private static func handshakeAndAuthenticate(_ s: OpaquePointer, fd: Int32, target: SSHTarget,
                                                 deadline: ContinuousClock.Instant) throws {
        libssh2_session_set_blocking(s, 1)
        libssh2_session_set_timeout(s, millisLeft(deadline))
        // Ask for the key type we pinned, so the server offers that one.
        _ = libssh2_session_method_pref(s, LIBSSH2_METHOD_HOSTKEY, target.hostKey.type)
        var rc = libssh2_session_handshake(s, libssh2_socket_t(fd))
        if rc != 0 { throw SSHError.last(s, "SSH handshake with \(target.host):\(target.port)", code: rc) }

        var len = 0
        var type: Int32 = 0
        guard let keyPtr = libssh2_session_hostkey(s, &len, &type) else {
            throw SSHError.last(s, "read host key of \(target.host):\(target.port)", code: -1)
        }
        let blob = Data(bytes: keyPtr, count: len)
        guard target.hostKey.matches(blob: blob) else {
            throw SSHError(.hostKeyMismatch, "verify host key of \(target.host):\(target.port)",
                           "the server's key is not the one vmctl pinned (\(target.hostKey.type)); refusing to connect")
        }
        libssh2_session_set_timeout(s, millisLeft(deadline))
        rc = vmctl_ssh2_userauth_publickey_fromfile(s, target.user, target.key.publicKeyPath, target.key.privateKeyPath)
        if rc != 0 { throw SSHError.last(s, "authenticate as \(target.user) on \(target.host):\(target.port)", code: rc) }
    }

    /// Waits until the socket is ready in the direction libssh2 is blocked on.
    /// `also`: directions an earlier call in the same round was blocked on. Past `deadline`
    /// it throws `late`: the caller's error, which names the limit that was set.
    private func waitSocket(_ s: OpaquePointer, deadline: ContinuousClock.Instant, late: SSHError, also: Int32 = 0) throws {
        let dir = libssh2_session_block_directions(s) | also
        var events: Int16 = 0
        if dir & LIBSSH2_SESSION_BLOCK_INBOUND != 0 { events |= Int16(POLLIN) }
        if dir & LIBSSH2_SESSION_BLOCK_OUTBOUND != 0 { events |= Int16(POLLOUT) }
        if events == 0 { events = Int16(POLLIN) }
        if ContinuousClock.now >= deadline { throw late }
        var p = pollfd(fd: fd, events: events, revents: 0)
        _ = poll(&p, 1, Int32(min(Self.millisLeft(deadline), 1000)))
    }

    /// Runs `command`, feeding it `input` on stdin, and returns its exit status and output.
    /// At most `limit` bytes of each of stdout and stderr are kept: past that the command is
    /// abandoned with an `.outputLimit` error. `timeout` bounds the whole exchange (and
    /// `deadline`, if given and sooner).
    public func exec(_ command: String, input: Data? = nil, timeout: Duration = .seconds(60),
                     deadline: ContinuousClock.Instant? = nil, limit: Int = OutputCapture.defaultLimit) async throws -> ExecResult {
        try await onOwnThread("ssh.exec") { [self] in
            try execBlocking(command, input: input, timeout: timeout, deadline: deadline, limit: limit)
        }
    }

    /// `exec`, on the calling thread. Blocks.
    func execBlocking(_ command: String, input: Data? = nil, timeout: Duration = .seconds(60),
                      deadline: ContinuousClock.Instant? = nil, limit: Int = OutputCapture.defaultLimit) throws -> ExecResult {
        var out = OutputCapture(stream: "stdout", limit: limit)
        var err = OutputCapture(stream: "stderr", limit: limit)
        var offset = 0
        let source: ((UnsafeMutableRawBufferPointer) throws -> Int)? = input.map { input in
            { buf in
                let n = min(buf.count, input.count - offset)
                if n > 0 { input.copyBytes(to: buf.bindMemory(to: UInt8.self), from: offset..<(offset + n)) }
                offset += n
                return n
            }
        }
        let status = try stream(command, input: source, output: { try out.append($0) },
                                errorOutput: { try err.append($0) }, timeout: timeout, deadline: deadline)
        return ExecResult(status: status, stdoutData: out.data, stderr: err.text)
    }

    /// Runs `command` with its stdin read from `stdin` (to end of file; nil: none) and its
    /// stdout handed to `stdout` piece by piece as it arrives, so neither side is held in
    /// memory. Its stderr goes to `stderr` the same way, or when that is nil is captured
    /// (at most `OutputCapture.defaultLimit`) into the result. The result's `stdoutData` is empty.
    /// Blocks: `run(_:_:stdin:stdout:stderr:timeout:)` puts it on a thread of its own.
    func execBlocking(_ command: String, stdin: FileHandle?, stdout: (Data) throws -> Void,
                     stderr: ((Data) throws -> Void)? = nil, timeout: Duration = .seconds(60),
                     deadline: ContinuousClock.Instant? = nil) throws -> ExecResult {
        let source: ((UnsafeMutableRawBufferPointer) throws -> Int)? = stdin.map { h in
            { buf in
                while true {
                    let n = read(h.fileDescriptor, buf.baseAddress, buf.count)
                    if n >= 0 { return n }
                    if errno != EINTR { throw SSHError(.protocolError, "read the input for \(command.prefix(60))", String(cString: strerror(errno))) }
                }
            }
        }
        var err = OutputCapture(stream: "stderr")
        let status = try stream(command, input: source, output: stdout,
                                errorOutput: stderr ?? { try err.append($0) }, timeout: timeout, deadline: deadline)
        return ExecResult(status: status, stdoutData: Data(), stderr: err.text)
    }

    /// `10 s`, `1.5 s`: a timeout as people write it.
    static func describe(_ d: Duration) -> String {
        let c = d.components
        if c.attoseconds == 0 { return "\(c.seconds) s" }
        return String(format: "%.1f s", Double(c.seconds) + Double(c.attoseconds) / 1e18)
    }

    /// The exec loop: writes what `input` yields (0: end, then EOF is sent) while handing
    /// stdout to `output` and stderr to `errorOutput`, until the command ends; returns its exit
    /// status. The deadline (`timeout` from now, or `until` if sooner) is checked on every
    /// round, so a command that never stops printing (its reads always return data) is
    /// abandoned on time all the same.
    private func stream(_ command: String, input: ((UnsafeMutableRawBufferPointer) throws -> Int)?,
                        output: (Data) throws -> Void, errorOutput: (Data) throws -> Void,
                        timeout: Duration, deadline until: ContinuousClock.Instant?) throws -> Int32 {
        try turn.withLock { _ in
            try session.use(orThrow: SSHError(.protocolError, "run \(command)", "session is closed")) { s in
                try stream(s, command, input: input, output: output, errorOutput: errorOutput, timeout: timeout, deadline: until)
            }
        }
    }

    /// `stream`, with the session's handle in hand and the session's turn taken.
    private func stream(_ s: OpaquePointer, _ command: String, input: ((UnsafeMutableRawBufferPointer) throws -> Int)?,
                        output: (Data) throws -> Void, errorOutput: (Data) throws -> Void,
                        timeout: Duration, deadline until: ContinuousClock.Instant?) throws -> Int32 {
        let own = ContinuousClock.now + timeout
        let deadline = until.map { min($0, own) } ?? own
        let what = "run `\(command.prefix(60))` on \(target.host):\(target.port)"
        let late = SSHError(.timeout, what, "timed out after \(Self.describe(timeout))")
        libssh2_session_set_blocking(s, 0)
        defer { libssh2_session_set_blocking(s, 1) }

        var channel: OpaquePointer?
        while channel == nil {
            channel = vmctl_ssh2_channel_open_session(s)
            if channel == nil {
                let rc = libssh2_session_last_errno(s)
                guard rc == LIBSSH2_ERROR_EAGAIN else { throw SSHError.last(s, what, code: rc) }
                try waitSocket(s, deadline: deadline, late: late)
            }
        }
        defer { libssh2_channel_free(channel) }
        try retrying(s, deadline, late) { vmctl_ssh2_channel_exec(channel, command) }

        // A capture that is full ends the command, named as this command.
        func deliver(_ sink: (Data) throws -> Void, _ piece: Data) throws {
            do { try sink(piece) } catch let e as OutputLimitExceeded { throw SSHError(.outputLimit, what, e.description) }
        }
        // Input goes out as the channel takes it, output is read meanwhile: a command that
        // prints while it reads never stalls on a full window.
        var pendingIn = [CChar](repeating: 0, count: 32 * 1024)
        var inStart = 0, inEnd = 0
        // Without input the command's stdin still ends at once (as `ssh -n` does): a command
        // that reads it gets end-of-file, not a wait until the timeout.
        var inputDone = input == nil, eofSent = false
        var buf = [CChar](repeating: 0, count: 32 * 1024)
        while true {
            if ContinuousClock.now >= deadline { throw late }
            var progressed = false
            var writeBlocked: Int32 = 0  // the reads below overwrite libssh2's record of it
            if !inputDone, inStart == inEnd, let input {
                let n = try pendingIn.withUnsafeMutableBytes { try input($0) }
                if n == 0 { inputDone = true } else { inStart = 0; inEnd = n }
            }
            if inStart < inEnd {
                let n = pendingIn.withUnsafeBufferPointer { vmctl_ssh2_channel_write(channel, $0.baseAddress! + inStart, inEnd - inStart) }
                if n > 0 { inStart += n; progressed = true } else if n == Int(LIBSSH2_ERROR_EAGAIN) {
                    writeBlocked = libssh2_session_block_directions(s)
                } else {
                    throw SSHError.last(s, what, code: Int32(n))
                }
            } else if inputDone && !eofSent {
                let rc = libssh2_channel_send_eof(channel)
                if rc == 0 { eofSent = true; progressed = true } else if rc == LIBSSH2_ERROR_EAGAIN {
                    writeBlocked = libssh2_session_block_directions(s)
                } else {
                    throw SSHError.last(s, what, code: rc)
                }
            }
            let n1 = vmctl_ssh2_channel_read(channel, &buf, buf.count)
            if n1 > 0 { try deliver(output, buf.withUnsafeBytes { Data($0.prefix(n1)) }) }
            let n2 = vmctl_ssh2_channel_read_stderr(channel, &buf, buf.count)
            if n2 > 0 { try deliver(errorOutput, buf.withUnsafeBytes { Data($0.prefix(n2)) }) }
            if n1 < 0 && n1 != Int(LIBSSH2_ERROR_EAGAIN) { throw SSHError.last(s, what, code: Int32(n1)) }
            if n2 < 0 && n2 != Int(LIBSSH2_ERROR_EAGAIN) { throw SSHError.last(s, what, code: Int32(n2)) }
            if progressed || n1 > 0 || n2 > 0 { continue }
            if eofSent && libssh2_channel_eof(channel) == 1 { break }
            try waitSocket(s, deadline: deadline, late: late, also: writeBlocked)
        }
        try retrying(s, deadline, late) { libssh2_channel_close(channel) }
        try retrying(s, deadline, late) { libssh2_channel_wait_closed(channel) }
        return libssh2_channel_get_exit_status(channel)
    }

    /// `call` until it is done, waiting on the socket while it would block; `late` past `deadline`.
    private func retrying(_ s: OpaquePointer, _ deadline: ContinuousClock.Instant, _ late: SSHError,
                          _ call: () -> Int32) throws {
        while true {
            let rc = call()
            if rc == LIBSSH2_ERROR_EAGAIN { try waitSocket(s, deadline: deadline, late: late); continue }
            if rc < 0 { throw SSHError.last(s, late.operation, code: rc) }
            return
        }
    }

    /// Connects and runs one command on a thread of its own, capturing its output (at most
    /// `OutputCapture.defaultLimit` per stream). `timeout` covers connecting too.
    public static func run(_ target: SSHTarget, _ command: String, input: Data? = nil,
                           timeout: Duration = .seconds(60)) async throws -> ExecResult {
        try await onOwnThread("ssh.exec") {
            let deadline = ContinuousClock.now + timeout
            let session = try SSHSession(target, timeout: min(timeout, .seconds(20)))
            defer { session.closeHere() }
            return try session.execBlocking(command, input: input, timeout: timeout, deadline: deadline)
        }
    }

    /// Connects, then runs `command` timed by the host's wall clock (seconds since 1970 just
    /// before and just after it: connecting and authenticating do not count), then runs on
    /// the same session what `next` makes of its result and those two times. `timeout` covers
    /// all of it.
    public static func timedThen(_ target: SSHTarget, _ command: String, timeout: Duration = .seconds(60),
                                 next: @escaping @Sendable (ExecResult, Double, Double) throws -> String) async throws
        -> (first: ExecResult, before: Double, after: Double, second: ExecResult) {
        try await onOwnThread("ssh.exec") {
            let deadline = ContinuousClock.now + timeout
            let session = try SSHSession(target, timeout: min(timeout, .seconds(20)))
            defer { session.closeHere() }
            let before = Date().timeIntervalSince1970
            let first = try session.execBlocking(command, timeout: timeout, deadline: deadline)
            let after = Date().timeIntervalSince1970
            let second = try session.execBlocking(try next(first, before, after), timeout: timeout, deadline: deadline)
            return (first, before, after, second)
        }
    }

    /// Connects and runs one command on a thread of its own, streaming: stdin from `stdin`
    /// (to end of file), stdout to `stdout` as it arrives (the result's `stdoutData` is empty),
    /// stderr to `stderr` likewise or, when nil, captured into the result. `timeout` covers
    /// connecting too.
    public static func run(_ target: SSHTarget, _ command: String, stdin: FileHandle?,
                           stdout: @escaping @Sendable (Data) throws -> Void,
                           stderr: (@Sendable (Data) throws -> Void)? = nil,
                           timeout: Duration = .seconds(60)) async throws -> ExecResult {
        try await onOwnThread("ssh.exec") {
            let deadline = ContinuousClock.now + timeout
            let session = try SSHSession(target, timeout: min(timeout, .seconds(20)))
            defer { session.closeHere() }
            return try session.execBlocking(command, stdin: stdin, stdout: stdout, stderr: stderr, timeout: timeout, deadline: deadline)
        }
    }
}
