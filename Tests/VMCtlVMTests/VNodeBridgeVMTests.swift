import Blocking
import Foundation
import Testing
@testable import VMCtlSupport
@testable import Machines
@testable import VNodes

/// vnode part 2 on real guests, entirely inside network namespaces this test makes (nothing
/// leaves them): a "site" namespace with dnsmasq (MAC reservations for vnode07 and vnode18) on
/// one end of a veth pair, a "host" namespace whose uplink is the other end. vmctl runs in the
/// host namespace (`ip netns exec`): `net bridge create` moves the uplink's address to br0, the
/// vnodes get their reserved addresses by DHCP, answer SSH there and ping the host and each other.
extension RealVMTests {
    @Test("vnode bridge: in network namespaces, net bridge create (iproute2) moves the uplink to br0 and a failed one rolls back; vnodes 7 and 18 get their DHCP reservations, answer SSH there and ping the host and each other; accept rules only while the bridge exists; bridge-nf-call-* untouched")
    func vnodesOnBridge() async throws {
        let id = getpid() % 100000
        let site = "vmctl-site-\(id)", host = "vmctl-host-\(id)"
        let dir = "\(VMFixture.home)/netns"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let root = "\(VMFixture.home)/vnodes-netns/libvirt"
        do {
            try await bridgeScenario(site: site, host: host, dir: dir, root: root)
        } catch {
            await Self.tearDownNamespaces(site: site, host: host, dir: dir, root: root)
            throw error
        }
        await Self.tearDownNamespaces(site: site, host: host, dir: dir, root: root)
    }

