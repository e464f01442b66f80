import Foundation
import Testing
@testable import VMCtlSupport
@testable import Images
@testable import VNodes
@testable import Machines
@testable import CloudInit

@Suite("vnode: specs, pools, MACs, catalog, checksum files")
struct VNodeTests {
    static let catalog = try! CloudCatalog.load(RecipeStore.locate().directory + "/catalog.yaml")

    @Test("the seed's command line: numbers and names normalised to two digits, distros kept, default distro the latest Fedora")
    func seedSpecs() throws {
        let pools = VNodePools.builtIn
        let r = try VNodeRequest.parse(["3:f33", "vnode4", "vnode18:u18.04", "20:u20.04"], pools: pools)
        #expect(r.map(\.name) == ["vnode03", "vnode04", "vnode18", "vnode20"])
        #expect(r.map(\.distro) == ["f33", nil, "u18.04", "u20.04"])
        for spec in ["3", "03", "vnode3", "vnode03"] {
            #expect(try VNodeRequest.parse([spec], pools: pools)[0].name == "vnode03", "\(spec)")
        }
        let m = VNodeManager(state: StateDir(root: "/nonexistent"), pools: pools)
        let entries = try m.entries(for: r, catalog: Self.catalog)
        #expect(entries.map(\.1.name) == ["f33", "f42", "u18.04", "u20.04"], "the default is the catalog's latest Fedora")
        #expect(Self.catalog.defaultName == "f42")
    }

