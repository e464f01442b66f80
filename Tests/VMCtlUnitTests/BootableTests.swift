import Foundation
import Testing
import Blocking
import CloudInit
@testable import VMCtlSupport
@testable import Images
@testable import Machines
@testable import Clusters
@testable import Media

@Suite("Bootable disks: partition layout, GRUB, hardware variant, Wi-Fi, installer")
struct BootableTests {
    static let MiB: UInt64 = 1 << 20

    @Test("partitions are 1 MiB aligned, in order ESP, CIDATA, root, without overlap, with room for the backup GPT")
    func layout() throws {
        let l = DiskLayout.plan(rootBytes: 1_000_000_001, seed: "abc")
        #expect(l.partitions.map(\.role) == [.esp, .cidata, .root])
        #expect(l.partitions.map(\.number) == [1, 2, 3])
        #expect(l.partitions.first?.offset == Self.MiB)
        for p in l.partitions {
            #expect(p.offset % DiskLayout.alignment == 0)
            #expect(p.size % DiskLayout.alignment == 0)
        }
        for (a, b) in zip(l.partitions, l.partitions.dropFirst()) { #expect(a.end == b.offset) }
        let root = l.partition(.root)
        #expect(root.size >= 1_000_000_001 && root.size < 1_000_000_001 + Self.MiB)
        #expect(l.partition(.esp).size == 64 * Self.MiB)
        #expect(l.partition(.cidata).size == 8 * Self.MiB)
        // The backup GPT (33 sectors) fits after the root partition, and the disk is whole MiBs.
        #expect(l.totalBytes >= root.end + DiskLayout.backupGPTBytes)
        #expect(l.totalBytes - root.end <= Self.MiB)
        #expect(l.totalBytes % Self.MiB == 0)
        #expect(root.type == "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709")
        #expect(l.partition(.esp).type == "C12A7328-F81F-11D2-BA4B-00A0C93EC93B")
    }

    @Test("sfdisk input names every partition with its sectors, type and UUID")
    func sfdisk() {
        let l = DiskLayout.plan(rootBytes: 512 * Self.MiB, seed: "abc")
        let s = l.sfdiskScript()
        #expect(s.hasPrefix("label: gpt\nlabel-id: \(l.diskUUID)\nunit: sectors\nfirst-lba: 2048\n"))
        #expect(s.contains("start=2048, size=131072, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B"))
        #expect(s.contains("start=133120, size=16384, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"))
        #expect(s.contains("start=149504, size=1048576, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"))
        #expect(s.contains("name=\"CIDATA\""))
    }

    @Test("UUIDs are stable for the same image and differ between images")
    func uuids() {
        let a = DiskLayout.plan(rootBytes: Self.MiB, seed: "one"), b = DiskLayout.plan(rootBytes: Self.MiB, seed: "one")
        let c = DiskLayout.plan(rootBytes: Self.MiB, seed: "two")
        #expect(a == b)
        #expect(a.diskUUID != c.diskUUID && a.rootFSUUID != c.rootFSUUID)
        let all = [a.diskUUID, a.rootFSUUID] + a.partitions.map(\.uuid)
        #expect(Set(all).count == all.count)
        for u in all { #expect(u.range(of: "^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-5[0-9A-Fa-f]{3}-[89ABab][0-9A-Fa-f]{3}-[0-9A-Fa-f]{12}$", options: .regularExpression) != nil) }
    }

    @Test("the root partition is sized from the tree with headroom, in 64 MiB steps")
    func rootSize() {
        let s = DiskLayout.rootSize(usedBytes: 900 * Self.MiB, files: 30_000)
        #expect(s % (64 * Self.MiB) == 0)
        #expect(s > 900 * Self.MiB + 256 * Self.MiB)
        #expect(s < 2 * 900 * Self.MiB)
        #expect(DiskLayout.rootSize(usedBytes: 1, files: 1) >= 256 * Self.MiB)
    }

    @Test("GRUB finds the root by filesystem UUID and boots /vmlinuz with the recipe's command line")
    func grub() {
        let l = DiskLayout.plan(rootBytes: Self.MiB, seed: "x")
        let cfg = BootableDisk(layout: l, cmdline: "console=ttyS0 quiet", title: "it's").grubConfig()
        #expect(cfg.contains("search --no-floppy --fs-uuid --set=root \(l.rootFSUUID)"))
        #expect(cfg.contains("linux /vmlinuz root=UUID=\(l.rootFSUUID) ro console=ttyS0 quiet"))
        #expect(cfg.contains("initrd /initrd.img"))
        #expect(cfg.contains("menuentry 'its'"))
    }

    @Test("the hardware variant swaps the kernel, adds firmware and the bootloader, and is bootable")
    func hardwareVariant() throws {
        let store = RecipeStore(directory: Self.imagesDir)
        let vm = try store.load("cluster-os-node")
        let hw = try store.load("cluster-os-node-hw")
        #expect(hw.name == "cluster-os-node-hw")
        #expect(hw.isBootable && !vm.isBootable)
        #expect(vm.resolvedKernel == "linux-image-cloud-amd64")
        #expect(hw.resolvedKernel == "linux-image-amd64")
        #expect(hw.resolvedComponents == ["main", "non-free-firmware"])
        for p in ["shim-signed", "grub-efi-amd64-signed", "cloud-guest-utils", "slurm-wlm", "wpasupplicant"] {
            #expect(hw.packages?.contains(p) == true, "missing \(p)")
        }
        // Hardware files come after the VM's, so the generic initramfs setting wins.
        let conf = hw.files?.last { $0.path == "/etc/initramfs-tools/conf.d/vmctl.conf" }
        #expect(conf?.content?.contains("MODULES=most") == true)
        #expect(hw.resolvedUser == "clusteros")
        #expect(hw.resolvedCmdline.contains("console=tty0"))
        #expect(hw.bootstrap == vm.bootstrap)
        // Different kernel and packages: its own rootfs stage; nothing of the VM image is reused wrongly.
        let m = "http://deb.debian.org/debian"
        #expect(ImageBuilder.keys(for: hw, mirror: m).rootfs != ImageBuilder.keys(for: vm, mirror: m).rootfs)
        #expect { try RecipeStore.parse("name: bare\n", file: "bare.yaml").hardwareVariant() } throws: { "\($0)".contains("hardware") }
    }

    @Test("Wi-Fi: the SSID is hex-encoded, a passphrase quoted, a raw key not; bad input is refused")
    func wifi() throws {
        let w = try WifiProfile(ssid: "lab \"5G\"", psk: "correct horse")
        let text = w.render()
        #expect(text.contains("ssid=6c61622022354722\n"))
        #expect(text.contains("psk=\"correct horse\"\n"))
        #expect(text.contains("key_mgmt=WPA-PSK"))
        let hex = String(repeating: "aB", count: 32)
        #expect(try WifiProfile(ssid: "x", psk: hex).render().contains("psk=\(hex.lowercased())\n"))
        #expect(throws: VMCtlError.self) { try WifiProfile(ssid: "", psk: "12345678") }
        #expect(throws: VMCtlError.self) { try WifiProfile(ssid: String(repeating: "s", count: 33), psk: "12345678") }
        #expect(throws: VMCtlError.self) { try WifiProfile(ssid: "x", psk: "short") }
        #expect(throws: VMCtlError.self) { try WifiProfile(ssid: "x", psk: "line\nbreak!") }
    }

    @Test("a hardware seed carries the Wi-Fi profile at mode 0600 and leaves the network to the image")
    func hardwareSeed() throws {
        let seed = SeedConfig(instanceID: "i", hostname: "cluster-os", user: .init(name: "clusteros", authorizedKeys: ["ssh-ed25519 AAAA"]),
                              hostKey: .init(privateKey: "PRIV", publicKey: "ssh-ed25519 BBBB"), interfaces: [],
                              files: [.init(path: WifiProfile.path, content: try WifiProfile(ssid: "lab", psk: "12345678").render(),
                                            permissions: "0600")])
        let user = try seed.userData()
        #expect(user.contains(WifiProfile.path))
        #expect(user.contains("permissions: '0600'"))
        #expect(user.contains("ssid=6c6162"))
        let hw = try RecipeStore(directory: Self.imagesDir).load("debian-12-hw")
        let wired = hw.files?.first { $0.path == "/etc/systemd/network/90-vmctl-wired.network" }?.content ?? ""
        #expect(wired.contains("DHCP=yes"))
        #expect(hw.files?.contains { $0.path == "/etc/systemd/system/vmctl-wifi@.service" } == true)
    }

    @Test("the installer boots initramfs-tools with boot=vmctl-installer and guards an installed disk")
    func installer() {
        let img = Image(name: "x-hw", hash: "h", created: Date(), directory: "/d", user: "u", cmdline: "", checks: [], sizeBytes: 0)
        let cfg = InstallerISO(image: img, title: "cluster-os").grubConfig()
        #expect(cfg.contains("boot=vmctl-installer"))
        #expect(cfg.contains("initrd /install/initrd.img /install/installer.cpio"))
        #expect(!cfg.contains("vmctl.unattended"))
        #expect(cfg.contains("asks before erasing"))
        let script = InstallerISO.installerScript(title: "cluster-os")
        #expect(script.contains("mountroot()"))
        #expect(script.contains("zcat \"$MEDIUM/install/disk.img.gz\" > \"$target\""))
        #expect(script.contains("cmp -s \"$RUN/vmctl-target.guid\" \"$MEDIUM/install/disk.guid\""))
        #expect(script.contains(InstallerISO.doneMarker))
    }

    @Test("unattended media put vmctl.unattended=1 on the installer's kernel command line")
    func installerUnattended() {
        let img = Image(name: "x-hw", hash: "h", created: Date(), directory: "/d", user: "u", cmdline: "", checks: [], sizeBytes: 0)
        let cfg = InstallerISO(image: img, title: "cluster-os", unattended: true).grubConfig()
        #expect(cfg.contains("linux /install/vmlinuz boot=vmctl-installer vmctl.unattended=1 console=tty0 console=ttyS0,115200"))
        #expect(cfg.contains("without asking"))
    }

    @Test("--verify needs --unattended media (or --no-iso); --unattended needs the ISO")
    func installModeOptions() throws {
        func check(verify: Bool, iso: Bool, unattended: Bool) throws {
            try USBMedia.checkInstallMode(.init(outputDirectory: "/x", iso: iso, unattended: unattended), verify: verify)
        }
        #expect { try check(verify: true, iso: true, unattended: false) } throws: { "\($0)".contains("--unattended") }
        #expect { try check(verify: false, iso: false, unattended: true) } throws: { "\($0)".contains("--no-iso") }
        try check(verify: true, iso: true, unattended: true)
        try check(verify: true, iso: false, unattended: false)
        try check(verify: false, iso: true, unattended: false)
    }

    /// A fake sysfs and /dev: each disk is (name, MiB, removable, on USB, has a /dev node).
    static func fakeMachine(_ disks: [(String, UInt64, Bool, Bool, Bool)]) throws -> String {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("fake-sys-\(UUID())").path
        let fm = FileManager.default
        for d in ["sys/block", "sys/class/block", "dev"] { try fm.createDirectory(atPath: "\(root)/\(d)", withIntermediateDirectories: true) }
        for (name, mib, removable, usb, node) in disks {
            let dev = "\(root)/sys/devices/pci0000:00/\(usb ? "usb1/1-1/host6/" : "")block/\(name)"
            try fm.createDirectory(atPath: dev, withIntermediateDirectories: true)
            try "\(mib * 2048)\n".write(toFile: "\(dev)/size", atomically: true, encoding: .utf8)
            try "\(removable ? 1 : 0)\n".write(toFile: "\(dev)/removable", atomically: true, encoding: .utf8)
            try fm.createSymbolicLink(atPath: "\(root)/sys/block/\(name)", withDestinationPath: dev)
            try fm.createSymbolicLink(atPath: "\(root)/sys/class/block/\(name)", withDestinationPath: dev)
            if node { _ = fm.createFile(atPath: "\(root)/dev/\(name)", contents: nil) }
        }
        return root
    }

    /// Runs the installer's own `pick_target` (as /bin/sh sources it) on a fake machine.
    static func pickTarget(_ disks: [(String, UInt64, Bool, Bool, Bool)], need: UInt64, medium: String) throws -> (String, String, Int32) {
        let root = try fakeMachine(disks)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let script = "\(root)/installer"
        try InstallerISO.installerScript(title: "t").write(toFile: script, atomically: true, encoding: .utf8)
        let r = try Command("/bin/sh", ["-c", ". \"$1\"; pick_target \"$2\" \"$3\"", "sh", script, String(need), medium],
                                  environment: ["VMCTL_SYS": "\(root)/sys", "VMCTL_DEV": "\(root)/dev", "PATH": "/usr/bin:/bin"]).run()
        return (r.stdout.replacingOccurrences(of: root, with: ""), r.stderr, r.status)
    }

    @Test("the installer picks the one internal disk: never the medium, a USB or removable disk, a small one or a hidden path")
    func installerTarget() throws {
        let need: UInt64 = 1500 << 20
        // A server with its installer on a virtual CD and a USB stick plugged in: the NVMe disk.
        let (t1, _, s1) = try Self.pickTarget([("sr0", 700, true, false, true), ("sdb", 8000, true, true, true),
                                                     ("nvme0c0n1", 500_000, false, false, false), ("nvme0n1", 500_000, false, false, true),
                                                     ("loop0", 9000, false, false, true)], need: need, medium: "sr0")
        #expect(s1 == 0)
        #expect(t1 == "/dev/nvme0n1\n")
        // The ISO dd'ed to a fixed (non-removable) USB disk, and a virtio disk: the virtio disk.
        let (t2, _, s2) = try Self.pickTarget([("sda", 4000, false, true, true), ("vda", 4000, false, false, true)],
                                                    need: need, medium: "sda")
        #expect(s2 == 0 && t2 == "/dev/vda\n")
        // Two internal disks: no guessing, the user is asked for vmctl.target=.
        let (t3, e3, s3) = try Self.pickTarget([("sr0", 700, true, false, true), ("sda", 4000, false, false, true),
                                                      ("sdb", 4000, false, false, true)], need: need, medium: "sr0")
        #expect(s3 != 0 && t3.isEmpty)
        #expect(e3.contains("several disks could be the target") && e3.contains("vmctl.target="))
        // Only a disk that is too small (and eMMC boot areas, which are never targets).
        let (t4, e4, s4) = try Self.pickTarget([("sr0", 700, true, false, true), ("mmcblk0", 1000, false, false, true),
                                                      ("mmcblk0boot0", 4000, false, false, true)], need: need, medium: "sr0")
        #expect(s4 != 0 && t4.isEmpty)
        #expect(e4.contains("no internal disk of at least \(need) bytes") && e4.contains("mmcblk0(1000MiB)"))
    }

    @Test("verification facts: Secure Boot must match, root must have grown, cloud-init done")
    func verifyFacts() throws {
        let ok = ["efi": "yes", "secureboot": "1", "pid1": "systemd", "cloudinit": "done", "root_bytes": "3000000000",
                  "wifi_profile": "none"]
        try MediaVerifier.check(ok, name: "t", secure: true, minRootBytes: 2_000_000_000)
        var plain = ok; plain["secureboot"] = "0"
        #expect(throws: VMCtlError.self) { try MediaVerifier.check(plain, name: "t", secure: true, minRootBytes: 2_000_000_000) }
        try MediaVerifier.check(plain, name: "t", secure: false, minRootBytes: 2_000_000_000)
        var small = ok; small["root_bytes"] = "1500000000"
        #expect(throws: VMCtlError.self) { try MediaVerifier.check(small, name: "t", secure: true, minRootBytes: 2_000_000_000) }
        #expect(throws: VMCtlError.self) { try MediaVerifier.check(ok, name: "t", secure: true, minRootBytes: 2_000_000_000, wifi: true) }
        var wifi = ok; wifi["wifi_profile"] = "600"
        try MediaVerifier.check(wifi, name: "t", secure: true, minRootBytes: 2_000_000_000, wifi: true)
    }

    static var imagesDir: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("images").path
    }
}