    func bridgeScenario(site: String, host: String, dir: String, root: String) async throws {
        func sh(_ script: String) async throws -> String { try await Command("/bin/sh", ["-ec", script]).checkedAsync() }
        /// Whether `ip -o` output has `dev` with `address`.
        func has(_ out: String, _ dev: String, _ address: String) -> Bool {
            out.split(separator: "\n").contains { $0.split(separator: " ").contains(Substring(dev)) && $0.contains(" \(address) ") }
        }
        func inHost(_ args: [String]) async throws -> VMFixture.Run {
            try await VMFixture.vmctl(args, namespace: host)
        }
        // Images are built outside the namespaces (only the host's namespace reaches Debian's mirror).
        let build = try await VMFixture.vmctl(["image", "build", "debian-12-cloud"])
        try #require(build.status == 0, "image build failed: \(build.out)\(build.err)")
        let nf = Self.bridgeNetfilter()
        // The site: 192.168.77.1 and dnsmasq with the two reservations; the host: 192.168.77.2 on its uplink vh0.
        _ = try await sh("""
            ip netns add \(site); ip netns add \(host)
            ip link add vh0 netns \(host) type veth peer name vs0 netns \(site)
            ip -n \(site) link set lo up; ip -n \(site) addr add 192.168.77.1/24 dev vs0; ip -n \(site) link set vs0 up
            ip -n \(host) link set lo up; ip -n \(host) addr add 192.168.77.2/24 dev vh0; ip -n \(host) link set vh0 up
            ip -n \(host) route add default via 192.168.77.1
            ip -n \(host) link add vx0 type veth peer name vx1
            ip netns exec \(site) dnsmasq --conf-file=/dev/null -u root --port=0 --interface=vs0 --bind-interfaces \
              --dhcp-range=192.168.77.100,192.168.77.199,255.255.255.0,1h \
              --dhcp-host=52:54:00:00:00:07,192.168.77.107 --dhcp-host=52:54:00:00:00:18,192.168.77.118 \
              --dhcp-leasefile=\(dir)/leases --pid-file=\(dir)/dnsmasq.pid --log-dhcp --log-facility=\(dir)/dnsmasq.log \
              </dev/null >/dev/null 2>&1
            """)

        // A bridge whose uplink has no address and no DHCP: rolled back, nothing left.
        let failed = try await inHost(["net", "bridge", "create", "br1", "--uplink", "vx0", "--timeout", "3", "--iproute2"])
        #expect(failed.status != 0 && failed.err.contains("rolled back"), "\(failed.out)\(failed.err)")
        let afterFail = try await sh("ip -n \(host) -o link show")
        #expect(!afterFail.contains("br1") && !afterFail.contains("master"), "\(afterFail)")

        // A vnode on a bridge that does not exist: refused with the exact command, nothing made.
        let missing = try await inHost(["vnode", "7:d12", "--network", "bridge=br0", "--connect", "qemu:///embed?root=\(root)"])
        #expect(missing.status == 2 && missing.err.contains("vmctl net bridge create br0 --uplink vh0"), "\(missing.err)")

        let made = try await inHost(["net", "bridge", "create", "br0", "--uplink", "vh0", "--iproute2"])
        try #require(made.status == 0, "\(made.out)\(made.err)")
        #expect(made.out.contains("lasts until reboot"))
        let addrs = try await sh("ip -n \(host) -4 -o addr show; ip -n \(host) route show default")
        #expect(has(addrs, "br0", "192.168.77.2/24") && !has(addrs, "vh0", "192.168.77.2/24"), "\(addrs)")
        #expect(addrs.contains("default via 192.168.77.1 dev br0"), "\(addrs)")
        #expect(try await sh("ip netns exec \(host) nft list table inet vmctl_br0").contains(#"iifname "br0" oifname "br0" accept"#))

        // Two vnodes on br0: their reserved addresses, SSH there, the host and each other reachable (hairpin).
        let up = try await inHost(["vnode", "7:d12", "18:d12", "--network", "bridge=br0", "--memory", "1G",
                                   "--connect", "qemu:///embed?root=\(root)"])
        try #require(up.status == 0, "vnode on br0 failed:\n\(up.out)\n\(up.err)\n\((try? String(contentsOfFile: "\(dir)/dnsmasq.log", encoding: .utf8)) ?? "")")
        let list = try await inHost(["vnode", "list", "--json"])
        let listed = try JSONDecoder().decode([VNodeManager.Listed].self, from: Data(list.out.utf8))
        #expect(listed.map(\.address) == ["192.168.77.107", "192.168.77.118"], "\(listed)")
        #expect(listed.map(\.mac) == ["52:54:00:00:00:07", "52:54:00:00:00:18"])
        let ping = try await inHost(["vnode", "ssh", "7", "--", "hostname; ping -c1 -W5 192.168.77.2 >/dev/null && echo host-ok; "
                                     + "ping -c1 -W5 192.168.77.118 >/dev/null && echo sibling-ok; ping -c1 -W5 192.168.77.1 >/dev/null && echo site-ok"])
        #expect(ping.out == "vnode07\nhost-ok\nsibling-ok\nsite-ok\n", "\(ping.out)\(ping.err)")
        let known = try String(contentsOfFile: VNodePaths(state: VMFixture.state).knownHosts("vnode"), encoding: .utf8)
        #expect(known.contains("192.168.77.107,vnode07 ") && known.contains("192.168.77.118,vnode18 "), "\(known)")

        // The bridge cannot go while guests are on it; then it goes, and everything is as before.
        let busy = try await inHost(["net", "bridge", "rm", "br0"])
        #expect(busy.status == 2 && busy.err.contains("still has guests"), "\(busy.err)")
        let rm = try await inHost(["vnode", "rm", "--all"])
        #expect(rm.status == 0, "\(rm.err)")
        let gone = try await inHost(["net", "bridge", "rm", "br0"])
        #expect(gone.status == 0, "\(gone.err)")
        let back = try await sh("ip -n \(host) -4 -o addr show; ip -n \(host) route show default; ip -n \(host) -o link show")
        #expect(has(back, "vh0", "192.168.77.2/24") && back.contains("default via 192.168.77.1 dev vh0") && !back.contains("br0"), "\(back)")
        let rules = try? await sh("ip netns exec \(host) nft list table inet vmctl_br0")
        #expect(rules == nil, "the accept rules outlived the bridge")
        #expect(Self.bridgeNetfilter() == nf, "the global bridge-nf-call-* values changed")
    }

    /// The host's bridge-nf-call-* values (empty when br_netfilter is not loaded).
    static func bridgeNetfilter() -> [String: String] {
        var out: [String: String] = [:]
        for k in ["bridge-nf-call-iptables", "bridge-nf-call-ip6tables", "bridge-nf-call-arptables"] {
            out[k] = try? String(contentsOfFile: "/proc/sys/net/bridge/\(k)", encoding: .utf8)
        }
        return out
    }

    /// Removes what the test made, whatever happened: vnodes, dnsmasq (by PID), both namespaces.
    static func tearDownNamespaces(site: String, host: String, dir: String, root: String) async {
        _ = try? await VMFixture.vmctl(["vnode", "rm", "--all"], namespace: host)
        if let t = try? String(contentsOfFile: "\(dir)/dnsmasq.pid", encoding: .utf8), let pid = pid_t(t.trimmingCharacters(in: .whitespacesAndNewlines)) {
            kill(pid, SIGTERM)
            for _ in 0..<20 where kill(pid, 0) == 0 { usleep(100_000) }
            if kill(pid, 0) == 0 { kill(pid, SIGKILL) }
        }
        _ = try? await VMFixture.run("/bin/sh", ["-c", "ip netns del \(site); ip netns del \(host); true"])
        HypervisorTarget.unlinkShortRoot(root)
    }
}
