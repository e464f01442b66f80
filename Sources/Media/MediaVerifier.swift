import Blocking
import Foundation
import SSH
import VMCtlSupport
import Images
import Machines

/// Boots the media `vmctl image usb` wrote, in QEMU under UEFI (OVMF, chosen by libvirt's
/// firmware auto-selection), and proves each boot over SSH with the media's own keys:
/// 1. the USB image as a USB disk with Secure Boot on (Microsoft keys enrolled), on a
///    larger disk so the root partition must grow;
/// 2. the same image with the plain (non-secure) firmware;
/// 3. the installer ISO (made `--unattended`) as a CD-ROM with a blank disk: it writes the
///    system without asking and powers off;
/// 4. that disk alone, booted to SSH.
public struct MediaVerifier: Sendable {
    public let state: StateDir
    public let manifest: USBMedia.Manifest

    public init(state: StateDir, manifest: USBMedia.Manifest) { self.state = state; self.manifest = manifest }

    /// One boot's outcome, for the report.
    public struct Boot: Sendable, Codable {
        public var name: String
        public var seconds: Double
        public var facts: [String: String]
    }

    /// The first UEFI firmware file that is not installed, if any.
    public static func missingFirmware() -> String? { UEFIFirmware.missing() }

    /// Extra room the verification disk gets beyond the image, so first-boot growth shows.
    static let growBytes: UInt64 = 2 << 30

    public func run(iso: Bool = true, progress: @escaping ImageBuilder.Progress) async throws -> [Boot] {
        guard let keyPath = manifest.privateKey else {
            throw VMCtlError.usage("verification logs in with the key vmctl generates: write the media without --authorized-key")
        }
        if iso, manifest.installerISO != nil, !manifest.unattended {
            throw VMCtlError.usage("verification installs from the ISO with nobody at its console: write the media with --unattended")
        }
        let key = KeyPair(privateKeyPath: keyPath)
        let fm = FileManager.default
        let base = "\(state.root)/verify"
        try FileAccess.directory(base, qemu: true)
        USBMedia.sweepAbandonedWork(in: base, lead: "work-")
        // mkdtemp (0700, then 0710 to QEMU's group so it can open the disks inside by name).
        let work = try PrivateTemp.makeDirectory(in: base, prefix: "work-\(getpid())")
        defer { try? fm.removeItem(atPath: work) }
        try FileAccess.directory(work, qemu: true)
        let target = HypervisorTarget.embedded(root: "\(base)/libvirt")
        let conn = try await MachineHost(target).connect(sharedCapabilities: "\(state.cache)/qemu-capabilities")
        return try await conn.closing { conn in

            progress("verify: unpacking \(manifest.usbImage)")
            let raw = "\(work)/usb.raw"
            try await Command("/bin/sh", ["-c", "zcat \"$1\" | cp --sparse=always /dev/stdin \"$2\"", "sh",
                                          manifest.usbImage, raw]).checkedAsync()
            // The pipe hides zcat's status: a damaged archive shows as a short disk.
            let unpacked = (try? fm.attributesOfItem(atPath: raw)[.size] as? UInt64) ?? 0
            guard unpacked == manifest.diskBytes else {
                throw VMCtlError("\(manifest.usbImage) unpacks to \(unpacked) bytes, not \(manifest.diskBytes): it is damaged; write it again")
            }
            try FileAccess.shareWithQemu(raw)
            var boots: [Boot] = []
            let grown = manifest.diskBytes + Self.growBytes
            for secure in [true, false] {
                let name = secure ? "usb-secure" : "usb-plain"
                let disk = "\(work)/\(name).qcow2"
                try await Command("qemu-img", ["create", "-q", "-f", "qcow2", "-F", "raw", "-b", raw, disk, String(grown)]).checkedAsync()
                try FileAccess.shareWithQemu(disk, writable: true)
                let b = try await boot(conn, name: name, disks: [.init(path: disk, format: .qcow2, target: "sda", bus: .usb, bootOrder: 1)],
                                       secure: secure, key: key, progress: progress)
                boots.append(b)
                try? fm.removeItem(atPath: disk)
            }
            if iso, let original = manifest.installerISO {
                // The ISO sits in the user's output directory (0600, in a directory QEMU may not
                // pass through): QEMU gets its own copy inside the work directory.
                let isoPath = "\(work)/installer.iso"
                try await Command("cp", ["--reflink=auto", "--sparse=always", original, isoPath]).checkedAsync()
                try FileAccess.shareWithQemu(isoPath)
                let disk = "\(work)/installed.qcow2"
                try await Command("qemu-img", ["create", "-q", "-f", "qcow2", disk, String(grown)]).checkedAsync()
                try FileAccess.shareWithQemu(disk, writable: true)
                boots.append(try await install(conn, iso: isoPath, disk: disk, progress: progress))
                boots.append(try await boot(conn, name: "installed", disks: [.init(path: disk, format: .qcow2, target: "vda", bootOrder: 1)],
                                            secure: false, key: key, progress: progress))
            }
            return boots
        }
    }

