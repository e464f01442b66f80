import Foundation
import Testing
import Blocking
@testable import VMCtlSupport
@testable import Images
@testable import Machines
@testable import Clusters
@testable import Media

/// The installer script as /bin/sh runs it, on a fake machine: sysfs, a /dev whose disks are
/// plain files, a kernel command line, /run with the installer medium's files, and consoles
/// that are plain files. `power_off` and `umount` are replaced (and sysrq points at a file).
@Suite("Installer script: when it writes, which disk, and what it leaves alone")
struct InstallerScriptTests {
    static let guid = "GUID-0123456789A"          // 16 bytes, as a GPT disk GUID stands on disk
    static let system = "NEW SYSTEM\n"
    static let need: UInt64 = 1500 << 20

    /// One disk: name, size, sector size, where on it this medium's GUID stands (if anywhere).
    struct Disk {
        var name: String
        var mib: UInt64 = 4000
        var removable = false
        var usb = false
        var sectorBytes = 512
        var guidAt: Int?
    }

    struct Result {
        var status: Int32
        var serial: String
        var screen: String
        var stderr: String
        var poweredOff: Bool
        var sleeps: [String]
        /// The fake machine, for the disks' contents; the test removes it.
        let root: String
        /// What a fake disk holds now.
        func content(_ disk: String) -> String {
            (try? String(contentsOfFile: "\(root)/dev/\(disk)", encoding: .isoLatin1)) ?? "<missing>"
        }
        func untouched(_ disk: String) -> Bool { content(disk).hasPrefix("OLD \(disk)\n") }
        func installed(_ disk: String) -> Bool { content(disk) == InstallerScriptTests.system }
    }

    /// Shell commands that add a disk to the fake machine under `root` (also run by the fake `sleep`).
    static func addDisk(_ d: Disk, root: String) -> String {
        let dir = "\(root)/sys/devices/pci0000:00/\(d.usb ? "usb1/1-1/host6/" : "")block/\(d.name)"
        var s = """
            mkdir -p '\(dir)/queue'
            echo \(d.mib * 2048) > '\(dir)/size'; echo \(d.removable ? 1 : 0) > '\(dir)/removable'
            echo \(d.sectorBytes) > '\(dir)/queue/logical_block_size'
            ln -s '\(dir)' '\(root)/sys/block/\(d.name)'; ln -s '\(dir)' '\(root)/sys/class/block/\(d.name)'
            { printf 'OLD %s\\n' \(d.name); head -c 9000 /dev/zero; } > '\(root)/dev/\(d.name)'

            """
        if let at = d.guidAt {
            s += "printf %s '\(guid)' | dd of='\(root)/dev/\(d.name)' bs=1 seek=\(at) conv=notrunc 2>/dev/null\n"
        }
        return s
    }

