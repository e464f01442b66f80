import Foundation
import Testing
@testable import VMCtlSupport
@testable import Images
@testable import Machines
@testable import Clusters

extension RealVMTests {
    @Test("warm start: up 3 makes the snapshot once and restores three distinct nodes (host keys, hostnames, machine-ids, cluster MACs and addresses, clocks, reseeded RNG) that pass cluster test; a second cluster restores from it beside the first; a clone boots cold after down/start; clean keeps the snapshot; the balloon reports, gives freed pages back and follows set-memory")
    func warmStart() async throws {
        try await VMFixture.ensureImage()
        let a = "it-warm", b = "it-warm2"
        try await VMFixture.withCluster(a) {
            try await VMFixture.withCluster(b) {
                let up = try await VMFixture.vmctl(["cluster", "up", "3", "--name", a, "--memory", "1G"])
                try #require(up.status == 0, "\(up.out)\n\(up.err)")
                #expect(up.out.contains("warm: making the snapshot") || up.out.contains("warm: using the snapshot"), "\(up.out)")
                #expect(!up.out.contains("booting cold"), "\(up.out)")
                let s = try AtomicFile.readJSON(ClusterState.self, from: ClusterPaths(state: VMFixture.state, name: a).stateFile)
                #expect(s.nodes.allSatisfy { $0.warmFrom != nil })
                let pins = s.nodes.compactMap { $0.plan.hostKey.map { "\($0)" } }
                #expect(pins.count == 3 && Set(pins).count == 3, "\(pins)")

                // A second cluster restores from the same snapshot while the first is checked.
                async let second = VMFixture.vmctl(["cluster", "up", "1", "--name", b, "--memory", "1G"])
                let test = try await VMFixture.vmctl(["cluster", "test", "--name", a])
                #expect(test.status == 0, "\(test.out)\n\(test.err)")
                #expect(test.out.contains("warm identity applied"), "\(test.out)")
                let upB = try await second
                #expect(upB.status == 0 && upB.out.contains("warm: using the snapshot"), "\(upB.out)\n\(upB.err)")
                try await Self.balloon(b)

                var machineIDs: Set<String> = []
                for n in s.nodes {
                    let before = Date().timeIntervalSince1970
                    let r = try await VMFixture.vmctl(["cluster", "ssh", "--name", a, n.plan.name, "--",
                        "hostname; cat /etc/machine-id; date +%s.%N; cat /sys/class/net/*/address | tr '\\n' ' '; echo; "
                        + "ip -o -4 addr show scope global | awk '{print $4}' | tr '\\n' ' '; echo; sudo journalctl -t vmctl-identity --no-pager -q"])
                    let after = Date().timeIntervalSince1970
                    try #require(r.status == 0, "\(r.err)")
                    let lines = r.out.split(separator: "\n").map(String.init)
                    try #require(lines.count >= 5, "\(r.out)")
                    #expect(lines[0] == n.plan.name)
                    machineIDs.insert(lines[1])
                    let clock = try #require(Double(lines[2]))
                    #expect(clock > before - 2 && clock < after + 2, "guest clock \(clock), host \(before)…\(after)")
                    #expect(lines[3].contains(try #require(n.plan.clusterMAC)), "\(lines[3])")
                    #expect(lines[4].contains(try #require(n.plan.clusterAddress)), "\(lines[4])")
                    #expect(r.out.contains("rng reseeded with 64 host bytes"), "\(r.out)")
                }
                #expect(machineIDs.count == 3, "\(machineIDs)")

                // down/start boots the clone's own disk cold, from a seed with its identity.
                #expect(try await VMFixture.vmctl(["cluster", "down", "--name", b]).status == 0)
                let start = try await VMFixture.vmctl(["cluster", "start", "--name", b])
                #expect(start.status == 0, "\(start.out)\n\(start.err)")
                let host = try await VMFixture.vmctl(["cluster", "ssh", "--name", b, "node1", "--", "hostname; test -e /run/vmctl-identity || echo cold"])
                #expect(host.out == "node1\ncold\n", "\(host.out)\(host.err)")
            }
        }
        #expect(VMFixture.leftovers(cluster: a) == [] && VMFixture.leftovers(cluster: b) == [])
        let pids = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        let templates = pids.filter { pid in
            guard Int(pid) != nil, let raw = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
            return String(decoding: raw, as: UTF8.self).contains("guest=\(a)-warm-template")
        }
        #expect(templates == [])
        // One snapshot of this image and shape served both clusters, and clean left it (other
        // tests' images, swarm-node say, have snapshots of the same shape of their own).
        let hash = try #require(try ImageStore(state: VMFixture.state).find("debian-12")).hash
        let snapshots = WarmSnapshot.all(in: VMFixture.state.warm).filter {
            $0.meta.key.image == hash && $0.meta.key.memoryMiB == 1024 && $0.meta.key.cpus == 2
        }
        #expect(snapshots.count == 1, "\(snapshots.map(\.directory))")
        // Its stream was rewritten without guest RAM's untouched zero pages (the clones above
        // restored from that rewritten stream), not left as libvirt wrote it.
        for snap in snapshots {
            #expect(snap.meta.streamUnchanged == nil && (snap.meta.zeroPagesLeftOut ?? 0) > 100_000,
                    "\(snap.meta.streamUnchanged ?? "no zero pages left out")")
        }
        // `image warm` makes one for another shape through a throwaway cluster it removes.
        let warm = try await VMFixture.vmctl(["image", "warm", "debian-12", "--cpus", "1", "--memory", "768M"])
        #expect(warm.status == 0 && warm.out.contains("warm: snapshot made"), "\(warm.out)\n\(warm.err)")
        let list = try await VMFixture.vmctl(["image", "list"])
        #expect(list.out.contains("2cpu/1024MiB") && list.out.contains("1cpu/768MiB"), "\(list.out)")
        #expect(!(try FileManager.default.contentsOfDirectory(atPath: VMFixture.state.clusters)).contains { $0.hasPrefix("warm-") && !$0.hasSuffix(".lock") })
    }

    /// The balloon of a running 1 GiB node: the guest's statistics reach the host; pages the
    /// guest frees go back to the host (free page reporting: QEMU's RSS falls); `set-memory`
    /// changes what the guest sees, and a size past the boot size is refused.
    static func balloon(_ cluster: String) async throws {
        func memory() async throws -> [String: Int] {
            let r = try await VMFixture.vmctl(["cluster", "memory", "--name", cluster, "--json"])
            try #require(r.status == 0, "\(r.err)")
            let rows = try #require(try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [[String: Any]])
            let row = try #require(rows.first { $0["node"] as? String == "node1" }, "\(r.out)")
            return row.compactMapValues { $0 as? Int }
        }
        func ssh(_ cmd: String) async throws -> String {
            let r = try await VMFixture.vmctl(["cluster", "ssh", "--name", cluster, "node1", "--", cmd])
            try #require(r.status == 0, "\(cmd): \(r.err)")
            return r.out.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let first = try await memory()
        #expect(first["bootMiB"] == 1024 && first["actualMiB"] == 1024, "\(first)")
        #expect((first["guestUnusedMiB"] ?? 0) > 0 && (first["hostRSSMiB"] ?? 0) > 0, "guest stats reach the host: \(first)")
        // 384 MiB written to tmpfs, then removed: QEMU holds them, then gives them back.
        _ = try await ssh("dd if=/dev/zero of=/dev/shm/fill bs=1M count=384 status=none")
        let full = try #require(try await memory()["hostRSSMiB"])
        _ = try await ssh("rm /dev/shm/fill")
        var rss = full
        for _ in 0..<60 where rss > full - 256 {
            try await Task.sleep(for: .milliseconds(500))
            rss = try #require(try await memory()["hostRSSMiB"])
        }
        #expect(rss <= full - 256, "QEMU's RSS went from \(full) MiB only to \(rss) MiB after the guest freed 384 MiB")
        // set-memory: the guest's MemTotal follows the balloon.
        let total = { (s: String) in (Int(s) ?? 0) / 1024 }
        let before = total(try await ssh("awk '/MemTotal/ {print $2}' /proc/meminfo"))
        let set = try await VMFixture.vmctl(["cluster", "set-memory", "node1", "640M", "--name", cluster])
        #expect(set.status == 0 && set.out.contains("balloon at 640 MiB of 1024 MiB"), "\(set.out)\(set.err)")
        let after = total(try await ssh("awk '/MemTotal/ {print $2}' /proc/meminfo"))
        #expect(after < before - 300 && after > 500, "MemTotal \(before) MiB -> \(after) MiB")
        let back = try await VMFixture.vmctl(["cluster", "set-memory", "node1", "1G", "--name", cluster])
        #expect(back.status == 0, "\(back.err)")
        let tooBig = try await VMFixture.vmctl(["cluster", "set-memory", "node1", "2G", "--name", cluster])
        #expect(tooBig.status == 2 && tooBig.err.contains("cannot grow past its boot size"), "\(tooBig.err)")
    }
}

