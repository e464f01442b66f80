import Blocking
import Foundation
import VMCtlSupport
import Images

/// Checks the prerequisites vmctl needs and says how to fix each missing one.
public struct Doctor: Sendable {
    public struct Check: Codable, Sendable {
        public var name: String
        public var ok: Bool
        public var detail: String
    }
    /// What the host's memory holds, as numbers for scripts (`doctor --json`).
    public struct HostMemoryFit: Codable, Sendable, Equatable {
        /// The host's MemAvailable.
        public var availableMiB: Int
        /// The size of node the count is for.
        public var nodeMemoryMiB: Int
        /// What an idle node of that size is planned to keep.
        public var perNodeMiB: Int
        /// How many such idle nodes fit now (`cluster up` refuses more).
        public var idleNodesFit: Int
    }
    public struct Report: Codable, Sendable {
        public var checks: [Check]
        /// Nil when the host's MemAvailable cannot be read.
        public var hostMemory: HostMemoryFit?
    }

    public let state: StateDir
    public init(state: StateDir) { self.state = state }

    public func run() async -> Report {
        var checks: [Check] = []
        let tools: [(String, String)] = [
            ("qemu-system-x86_64", "the hypervisor"), ("qemu-img", "overlay disks"), ("xorrisofs", "cloud-init seed ISOs"),
            ("mmdebstrap", "image builds"), ("mkfs.ext4", "image root filesystems"), ("ssh", "cluster ssh (OpenSSH)"),
            ("sfdisk", "bootable disks (GPT)"), ("mformat", "bootable disks (FAT partitions)"), ("cpio", "installer ISO"),
        ]
        for (tool, what) in tools {
            if let p = Command.locate(tool) {
                checks.append(Check(name: tool, ok: true, detail: "\(p) (\(what))"))
            } else {
                checks.append(Check(name: tool, ok: false,
                                    detail: "missing (\(what)): run scripts/install-prereqs.sh (Debian package \(Command.packages[tool] ?? tool))"))
            }
        }
        let libvirtOK = FileManager.default.fileExists(atPath: "/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so")
        checks.append(Check(name: "libvirt qemu driver", ok: libvirtOK,
                            detail: libvirtOK ? "embedded driver available (qemu:///embed)" : "missing: run scripts/install-prereqs.sh (libvirt-daemon-system)"))
        // libvirt picks UEFI firmware from QEMU's firmware descriptors (image usb --verify).
        let missing = UEFIFirmware.missing()
        checks.append(Check(name: "UEFI firmware", ok: missing == nil,
                            detail: missing == nil ? "OVMF with Secure Boot (Microsoft keys) and plain"
                                : "missing \(missing!): run scripts/install-prereqs.sh (ovmf)"))
        if getuid() == 0 {
            let hasUser = getpwnam("libvirt-qemu") != nil
            checks.append(Check(name: "libvirt-qemu user", ok: hasUser,
                                detail: hasUser ? "present" : "missing: run scripts/install-prereqs.sh (libvirt-daemon-system)"))
        }
        do {
            try state.ensureWritable()
            checks.append(Check(name: "state dir", ok: true, detail: state.root))
        } catch {
            checks.append(Check(name: "state dir", ok: false, detail: "\(error)"))
        }
        let probe = AccelProbe(state: state)
        if let v = probe.cached() {
            checks.append(Check(name: "accel (auto)", ok: true, detail: "\(v.accelerator.rawValue): \(v.reason) [cached for kernel \(v.hostKernel)]"))
        } else if access("/dev/kvm", R_OK | W_OK) != 0 {
            checks.append(Check(name: "accel (auto)", ok: true, detail: "tcg: no usable /dev/kvm"))
        } else if let img = ImageStore(state: state).list().first,
                  let v = try? await probe.resolve(.auto, kernel: img.kernel) {
            checks.append(Check(name: "accel (auto)", ok: true, detail: "\(v.accelerator.rawValue): \(v.reason)"))
        } else {
            checks.append(Check(name: "accel (auto)", ok: true, detail: "/dev/kvm present; probed on the first boot (needs a built image)"))
        }
        var hostMemory: HostMemoryFit?
        if let free = HostMemory.availableMiB() {
            let tcg = access("/dev/kvm", R_OK | W_OK) != 0 || AccelProbe(state: state).cached()?.accelerator == .tcg
            let fit = HostMemoryFit(availableMiB: free, nodeMemoryMiB: 2048, perNodeMiB: HostMemory.perNodeMiB(memoryMiB: 2048, tcg: tcg),
                                    idleNodesFit: HostMemory.fit(memoryMiB: 2048, tcg: tcg, availableMiB: free))
            hostMemory = fit
            checks.append(Check(name: "host memory", ok: true,
                                detail: "\(free) MiB available: about \(fit.idleNodesFit) idle 2 GiB nodes fit "
                                    + "(\(fit.perNodeMiB) MiB each; `cluster up` refuses more)"))
        }
        if let ksm = HostMemory.ksm() {
            checks.append(Check(name: "KSM", ok: true, detail: ksm.running
                ? "on: \(ksm.sharingMiB) MiB shared between identical pages (warm clones of one snapshot share most)"
                : "off (optional): `echo 1 > /sys/kernel/mm/ksm/run` merges identical guest pages, most between warm clones; it costs host CPU"))
        }
        return Report(checks: checks, hostMemory: hostMemory)
    }
}
