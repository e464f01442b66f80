import Foundation
import Libvirt
import SSH
import Testing
@testable import VMCtlSupport
@testable import Images
@testable import Machines

/// A disk vmctl did not make for itself, booted through firmware as a machine (same
/// serialized suite as the other VM tests).
extension RealVMTests {
    @Test("foreign cloud image: debian-12-cloud is one qcow2 (GPT, shim + GRUB for UEFI and BIOS, cloud-init) without vmctl's files or a CIDATA partition; booted as a machine with vmctl's seed under UEFI with Secure Boot, then SeaBIOS, its markers come from the seed and SSH is verified with the pinned host key; nothing left")
    func foreignCloudImage() async throws {
        let build = try await VMFixture.vmctl(["image", "build", "debian-12-cloud"])
        try #require(build.status == 0, "image build failed: \(build.out)\(build.err)")
        let img = try #require(try ImageStore(state: VMFixture.state).find("debian-12-cloud"))
        let fm = FileManager.default
        #expect(img.isCloudImage)
        // One qcow2 and its manifest: no root filesystem image, kernel or initrd for direct boot.
        #expect(try fm.contentsOfDirectory(atPath: img.directory).sorted() == [Image.cloudDiskName, "manifest.json"])

        let work = "\(VMFixture.home)/foreign"
        try? fm.removeItem(atPath: work)
        try FileAccess.directory(work, qemu: true)
        defer { try? fm.removeItem(atPath: work) }

        // What is on the disk, read from the qcow2 itself (no loop devices, no mounts).
        let disk = try await CloudDisk.inspect(img.rootDisk, scratch: "\(work)/inspect")
        #expect(disk.format == "qcow2", "\(disk.format)")
        #expect(disk.partitions.map(\.name) == ["BIOS", "EFI", "root"], "\(disk.partitions)")
        #expect(disk.partitions.map(\.type) == [DiskLayout.biosBootType, DiskLayout.espType, DiskLayout.rootType])
        #expect(disk.labels == ["EFI", "root"], "filesystem labels \(disk.labels)")
        #expect(!disk.labels.contains { $0.lowercased() == "cidata" } && !disk.partitions.contains { $0.name.lowercased() == "cidata" })
        for loader in ["BOOTX64.EFI", "grubx64.efi", "grub.cfg"] {
            #expect(disk.espBoot.contains(loader), "ESP /EFI/BOOT: \(disk.espBoot)")
        }
        // GRUB's boot code in the MBR (GPT's protective MBR keeps its 0x55AA), core.img in the BIOS boot partition.
        #expect(disk.mbrHasBootCode && disk.biosBootHasCore, "MBR code \(disk.mbrHasBootCode), core.img \(disk.biosBootHasCore)")
        // Debian's cloud-init configuration only; nothing in /etc is vmctl's or names it.
        #expect(disk.etcFiles.contains("cloud/cloud.cfg"))
        #expect(disk.etcFiles.contains("cloud/cloud.cfg.d/05_logging.cfg"))
        #expect(!disk.etcFiles.contains("ssh/sshd_config.d/10-vmctl.conf"))
        #expect(!disk.etcFiles.contains("systemd/system/ssh.service.d/10-vmctl.conf"))
        #expect(disk.vmctlMentions.isEmpty, "vmctl's files or mentions in the image's /etc: \(disk.vmctlMentions)")
        try? fm.removeItem(atPath: "\(work)/inspect")

        // Machines on it: the cloud image as a qcow2 overlay, vmctl's NoCloud seed on a second
        // disk; first through UEFI with Secure Boot (shim), then through SeaBIOS (GRUB for BIOS).
        let key = try await KeyPair.generate(at: "\(work)/id_ed25519", comment: "foreign test login")
        let target = HypervisorTarget.embedded(root: "\(work)/libvirt")
        let conn = try await MachineHost(target).connect(sharedCapabilities: "\(VMFixture.state.cache)/qemu-capabilities")
        defer { HypervisorTarget.unlinkShortRoot("\(work)/libvirt") }
        try await conn.closing { conn in
            try await Self.bootForeign(img, index: 1, firmware: .uefi(secureBoot: true), key: key, work: work, on: conn)
            try await Self.bootForeign(img, index: 2, firmware: .bios, key: key, work: work, on: conn)
        }
    }