    /// Runs `install_system` for a medium on `sr0` with `cmdline`. `answers` are the files the
    /// confirmation is read from; `later[i]` are the disks that appear during the i-th `sleep`.
    static func run(_ disks: [Disk], cmdline: String, answers: [String?] = [nil], later: [[Disk]] = [],
                    env: [String: String] = [:]) throws -> Result {
        let fm = FileManager.default
        // The caller removes `Result.root`; a run that throws removes it here.
        let root = fm.temporaryDirectory.appendingPathComponent("fake-inst-\(UUID())").path
        var ok = false
        defer { if !ok { try? fm.removeItem(atPath: root) } }
        for d in ["sys/block", "sys/class/block", "dev", "run/vmctl-medium/install", "bin"] {
            try fm.createDirectory(atPath: "\(root)/\(d)", withIntermediateDirectories: true)
        }
        let medium = Disk(name: "sr0", mib: 700, removable: true)
        let setup = ([medium] + disks).map { addDisk($0, root: root) }.joined()
        try Command("/bin/sh", ["-c", setup]).checked()
        let install = "\(root)/run/vmctl-medium/install"
        try "\(need)\n".write(toFile: "\(install)/disk.size", atomically: true, encoding: .utf8)
        try guid.write(toFile: "\(install)/disk.guid", atomically: true, encoding: .utf8)
        try system.write(toFile: "\(install)/disk.img", atomically: true, encoding: .utf8)
        try Command("gzip", ["\(install)/disk.img"]).checked()
        try "\(cmdline)\n".write(toFile: "\(root)/cmdline", atomically: true, encoding: .utf8)
        // The fake sleep logs its argument and adds the disks meant to appear during that call.
        var known = Set(disks.map(\.name))
        for (i, ds) in later.enumerated() {
            // A disk already there gets the new size (its capacity was read late).
            let hook = ds.map { d in
                known.insert(d.name).inserted ? addDisk(d, root: root)
                    : "echo \(d.mib * 2048) > '\(root)/sys/block/\(d.name)/size'\n"
            }
            try hook.joined().write(toFile: "\(root)/run/hook\(i + 1)", atomically: true, encoding: .utf8)
        }
        try """
            #!/bin/sh
            echo "$1" >> "$VMCTL_RUN/sleeps"
            n=$(wc -l < "$VMCTL_RUN/sleeps")
            [ -f "$VMCTL_RUN/hook$n" ] && . "$VMCTL_RUN/hook$n"
            exit 0

            """.write(toFile: "\(root)/bin/sleep", atomically: true, encoding: .utf8)
        chmod("\(root)/bin/sleep", 0o755)
        var inputs: [String] = []
        for (i, a) in answers.enumerated() {
            if let a {
                try "\(a)\n".write(toFile: "\(root)/answer\(i)", atomically: true, encoding: .utf8)
                inputs.append("\(root)/answer\(i)")
            } else {
                inputs.append("/dev/null")          // a console nobody types on
            }
        }
        let script = "\(root)/installer"
        try InstallerISO.installerScript(title: "t").write(toFile: script, atomically: true, encoding: .utf8)
        var environment = ["VMCTL_SYS": "\(root)/sys", "VMCTL_DEV": "\(root)/dev", "VMCTL_CMDLINE": "\(root)/cmdline",
                           "VMCTL_RUN": "\(root)/run", "VMCTL_SYSRQ": "\(root)/sysrq", "VMCTL_INPUT": inputs.joined(separator: " "),
                           "VMCTL_SETTLE": "0", "VMCTL_CONFIRM": "1", "PATH": "\(root)/bin:/usr/bin:/bin"]
        environment.merge(env) { $1 }
        let r = try Command("/bin/sh", ["-c", """
            . "$1"
            power_off() { echo "$1" > "$VMCTL_RUN/powered-off"; exit 0; }
            umount() { :; }
            read_cmdline
            install_system sr0
            echo "install_system returned" >&2; exit 9
            """, "sh", script], environment: environment).run()
        ok = true
        func read(_ p: String) -> String {
            ((try? String(contentsOfFile: "\(root)/\(p)", encoding: .utf8)) ?? "").replacingOccurrences(of: root, with: "")
        }
        return Result(status: r.status, serial: read("dev/ttyS0"), screen: read("dev/tty0"), stderr: r.stderr,
                      poweredOff: fm.fileExists(atPath: "\(root)/run/powered-off"),
                      sleeps: read("run/sleeps").split(separator: "\n").map(String.init), root: root)
    }

    static let consoles = "console=tty0 console=ttyS0,115200"

    @Test("vmctl.target= installs to that disk without asking, even beside a second disk")
    func namedTarget() throws {
        let r = try Self.run([Disk(name: "sda"), Disk(name: "sdb")], cmdline: "\(Self.consoles) vmctl.target=/dev/sdb")
        defer { try? FileManager.default.removeItem(atPath: r.root) }
        #expect(r.status == 0 && r.poweredOff, "\(r.stderr)\n\(r.serial)")
        #expect(r.installed("sdb") && r.untouched("sda"))
        #expect(r.serial.contains("\(InstallerISO.doneMarker) /dev/sdb"))
        #expect(!r.serial.contains("Type sdb"))
    }

    @Test("without vmctl.target= or vmctl.unattended=1, nobody typing means nothing is written")
    func noConfirmation() throws {
        let r = try Self.run([Disk(name: "sda")], cmdline: Self.consoles, answers: [nil, nil])
        defer { try? FileManager.default.removeItem(atPath: r.root) }
        #expect(r.status == 0 && r.poweredOff, "\(r.stderr)\n\(r.serial)")
        #expect(r.untouched("sda"))
        #expect(r.serial.contains("Type sda and Enter within 1 s"))
        #expect(r.screen.contains("will ERASE sda (4000 MiB)"))
        #expect(r.serial.contains("vmctl-failed installer: nobody typed sda within 1 s: nothing written"))
        #expect(!r.serial.contains(InstallerISO.doneMarker))
    }

    @Test("a confirmation must name the disk: a wrong answer writes nothing, the disk's name installs")
    func confirmation() throws {
        let wrong = try Self.run([Disk(name: "sda")], cmdline: Self.consoles, answers: [nil, "yes"], env: ["VMCTL_CONFIRM": "5"])
        defer { try? FileManager.default.removeItem(atPath: wrong.root) }
        #expect(wrong.untouched("sda") && wrong.poweredOff)
        #expect(wrong.serial.contains("vmctl-failed installer: 'yes' is not sda: nothing written"), "\(wrong.serial)")
        let right = try Self.run([Disk(name: "sda")], cmdline: Self.consoles, answers: [nil, "  sda "], env: ["VMCTL_CONFIRM": "5"])
        defer { try? FileManager.default.removeItem(atPath: right.root) }
        #expect(right.installed("sda") && right.poweredOff, "\(right.stderr)\n\(right.serial)")
        #expect(right.serial.contains("\(InstallerISO.doneMarker) /dev/sda"))
    }