    @Test("bad specs: one clear usage error each, before anything is made")
    func badSpecs() throws {
        let pools = VNodePools.builtIn
        let cases: [([String], String)] = [
            ([":f33"], "no node before ':'"),
            (["3:"], "no distro after ':'"),
            (["3", "03"], "vnode03 is named twice"),
            (["vnode31"], "vnode31 is outside every pool (vnode00–vnode30)"),
            (["vnode"], "give a node number or name"),
            (["100"], "give a node number or name"),
            (["node4"], "no pool is called node"),
            ([], "name at least one node"),
        ]
        for (specs, message) in cases {
            #expect { try VNodeRequest.parse(specs, pools: pools) } throws: { e in
                (e as? VMCtlError)?.code == .usage && "\(e)".contains(message)
            }
        }
        // An unknown distro is refused by the catalog, naming what it has.
        let r = try VNodeRequest.parse(["3:zz99"], pools: pools)
        let m = VNodeManager(state: StateDir(root: "/nonexistent"), pools: pools)
        #expect { try m.entries(for: r, catalog: Self.catalog) } throws: { e in
            (e as? VMCtlError)?.code == .usage && "\(e)".contains("unknown distro 'zz99'") && "\(e)".contains("u20.04")
        }
    }

    @Test("MACs follow the seed: 52:54:00:00:00:nn with nn the number's decimal digits; other stems their own fifth byte")
    func macs() throws {
        let pools = try VNodePools.parse("""
            stems:
              - prefix: vnode
                range: 0-30
              - prefix: fit
                range: 1-40
                distro: d12
            """)
        #expect(pools.stems[0].mac(18) == "52:54:00:00:00:18")
        #expect(pools.stems[0].mac(7) == "52:54:00:00:00:07")
        #expect(pools.stems[1].mac(18) == "52:54:00:00:01:18")
        let r = try VNodeRequest.parse(["fit3", "5"], pools: pools, stem: "fit")
        #expect(r.map(\.name) == ["fit03", "fit05"] && r.allSatisfy { $0.stem.prefix == "fit" })
        #expect(try VNodeRequest.parse(["vnode5"], pools: pools, stem: "fit")[0].name == "vnode05")
        // Pools must be disjoint and well formed.
        for (bad, why) in [("stems:\n  - {prefix: vnode, range: 0-30}\n  - {prefix: vnodex, range: 0-9}", "overlap"),
                           ("stems:\n  - {prefix: vnode, range: 0-100}", "within 0-99"),
                           ("stems:\n  - {prefix: vnode, range: 5-3}", "FIRST-LAST"),
                           ("stems:\n  - {prefix: a, range: 0-3}\n  - {prefix: b, range: 0-3, mac-byte: 0}", "share mac-byte"),
                           ("stems: []", "expected `stems:`")] {
            #expect { try VNodePools.parse(bad) } throws: { "\($0)".contains(why) }
        }
    }

    @Test("the catalog: every entry complete; published images carry a checksum file and a keyring; d12 is built locally")
    func catalogEntries() throws {
        let c = Self.catalog
        for name in ["f33", "u18.04", "u20.04", "u22.04", "u24.04", "d12"] { #expect(c.entries[name] != nil, "\(name)") }
        for e in c.entries.values {
            switch e.source {
            case .download(let url, let sum):
                #expect(url.hasPrefix("https://"), "\(e.name)")
                #expect(!sum.keyrings.isEmpty && sum.fingerprint?.count == 40, "\(e.name)")
                #expect(sum.format == (e.family == "fedora" ? .fedora : .sha256sums), "\(e.name)")
                if e.family == "ubuntu" { #expect(sum.signatureURL?.hasSuffix("SHA256SUMS.gpg") == true) }
            case .recipe(let r):
                #expect(e.name == "d12" && r == "debian-12-cloud")
            }
        }
        #expect(c.entries["u20.04"]?.cacheFileName == "ubuntu-20.04-server-cloudimg-amd64.img")
        #expect(c.entries["d12"]?.cacheFileName == "d12.qcow2")
        #expect(throws: VMCtlError.self) { try CloudCatalog.parse("images:\n  x:\n    family: f\n    release: 1\n    user: u\n    firmware: bios\n") }
        #expect(throws: VMCtlError.self) { try CloudCatalog.parse("images:\n  x: {family: f, release: 1, user: u, firmware: efi, recipe: r}") }
    }

    @Test("checksum files: Fedora's clearsigned CHECKSUM (only its signed part) and Ubuntu's SHA256SUMS")
    func checksumFormats() throws {
        let a = String(repeating: "a", count: 64), b = String(repeating: "B", count: 64), c = String(repeating: "c", count: 64)
        let fedora = """
            SHA256 (evil.qcow2) = \(c)
            -----BEGIN PGP SIGNED MESSAGE-----
            Hash: SHA256

            # Fedora-Cloud-Base-33-1.2.x86_64.qcow2: 282918912 bytes
            SHA256 (Fedora-Cloud-Base-33-1.2.x86_64.qcow2) = \(a)
            - SHA256 (Fedora-Cloud-Base-33-1.2.x86_64.raw.xz) = \(b)
            -----BEGIN PGP SIGNATURE-----

            iQIzBAEBCAAdFiEE
            -----END PGP SIGNATURE-----
            SHA256 (after.qcow2) = \(c)
            """
        let f = ChecksumFile.parse(fedora, format: .fedora)
        #expect(f.sums == ["Fedora-Cloud-Base-33-1.2.x86_64.qcow2": a, "Fedora-Cloud-Base-33-1.2.x86_64.raw.xz": b.lowercased()])
        let u = ChecksumFile.parse("\(a) *ubuntu-20.04-server-cloudimg-amd64.img\n\(b)  other.tar.gz\nnot a line\n", format: .sha256sums)
        #expect(u.sums == ["ubuntu-20.04-server-cloudimg-amd64.img": a, "other.tar.gz": b.lowercased()])
        #expect(throws: VMCtlError.self) { try u.sha256(of: "missing.img", source: "SHA256SUMS") }
    }

    @Test("networks: user or bridge=NAME; a bridge NIC asks DHCP by its MAC; the address comes from the ready line; accept rules for that bridge only")
    func networks() throws {
        #expect(try VNodeNetwork("user") == .user && VNodeNetwork("bridge=br0") == .bridge("br0"))
        for bad in ["bridge=", "bridge", "tap=x", "bridge=has space"] {
            #expect(throws: VMCtlError.self) { try VNodeNetwork(bad) }
        }
        let nic = BridgeNetwork(mac: "52:54:00:00:00:07", bridge: "br0")
        #expect(nic.sshEndpoint == nil && nic.guestAddress == nil)
        let cfg = SeedConfig(instanceID: "i", hostname: "vnode07", user: .init(name: "debian", authorizedKeys: []),
                             hostKey: .init(privateKey: "", publicKey: ""), interfaces: [nic.guestInterface])
        let net = try cfg.networkConfig()
        #expect(net.contains("dhcp4: true") && net.contains("52:54:00:00:00:07") && !net.contains("addresses"), "\(net)")
        #expect(Machine.learnedEndpoint("vmctl-ready vnode07 12.5 addrs=fe80::1/64,192.168.77.107/24") == SSHEndpoint(host: "192.168.77.107", port: 22))
        #expect(Machine.learnedEndpoint("vmctl-ready vnode07 12.5") == nil)
        let rules = BridgeFirewall.ruleset("br0")
        #expect(rules.contains("table inet vmctl_br0 {") && rules.contains(#"iifname "br0" oifname "br0" accept"#))
        #expect(!rules.contains("bridge-nf") && !rules.contains("policy drop"))
        #expect(HostBridge.Route(destination: "default", gateway: "192.168.77.1", metric: nil).arguments == ["default", "via", "192.168.77.1"])
    }
}