    /// Boots the cloud image as machine `foreignN` through `firmware`, proves it ready by the
    /// seed's markers and SSH with the pinned host key, reads facts, and removes it (always).
    static func bootForeign(_ img: Image, index: Int, firmware: BootSource.Firmware, key: KeyPair, work: String,
                            on conn: HostConnection) async throws {
        let fm = FileManager.default
        let uefi = firmware != .bios
        let (domain, host) = ("it-foreign\(index)", "foreign\(index)")
        let port = try #require((2900..<3000).first { LoopbackPort.isFree($0) }, "no free port in 2900–2999")
        let spec = MachineSpec(
            name: domain, hostname: host, cpus: 2, memoryMiB: 1024, accelerator: .tcg, boot: .firmware(firmware),
            rootDisk: OverlayDisk(base: img.rootDisk, sizeBytes: 4 << 30),
            networks: [UserModeNetwork(mac: "52:54:00:fe:10:0\(index)", sshPort: port)],
            login: Login(user: "vmctl", key: key),
            labels: ["test": "foreign", "state": VMFixture.home], files: MachineFiles(directory: "\(work)/\(host)"))
        let machine = Machine(spec, on: conn)
        do {
            let started = ContinuousClock.now
            let (action, pin) = try await machine.ensure(deadline: .now + .seconds(900))
            print("foreign cloud image: \(host) \(action.rawValue), SSH-verified through \(firmware) in "
                + "\((ContinuousClock.now - started).components.seconds) s")
            #expect(action == .created)

            // The markers came from vmctl's seed (cloud-init's bootcmd), not from the image.
            // Firmware and GRUB print escape sequences and bytes that are not UTF-8.
            let log = String(decoding: fm.contents(atPath: spec.files.serialLog) ?? Data(), as: UTF8.self)
            #expect(log.contains(Readiness.bootingMarker), "no \(Readiness.bootingMarker) in the serial log")
            let ready = try #require(log.split(whereSeparator: \.isNewline).first { $0.contains("\(Readiness.readyMarker) \(host) ") },
                                     "no ready line: \(SerialLogWatcher.tail(spec.files.serialLog))")
            #expect(Readiness.parse(String(ready))?.addresses == [UserModeNetwork.address], "\(ready)")

            // SSH with the pinned host key; what booted, and how.
            let ssh = try machine.withHostKeyTarget(pin)
            let facts = try await SSHSession.run(ssh, CloudDisk.factsScript(waitForCloudInit: uefi), timeout: .seconds(300))
            try #require(facts.status == 0, "facts: \(facts.stderr)")
            let f = CloudDisk.facts(facts.stdout)
            #expect(f["efi"] == (uefi ? "yes" : "no"), "\(f)")
            #expect(f["secureboot"] == (firmware == .uefi(secureBoot: true) ? "1" : uefi ? "0" : "none"), "\(f)")
            #expect(f["pid1"] == "systemd" && f["hostname"] == host, "\(f)")
            #expect(f["vmctl_cfg"] == "none", "vmctl cloud-init config in the guest: \(f["vmctl_cfg"] ?? "?")")
            #expect(f["hostkeys"] == "1", "host keys: \(f["hostkeys"] ?? "?")")
            if uefi {
                // Once: cloud-init ran to its end with Debian's configuration and vmctl's seed,
                // growpart grew the root to the overlay, and a wrong pin is refused.
                if f["cloudinit"] != "done" {
                    let why = try await SSHSession.run(ssh, "sudo cloud-init status --long; "
                        + "sudo grep -E 'WARNING|ERROR|Traceback' /var/log/cloud-init.log | tail -n 20", timeout: .seconds(60))
                    Issue.record("cloud-init did not finish cleanly: \(why.stdout)\(why.stderr)")
                }
                #expect(f["datasource"]?.hasPrefix("DataSourceNoCloud [seed=/dev/vdb]") == true, "\(f)")
                #expect((UInt64(f["root_bytes"] ?? "") ?? 0) > 3 << 30, "\(f)")
                var wrong = ssh
                wrong.hostKey = try await KeyPair.generate(at: "\(work)/impostor", comment: "impostor").pin()
                await #expect { try await SSHSession.run(wrong, "true") } throws: { ($0 as? SSHError)?.kind == .hostKeyMismatch }
                // libvirt made the machine's UEFI variable store in its root; removing the machine takes it.
                #expect(nvramFiles("\(work)/libvirt", domain: domain).count == 1)
            }
            try await machine.remove()
        } catch {
            try? await machine.remove()
            CloudDisk.kill(guest: domain)
            throw error
        }
        #expect(try await machine.status() == .absent)
        #expect(CloudDisk.leftovers(guest: domain) == [])
        #expect(nvramFiles("\(work)/libvirt", domain: domain) == [])
        #expect(!fm.fileExists(atPath: spec.files.directory))
    }

    /// The UEFI variable stores libvirt keeps for `domain` under an embedded root.
    static func nvramFiles(_ root: String, domain: String) -> [String] {
        ((try? FileManager.default.subpathsOfDirectory(atPath: root)) ?? []).filter { $0.contains("nvram/\(domain)_VARS") }
    }
}