    /// Boots one guest to SSH and reads the facts that prove the boot path.
    func boot(_ conn: HostConnection, name: String, disks: [ScratchGuest.Disk], secure: Bool, key: KeyPair,
              progress: @escaping ImageBuilder.Progress) async throws -> Boot {
        let port = try Self.freePort()
        let start = ContinuousClock.now
        progress("verify: \(name): booting under OVMF (Secure Boot \(secure ? "on" : "off"))")
        return try await withGuest(conn, name: name, disks: disks, secure: secure, sshPort: port) { watch in
            _ = try await watch.waitFor(Readiness.readyLinePrefix, from: 0, deadline: .now + .seconds(600))
            let target = SSHTarget(host: "127.0.0.1", port: port, user: manifest.user, key: key, hostKey: manifest.hostKey)
            try await GuestWatch.verifySSH(target, node: name, serialLog: watch.serialLog, deadline: .now + .seconds(120))
            let r = try await SSHSession.run(target, Self.factsScript, timeout: .seconds(120))
            guard r.status == 0 else { throw VMCtlError("verify \(name): reading facts failed: \(r.stderr)") }
            var facts: [String: String] = [:]
            for line in r.stdout.split(separator: "\n") {
                let kv = line.split(separator: "=", maxSplits: 1)
                if kv.count == 2 { facts[String(kv[0])] = String(kv[1]) }
            }
            try Self.check(facts, name: name, secure: secure, minRootBytes: manifest.diskBytes, wifi: manifest.wifi)
            let secs = Self.seconds(since: start)
            progress("verify: \(name): SSH-verified in \(String(format: "%.1f", secs))s; "
                + facts.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))
            return Boot(name: name, seconds: secs, facts: facts)
        }
    }

    /// Runs the installer ISO against a blank disk until it powers off.
    func install(_ conn: HostConnection, iso: String, disk: String, progress: @escaping ImageBuilder.Progress) async throws -> Boot {
        let start = ContinuousClock.now
        progress("verify: installer: booting \((iso as NSString).lastPathComponent) with a blank disk (Secure Boot on)")
        let disks: [ScratchGuest.Disk] = [.init(path: iso, format: .raw, target: "sdb", bus: .sata, cdrom: true, bootOrder: 1),
                                        .init(path: disk, format: .qcow2, target: "vda", bootOrder: 2)]
        return try await withGuest(conn, name: "installer", disks: disks, secure: true, sshPort: nil) { watch in
            let line = try await watch.waitFor(InstallerISO.doneMarker, from: 0, deadline: .now + .seconds(900))
            try await watch.waitStopped(deadline: .now + .seconds(120))
            let secs = Self.seconds(since: start)
            progress("verify: installer: \(line.trimmingCharacters(in: .whitespaces)) and powered off after \(Int(secs))s")
            return Boot(name: "installer", seconds: secs, facts: ["installed": line])
        }
    }

    /// Boots a throwaway guest from `disks` (`HostConnection.withScratchGuest`): defined,
    /// started, watched while `body` runs, and always removed again.
    func withGuest<T: Sendable>(_ conn: HostConnection, name: String, disks: [ScratchGuest.Disk], secure: Bool, sshPort: Int?,
                                _ body: (GuestWatch) async throws -> T) async throws -> T {
        let guest = ScratchGuest(domainName: "vmctl-verify-\(name)", name: name, disks: disks, secureBoot: secure, sshPort: sshPort,
                                 serialLog: "\(state.root)/verify/\(name).serial.log", labels: ["verify": name])
        return try await conn.withScratchGuest(guest, body)
    }

    /// Facts read over SSH: Secure Boot state (from the firmware variable), the root
    /// filesystem's size, how the system booted, and whether cloud-init finished.
    static let factsScript = """
        sb=$(od -An -tu1 /sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c 2>/dev/null | awk '{print $NF}')
        echo "efi=$([ -d /sys/firmware/efi ] && echo yes || echo no)"
        echo "secureboot=${sb:-none}"
        echo "root_bytes=$(df -B1 --output=size / | tail -n1 | tr -d ' ')"
        echo "pid1=$(cat /proc/1/comm)"
        echo "kernel=$(uname -r)"
        echo "cloudinit=$(cloud-init status --wait 2>/dev/null | awk '/status:/ {print $2}')"
        echo "wifi_profile=$(sudo stat -c %a /etc/wpa_supplicant/vmctl-wifi.conf 2>/dev/null || echo none)"
        """

    static func check(_ facts: [String: String], name: String, secure: Bool, minRootBytes: UInt64, wifi: Bool = false) throws {
        var problems: [String] = []
        if facts["efi"] != "yes" { problems.append("did not boot through UEFI") }
        if facts["secureboot"] != (secure ? "1" : "0") {
            problems.append("Secure Boot is \(facts["secureboot"] ?? "unknown"), expected \(secure ? "on (1)" : "off (0)")")
        }
        if facts["pid1"] != "systemd" { problems.append("PID 1 is \(facts["pid1"] ?? "unknown")") }
        if facts["cloudinit"] != "done" { problems.append("cloud-init status is \(facts["cloudinit"] ?? "unknown")") }
        // The disk is larger than the image: a root filesystem bigger than the whole image proves it grew.
        if (UInt64(facts["root_bytes"] ?? "") ?? 0) <= minRootBytes {
            problems.append("root filesystem (\(facts["root_bytes"] ?? "?") bytes) did not grow past the image size \(minRootBytes)")
        }
        if facts["wifi_profile"] != (wifi ? "600" : "none") {
            problems.append("Wi-Fi profile is \(facts["wifi_profile"] ?? "unknown"), expected \(wifi ? "present at mode 600" : "none")")
        }
        if !problems.isEmpty { throw VMCtlError("verify \(name): " + problems.joined(separator: "; ")) }
    }

    static func seconds(since start: ContinuousClock.Instant) -> Double {
        let d = ContinuousClock.now - start
        return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    /// A free port on 127.0.0.1 for the SSH forward.
    static func freePort() throws -> Int {
        for p in 2800..<2900 where LoopbackPort.isFree(p) { return p }
        throw VMCtlError("no free port in 2800–2899 on 127.0.0.1 for the verification guest's SSH")
    }
}
