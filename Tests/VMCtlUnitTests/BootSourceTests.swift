import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Testing
@testable import VMCtlSupport
@testable import Libvirt
@testable import Machines
@testable import SSH

@Suite("Boot sources: direct kernel boot, SeaBIOS and UEFI")
struct BootSourceTests {
    static func machine(_ boot: BootSource) -> Machine {
        Machine(MachineSpec(name: "bs-node1", hostname: "node1", cpus: 2, memoryMiB: 1024, accelerator: .tcg,
                            boot: boot, rootDisk: OverlayDisk(base: "/img/disk.qcow2", sizeBytes: 4 << 30),
                            networks: [UserModeNetwork(mac: "52:54:00:10:00:01", sshPort: 2901)],
                            login: Login(user: "vmctl", key: KeyPair(privateKeyPath: "/nonexistent")),
                            labels: ["test": "boot"], files: MachineFiles(directory: "/m/node1")),
                on: try! Connection(uri: "test:///default"))
    }

    static func document(_ boot: BootSource) throws -> XMLDocument {
        try XMLDocument(xmlString: try machine(boot).domainSpec().xml())
    }

    static func values(_ doc: XMLDocument, _ xpath: String) throws -> [String] {
        try doc.nodes(forXPath: xpath).compactMap(\.stringValue)
    }

    static let kernel = BootSource.kernel(.init(kernel: "/img/vmlinuz", initrd: "/img/initrd.img", cmdline: "root=/dev/vda rw console=ttyS0"))

    @Test("direct kernel boot: kernel, initrd and command line; no firmware, no boot order; the seed is a read-only second disk")
    func kernelBoot() throws {
        let doc = try Self.document(Self.kernel)
        #expect(try Self.values(doc, "/domain/os/kernel") == ["/img/vmlinuz"])
        #expect(try Self.values(doc, "/domain/os/initrd") == ["/img/initrd.img"])
        #expect(try Self.values(doc, "/domain/os/cmdline") == ["root=/dev/vda rw console=ttyS0"])
        #expect(try Self.values(doc, "/domain/os/@firmware").isEmpty)
        #expect(try doc.nodes(forXPath: "//boot").isEmpty)
        #expect(try doc.nodes(forXPath: "/domain/features/smm").isEmpty)
        #expect(try Self.values(doc, "/domain/devices/disk/source/@file") == ["/m/node1/disk.qcow2", "/m/node1/seed.iso"])
        #expect(try doc.nodes(forXPath: "/domain/devices/disk[target/@dev='vdb']/readonly").count == 1)
    }

    @Test("SeaBIOS: no kernel, no loader or firmware (libvirt's default BIOS), the overlay is boot device 1 and the seed none")
    func bios() throws {
        let doc = try Self.document(.firmware(.bios))
        #expect(try doc.nodes(forXPath: "/domain/os/kernel").isEmpty)
        #expect(try doc.nodes(forXPath: "/domain/os/loader").isEmpty)
        #expect(try Self.values(doc, "/domain/os/@firmware").isEmpty)
        #expect(try doc.nodes(forXPath: "/domain/os/firmware").isEmpty)
        // Per-disk boot order, so no <os><boot dev=…/> (libvirt refuses both at once).
        #expect(try doc.nodes(forXPath: "/domain/os/boot").isEmpty)
        #expect(try Self.values(doc, "/domain/devices/disk[target/@dev='vda']/boot/@order") == ["1"])
        #expect(try doc.nodes(forXPath: "/domain/devices/disk[target/@dev='vdb']/boot").isEmpty)
        #expect(try doc.nodes(forXPath: "/domain/features/smm").isEmpty)
        #expect(try Self.values(doc, "/domain/os/type/@machine") == ["q35"])
    }

    @Test("UEFI with Secure Boot: libvirt's firmware auto-selection asked for secure-boot and enrolled keys, SMM on, overlay boots first")
    func uefiSecure() throws {
        let doc = try Self.document(.firmware(.uefi(secureBoot: true)))
        #expect(try Self.values(doc, "/domain/os/@firmware") == ["efi"])
        #expect(try Self.values(doc, "/domain/os/firmware/feature[@name='secure-boot']/@enabled") == ["yes"])
        #expect(try Self.values(doc, "/domain/os/firmware/feature[@name='enrolled-keys']/@enabled") == ["yes"])
        #expect(try Self.values(doc, "/domain/features/smm/@state") == ["on"])
        #expect(try doc.nodes(forXPath: "/domain/os/kernel").isEmpty)
        #expect(try Self.values(doc, "/domain/devices/disk[target/@dev='vda']/boot/@order") == ["1"])
        #expect(try doc.nodes(forXPath: "/domain/devices/disk[target/@dev='vdb']/boot").isEmpty)
    }

    @Test("UEFI without Secure Boot: the plain OVMF build (both features off), no SMM")
    func uefiPlain() throws {
        let doc = try Self.document(.firmware(.uefi(secureBoot: false)))
        #expect(try Self.values(doc, "/domain/os/@firmware") == ["efi"])
        #expect(try Self.values(doc, "/domain/os/firmware/feature/@enabled") == ["no", "no"])
        #expect(try doc.nodes(forXPath: "/domain/features/smm").isEmpty)
        #expect(try Self.values(doc, "/domain/devices/disk[target/@dev='vda']/boot/@order") == ["1"])
    }

    @Test("libvirt's own parser (test:///default) accepts the domain of every boot source")
    func libvirtAccepts() throws {
        let conn = try Connection(uri: "test:///default")
        defer { conn.close() }
        for (i, boot) in [Self.kernel, .firmware(.bios), .firmware(.uefi(secureBoot: true)),
                          .firmware(.uefi(secureBoot: false))].enumerated() {
            var spec = try Self.machine(boot).domainSpec()
            spec.name = "bs-\(i)-\(UInt32.random(in: 0...999_999))"
            spec.nics = [.init(mode: .bridge(name: "br0"), mac: "52:54:00:30:00:0\(i)")]  // the test driver has no qemu namespace
            let d = try conn.define(xml: spec.xml())
            defer { try? d.undefine(); d.close() }
            let back = try d.xml()
            if case .firmware = boot { #expect(back.contains("<boot order='1'/>"), "\(back)") }
            if case .firmware(.uefi(true)) = boot { #expect(back.contains("<smm state='on'/>"), "\(back)") }
        }
    }

    @Test("a machine with no boot source has no domain")
    func noBoot() {
        #expect(throws: VMCtlError.self) {
            _ = try Machine(MachineSpec(name: "x", hostname: "x", cpus: 1, memoryMiB: 256, accelerator: .tcg, boot: nil, rootDisk: nil,
                                        networks: [], login: Login(user: "vmctl", key: KeyPair(privateKeyPath: "/nonexistent")),
                                        labels: [:], files: MachineFiles(directory: "/m/x")),
                            on: try Connection(uri: "test:///default")).domainSpec()
        }
    }
}