extension Machine {
    /// The SSH target with `pin` (the spec given to the test had none yet).
    func withHostKeyTarget(_ pin: HostKeyPin) throws -> SSHTarget {
        try Machine(spec.withHostKey(pin), on: host).sshTarget()
    }
}

/// Reads a cloud image's disk without loop devices or mounts: the partition table by sfdisk,
/// filesystem labels by blkid, the ESP by mtools and the root filesystem's /etc by debugfs,
/// each at its partition's offset in a raw copy.
enum CloudDisk {
    struct Partition: Sendable, CustomStringConvertible {
        var name: String
        var type: String
        var offset: UInt64
        var description: String { "\(name) (\(type)) at \(offset)" }
    }

    struct Contents: Sendable {
        var format: String
        var partitions: [Partition]
        var labels: [String]
        /// Names in the ESP's /EFI/BOOT.
        var espBoot: [String]
        /// Every path under the root filesystem's /etc, relative to it.
        var etcFiles: Set<String>
        /// Paths under /etc whose name or content says "vmctl".
        var vmctlMentions: [String]
        /// Boot code in the protective MBR, and GRUB's core.img where that code looks for it:
        /// the start of the BIOS boot partition.
        var mbrHasBootCode: Bool
        var biosBootHasCore: Bool
    }

