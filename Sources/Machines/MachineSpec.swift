import CHost
import Foundation
internal import Libvirt
import SSH
import Images

/// Everything that makes one virtual machine, before it exists: its shape, how it boots,
/// its disks and NICs, its seed (login and identity), its labels and where its files live.
/// A machine is found on its host by `name` and must carry `labels` (a domain of that name
/// without them belongs to someone else and is never touched).
public struct MachineSpec: Sendable {
    /// The libvirt domain name, unique on its host (`<cluster>-node1`).
    public var name: String
    /// The guest's hostname, also the name used in messages (`node1`).
    public var hostname: String
    public var cpus: Int
    public var memoryMiB: Int
    public var accelerator: Accelerator
    /// How it boots; nil for a machine known only from records (it can be found, stopped
    /// and removed, not created).
    public var boot: BootSource?
    /// Its root disk: a qcow2 overlay on a cached base image (nil as for `boot`).
    public var rootDisk: OverlayDisk?
    /// Its NICs in order (the first is the guest's first interface).
    public var networks: [any NetworkAttachment]
    /// The account vmctl logs in with, and the host key pinned for it (nil until made).
    public var login: Login
    /// Extra lines for the guest's /etc/hosts.
    public var hosts: [(address: String, names: [String])]
    /// vmctl's labels in the domain's metadata: what finds the machine again.
    public var labels: [String: String]
    /// Where its disk, seed, serial log, host key and VNC socket live.
    public var files: MachineFiles
    /// A TCP VNC port, for machines made before VNC moved to a UNIX socket; nil now.
    public var vncPort: Int?
    /// How the serial console reaches `files.serialLog`.
    public var console: ConsoleCapture = .logFile
    /// The domain's UUID when vmctl must know it before libvirt does (a warm clone's restore
    /// and its definition name the same domain); nil lets libvirt choose.
    public var uuid: String?
    /// Whether the machine has vmctl's identity port (a warm template and its clones: the
    /// clones' devices must be the template's; a cold machine does without).
    public var identityPort = false
    /// How much host memory the machine may keep (TCG's translation cache, a balloon).
    public var memoryLevers = MemoryLevers.standard

    public init(name: String, hostname: String, cpus: Int, memoryMiB: Int, accelerator: Accelerator,
                boot: BootSource?, rootDisk: OverlayDisk?, networks: [any NetworkAttachment], login: Login,
                hosts: [(address: String, names: [String])] = [], labels: [String: String], files: MachineFiles,
                vncPort: Int? = nil) {
        self.name = name; self.hostname = hostname; self.cpus = cpus; self.memoryMiB = memoryMiB
        self.accelerator = accelerator; self.boot = boot; self.rootDisk = rootDisk; self.networks = networks
        self.login = login; self.hosts = hosts; self.labels = labels; self.files = files
        self.vncPort = vncPort
    }

    /// Where vmctl reaches the guest's SSH: the first NIC that offers an endpoint.
    public var sshEndpoint: SSHEndpoint? { networks.lazy.compactMap(\.sshEndpoint).first }
}

/// How a machine's serial console output reaches its log, where readiness is read.
public enum ConsoleCapture: String, Sendable, Equatable {
    /// QEMU writes the log itself (the fast path, for a host whose files are local).
    case logFile = "log-file"
    /// vmctl reads libvirt's console stream and writes the log: for a host whose files are not
    /// local (a remote libvirt URI). The domain starts paused, the stream is attached, then it
    /// resumes, so no early output is lost. The capture lasts as long as the vmctl process.
    case stream
}

/// How a machine boots: vmctl's own images by direct kernel boot, any disk with a bootloader
/// of its own (a distribution's cloud image) through firmware. The root disk is a qcow2
/// overlay on a cached base either way.
public enum BootSource: Sendable, Equatable {
    /// The image's kernel and initrd booted directly with `cmdline` (vmctl's own images).
    case kernel(KernelBoot)
    /// Firmware boots the first disk's own bootloader.
    case firmware(Firmware)

    /// The firmware that boots a disk with its own bootloader.
    public enum Firmware: Sendable, Equatable {
        /// SeaBIOS: the disk needs a BIOS boot path (MBR code, GRUB for i386-pc).
        case bios
        /// OVMF: the disk needs an EFI system partition. With Secure Boot, OVMF with
        /// Microsoft's keys enrolled, so shim must be signed by Microsoft's UEFI CA.
        case uefi(secureBoot: Bool)
    }

    /// How `image` boots: direct kernel boot of a vmctl image, root on the first disk; a
    /// cloud image (no kernel of its own in the store) through UEFI with Secure Boot.
    public static func image(_ image: Image, extraCmdline: String = "") -> BootSource {
        if image.isCloudImage { return .firmware(.uefi(secureBoot: true)) }
        return .kernel(.init(kernel: image.bootKernel, initrd: image.initrd, cmdline: "root=/dev/vda rw \(image.cmdline)" + extraCmdline))
    }
}

