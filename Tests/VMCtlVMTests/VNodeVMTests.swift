import Foundation
import Libvirt
import SSH
import Testing
@testable import VMCtlSupport
@testable import Images
@testable import Machines
@testable import VNodes

/// `vmctl vnode` on real guests (same serialized suite as the other VM tests): the seed's
/// parallel (re)installs on the locally built d12 cloud disk, booted through firmware.
extension RealVMTests {
    @Test("vnode: bad input refused with nothing made; 7:d12 18:d12 in parallel to SSH-verified; list shows the seed's MACs; vnode ssh; a reinstall gets a new host key and the old one is refused; Ctrl-C removes what it made; rm --all leaves nothing; on qemu:///system virsh lists a vnode")
    func vnodes() async throws {
        // Whatever happens, the test's vnodes go (rm --all finds them by their records).
        do {
            try await vnodeScenario()
        } catch {
            _ = try? await VMFixture.vmctl(["vnode", "rm", "--all"])
            throw error
        }
        _ = try? await VMFixture.vmctl(["vnode", "rm", "--all"])
    }

    func vnodeScenario() async throws {
        let paths = VNodePaths(state: VMFixture.state)
        func records() -> [String] { paths.records().map(\.name) }

        // Bad input: one line, exit 2, nothing made.
        let unknown = try await VMFixture.vmctl(["vnode", "3:zz99"])
        #expect(unknown.status == 2 && unknown.err.contains("unknown distro 'zz99'"), "\(unknown.err)")
        let offline = try await VMFixture.vmctl(["vnode", "3:f33", "--offline"])
        #expect(offline.status == 2 && offline.err.contains("--offline: not cached: f33"), "\(offline.err)")
        let outside = try await VMFixture.vmctl(["vnode", "vnode31"])
        #expect(outside.status == 2 && outside.err.contains("outside every pool"), "\(outside.err)")
        #expect(records().isEmpty && !FileManager.default.fileExists(atPath: paths.node("vnode", "vnode03")))

        // 7 and 18 at once (d12 is built from its recipe first if this run has not built it).
        let libvirtd = SystemLibvirt.running("libvirtd")
        let up = try await VMFixture.vmctl(["vnode", "7:d12", "18:d12", "--memory", "1G"])
        try #require(up.status == 0, "vnode failed:\n\(up.out)\n\(up.err)")
        if !libvirtd { #expect(up.out.contains("vnodes live in vmctl's embedded libvirt"), "\(up.out)") }
        #expect(up.out.contains("timeout: 600 s, not the seed's 120 s"))
        for n in ["vnode07", "vnode18"] {
            #expect(up.out.split(separator: "\n").contains { $0.hasPrefix(n) && $0.contains(" ready ") }, "table: \(up.out)")
        }

        let list = try await VMFixture.vmctl(["vnode", "list", "--json"])
        let listed = try JSONDecoder().decode([VNodeManager.Listed].self, from: Data(list.out.utf8))
        #expect(listed.map(\.name) == ["vnode07", "vnode18"])
        #expect(listed.map(\.mac) == ["52:54:00:00:00:07", "52:54:00:00:00:18"])
        #expect(listed.allSatisfy { $0.state == "running" && $0.distro == "d12" }, "\(listed)")

        // OpenSSH with the pool's key and known_hosts (the node's key under its name and address).
        let ssh = try await VMFixture.vmctl(["vnode", "ssh", "7", "--", "hostname; ip -br link | grep -c 52:54:00:00:00:07"])
        #expect(ssh.status == 0 && ssh.out == "vnode07\n1\n", "\(ssh.out)\(ssh.err)")
        let known = try String(contentsOfFile: paths.knownHosts("vnode"), encoding: .utf8)
        #expect(known.contains(",vnode07 ssh-ed25519 ") && known.contains(",vnode18 ssh-ed25519 "), "\(known)")

        // Reinstall 18: a new disk and host key; the old key no longer verifies it.
        let old = try #require(paths.records().first { $0.name == "vnode18" })
        let again = try await VMFixture.vmctl(["vnode", "vnode18:d12", "--memory", "1G"])
        try #require(again.status == 0, "reinstall failed:\n\(again.out)\n\(again.err)")
        #expect(again.out.contains("vnode18: exists, reinstalling it fresh"))
        let new = try #require(paths.records().first { $0.name == "vnode18" })
        #expect(new.hostKey != nil && new.hostKey != old.hostKey && new.sshPort == old.sshPort)
        var stale = SSHTarget(host: "127.0.0.1", port: new.sshPort, user: new.user,
                              key: KeyPair(privateKeyPath: paths.loginKey("vnode")), hostKey: try #require(old.hostKey))
        await #expect { try await SSHSession.run(stale, "true") } throws: { ($0 as? SSHError)?.kind == .hostKeyMismatch }
        stale.hostKey = try #require(new.hostKey)
        #expect(try await SSHSession.run(stale, "hostname").stdout == "vnode18\n")

        // Ctrl-C mid-install: what that command made goes; the others stay.
        let err = Pipe()
        let p = Process()
        p.executableURL = URL(fileURLWithPath: VMFixture.binary)
        p.arguments = ["vnode", "5:d12", "--memory", "1G"]
        p.environment = VMFixture.environment
        p.standardOutput = FileHandle.nullDevice
        p.standardError = err
        try p.run()
        for _ in 0..<600 where !(paths.records().contains { $0.name == "vnode05" && $0.hostKey != nil }) {
            try await Task.sleep(for: .milliseconds(100))
        }
        try await Task.sleep(for: .seconds(2))
        kill(p.processIdentifier, SIGINT)
        p.waitUntilExit()
        #expect(p.terminationStatus == 130, "\(String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))")
        #expect(records() == ["vnode07", "vnode18"])
        #expect(Self.vnodeGuests().filter { $0.contains("guest=vnode05") }.isEmpty)

        // rm --all: domains, files and known_hosts entries gone.
        let rm = try await VMFixture.vmctl(["vnode", "rm", "--all"])
        #expect(rm.status == 0, "\(rm.err)")
        #expect(records().isEmpty && Self.vnodeGuests().isEmpty, "\(Self.vnodeGuests())")
        #expect((try? String(contentsOfFile: paths.knownHosts("vnode"), encoding: .utf8)) == "")
        let empty = try await VMFixture.vmctl(["vnode", "list"])
        #expect(empty.out.contains("no vnodes"))

        // The seed's world: with a libvirtd answering qemu:///system, vnodes live there and virsh sees them.
        let daemon = try await SystemLibvirt.start()
        defer { daemon.stop() }
        _ = try? await VMFixture.vmctl(["vnode", "rm", "29"])
        // A domain of a vnode's name that vmctl did not make is left alone: exit 2, nothing made.
        let foreign = "\(VMFixture.home)/vnode28.xml"
        try "<domain type='qemu'><name>vnode28</name><memory unit='MiB'>64</memory><os><type arch='x86_64'>hvm</type></os></domain>"
            .write(toFile: foreign, atomically: true, encoding: .utf8)
        _ = try await VMFixture.run("/usr/bin/virsh", ["-c", "qemu:///system", "define", foreign])
        let taken = try await VMFixture.vmctl(["vnode", "28:d12", "--memory", "1G"])
        _ = try await VMFixture.run("/usr/bin/virsh", ["-c", "qemu:///system", "undefine", "vnode28"])
        #expect(taken.status == 2 && taken.err.contains("vmctl did not make it as a vnode"), "\(taken.err)")
        #expect(!records().contains("vnode28") && !FileManager.default.fileExists(atPath: paths.node("vnode", "vnode28")))
        let sys = try await VMFixture.vmctl(["vnode", "29:d12", "--memory", "1G"])
        #expect(sys.status == 0 && sys.out.contains("vnode: on qemu:///system"), "\(sys.out)\(sys.err)")
        #expect(try await SystemLibvirt.state("vnode29") == "running")
        let gone = try await VMFixture.vmctl(["vnode", "rm", "29"])
        #expect(gone.status == 0, "\(gone.err)")
        #expect(try await SystemLibvirt.state("vnode29") == nil)
    }

    /// QEMU processes of this test run's vnodes (their disks live under the test's state dir).
    static func vnodeGuests() -> [String] {
        let pids = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return pids.compactMap { pid -> String? in
            guard Int(pid) != nil, let raw = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return nil }
            let cmd = String(decoding: raw.map { $0 == 0 ? 32 : $0 }, as: UTF8.self)
            return cmd.contains("qemu-system") && cmd.contains("guest=vnode") && cmd.contains("\(VMFixture.home)/vnodes/")
                ? "\(pid): \(cmd.prefix(120))" : nil
        }
    }
}
