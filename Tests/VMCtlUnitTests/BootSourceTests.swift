import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Testing
@testable import VMCtlSupport
@testable import Images
@testable import Libvirt
@testable import Machines
@testable import SSH

@Suite("Boot sources: direct kernel boot, SeaBIOS and UEFI; the cloud image recipe")
struct BootSourceTests {
    static func machine(_ boot: BootSource) -> MachineSpec {
        MachineSpec(name: "bs-node1", hostname: "node1", cpus: 2, memoryMiB: 1024, accelerator: .tcg,
                            boot: boot, rootDisk: OverlayDisk(base: "/img/disk.qcow2", sizeBytes: 4 << 30),
                            networks: [UserModeNetwork(mac: "52:54:00:10:00:01", sshPort: 2901)],
                            login: Login(user: "vmctl", key: KeyPair(privateKeyPath: "/nonexistent")),
                            labels: ["test": "boot"], files: MachineFiles(directory: "/m/node1"))
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
    func libvirtAccepts() async throws {
        let conn = try await Connection.open("test:///default")
        for (i, boot) in [Self.kernel, .firmware(.bios), .firmware(.uefi(secureBoot: true)),
                          .firmware(.uefi(secureBoot: false))].enumerated() {
            var spec = try Self.machine(boot).domainSpec()
            spec.name = "bs-\(i)-\(UInt32.random(in: 0...999_999))"
            spec.nics = [.init(mode: .bridge(name: "br0"), mac: "52:54:00:30:00:0\(i)")]  // the test driver has no qemu namespace
            let d = try await conn.define(xml: spec.xml())
            let back = try await d.xml()
            if case .firmware = boot { #expect(back.contains("<boot order='1'/>"), "\(back)") }
            if case .firmware(.uefi(true)) = boot { #expect(back.contains("<smm state='on'/>"), "\(back)") }
            try? await d.undefine()
            d.close()
        }
        await conn.close()
    }

    @Test("a machine with no boot source has no domain")
    func noBoot() {
        #expect(throws: VMCtlError.self) {
            _ = try MachineSpec(name: "x", hostname: "x", cpus: 1, memoryMiB: 256, accelerator: .tcg, boot: nil, rootDisk: nil,
                                networks: [], login: Login(user: "vmctl", key: KeyPair(privateKeyPath: "/nonexistent")),
                                labels: [:], files: MachineFiles(directory: "/m/x")).domainSpec()
        }
    }

    @Test("an image boots as it was built: vmctl's by its kernel, a cloud image through UEFI with Secure Boot from disk.qcow2")
    func imageBoot() {
        var img = Image(name: "debian-12", hash: "h", created: Date(), directory: "/s/h", user: "vmctl", cmdline: "console=ttyS0",
                        checks: [], sizeBytes: 0)
        #expect(BootSource.image(img) == .kernel(.init(kernel: "/s/h/vmlinuz", initrd: "/s/h/initrd.img",
                                                        cmdline: "root=/dev/vda rw console=ttyS0")))
        #expect(img.rootDisk == "/s/h/root.qcow2")
        img.cloudImage = true
        #expect(BootSource.image(img) == .firmware(.uefi(secureBoot: true)))
        #expect(img.rootDisk == "/s/h/disk.qcow2")
        #expect(img.rawDisk == nil)
    }

    static var imagesDir: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("images").path
    }

    @Test("debian-12-cloud: a cloud image with shim, GRUB and cloud-init, and none of vmctl's files, units or settings")
    func cloudRecipe() throws {
        let store = RecipeStore(directory: Self.imagesDir)
        let cloud = try store.load("debian-12-cloud")
        let vm = try store.load("debian-12")
        #expect(cloud.isCloudImage && !cloud.isBootable && !vm.isCloudImage)
        #expect(cloud.base == nil && cloud.hardware == nil)
        for p in ["cloud-init", "openssh-server", "shim-signed", "grub-efi-amd64-signed", "grub-pc-bin", "cloud-guest-utils"] {
            #expect(cloud.packages?.contains(p) == true, "missing \(p)")
        }
        let paths = (cloud.files ?? []).map(\.path)
        #expect(paths.sorted() == ["/etc/default/locale", "/etc/fstab", "/etc/hostname"])
        #expect(!paths.contains { $0.contains("vmctl") || $0.hasPrefix("/etc/cloud") || $0.hasPrefix("/etc/systemd") })
        // vmctl's own image has them: this is what the cloud image leaves out.
        #expect((vm.files ?? []).contains { $0.path == "/etc/cloud/cloud.cfg.d/90_vmctl_datasource.cfg" })
        #expect(!(cloud.commands ?? []).joined().contains("vmctl"))
        #expect(cloud.resolvedCmdline.contains("console=ttyS0"))
        #expect(!cloud.resolvedCmdline.contains("ds=nocloud"))
        // The flag is part of the disk stage's key only.
        var plain = cloud
        plain.cloudImage = nil
        let m = "http://deb.debian.org/debian"
        let (a, b) = (ImageBuilder.keys(for: cloud, mirror: m), ImageBuilder.keys(for: plain, mirror: m))
        #expect(a.rootfs == b.rootfs && a.customize == b.customize && a.disk != b.disk)
    }

    @Test("cloud_image parses, layers, is dropped by a hardware variant, and excludes bootable")
    func cloudFlag() throws {
        let r = try RecipeStore.parse("name: c\ncloud_image: true\n", file: "c.yaml")
        #expect(r.isCloudImage)
        var child = Recipe(name: "d")
        #expect(child.layered(over: r).isCloudImage)
        child.cloudImage = false
        #expect(!child.layered(over: r).isCloudImage)
        var hw = r
        hw.hardware = Recipe.Hardware()
        #expect(try !hw.hardwareVariant().isCloudImage)
        var both = r
        both.bootable = true
        #expect { try both.validate() } throws: { "\($0)".contains("cloud_image and bootable") }
    }

    @Test("a cloud image's disk has no CIDATA partition: ESP then root, aligned, root last")
    func cloudLayout() {
        let l = DiskLayout.plan(rootBytes: 512 << 20, cidataBytes: 0, seed: "c")
        #expect(l.partitions.map(\.role) == [.esp, .root])
        #expect(l.partitions.map(\.number) == [1, 2])
        #expect(!l.has(.cidata) && l.has(.esp))
        #expect(l.partition(.esp).end == l.partition(.root).offset)
        let s = l.sfdiskScript()
        #expect(!s.contains("CIDATA") && !s.contains(DiskLayout.basicDataType))
        #expect(s.contains("start=133120, size=1048576, type=\(DiskLayout.rootType)"))
    }

    @Test("a cloud image that also boots through BIOS: a 1 MiB BIOS boot partition first, then ESP and root; GRUB's prefix names the ESP")
    func biosLayout() {
        let l = DiskLayout.plan(rootBytes: 512 << 20, cidataBytes: 0, biosBootBytes: 1 << 20, seed: "c")
        #expect(l.partitions.map(\.role) == [.biosBoot, .esp, .root])
        #expect(l.partitions.map(\.number) == [1, 2, 3])
        #expect(l.partition(.biosBoot).offset == 1 << 20 && l.partition(.biosBoot).size == 1 << 20)
        #expect(l.partition(.biosBoot).end == l.partition(.esp).offset)
        #expect(l.sfdiskScript().contains("start=2048, size=2048, type=21686148-6449-6E6F-744E-656564454649"))
        #expect(BIOSBoot.prefix(espNumber: l.partition(.esp).number) == "(,gpt2)/EFI/debian")
        // Without it, nothing moves: the hardware variant's disk stays as it was.
        #expect(DiskLayout.plan(rootBytes: 512 << 20, seed: "c").partitions.map(\.role) == [.esp, .cidata, .root])
    }

    @Test("GRUB for BIOS: boot.img keeps the disk's signature and partition table and points at core.img; core.img's block list names the rest of it")
    func biosPatch() throws {
        var sector0 = [UInt8](repeating: 0, count: 512)
        for i in 0x1b8..<0x1fe { sector0[i] = UInt8(i & 0xff) }           // disk signature, protective MBR entry
        sector0[0x1fe] = 0x55; sector0[0x1ff] = 0xaa
        var boot = [UInt8](repeating: 0xcc, count: 512)
        boot[0x66] = 0xeb; boot[0x67] = 0x05
        var core = [UInt8](repeating: 0xdd, count: 512 * 3 + 100)         // 4 sectors once padded
        core[500..<512] = [2, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0x20, 0x08]      // grub-mkimage's defaults
        let (b, c) = try BIOSBoot.patch(sector0: sector0, bootImage: boot, coreImage: core, coreLBA: 2048, roomBytes: 1 << 20)
        #expect(b.count == 512 && c.count == 4 * 512)
        #expect(Array(b[0x1b8..<0x1fe]) == Array(sector0[0x1b8..<0x1fe]))  // partition table untouched
        #expect(Array(b[0x03..<0x5a]) == Array(sector0[0x03..<0x5a]))      // no BPB from boot.img
        #expect(Array(b[0..<3]) == [0xcc, 0xcc, 0xcc] && b[0x5a] == 0xcc)   // GRUB's code otherwise
        #expect(Array(b[0x5c..<0x64]) == [0x00, 0x08, 0, 0, 0, 0, 0, 0])    // core.img at LBA 2048
        #expect(b[0x64] == 0xff && b[0x66] == 0x90 && b[0x67] == 0x90)
        #expect(Array(c[500..<512]) == [0x01, 0x08, 0, 0, 0, 0, 0, 0, 3, 0, 0x20, 0x08])  // LBA 2049, 3 sectors, 0x820
        #expect(Array(c[0..<500]) == Array(core[0..<500]) && c.last == 0)
        #expect(throws: VMCtlError.self) {
            try BIOSBoot.patch(sector0: sector0, bootImage: boot, coreImage: core, coreLBA: 2048, roomBytes: 3 * 512)
        }
        #expect(throws: VMCtlError.self) {
            try BIOSBoot.patch(sector0: sector0, bootImage: Array(boot[0..<440]), coreImage: core, coreLBA: 2048, roomBytes: 1 << 20)
        }
    }
}