/// A kernel booted directly by QEMU: no firmware, no bootloader.
public struct KernelBoot: Sendable, Equatable {
    public var kernel: String
    public var initrd: String?
    public var cmdline: String
    public init(kernel: String, initrd: String?, cmdline: String) {
        self.kernel = kernel; self.initrd = initrd; self.cmdline = cmdline
    }
}

/// A thin qcow2 overlay on a base image.
public struct OverlayDisk: Sendable, Equatable {
    /// The base image (qcow2), shared read-only by every overlay on it.
    public var base: String
    /// The overlay's virtual size.
    public var sizeBytes: UInt64
    public init(base: String, sizeBytes: UInt64) { self.base = base; self.sizeBytes = sizeBytes }
}

/// The account vmctl logs in with: user, key pair, and the guest's pinned host key.
public struct Login: Sendable {
    public var user: String
    public var key: KeyPair
    /// nil until the machine's host key is made (by `create`).
    public var hostKey: HostKeyPin?
    public init(user: String, key: KeyPair, hostKey: HostKeyPin? = nil) {
        self.user = user; self.key = key; self.hostKey = hostKey
    }
}

/// The files of one machine, all in its own directory: removing the machine removes it.
public struct MachineFiles: Sendable, Equatable, Codable {
    public var directory: String
    public init(directory: String) { self.directory = directory }
    public var disk: String { "\(directory)/disk.qcow2" }
    public var seed: String { "\(directory)/seed.iso" }
    public var serialLog: String { "\(directory)/serial.log" }
    public var hostKey: String { "\(directory)/ssh_host_ed25519_key" }
    /// QEMU's VNC socket, in a directory only QEMU's user (and root) can enter.
    public var vncDirectory: String { "\(directory)/vnc" }
    public var vncSocket: String { "\(vncDirectory)/vnc.sock" }
    /// QEMU's end of vmctl's identity port (warm clones get their identity through it).
    public var identitySocket: String { "\(vncDirectory)/identity.sock" }
    /// Where a warm clone's save file (header and XML, then the snapshot's stream) is fed to libvirt.
    public var restoreFIFO: String { "\(directory)/restore.fifo" }
}

/// What an idle machine costs the host beyond its guest's working set, and how vmctl bounds
/// it (issue: density). Under TCG, QEMU's translation cache is 1 GiB by default and fills as
/// code is translated; a guest gives back nothing it once touched unless a balloon reports
/// the pages it frees.
public struct MemoryLevers: Sendable, Equatable, Codable {
    /// TCG's translation cache in MiB; nil keeps QEMU's default (1 GiB).
    public var tbCacheMiB: Int?
    /// A virtio balloon with free page reporting (and `cluster set-memory`).
    public var balloon: Bool
    /// The guest gives back its boot's page cache and free pages once its boot is over
    /// (Readiness.returnFreePages; with the balloon, those pages go back to the host).
    public var dropCaches: Bool

    public init(tbCacheMiB: Int?, balloon: Bool, dropCaches: Bool) {
        self.tbCacheMiB = tbCacheMiB; self.balloon = balloon; self.dropCaches = dropCaches
    }

    /// vmctl's choice, measured in `make bench`; `VMCTL_TB_CACHE_MIB` (0: QEMU's default),
    /// `VMCTL_BALLOON=0` and `VMCTL_DROP_CACHES=0` override it for measurements (and
    /// `VMCTL_THP=1`, below).
    public static var standard: MemoryLevers {
        let env = ProcessInfo.processInfo.environment
        let tb = env["VMCTL_TB_CACHE_MIB"].flatMap(Int.init).map { $0 > 0 ? $0 : nil } ?? defaultTBCacheMiB
        let balloon = env["VMCTL_BALLOON"] != "0"
        return MemoryLevers(tbCacheMiB: tb, balloon: balloon, dropCaches: balloon && env["VMCTL_DROP_CACHES"] != "0")
    }
    public static let defaultTBCacheMiB: Int? = 128

    /// Transparent huge pages off for this process and so for every QEMU its embedded libvirt
    /// starts (`PR_SET_THP_DISABLE` is inherited across fork and exec; a QEMU that
    /// `qemu:///system`'s daemon starts keeps the host's setting). QEMU asks for huge pages
    /// for guest RAM and the translation cache, and one touched 4 KiB page then holds 2 MiB:
    /// a warm clone loads its save's pages spread over its RAM, and its guest RAM was 259 MiB
    /// resident with huge pages against 166 MiB without (the save: 165 MiB). Pages the balloon
    /// gave back are not filled again by khugepaged either. `VMCTL_THP=1` keeps the host's setting.
    public static func disableHugePagesForChildren(env: [String: String] = ProcessInfo.processInfo.environment) {
        guard env["VMCTL_THP"] != "1" else { return }
        _ = vmctl_disable_thp()
    }
}

