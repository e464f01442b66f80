import Foundation
import Libvirt
import Testing
@testable import VMCtlSupport
@testable import Images
@testable import Machines
@testable import Clusters
@testable import Media

/// The security review's checks on real guests (same serialized suite as the other VM tests).
extension RealVMTests {
    @Test("security: a planted /tmp/vmctl-0 is never written; every file of a running cluster is private or QEMU's; QEMU runs as libvirt-qemu; VNC is a root-only socket; --force on an image in use refused")
    func privateFilesAndConfinedQemu() async throws {
        try await VMFixture.ensureImage()
        let name = "it-sec"
        // A local user (nobody) got to /tmp/vmctl-0 first: a log link pointing at their file.
        let planted = try PlantedTmp.plant()
        defer { planted.remove() }
        try await VMFixture.withCluster(name) {
            let up = try await VMFixture.vmctl(["cluster", "up", "1", "--name", name, "--memory", "1G"])
            try #require(up.status == 0, "up failed:\n\(up.out)\n\(up.err)")
            #expect(planted.untouched(), "root wrote into the planted /tmp/vmctl-0")
            // libvirt's log went to the state dir instead (its taint warning for custom QEMU args).
            #expect(FileManager.default.fileExists(atPath: "\(VMFixture.home)/log/libvirt.log"))

            // QEMU runs as libvirt-qemu, never root.
            let qemuUID = try #require(getpwnam("libvirt-qemu")?.pointee.pw_uid)
            let uids = VMFixture.qemuUIDs(guest: "\(name)-node1")
            #expect(!uids.isEmpty && uids.allSatisfy { $0 == qemuUID }, "QEMU uids \(uids)")

            let dir = VMFixture.state.cluster(name)
            let files = try VMFixture.walk(dir)
            // Nothing under the cluster is readable, writable or enterable by another user...
            let byNobody = try await VMFixture.accessible(as: "nobody", files)
            #expect(byNobody.isEmpty, "readable by nobody: \(byNobody)")
            // ...and QEMU's user reaches only what QEMU opens.
            let byQemu = try await VMFixture.accessible(as: "libvirt-qemu", files.filter { !$0.hasPrefix("\(dir)/libvirt/") })
            let allowed: Set<String> = ["", "/nodes", "/nodes/node1", "/nodes/node1/disk.qcow2", "/nodes/node1/seed.iso",
                                        "/nodes/node1/serial.log", "/nodes/node1/vnc", "/nodes/node1/vnc/vnc.sock",
                                        "/nodes/node1/vnc/identity.sock",
                                        "/switch.sock", "/libvirt"]
            let extra = byQemu.map { String($0.dropFirst(dir.count)) }.filter { !allowed.contains($0) }
            #expect(extra.isEmpty, "QEMU's user can open: \(extra)")
            for secret in ["/state.json", "/ssh/id_ed25519", "/nodes/node1/ssh_host_ed25519_key", "/ssh/known_hosts"] {
                var st = stat()
                #expect(lstat(dir + secret, &st) == 0 && st.st_uid == 0 && st.st_mode & 0o777 == 0o600, "\(secret) mode")
            }
            // No secret in the image store; its base disk is QEMU's group's to read, nobody else's.
            let img = try #require(try ImageStore(state: VMFixture.state).find("debian-12"))
            let storeNobody = try await VMFixture.accessible(as: "nobody", try VMFixture.walk(img.directory))
            #expect(storeNobody.isEmpty, "\(storeNobody)")
            // The warm snapshot: nobody reads any of it; QEMU's user reads its disk, never the saved RAM.
            let warm = try VMFixture.walk(VMFixture.state.warm)
            let warmNobody = try await VMFixture.accessible(as: "nobody", warm)
            #expect(warmNobody.isEmpty, "\(warmNobody)")
            let warmQemu = try await VMFixture.accessible(as: "libvirt-qemu", warm.filter { $0.hasSuffix("/guest.save") })
            #expect(!warm.filter { $0.hasSuffix("/guest.save") }.isEmpty && warmQemu.isEmpty, "\(warm) \(warmQemu)")

            // VNC: a UNIX socket only QEMU's user (and root) can open; info says how to connect.
            let s = try #require(ClusterRegistry(state: VMFixture.state).load(name))
            #expect(s.nodes[0].plan.vncPort == nil)
            let info = try await VMFixture.vmctl(["cluster", "info", "--name", name])
            #expect(info.out.contains(s.nodes[0].plan.vncSocket) && info.out.contains("vnc+unix://"), "\(info.out)")
            var st = stat()
            #expect(lstat(s.nodes[0].plan.vncSocket, &st) == 0 && (st.st_mode & S_IFMT) == S_IFSOCK && st.st_mode & 0o077 == 0)
            let listening = try String(contentsOfFile: "/proc/net/tcp", encoding: .utf8)
            #expect(!listening.contains(":170C "), "nothing listens on TCP 5900")

            // Rebuilding the image in place under a running cluster is refused, and nothing changes.
            let force = try await VMFixture.vmctl(["image", "build", "debian-12", "--force"])
            #expect(force.status == 2 && force.err.contains("in use by cluster(s)") && force.err.contains(name), "\(force.err)")
            #expect(try ImageStore(state: VMFixture.state).find("debian-12")?.created == img.created)
        }
    }

