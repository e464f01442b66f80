import Foundation

/// Everything vmctl says about a guest, as typed values. `DomainSpec.xml()` is the one
/// place that turns them into libvirt domain XML.
public struct DomainSpec: Sendable, Equatable {
    /// kvm or plain QEMU (TCG).
    public enum Accelerator: String, Sendable, Codable { case kvm, tcg }

    /// A kernel booted directly, without firmware or bootloader.
    public struct DirectBoot: Sendable, Equatable {
        public var kernel: String
        public var initrd: String?
        public var cmdline: String
        public init(kernel: String, initrd: String?, cmdline: String) {
            self.kernel = kernel; self.initrd = initrd; self.cmdline = cmdline
        }
    }

    /// A disk image: virtio by default; a USB stick or a SATA CD-ROM for bootable media.
    public struct Disk: Sendable, Equatable {
        public enum Format: String, Sendable { case qcow2, raw }
        public enum Bus: String, Sendable { case virtio, sata, usb }
        public enum Device: String, Sendable { case disk, cdrom }
        public var path: String
        public var format: Format
        public var target: String
        public var readOnly: Bool
        public var bus: Bus
        public var device: Device
        /// Firmware boot priority (1 first); nil leaves it to `<os><boot>`.
        public var bootOrder: Int?
        public init(path: String, format: Format, target: String, readOnly: Bool = false,
                    bus: Bus = .virtio, device: Device = .disk, bootOrder: Int? = nil) {
            self.path = path; self.format = format; self.target = target; self.readOnly = readOnly
            self.bus = bus; self.device = device; self.bootOrder = bootOrder
        }
    }

    /// One NIC: how it attaches, and its MAC.
    public struct NIC: Sendable, Equatable {
        public var mode: NetworkMode
        public var mac: String
        public init(mode: NetworkMode, mac: String) { self.mode = mode; self.mac = mac }
    }

    public var name: String
    public var accelerator: Accelerator
    public var memoryMiB: Int
    public var vcpus: Int
    /// A named CPU model (`qemu64` is quickest under TCG); nil passes the host CPU through.
    public var cpuModel: String?
    public var boot: DirectBoot?
    /// UEFI firmware instead of direct kernel boot (bootable disk images).
    public var uefi: UEFI?
    public var disks: [Disk]
    public var nics: [NIC]
    /// Where QEMU writes everything the guest prints on its first serial port.
    public var serialLog: String?
    /// VNC on 127.0.0.1 at this port; nil for none. Any local user can connect to a TCP port:
    /// prefer `vncSocket`.
    public var vncPort: Int?
    /// VNC on a UNIX socket at this path (QEMU creates it; its directory decides who connects).
    public var vncSocket: String?
    /// vmctl's own labels, stored in the domain's `<metadata>` so state can be rebuilt from libvirt.
    public var labels: [String: String]
    /// A virtio-serial port of vmctl's own (`name` in the guest's /dev/virtio-ports), on a UNIX
    /// socket QEMU listens on at `socket`: how a clone restored from a warm snapshot gets its
    /// identity before it has a network.
    public var channel: Channel?
    /// The domain's UUID; nil lets libvirt choose one.
    public var uuid: String?
    /// TCG's translation cache in MiB (nil: QEMU's default, 1 GiB, filled as code is translated).
    public var tbCacheMiB: Int?
    /// A virtio balloon with free page reporting (pages the guest frees go back to the host) and
    /// guest statistics every 5 s; without it, no balloon at all.
    public var balloon = false

    public struct Channel: Sendable, Equatable {
        public var name: String
        public var socket: String
        public init(name: String, socket: String) { self.name = name; self.socket = socket }
    }

    public struct UEFI: Sendable, Equatable {
        public var secureBoot: Bool
        public init(secureBoot: Bool) { self.secureBoot = secureBoot }
    }

    public init(name: String, accelerator: Accelerator, memoryMiB: Int, vcpus: Int, cpuModel: String?,
                boot: DirectBoot?, uefi: UEFI? = nil, disks: [Disk], nics: [NIC], serialLog: String?,
                vncPort: Int?, vncSocket: String? = nil, labels: [String: String] = [:],
                channel: Channel? = nil, uuid: String? = nil) {
        self.name = name; self.accelerator = accelerator; self.memoryMiB = memoryMiB; self.vcpus = vcpus
        self.cpuModel = cpuModel; self.boot = boot; self.uefi = uefi; self.disks = disks; self.nics = nics
        self.serialLog = serialLog; self.vncPort = vncPort; self.vncSocket = vncSocket
        self.labels = labels; self.channel = channel; self.uuid = uuid
    }

    /// The metadata namespace vmctl's labels live under.
    public static let metadataNamespace = "https://github.com/vmctl/vmctl/xmlns/domain/1"

    /// Reads labels back from the `<labels>` element libvirt returns for that namespace
    /// (whatever prefix it uses); values are unescaped.
    public static func parseLabels(_ xml: String) -> [String: String] {
        var out: [String: String] = [:]
        let pattern = #"<(?:[A-Za-z0-9_]+:)?label key="([^"]*)"\s*(?:/>|>([^<]*)</(?:[A-Za-z0-9_]+:)?label>)"#
        guard let re = try? NSRegularExpression(pattern: pattern) else { return out }
        let ns = xml as NSString
        for m in re.matches(in: xml, range: NSRange(location: 0, length: ns.length)) {
            let key = unescape(ns.substring(with: m.range(at: 1)))
            let value = m.range(at: 2).location == NSNotFound ? "" : unescape(ns.substring(with: m.range(at: 2)))
            out[key] = value
        }
        return out
    }

    private static func unescape(_ s: String) -> String {
        s.replacingOccurrences(of: "&lt;", with: "<").replacingOccurrences(of: "&gt;", with: ">")
            .replacingOccurrences(of: "&quot;", with: "\"").replacingOccurrences(of: "&apos;", with: "'")
            .replacingOccurrences(of: "&amp;", with: "&")
    }
}
