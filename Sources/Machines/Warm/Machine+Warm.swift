import CHost
import Blocking
import CloudInit
import Foundation
internal import Libvirt
import SSH
import VMCtlSupport

extension WarmSnapshot {
    /// Boots `template` (a machine spec of the snapshot's image and shape, its files in a
    /// directory of their own), waits until its agent says it is idle, saves it through
    /// libvirt and keeps its disk as the clones' base; the template's domain goes. One maker
    /// at a time per key (a second waits, then finds the first's snapshot).
    public static func make(_ key: Key, template spec: MachineSpec, on host: HostConnection, in root: String,
                            deadline: ContinuousClock.Instant) async throws -> WarmSnapshot {
        try FileAccess.directory(root, qemu: true)
        let lock = try await FileLock.exclusive("\(root)/\(key.name).lock")
        defer { lock.release() }
        if let done = find(key, in: root) { return done }
        let began = ContinuousClock.now
        let final = directory(for: key, in: root)
        try? FileManager.default.removeItem(atPath: final)
        let machine = Machine(spec, on: host)
        let connection = host.libvirt
        do {
            let mgmt = spec.networks.prefix(1).map(\.guestInterface)
            _ = try await machine.makeFiles(seed: { k in
                WarmAgent.seed(name: spec.name, user: spec.login.user,
                               hostKey: .init(privateKey: try k.privateKey(), publicKey: try k.publicKeyLine()), interfaces: mgmt,
                               giveBack: spec.memoryLevers.balloon && spec.memoryLevers.dropCaches)
            })
            try await connection.define(xml: try machine.domainSpec().xml()).close()
            let offset = try await machine.start()
            let watch = GuestWatch(connection: connection, domainName: spec.name, node: spec.hostname, serialLog: spec.files.serialLog)
            _ = try await watch.waitFor(WarmAgent.idleMarker, from: offset, deadline: deadline, stall: .standard())
            guard let d = try await connection.domain(named: spec.name) else { throw VMCtlError("warm template \(spec.name) vanished") }
            let save = "\(spec.files.directory)/guest.save"
            do { try await d.save(to: save); d.close() } catch { d.close(); throw error }
            chmod(save, 0o600)
            let memoryMiB = spec.memoryMiB
            let (leftOut, unchanged) = try await onOwnThread("warm.lean") { WarmSnapshot.leaveOutZeroPages(save, memoryMiB: memoryMiB) }
            try FileAccess.directory(final, qemu: true)
            try FileManager.default.moveItem(atPath: save, toPath: saveFile(final))
            try FileManager.default.moveItem(atPath: spec.files.disk, toPath: diskFile(final))
            chmod(diskFile(final), 0o444)
            try FileAccess.shareWithQemu(diskFile(final))
            let bytes = ((try? FileManager.default.attributesOfItem(atPath: saveFile(final)))?[.size] as? UInt64) ?? 0
            let meta = Meta(key: key, macs: spec.networks.map(\.mac), user: spec.login.user, madeAt: Date(),
                            seconds: (ContinuousClock.now - began).secondsDouble, saveBytes: bytes,
                            zeroPagesLeftOut: leftOut, streamUnchanged: unchanged)
            try AtomicFile.write(try JSONEncoder.iso.encode(meta), to: metaFile(final))
            try await machine.remove()
            return WarmSnapshot(directory: final, meta: meta)
        } catch {
            try? await machine.remove()
            try? FileManager.default.removeItem(atPath: final)
            throw error
        }
    }
}

extension WarmSnapshot {
    /// Rewrites the save at `path` without the zero pages of guest RAM that every clone's
    /// fresh RAM holds already (MigrationStream: 0.4 s less QEMU CPU per restore here). A
    /// stream of a shape the rewrite does not know stays as libvirt wrote it, and says why.
    static func leaveOutZeroPages(_ path: String, memoryMiB: Int) -> (leftOut: Int?, unchanged: String?) {
        let lean = path + ".lean"
        do {
            let summary = try MigrationStream.leaveOutZeroPages(
                from: path, to: lean, prefix: try SaveImage.read(path).streamOffset,
                block: "pc.ram", blockBytes: UInt64(memoryMiB) << 20)
            guard rename(lean, path) == 0 else { throw VMCtlError("cannot replace \(path): \(String(cString: strerror(errno)))") }
            return (summary.zeroPagesLeftOut, nil)
        } catch {
            unlink(lean)
            return (nil, "\(error)")
        }
    }
}

