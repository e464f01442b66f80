import Foundation
import SSH
import Synchronization
import Testing
@testable import VMCtlSupport
@testable import Images
@testable import Machines
@testable import Clusters
@testable import Media

/// Real QEMU through real libvirt, real cloud-init, real SSH. Serialized: on two cores,
/// guests booted side by side by different tests only slow each other down.
@Suite("Real VMs", .serialized)
struct RealVMTests {
    @Test("one VM: up builds the image when it is missing, auto accel, booted through PVH, libssh2 with the pinned host key; a wrong pin is refused; nothing left")
    func oneVM() async throws {
        // No `image build` first: in a fresh state dir `up` builds debian-12 itself, with the
        // build's progress lines (unless a test of another suite built it first).
        let wasBuilt = (try? ImageStore(state: VMFixture.state).find("debian-12")) != nil
        try await VMFixture.withCluster("it-one") {
            let up = try await VMFixture.vmctl(["cluster", "up", "1", "--name", "it-one", "--accel", "auto"])
            try #require(up.status == 0, "up failed:\n\(up.out)\n\(up.err)")
            #expect(up.out.contains("ssh verified"))
            if wasBuilt {
                #expect(!up.out.contains("is not built"), "\(up.out)")
            } else {
                #expect(up.out.contains("image debian-12 is not built: building it from its recipe first"), "\(up.out)")
                // Built here, or by another suite's build that finished while this one ran.
                #expect(up.out.contains("debian-12: built ") || up.out.contains("debian-12: up to date"), "\(up.out)")
            }
            let s = try #require(ClusterRegistry(state: VMFixture.state).load("it-one"))
            #expect(s.phase == .running)
            let node = try #require(s.nodes.first?.plan)
            let manager = ClusterManager(state: VMFixture.state, switchExecutable: VMFixture.binary)
            let target = try manager.sshTarget(s, node: node)

            let running = try await SSHSession.run(target, "systemctl is-system-running --wait", timeout: .seconds(180))
            #expect(running.status == 0)
            #expect(running.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "running")
            let comm = try await SSHSession.run(target, "cat /proc/1/comm")
            #expect(comm.stdout == "systemd\n")
            // Booted through PVH from the image's vmlinux (QEMU maps the ELF, shared between nodes;
            // a bzImage it would copy into its own memory): the boot protocol version in the
            // kernel's boot_params is the one Linux's PVH entry writes (2.12), not the bzImage's
            // own (Debian 12's: 2.15).
            let img = try ImageStore(state: VMFixture.state).image(named: "debian-12")
            #expect(img.bootKernel == "\(img.directory)/vmlinux")
            let version = try await SSHSession.run(target, "sudo od -An -tx1 -j 518 -N2 /sys/kernel/boot_params/data")
            #expect(version.stdout.split(whereSeparator: \.isWhitespace).joined(separator: " ") == "0c 02",
                    "\(version.stdout) \(version.stderr)")
            let fails = try await SSHSession.run(target, "echo oops >&2; exit 7")
            #expect(fails.status == 7 && fails.stderr == "oops\n")

            // The same port with any other host key is refused, never trusted.
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pin-\(UUID())").path
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: dir) }
            var wrong = target
            wrong.hostKey = try await KeyPair.generate(at: "\(dir)/k", comment: "impostor").pin()
            await #expect {
                try await SSHSession.run(wrong, "true")
            } throws: { e in (e as? SSHError)?.kind == .hostKeyMismatch }

            // A QEMU that died with no libvirt attached is stopped to the next vmctl, never
            // "running": the embedded driver reconnects to it on open, in a thread of its own,
            // and a state read in that window said running. First the running node (booted
            // after its switch, so `start` has no other reason to boot it again) is killed, and
            // `start` must boot it rather than say "all nodes already running".
            let synced = try await VMFixture.vmctl(["cluster", "exec", "--name", "it-one", "--", "sync"])
            try #require(synced.status == 0, "\(synced.out)\n\(synced.err)")
            try await Self.killedOutsideLibvirt(s, rounds: 1, virshStart: false) { _ in
                let start = try await VMFixture.vmctl(["cluster", "start", "--name", "it-one"])
                #expect(start.status == 0 && start.out.contains("ssh verified") && !(start.out + start.err).contains("already running"),
                        "start after the kill:\n\(start.out)\n\(start.err)")
            }
            // Then, round after round, the stopped node's QEMU is started by virsh (paused: the
            // guest never runs, its disk stays clean), killed, and `status` must say shut-off.
            let down = try await VMFixture.vmctl(["cluster", "down", "--name", "it-one"])
            try #require(down.status == 0, "\(down.err)")
            try await Self.killedOutsideLibvirt(s, rounds: 5) { round in
                let st = try await VMFixture.vmctl(["cluster", "status", "--name", "it-one", "--json"])
                let rows = try JSONDecoder().decode([NodeStatus].self, from: Data(st.out.utf8))
                #expect(st.status == 0 && rows.map(\.state) == ["shut-off"], "round \(round): status\n\(st.out)\n\(st.err)")
            }

            let clean = try await VMFixture.vmctl(["cluster", "clean", "--name", "it-one"])
            #expect(clean.status == 0)
            #expect(VMFixture.leftovers(cluster: "it-one") == [])
            #expect(!FileManager.default.fileExists(atPath: VMFixture.state.cluster("it-one")))
        }
    }

    /// `rounds` times: starts node1 of `s` paused with virsh on the cluster's embedded root
    /// (unless `virshStart` is false: it runs already), kills its QEMU by the PID libvirt
    /// recorded, with no libvirt attached to it (virsh has exited), then runs `check` while the dead QEMU's monitor socket is held by a
    /// listener that answers nothing for `hold` after libvirt connects, then closes. The next libvirt to open the root
    /// reconnects to the QEMU in a thread of its own and reads "running" until that fails:
    /// a window of milliseconds when the socket refuses at once, widened here to `hold` (as
    /// a QEMU whose monitor is slow to go away would), so a command that reads the state
    /// without waiting for the reconnect fails every round instead of one in many.
    static func killedOutsideLibvirt(_ s: ClusterState, rounds: Int, virshStart: Bool = true, hold: Duration = .seconds(3),
                                     check: (Int) async throws -> Void) async throws {
        let root = try #require(s.embeddedRoot)
        let domain = try #require(s.nodes.first?.plan.domainName)
        let uri = HypervisorTarget.embedded(root: root).uri
        for round in 1...rounds {
            try HypervisorTarget.linkShortRoot(root)
            if virshStart {
                let started = try await VMFixture.run("/usr/bin/virsh", ["-c", uri, "start", "--paused", domain])
                try #require(started.contains("started"), "round \(round): virsh start:\n\(started)")
            }
            let status = (try? String(contentsOfFile: "\(root)/run/qemu/\(domain).xml", encoding: .utf8)) ?? ""
            let monitor = try #require(status.firstMatch(of: /<monitor path='([^']+)'/).map { String($0.1) },
                                       "round \(round): no monitor in libvirt's status of \(domain)")
            let pidText = (try? String(contentsOfFile: "\(root)/run/qemu/\(domain).pid", encoding: .utf8)) ?? ""
            let qemu = try #require(pid_t(pidText.trimmingCharacters(in: .whitespacesAndNewlines)), "round \(round): no pid file: '\(pidText)'")
            try #require(kill(qemu, SIGKILL) == 0, "round \(round): kill \(qemu): \(String(cString: strerror(errno)))")
            // Dead (a zombie until its parent reaps it: its cmdline is empty then).
            let gone = ContinuousClock.now + .seconds(30)
            while ContinuousClock.now < gone, (try? String(contentsOfFile: "/proc/\(qemu)/cmdline", encoding: .utf8))?.isEmpty == false {
                try await Task.sleep(for: .milliseconds(100))
            }
            let listener = try SilentListener(monitor, hold: hold)
            defer { listener.close(); HypervisorTarget.unlinkShortRoot(root) }
            try await check(round)
        }
    }

    @Test("cluster: up 2 → test (node to node by name) → exec → down → start → compact (same boot, clock stepped, test passes, QEMU smaller) → start restores an unfinished compact's save (one that does not restore is kept, the restored one saved again; one its disk was written after is refused and kept) → clean, nothing left")
    func clusterLifecycle() async throws {
        try await VMFixture.ensureImage()
        let name = "it-two"
        try await VMFixture.withCluster(name) {
            let up = try await VMFixture.vmctl(["cluster", "up", "2", "--name", name, "--memory", "1G"])
            try #require(up.status == 0, "up failed:\n\(up.out)\n\(up.err)")

            let again = try await VMFixture.vmctl(["cluster", "up", "3", "--name", name])
            #expect(again.status == 2 && again.err.contains("different spec"))

            let test = try await VMFixture.vmctl(["cluster", "test", "--name", name])
            #expect(test.status == 0, "cluster test:\n\(test.out)\n\(test.err)")
            #expect(test.out.contains("reaches node2 (ping, tcp/22)"))
            #expect(test.out.contains(" 0 failed"))

            let exec = try await VMFixture.vmctl(["cluster", "exec", "--name", name, "--json", "--", "hostname"])
            #expect(exec.status == 0)
            let results = try JSONDecoder().decode([NodeExecResult].self, from: Data(exec.out.utf8))
            #expect(results.map { $0.stdout.trimmingCharacters(in: .whitespacesAndNewlines) } == ["node1", "node2"])
            let bad = try await VMFixture.vmctl(["cluster", "exec", "--name", name, "--nodes", "2", "--", "exit 3"])
            #expect(bad.status == 1 && bad.out.contains("node2: exit 3"))
            // A command that reads stdin gets end-of-file at once, not a wait until the timeout.
            let reader = try await VMFixture.vmctl(["cluster", "exec", "--name", name, "--timeout", "60", "--", "cat; echo read-to-end"])
            #expect(reader.status == 0 && reader.out.contains("read-to-end"), "\(reader.out)\n\(reader.err)")

            let down = try await VMFixture.vmctl(["cluster", "down", "--name", name])
            #expect(down.status == 0, "\(down.err)")
            #expect(VMFixture.leftovers(cluster: name) == [])
            #expect(ClusterRegistry(state: VMFixture.state).load(name)?.phase == .stopped)

            let start = try await VMFixture.vmctl(["cluster", "start", "--name", name])
            #expect(start.status == 0, "start failed:\n\(start.out)\n\(start.err)")
            let after = try await VMFixture.vmctl(["cluster", "ssh", "--name", name, "node2", "--", "cat /etc/hostname"])
            #expect(after.out == "node2\n")

            // compact: each node (booted cold by start) gets a new QEMU holding the same guest:
            // the same boot, its clock stepped to the host's, SSH and the cluster segment working,
            // and its QEMU holding less (the boot's translation cache and heap are gone).
            let bootID = ["cluster", "exec", "--name", name, "--json", "--", "cat /proc/sys/kernel/random/boot_id"]
            let idsBefore = try JSONDecoder().decode([NodeExecResult].self, from: Data(try await VMFixture.vmctl(bootID).out.utf8))
            let compact = try await VMFixture.vmctl(["cluster", "compact", "--name", name, "--json"])
            try #require(compact.status == 0, "compact failed:\n\(compact.out)\n\(compact.err)")
            let rows = try JSONDecoder().decode([Machine.Compaction].self, from: Data(compact.out.utf8))
            #expect(rows.map(\.node) == ["node1", "node2"])
            for r in rows {
                // The guest's clock stood still while it was saved: the step is about the pause
                // (a 1 GiB node pauses about 4 s here; seen within 0.75 s of it; plus up to 1 s
                // its boot took from the RTC's whole seconds).
                #expect(abs(r.clockStepSeconds - r.pausedSeconds) < 3, "\(r)")
                #expect((r.rssAfterMiB ?? .max) < (r.rssBeforeMiB ?? 0), "\(r)")
                #expect(r.zeroPagesLeftOut, "\(r)")
            }
            let idsAfter = try JSONDecoder().decode([NodeExecResult].self, from: Data(try await VMFixture.vmctl(bootID).out.utf8))
            #expect(idsAfter.count == 2 && idsAfter.allSatisfy { $0.stdout.count == 37 }, "\(idsAfter)")
            #expect(idsAfter.map(\.stdout) == idsBefore.map(\.stdout))
            // A compact that did not finish (its restore failed, or vmctl was killed between the
            // save and the restore) leaves node1's guest only in its save, made here by libvirt's
            // own virsh on the cluster's embedded root (this process must not open it: libvirt
            // keeps an embedded root locked until the process exits): `start` restores it (the
            // same boot goes on, its clock stepped), the save goes, and node2, running, is left alone.
            let s = try #require(ClusterRegistry(state: VMFixture.state).load(name))
            let node1 = try #require(s.nodes.first { $0.plan.name == "node1" }).plan
            let root = try #require(s.embeddedRoot)
            try HypervisorTarget.linkShortRoot(root)
            let saved = try await VMFixture.run("/usr/bin/virsh", ["-c", HypervisorTarget.embedded(root: root).uri,
                                                                   "save", node1.domainName, node1.files.compactSave])
            HypervisorTarget.unlinkShortRoot(root)
            try #require(FileManager.default.fileExists(atPath: node1.files.compactSave), "virsh save:\n\(saved)")
            let resumed = try await VMFixture.vmctl(["cluster", "start", "--name", name])
            #expect(resumed.status == 0 && (resumed.out + resumed.err).contains("node1: restored from the save an unfinished `compact` kept"),
                    "start after an unfinished compact:\n\(resumed.out)\n\(resumed.err)")
            #expect(!FileManager.default.fileExists(atPath: node1.files.compactSave))
            let idsResumed = try JSONDecoder().decode([NodeExecResult].self, from: Data(try await VMFixture.vmctl(bootID).out.utf8))
            #expect(idsResumed.map(\.stdout) == idsBefore.map(\.stdout))
            let hostBefore = Date().timeIntervalSince1970
            let clock = try await VMFixture.vmctl(["cluster", "exec", "--name", name, "--json", "--", "date +%s.%N"])
            let hostAfter = Date().timeIntervalSince1970
            let clocks = try JSONDecoder().decode([NodeExecResult].self, from: Data(clock.out.utf8))
            #expect(clocks.count == 2)
            for r in clocks {
                let guest = Double(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
                #expect(guest >= hostBefore - 1 && guest <= hostAfter + 1, "\(r.node)'s clock \(guest), host \(hostBefore)…\(hostAfter)")
            }
            let retest = try await VMFixture.vmctl(["cluster", "test", "--name", name])
            #expect(retest.status == 0 && retest.out.contains(" 0 failed"), "cluster test after compact:\n\(retest.out)\n\(retest.err)")
            // A save that does not restore (node2's, overwritten here) is kept, and `start` fails
            // naming it; the guest it did restore (node1's) goes back into its save rather than
            // being powered off. With node2's save removed, the next `start` restores node1 (the
            // same boot again) and boots node2 from its disk.
            let node2 = try #require(s.nodes.first { $0.plan.name == "node2" }).plan
            try HypervisorTarget.linkShortRoot(root)
            for n in [node1, node2] {
                let out = try await VMFixture.run("/usr/bin/virsh", ["-c", HypervisorTarget.embedded(root: root).uri,
                                                                     "save", n.domainName, n.files.compactSave])
                try #require(FileManager.default.fileExists(atPath: n.files.compactSave), "virsh save \(n.name):\n\(out)")
            }
            HypervisorTarget.unlinkShortRoot(root)
            let junk = Data((0..<65536).map { UInt8(truncatingIfNeeded: $0 &* 7919) })
            try junk.write(to: URL(fileURLWithPath: node2.files.compactSave))
            let refused = try await VMFixture.vmctl(["cluster", "start", "--name", name])
            #expect(refused.status == 1 && refused.err.contains("node2: its running guest is in \(node2.files.compactSave)")
                    && refused.err.contains("did not restore"), "start with a save that does not restore:\n\(refused.out)\n\(refused.err)")
            #expect(FileManager.default.contents(atPath: node2.files.compactSave) == junk)
            #expect(FileManager.default.fileExists(atPath: node1.files.compactSave))
            #expect(!VMFixture.leftovers(cluster: name).contains { $0.contains("guest=\(node1.domainName)") || $0.contains("guest=\(node2.domainName)") },
                    "\(VMFixture.leftovers(cluster: name))")
            unlink(node2.files.compactSave)
            let mixed = try await VMFixture.vmctl(["cluster", "start", "--name", name])
            #expect(mixed.status == 0 && (mixed.out + mixed.err).contains("node1: restored from the save"), "\(mixed.out)\n\(mixed.err)")
            let idsMixed = try JSONDecoder().decode([NodeExecResult].self, from: Data(try await VMFixture.vmctl(bootID).out.utf8))
            #expect(idsMixed.count == 2 && idsMixed.first?.stdout == idsBefore.first?.stdout && idsMixed.last?.stdout.count == 37
                    && idsMixed.last?.stdout != idsBefore.last?.stdout, "\(idsMixed)")
            #expect(!FileManager.default.fileExists(atPath: node1.files.compactSave))
            // A save its disk was written after no longer matches it: here node2's, saved by
            // virsh and then booted from its disk by virsh (outside vmctl), until the guest wrote
            // the disk. `start` refuses it (restoring it would corrupt the filesystem) before
            // any node is touched, and keeps it.
            func modified(_ path: String) -> Date? {
                (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date
            }
            try HypervisorTarget.linkShortRoot(root)
            let uri = HypervisorTarget.embedded(root: root).uri
            let saved2 = try await VMFixture.run("/usr/bin/virsh", ["-c", uri, "save", node2.domainName, node2.files.compactSave])
            let savedAt = try #require(modified(node2.files.compactSave), "virsh save node2:\n\(saved2)")
            let outside = try await VMFixture.run("/usr/bin/virsh", ["-c", uri, "start", node2.domainName])
            HypervisorTarget.unlinkShortRoot(root)
            try #require(outside.contains("started"), "virsh start node2:\n\(outside)")
            let pidText = (try? String(contentsOfFile: "\(root)/run/qemu/\(node2.domainName).pid", encoding: .utf8)) ?? ""
            let qemu = try #require(pid_t(pidText.trimmingCharacters(in: .whitespacesAndNewlines)), "no pid file: '\(pidText)'")
            let written = ContinuousClock.now + .seconds(300)
            while ContinuousClock.now < written, (modified(node2.files.disk) ?? .distantPast) <= savedAt.addingTimeInterval(3) {
                try await Task.sleep(for: .milliseconds(500))
            }
            // Ended through libvirt, so its record is settled before vmctl looks: a QEMU that
            // died with no libvirt attached reads as running to the next process until that
            // process's reconnect to it fails. A new virsh on an embedded root may not get the
            // monitor of a QEMU an earlier virsh started, and then stops the domain itself
            // ("domain is not running"): either way it is off when `destroy` returns.
            try HypervisorTarget.linkShortRoot(root)
            let destroyed = try await VMFixture.run("/usr/bin/virsh", ["-c", uri, "destroy", node2.domainName])
            HypervisorTarget.unlinkShortRoot(root)
            let gone = ContinuousClock.now + .seconds(60)
            while ContinuousClock.now < gone, kill(qemu, 0) == 0 { try await Task.sleep(for: .milliseconds(200)) }
            let serial = (try? String(contentsOfFile: node2.files.serialLog, encoding: .utf8)) ?? ""
            let unwritten = "node2's disk was not written by its boot outside vmctl (saved \(savedAt), disk "
                + "\(String(describing: modified(node2.files.disk)))):\n\(serial.suffix(2000))"
            try #require((modified(node2.files.disk) ?? .distantPast) > savedAt.addingTimeInterval(3), "\(unwritten)")
            try #require(kill(qemu, 0) != 0 && (destroyed.contains("destroyed") || destroyed.contains("domain is not running")),
                         "node2's QEMU (pid \(qemu)) after virsh destroy:\n\(destroyed)")
            let saveSize = (try? FileManager.default.attributesOfItem(atPath: node2.files.compactSave))?[.size] as? UInt64
            let stale = try await VMFixture.vmctl(["cluster", "start", "--name", name])
            #expect(stale.status == 2 && stale.err.contains("node2: its disk was written at") && stale.err.contains(node2.files.compactSave)
                    && stale.err.contains("would corrupt"), "start with a save older than its disk:\n\(stale.out)\n\(stale.err)")
            #expect(modified(node2.files.compactSave) == savedAt && saveSize != nil
                    && (try? FileManager.default.attributesOfItem(atPath: node2.files.compactSave))?[.size] as? UInt64 == saveSize)
            #expect(!VMFixture.leftovers(cluster: name).contains { $0.contains("guest=\(node2.domainName)") }, "\(VMFixture.leftovers(cluster: name))")
            unlink(node2.files.compactSave)
            // A stopped node is refused before any node is touched.
            let down2 = try await VMFixture.vmctl(["cluster", "down", "--name", name])
            #expect(down2.status == 0, "\(down2.err)")
            let stopped = try await VMFixture.vmctl(["cluster", "compact", "--name", name])
            #expect(stopped.status == 2 && stopped.err.contains("is not running") && stopped.err.contains("nothing was compacted"),
                    "\(stopped.err)")
            let saves = ClusterRegistry(state: VMFixture.state).load(name)?.nodes.map(\.plan.files.compactSave) ?? []
            #expect(saves.count == 2 && saves.allSatisfy { !FileManager.default.fileExists(atPath: $0) && !FileManager.default.fileExists(atPath: $0 + ".lean") })

            let clean = try await VMFixture.vmctl(["cluster", "clean", "--name", name])
            #expect(clean.status == 0)
            #expect(VMFixture.leftovers(cluster: name) == [])
            #expect(!FileManager.default.fileExists(atPath: VMFixture.state.cluster(name)))
            // Lock files stay (never unlinked: a waiter on a removed file would hold a lock nobody sees).
            #expect(!ClusterLock.isHeld(state: VMFixture.state, name: name))
        }
    }

    @Test("SIGKILL mid-boot (nodes being restored from the warm snapshot): the half-made cluster is refused by up and removed by clean; the snapshot stays")
    func killedUp() async throws {
        try await VMFixture.ensureImage()
        let name = "it-kill"
        try await VMFixture.withCluster(name) {
            // Once both guests are booting (QEMU running), kill vmctl outright.
            let p = try await VMFixture.upUntilBooting(name, nodes: 2, stderr: FileHandle.nullDevice)
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            #expect(!VMFixture.leftovers(cluster: name).isEmpty, "guests should still run after vmctl died")

            let up = try await VMFixture.vmctl(["cluster", "up", "2", "--name", name, "--memory", "1G"])
            #expect(up.status == 2 && up.err.contains("half-made"))
            let clean = try await VMFixture.vmctl(["cluster", "clean", "--name", name])
            #expect(clean.status == 0, "\(clean.err)")
            #expect(VMFixture.leftovers(cluster: name) == [])
            #expect(!FileManager.default.fileExists(atPath: VMFixture.state.cluster(name)))
            // The warm snapshot it was restoring from is intact (clean never touches it).
            let warm = WarmSnapshot.all(in: VMFixture.state.warm).filter { $0.meta.key.memoryMiB == 1024 }
            #expect(warm.count == 1 && WarmSnapshot.find(warm[0].meta.key, in: VMFixture.state.warm) != nil, "\(warm.map(\.directory))")
        }
    }

    @Test("Ctrl-C mid-boot: up tears down everything it made and exits 130")
    func interruptedUp() async throws {
        try await VMFixture.ensureImage()
        let name = "it-int"
        try await VMFixture.withCluster(name) {
            let err = Pipe()
            let p = try await VMFixture.upUntilBooting(name, nodes: 1, stderr: err)
            #expect(!VMFixture.leftovers(cluster: name).isEmpty)
            kill(p.processIdentifier, SIGINT)
            p.waitUntilExit()
            let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            #expect(p.terminationStatus == 130, "\(text)")
            #expect(text.contains("interrupted"))
            #expect(VMFixture.leftovers(cluster: name) == [])
            #expect(!FileManager.default.fileExists(atPath: VMFixture.state.cluster(name)))
        }
    }

    @Test("ClusterOS: cluster-os-node, 3 nodes, SLURM + munge + WireGuard bootstrapped as data, cluster test passes")
    func clusterOS() async throws {
        let build = try await VMFixture.vmctl(["image", "build", "cluster-os-node"])
        try #require(build.status == 0, "image build failed: \(build.out)\(build.err)")
        let name = "it-slurm"
        try await VMFixture.withCluster(name) {
            let up = try await VMFixture.vmctl(["cluster", "up", "3", "--name", name, "--image", "cluster-os-node"])
            try #require(up.status == 0, "up failed:\n\(up.out)\n\(up.err)")
            #expect(up.out.contains("bootstrap 10/10"))
            let s = try #require(ClusterRegistry(state: VMFixture.state).load(name))
            #expect(s.bootstrap?.done == true)
            #expect(s.bootstrap?.nodeFacts.count == 3)
            #expect(s.user == "clusteros")

            let test = try await VMFixture.vmctl(["cluster", "test", "--name", name])
            #expect(test.status == 0, "cluster test:\n\(test.out)\n\(test.err)")
            for check in ["srun -N3 hostname returns distinct hostnames", "sinfo shows all nodes idle",
                          "every peer reachable over wg0", "srun in a cgroup-constrained job sees its memory limit"] {
                #expect(test.out.contains(check), "missing check \(check)")
            }
            #expect(test.out.contains(" 0 failed"))

            let clean = try await VMFixture.vmctl(["cluster", "clean", "--name", name])
            #expect(clean.status == 0)
            #expect(VMFixture.leftovers(cluster: name) == [])
        }
    }

    @Test("USB media: cluster-os-node's USB image boots under OVMF with Secure Boot on and off, the ISO installs to a blank disk that boots; all SSH-verified")
    func usbMedia() async throws {
        let out = "\(VMFixture.home)/dist-test"
        try? FileManager.default.removeItem(atPath: out)
        defer { try? FileManager.default.removeItem(atPath: out) }
        let secret = "\(VMFixture.home)/wifi-psk-test"
        try "not-a-real-key-1234\n".write(toFile: secret, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: secret) }
        let r = try await VMFixture.vmctl(["image", "usb", "cluster-os-node", "--output", out, "--verify", "--unattended",
                                           "--wifi-ssid", "vmctl-lab", "--wifi-psk-file", secret])
        try #require(r.status == 0, "image usb --verify failed:\n\(r.out)\n\(r.err)")
        let fm = FileManager.default
        for f in ["cluster-os-usb.img.gz", "cluster-os-installer.iso", "cluster-os-usb.id_ed25519", "cluster-os-usb.known_hosts"] {
            #expect(fm.fileExists(atPath: "\(out)/\(f)"), "missing \(f)")
        }
        // Every boot reached SSH with the expected firmware mode, and the root grew on first boot.
        for line in ["usb-secure: SSH-verified", "usb-plain: SSH-verified", "installer: vmctl-installed /dev/vda", "installed: SSH-verified"] {
            #expect(r.out.contains(line), "missing '\(line)' in:\n\(r.out)")
        }
        #expect(r.out.contains("secureboot=1"))
        #expect(r.out.contains("secureboot=0"))
        // The ISO is EFI El Torito and the Wi-Fi key is only on the media, never in the image store.
        let iso = try await VMFixture.run("/usr/bin/xorriso", ["-indev", "\(out)/cluster-os-installer.iso", "-report_el_torito", "plain"])
        #expect(iso.contains("UEFI"), "\(iso)")
        let grep = try await VMFixture.run("/bin/sh", ["-c", "grep -rl not-a-real-key-1234 \(VMFixture.home)/images/store || true"])
        #expect(grep.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "Wi-Fi key found in the image store: \(grep)")
        #expect(VMFixture.leftoverVerifyGuests() == [])
    }

    @Test("bad input: unknown image, too many nodes, remote URI, bad name, more than host memory holds — clear errors, nothing created")
    func badInput() async throws {
        let cases: [([String], String)] = [
            (["cluster", "up", "1", "--name", "it-bad", "--image", "nope"], "not built"),
            (["cluster", "up", "1", "--name", "it-bad", "--image", "../x"], "image name '../x' is not valid"),
            (["cluster", "up", "0", "--name", "it-bad"], "at least 1 node"),
            (["cluster", "up", "1", "--name", "it-bad", "--connect", "qemu+ssh://h/system"], "remote libvirt URIs"),
            (["cluster", "up", "1", "--name", "Bad_Name"], "DNS label"),
            (["image", "build", "no-such-recipe"], "no recipe 'no-such-recipe'"),
            (["cluster", "status", "--name", "it-none"], "no cluster 'it-none'"),
            (["image", "usb", "no-such-recipe", "--output", "\(VMFixture.home)/dist-bad"], "no recipe 'no-such-recipe'"),
            (["image", "usb", "cluster-os-node", "--output", "\(VMFixture.home)/dist-bad", "--wifi-ssid", "lab"], "--wifi-psk-file"),
            (["image", "usb", "cluster-os-node", "--output", "\(VMFixture.home)/dist-bad", "--authorized-key", "/nonexistent.pub"],
             "not a readable OpenSSH public key"),
        ]
        for (args, message) in cases {
            let r = try await VMFixture.vmctl(args)
            #expect(r.status == 2, "\(args): status \(r.status)")
            #expect(r.err.contains(message), "\(args): \(r.err)")
            #expect(r.err.split(separator: "\n").count == 1, "one line: \(r.err)")
        }
        // More nodes than host memory holds: without a balloon every node is planned at its full
        // size (with one, at what an idle node keeps: the unit tests check that arithmetic).
        let big = try await VMFixture.vmctl(["cluster", "up", "40", "--name", "it-bad", "--memory", "2G"], env: ["VMCTL_BALLOON": "0"])
        #expect(big.status == 2 && big.err.contains("of host memory") && big.err.contains("fit; use fewer nodes"), "\(big.err)")
        #expect(big.err.split(separator: "\n").count == 1, "one line: \(big.err)")
        #expect(!FileManager.default.fileExists(atPath: VMFixture.state.cluster("it-bad")))
        // Refused before anything was written.
        let written = (try? FileManager.default.contentsOfDirectory(atPath: "\(VMFixture.home)/dist-bad")) ?? []
        #expect(written.isEmpty, "\(written)")
        try? FileManager.default.removeItem(atPath: "\(VMFixture.home)/dist-bad")
    }
}