    @Test("unattended media install to the one internal disk without asking")
    func unattended() throws {
        let r = try Self.run([Disk(name: "nvme0n1"), Disk(name: "sdb", removable: true, usb: true)],
                             cmdline: "\(Self.consoles) vmctl.unattended=1")
        defer { try? FileManager.default.removeItem(atPath: r.root) }
        #expect(r.installed("nvme0n1") && r.untouched("sdb") && r.poweredOff, "\(r.stderr)\n\(r.serial)")
        #expect(r.serial.contains("\(InstallerISO.doneMarker) /dev/nvme0n1"))
        #expect(!r.serial.contains("Type nvme0n1"))
        #expect(r.sleeps == ["0"])
    }

    @Test("a disk that appears after the first read makes the installer refuse and list both, not wipe the first")
    func lateDisk() throws {
        let r = try Self.run([Disk(name: "sda")], cmdline: "\(Self.consoles) vmctl.unattended=1 vmctl.settle=7",
                             later: [[Disk(name: "sdb")]])
        defer { try? FileManager.default.removeItem(atPath: r.root) }
        #expect(r.untouched("sda") && r.untouched("sdb") && r.poweredOff, "\(r.stderr)\n\(r.serial)")
        #expect(r.serial.contains("several disks could be the target: /dev/sda /dev/sdb"), "\(r.serial)")
        // The kernel parameter sets the interval; the second pair of reads agreed.
        #expect(r.sleeps == ["7", "7"])
    }

    @Test("a disk whose size the kernel reads late (0 at first) is waited for: refusal, not a wipe of the other")
    func lateCapacity() throws {
        let r = try Self.run([Disk(name: "sda")], cmdline: "\(Self.consoles) vmctl.unattended=1",
                             later: [[Disk(name: "sdb", mib: 0)], [Disk(name: "sdb", mib: 4000)]])
        defer { try? FileManager.default.removeItem(atPath: r.root) }
        #expect(r.untouched("sda") && r.untouched("sdb") && r.poweredOff, "\(r.stderr)\n\(r.serial)")
        #expect(r.serial.contains("several disks could be the target: /dev/sda /dev/sdb"), "\(r.serial)")
        #expect(r.sleeps.count == 3)
    }

    @Test("disks that never stop changing: the installer gives up after the bounded rounds, writing nothing")
    func neverSettles() throws {
        let later = (0..<10).map { [Disk(name: "sd\(["b", "c", "d", "e", "f", "g", "h", "i", "j", "k"][$0])")] }
        let r = try Self.run([Disk(name: "sda")], cmdline: "\(Self.consoles) vmctl.unattended=1", later: later,
                             env: ["VMCTL_SETTLE_ROUNDS": "3"])
        defer { try? FileManager.default.removeItem(atPath: r.root) }
        #expect(r.untouched("sda") && r.poweredOff, "\(r.stderr)\n\(r.serial)")
        #expect(r.serial.contains("vmctl-failed installer: the disks were still changing after 3 reads 0 s apart"), "\(r.serial)")
        #expect(r.sleeps.count == 3)
    }

    @Test("the installed-system check reads the GPT at LBA 1 of the disk's own sector size (512 and 4Kn)")
    func sectorSize() throws {
        let cmd = "\(Self.consoles) vmctl.unattended=1"
        // 512-byte sectors: the GUID at 512+56 means this system is already there.
        let a = try Self.run([Disk(name: "sda", guidAt: 512 + 56)], cmdline: cmd)
        defer { try? FileManager.default.removeItem(atPath: a.root) }
        #expect(a.serial.contains("vmctl-already-installed /dev/sda") && a.content("sda").hasPrefix("OLD sda"), "\(a.serial)")
        // A 4Kn disk: LBA 1 is at 4096, so the GUID at 4096+56 is this system.
        let b = try Self.run([Disk(name: "sda", sectorBytes: 4096, guidAt: 4096 + 56)], cmdline: cmd)
        defer { try? FileManager.default.removeItem(atPath: b.root) }
        #expect(b.serial.contains("vmctl-already-installed /dev/sda") && b.untouched("sda"), "\(b.serial)")
        // The same bytes at 512+56 of a 4Kn disk are not a GPT header; and a 512-byte-sector
        // system would not boot from a 4Kn disk, so it is not written there either.
        let c = try Self.run([Disk(name: "sda", sectorBytes: 4096, guidAt: 512 + 56)], cmdline: cmd)
        defer { try? FileManager.default.removeItem(atPath: c.root) }
        #expect(!c.serial.contains("vmctl-already-installed") && c.untouched("sda") && c.poweredOff)
        #expect(c.serial.contains("has 4096-byte sectors"), "\(c.serial)")
        // vmctl.force=1 installs over the same system on a 512-byte disk.
        let d = try Self.run([Disk(name: "sda", guidAt: 512 + 56)], cmdline: "\(cmd) vmctl.force=1")
        defer { try? FileManager.default.removeItem(atPath: d.root) }
        #expect(d.installed("sda"), "\(d.serial)")
    }
}