extension Machine {
    /// Creates this machine as a clone of `snapshot`, running but not yet itself: its files as
    /// `create` makes them (the overlay on the snapshot's disk; the seed a later cold boot
    /// reads), its domain defined under `spec.uuid`, then restored from the snapshot's stream
    /// behind a header with this machine's XML (through a FIFO: nothing is copied). Returns the
    /// identity to give it (`giveIdentity`), its host key's pin and where its serial log starts.
    public func restore(from snapshot: WarmSnapshot) async throws -> (identity: WarmIdentity, pin: HostKeyPin, offset: UInt64) {
        guard spec.uuid != nil else { throw VMCtlError("machine \(spec.hostname): a warm clone needs its UUID chosen first") }
        guard snapshot.meta.macs.count == spec.networks.count else {
            throw VMCtlError("warm snapshot \(snapshot.meta.key.name) has \(snapshot.meta.macs.count) NIC(s), machine \(spec.hostname) \(spec.networks.count)")
        }
        var seed: SeedConfig?
        let hostKey = try await makeFiles(base: snapshot.disk, seed: { k in
            let s = try seedConfig(hostKey: k); seed = s; return s
        })
        guard let s = seed else { throw VMCtlError("machine \(spec.hostname): no seed was made") }
        let xml = try domainSpec().xml()
        try await connection.define(xml: xml).close()
        let offset = SerialLogWatcher.size(spec.files.serialLog)
        let saved = try SaveImage.read(snapshot.saveFile)
        let header = SaveImage(xml: xml, cookie: saved.cookie, wasRunning: true).encoded()
        try await Self.restoreThroughFIFO(spec.files.restoreFIFO, header: header, stream: snapshot.saveFile,
                                          from: saved.streamOffset, connection: connection)
        closeRestoredSockets()
        let identity = WarmIdentity(
            hostname: spec.hostname, machineID: WarmIdentity.newMachineID(), user: spec.login.user,
            authorizedKeys: s.user.authorizedKeys, hostKey: s.hostKey, etcHosts: s.etcHosts(),
            nics: zip(snapshot.meta.macs, spec.networks).map { template, net in
                // A user-mode NIC keeps the template's MAC: its slirp is the clone's alone, and
                // slirp keeps sending to the MAC it learned (a changed MAC cut SSH off).
                (template, net is UserModeNetwork ? template : net.mac, net.guestInterface.addresses)
            })
        return (identity, try hostKey.pin(), offset)
    }

    /// After a restore: QEMU made its sockets before libvirt returned; only their owner (and
    /// root) may connect.
    func closeRestoredSockets() {
        if spec.vncPort == nil { chmod(spec.files.vncSocket, 0o600) }
        chmod(spec.files.identitySocket, 0o600)
    }

    /// Sends a restored clone its identity over its port; the agent applies it, starts sshd,
    /// and prints the ready line a cold boot prints. Throws with the agent's reason.
    public func giveIdentity(_ identity: WarmIdentity, deadline: ContinuousClock.Instant) async throws {
        let answer = try await IdentityPort.deliver(identity.script(), to: spec.files.identitySocket, deadline: deadline)
        guard answer == "ok" else {
            throw NodeFailure(node: spec.hostname, reason: "its warm identity was not applied: \(answer)",
                              serialTail: SerialLogWatcher.tail(spec.files.serialLog), code: .nodeFailed)
        }
    }

    /// Feeds `header` then the stream of `stream` (from byte `offset`) into a FIFO while
    /// libvirt restores from it. If libvirt fails before it opens the FIFO, the writer is
    /// released by opening the other end; the FIFO goes either way.
    static func restoreThroughFIFO(_ fifo: String, header: Data, stream: String, from offset: UInt64,
                                   connection: Connection) async throws {
        unlink(fifo)
        guard mkfifo(fifo, 0o600) == 0 else { throw VMCtlError("cannot make \(fifo): \(String(cString: strerror(errno)))") }
        defer { unlink(fifo) }
        // libvirt opens the file as root and hands QEMU the descriptor: QEMU never opens it.
        async let fed: Void = onOwnThread("warm.feed") { try feed(fifo, header: header, stream: stream, from: offset) }
        do {
            try await connection.restore(from: fifo)
        } catch {
            let fd = open(fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC)  // lets a writer still waiting to open go on
            try? await fed
            if fd >= 0 { close(fd) }
            throw error
        }
        try await fed
    }

    /// The writer's side: blocks until libvirt opens the FIFO, then copies.
    static func feed(_ fifo: String, header: Data, stream: String, from offset: UInt64) throws {
        let out = open(fifo, O_WRONLY | O_CLOEXEC)
        guard out >= 0 else { throw VMCtlError("cannot open \(fifo): \(String(cString: strerror(errno)))") }
        defer { close(out) }
        let input = open(stream, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { throw VMCtlError("cannot read \(stream): \(String(cString: strerror(errno)))") }
        defer { close(input) }
        func writeAll(_ p: UnsafeRawPointer, _ n: Int) throws {
            var done = 0
            while done < n {
                let w = write(out, p + done, n - done)
                if w < 0 && errno == EINTR { continue }
                guard w > 0 else { throw VMCtlError("restore stream cut off: \(String(cString: strerror(errno)))") }
                done += w
            }
        }
        // A 1 MiB pipe: QEMU and this writer wake each other 16 times less than with 64 KiB.
        _ = vmctl_grow_pipe(out, 1 << 20)
        try header.withUnsafeBytes { try writeAll($0.baseAddress!, $0.count) }
        // The stream's pages go from the page cache into the pipe without a copy through here
        // (splice); copied only where splice cannot be used.
        var from = Int64(offset)
        while true {
            let n = vmctl_splice_to_pipe(input, &from, out, 1 << 20)
            if n > 0 { continue }
            if n == 0 { return }
            if errno == EINTR || errno == EAGAIN { continue }
            guard errno == EINVAL || errno == ENOSYS else {
                throw VMCtlError("restore stream cut off: \(String(cString: strerror(errno)))")
            }
            break
        }
        var buf = [UInt8](repeating: 0, count: 1 << 20)
        var at = off_t(from)
        while true {
            let n = buf.withUnsafeMutableBytes { pread(input, $0.baseAddress!, $0.count, at) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw VMCtlError("cannot read \(stream): \(String(cString: strerror(errno)))") }
            if n == 0 { return }
            try buf.withUnsafeBytes { try writeAll($0.baseAddress!, n) }
            at += off_t(n)
        }
    }
}