/// A stand-in for a dead QEMU's monitor: a UNIX socket that takes the first connection (libvirt's
/// reconnect), says nothing for `hold`, then closes (libvirt sees end of file, as from a QEMU
/// that went away). `close` ends it early; either way the socket file is removed.
final class SilentListener: Sendable {
    let fd: Int32
    let path: String
    private let peer = Mutex<Int32>(-1)
    private let open = Mutex(true)

    init(_ path: String, hold: Duration) throws {
        self.path = path
        unlink(path)
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard fd >= 0, bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { throw VMCtlError("cannot listen at \(path)") }
        withUnsafeMutableBytes(of: &addr.sun_path) { p in for (i, b) in bytes.enumerated() { p[i] = b } }
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0, listen(fd, 8) == 0 else {
            let why = String(cString: strerror(errno))
            Glibc.close(fd)
            throw VMCtlError("cannot listen at \(path): \(why)")
        }
        let seconds = Double(hold.components.seconds) + Double(hold.components.attoseconds) / 1e18
        Thread { [self] in
            let c = accept(fd, nil, nil)  // returns at once with an error once `close` shut the socket down
            guard c >= 0 else { return }
            peer.withLock { $0 = c }
            Thread.sleep(forTimeInterval: seconds)
            close()
        }.start()
    }

    func close() {
        guard open.withLock({ let was = $0; $0 = false; return was }) else { return }
        shutdown(fd, Int32(SHUT_RDWR))
        Glibc.close(fd)
        peer.withLock { if $0 >= 0 { Glibc.close($0) } }
        unlink(path)
    }
}