    static func inspect(_ qcow2: String, scratch: String) async throws -> Contents {
        let fm = FileManager.default
        try FileAccess.directory(scratch)
        let info = try await VMFixture.run("/usr/bin/qemu-img", ["info", "--output=json", qcow2])
        let format = (try JSONSerialization.jsonObject(with: Data(info.utf8)) as? [String: Any])?["format"] as? String ?? info
        let raw = "\(scratch)/disk.raw"
        _ = try await VMFixture.run("/usr/bin/qemu-img", ["convert", "-O", "raw", qcow2, raw])
        let table = try await VMFixture.run("/usr/sbin/sfdisk", ["--json", raw])
        let json = try JSONSerialization.jsonObject(with: Data(table.utf8)) as? [String: Any]
        let entries = ((json?["partitiontable"] as? [String: Any])?["partitions"] as? [[String: Any]]) ?? []
        let partitions = entries.map {
            Partition(name: $0["name"] as? String ?? "", type: ($0["type"] as? String ?? "").uppercased(),
                      offset: UInt64($0["start"] as? Int ?? 0) * 512)
        }
        var labels: [String] = []
        for p in partitions {
            let out = try await VMFixture.run("/usr/sbin/blkid", ["-p", "-o", "export", "-O", String(p.offset), raw])
            labels += out.split(separator: "\n").filter { $0.hasPrefix("LABEL=") }.map { String($0.dropFirst(6)) }
        }
        var espBoot: [String] = []
        if let esp = partitions.first(where: { $0.type == DiskLayout.espType }) {
            let out = try await VMFixture.run("/usr/bin/mdir", ["-b", "-i", "\(raw)@@\(esp.offset)", "::/EFI/BOOT"])
            espBoot = out.split(separator: "\n").map { ($0 as NSString).lastPathComponent }
        }
        var etc: Set<String> = []
        var mentions: [String] = []
        if let root = partitions.first(where: { $0.type == DiskLayout.rootType }) {
            let dump = "\(scratch)/root"
            try fm.createDirectory(atPath: dump, withIntermediateDirectories: true)
            _ = try await VMFixture.run("/usr/sbin/debugfs", ["-R", "rdump /etc \(dump)", "\(raw)?offset=\(root.offset)"])
            let base = "\(dump)/etc"
            for rel in (try? fm.subpathsOfDirectory(atPath: base)) ?? [] {
                etc.insert(rel)
                var isDir: ObjCBool = false
                let path = "\(base)/\(rel)"
                if rel.lowercased().contains("vmctl") { mentions.append(rel); continue }
                if fm.fileExists(atPath: path, isDirectory: &isDir), !isDir.boolValue,
                   let data = fm.contents(atPath: path), data.range(of: Data("vmctl".utf8)) != nil {
                    mentions.append(rel)
                }
            }
        }
        var (mbrCode, core) = (false, false)
        if let h = FileHandle(forReadingAtPath: raw) {
            defer { try? h.close() }
            let mbr = [UInt8](try h.read(upToCount: 512) ?? Data())
            if mbr.count == 512 {
                mbrCode = mbr[0..<440].contains { $0 != 0 } && mbr[510] == 0x55 && mbr[511] == 0xaa
                let coreLBA = (0..<8).reduce(UInt64(0)) { $0 | UInt64(mbr[0x5c + $1]) << (8 * UInt64($1)) }
                if let bios = partitions.first(where: { $0.type == DiskLayout.biosBootType }), coreLBA * 512 == bios.offset {
                    try h.seek(toOffset: bios.offset)
                    core = (try h.read(upToCount: 512) ?? Data()).contains { $0 != 0 }
                }
            }
        }
        try? fm.removeItem(atPath: raw)
        return Contents(format: format, partitions: partitions, labels: labels, espBoot: espBoot, etcFiles: etc, vmctlMentions: mentions,
                        mbrHasBootCode: mbrCode, biosBootHasCore: core)
    }

    /// Facts read over SSH from the booted guest; cloud-init's end is waited for only if asked.
    static func factsScript(waitForCloudInit: Bool) -> String {
        (waitForCloudInit ? #"echo "cloudinit=$(cloud-init status --wait 2>/dev/null | awk '/status:/ {print $2}')""# + "\n" : "")
            + factsAtOnce
    }

    static let factsAtOnce = """
        sb=$(od -An -tu1 /sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c 2>/dev/null | awk '{print $NF}')
        echo "efi=$([ -d /sys/firmware/efi ] && echo yes || echo no)"
        echo "secureboot=${sb:-none}"
        echo "pid1=$(cat /proc/1/comm)"
        echo "hostname=$(hostname)"
        echo "datasource=$(sudo sed -n 's/.*"datasource": "\\([^"]*\\)".*/\\1/p' /run/cloud-init/result.json)"
        echo "vmctl_cfg=$(ls /etc/cloud/cloud.cfg.d | grep -i vmctl || echo none)"
        echo "hostkeys=$(ls /etc/ssh | grep -c '^ssh_host_.*_key$')"
        echo "root_bytes=$(df -B1 --output=size / | tail -n1 | tr -d ' ')"
        """

    static func facts(_ text: String) -> [String: String] {
        var out: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let kv = line.split(separator: "=", maxSplits: 1)
            out[String(kv[0])] = kv.count == 2 ? String(kv[1]) : ""
        }
        return out
    }

    /// QEMU processes still running `guest`.
    static func leftovers(guest: String) -> [pid_t] {
        let pids = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return pids.compactMap { pid -> pid_t? in
            guard let n = pid_t(pid), let raw = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return nil }
            let cmd = String(decoding: raw.map { $0 == 0 ? 32 : $0 }, as: UTF8.self)
            return cmd.contains("qemu-system") && cmd.contains("guest=\(guest),") ? n : nil
        }
    }

    /// Kills what `remove` could not (by PID, never by name).
    static func kill(guest: String) {
        for pid in leftovers(guest: guest) { Foundation.kill(pid, SIGKILL) }
    }
}