    @Test("security: on a shared qemu:///system, `clean --name a` removes only a's domains, never a-node1's (found by label, not name prefix)")
    func cleanOnlyOwnDomains() async throws {
        try await VMFixture.ensureImage()
        let daemon = try await SystemLibvirt.start()
        defer { daemon.stop() }
        let (a, b) = ("it-a", "it-a-node1")
        try await VMFixture.withCluster(b) {
            try await VMFixture.withCluster(a) {
                for n in [a, b] {
                    let up = try await VMFixture.vmctl(["cluster", "up", "1", "--name", n, "--memory", "1G",
                                                        "--connect", "qemu:///system"])
                    try #require(up.status == 0, "up \(n) failed:\n\(up.out)\n\(up.err)")
                }
                #expect(try await SystemLibvirt.state("\(b)-node1") == "running")
                let clean = try await VMFixture.vmctl(["cluster", "clean", "--name", a])
                #expect(clean.status == 0, "\(clean.err)")
                #expect(try await SystemLibvirt.state("\(a)-node1") == nil, "a's domain is gone")
                #expect(try await SystemLibvirt.state("\(b)-node1") == "running", "a-node1's domain must survive")
                let ssh = try await VMFixture.vmctl(["cluster", "ssh", "--name", b, "node1", "--", "hostname"])
                #expect(ssh.out == "node1\n", "\(ssh.err)")
                #expect(FileManager.default.fileExists(atPath: VMFixture.state.cluster(b)))
            }
            let clean = try await VMFixture.vmctl(["cluster", "clean", "--name", b])
            #expect(clean.status == 0, "\(clean.err)")
            #expect(try await SystemLibvirt.state("\(b)-node1") == nil)
        }
    }
}

/// A `/tmp/vmctl-0` made by `nobody` before vmctl runs, with a `libvirt.log` link to a file of
/// theirs: what an attacker would plant. Removed afterwards only if this test made it.
struct PlantedTmp {
    static let dir = "/tmp/vmctl-\(getuid())"
    let made: Bool
    let victim: String
    let before: [String]

    static func plant() throws -> PlantedTmp {
        let fm = FileManager.default
        let victim = "/tmp/vmctl-victim-\(getpid())"
        var made = false
        if !fm.fileExists(atPath: dir) {
            guard mkdir(dir, 0o777) == 0 else { throw VMCtlError("cannot plant \(dir)") }
            chmod(dir, 0o777)
            made = true
        }
        fm.createFile(atPath: victim, contents: Data())
        chown(victim, 65534, 65534)
        if made {
            try? fm.createSymbolicLink(atPath: "\(dir)/libvirt.log", withDestinationPath: victim)
            lchown("\(dir)/libvirt.log", 65534, 65534)
            chown(dir, 65534, 65534)
        }
        return PlantedTmp(made: made, victim: victim, before: ((try? fm.contentsOfDirectory(atPath: dir)) ?? []).sorted())
    }

    /// The victim is still empty and nothing was added to the planted directory.
    func untouched() -> Bool {
        let size = (try? FileManager.default.attributesOfItem(atPath: victim)[.size] as? UInt64) ?? 1
        let now = ((try? FileManager.default.contentsOfDirectory(atPath: Self.dir)) ?? []).sorted()
        return size == 0 && now == before
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: victim)
        if made { try? FileManager.default.removeItem(atPath: Self.dir) }
    }
}

/// A real `qemu:///system`: `virtlogd -d; libvirtd -d` started by the test and stopped by PID,
/// unless one already runs (then it is used and left alone).
struct SystemLibvirt {
    var pids: [pid_t]

    static func start() async throws -> SystemLibvirt {
        if running("libvirtd") { return SystemLibvirt(pids: []) }
        var pids: [pid_t] = []
        for (daemon, pidFile) in [("virtlogd", "/run/virtlogd.pid"), ("libvirtd", "/run/libvirtd.pid")] where !running(daemon) {
            try await Self.daemonize("/usr/sbin/\(daemon)")
            for _ in 0..<100 {
                if let t = try? String(contentsOfFile: pidFile, encoding: .utf8), let p = pid_t(t.trimmingCharacters(in: .whitespacesAndNewlines)),
                   kill(p, 0) == 0 { pids.append(p); break }
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        for _ in 0..<100 where !FileManager.default.fileExists(atPath: "/run/libvirt/libvirt-sock") {
            try await Task.sleep(for: .milliseconds(100))
        }
        return SystemLibvirt(pids: pids)
    }

    /// Runs `path -d` with stdio on /dev/null and waits for the parent to exit (the daemon
    /// goes on). posix_spawn + waitpid, not Foundation's Process: waiting on a daemonizing
    /// child through Process hung a fresh-clone `make test` here for good.
    static func daemonize(_ path: String) async throws {
        let status = try await Task.detached { () throws -> Int32 in
            var actions = posix_spawn_file_actions_t()
            posix_spawn_file_actions_init(&actions)
            defer { posix_spawn_file_actions_destroy(&actions) }
            for fd: Int32 in 0...2 {
                posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", fd == 0 ? O_RDONLY : O_WRONLY, 0)
            }
            let argv: [UnsafeMutablePointer<CChar>?] = [strdup(path), strdup("-d"), nil]
            defer { argv.forEach { free($0) } }
            var pid: pid_t = 0
            let rc = posix_spawn(&pid, path, &actions, nil, argv, environ)
            guard rc == 0 else { throw VMCtlError("cannot start \(path): \(String(cString: strerror(rc)))") }
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 {
                if errno != EINTR { return 0 }  // reaped elsewhere: it has exited
            }
            return status
        }.value
        guard status == 0 else { throw VMCtlError("\(path) -d exited with status \(status)") }
    }

    /// Stops the daemons this test started, libvirtd first, by PID.
    func stop() {
        for p in pids.reversed() {
            kill(p, SIGTERM)
            for _ in 0..<100 where kill(p, 0) == 0 { usleep(50_000) }
            if kill(p, 0) == 0 { kill(p, SIGKILL) }
        }
    }

    static func running(_ name: String) -> Bool {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).contains { pid in
            Int(pid) != nil && (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8))?
                .trimmingCharacters(in: .whitespacesAndNewlines) == name
        }
    }

    /// The domain's state on qemu:///system, or nil when it is not defined.
    /// Asked through `virsh`, not libvirt in this process: once a test here has opened an
    /// embedded root, the in-process QEMU driver claims `qemu:///system` ("Missing URI
    /// parameter 'root'").
    static func state(_ domain: String) async throws -> String? {
        let out = try await VMFixture.run("/bin/sh", ["-c", "virsh -c qemu:///system domstate \"$0\" 2>/dev/null || echo __none__", domain])
        let state = out.trimmingCharacters(in: .whitespacesAndNewlines)
        if state == "__none__" || state.isEmpty { return nil }
        return state.replacingOccurrences(of: " ", with: "-")
    }
}

extension VMFixture {
    /// uids of the QEMU processes running `guest`.
    static func qemuUIDs(guest: String) -> [uid_t] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { pid -> uid_t? in
            guard Int(pid) != nil, let raw = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return nil }
            let cmd = String(decoding: raw.map { $0 == 0 ? 32 : $0 }, as: UTF8.self)
            guard cmd.contains("qemu-system"), cmd.contains("guest=\(guest),") else { return nil }
            let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
            return status.split(separator: "\n").first { $0.hasPrefix("Uid:") }
                .flatMap { $0.split(whereSeparator: { $0 == "\t" || $0 == " " }).dropFirst().first }.flatMap { uid_t($0) }
        }
    }

    /// `dir` and every path below it.
    static func walk(_ dir: String) throws -> [String] {
        var out = [dir]
        guard let e = FileManager.default.enumerator(atPath: dir) else { return out }
        for case let rel as String in e { out.append("\(dir)/\(rel)") }
        return out
    }

    /// Which of `paths` `user` can read, write or enter, asked of the kernel as that user.
    static func accessible(as user: String, _ paths: [String]) async throws -> [String] {
        let script = #"for f in "$@"; do if [ -r "$f" ] || [ -w "$f" ]; then echo "$f"; fi; done"#
        let out = try await run("/usr/sbin/runuser", ["-u", user, "--", "/bin/sh", "-c", script, "sh"] + paths)
        return out.split(separator: "\n").map(String.init)
    }
}
