import Foundation
internal import Libvirt

/// A booted guest saved once per image and shape, restored for every later machine of that
/// shape (`Machine.restore(from:)`): the template's disk at the moment of the save (the
/// clones' read-only base), libvirt's save file of its memory and devices (0600: it holds
/// the template's RAM), and what vmctl must know of it. The template carries no identity: no
/// host key, no login key, no cluster address, sshd stopped.
public struct WarmSnapshot: Sendable {
    /// Bumped when the template's agent, its preparation or the identity script change: its
    /// snapshots are then made again (5: free pages given back before the save, 257 → 165 MiB;
    /// 6: the save's stream without guest RAM's untouched zero pages, MigrationStream).
    public static let protocolVersion = 6

    /// What a snapshot is only valid for: a clone restores exactly this image, shape, machine
    /// type and QEMU/libvirt pair, with this identity protocol.
    public struct Key: Codable, Sendable, Equatable {
        public var image: String
        public var cpus: Int
        public var memoryMiB: Int
        public var accelerator: String
        public var machine: String
        public var cpuModel: String
        public var qemu: UInt
        public var libvirt: UInt
        public var protocolVersion: Int
        public init(image: String, cpus: Int, memoryMiB: Int, accelerator: Accelerator, cpuModel: String?,
                    qemu: UInt, libvirt: UInt, balloon: Bool = false, protocolVersion: Int = WarmSnapshot.protocolVersion) {
            self.image = image; self.cpus = cpus; self.memoryMiB = memoryMiB; self.accelerator = accelerator.rawValue
            // A clone's devices must be the template's: the balloon is one.
            self.machine = balloon ? "q35+balloon" : "q35"; self.cpuModel = cpuModel ?? "host"; self.qemu = qemu; self.libvirt = libvirt
            self.protocolVersion = protocolVersion
        }
        /// The snapshot's directory name: readable, and different for every field that matters.
        public var name: String {
            "\(image.prefix(12))-\(cpus)c-\(memoryMiB)m-\(accelerator)-\(machine)-\(cpuModel)-qemu\(qemu)-libvirt\(libvirt)-p\(protocolVersion)"
        }

        /// Why `other` cannot use a snapshot made for this key, in words; nil when it can.
        public func mismatch(_ other: Key) -> String? {
            var why: [String] = []
            if image != other.image { why.append("image \(image.prefix(12)) was rebuilt as \(other.image.prefix(12))") }
            if cpus != other.cpus || memoryMiB != other.memoryMiB { why.append("shape \(cpus) vCPU/\(memoryMiB) MiB, not \(other.cpus)/\(other.memoryMiB)") }
            if accelerator != other.accelerator { why.append("accelerator \(accelerator), not \(other.accelerator)") }
            if qemu != other.qemu || libvirt != other.libvirt { why.append("QEMU \(qemu)/libvirt \(libvirt) changed to \(other.qemu)/\(other.libvirt)") }
            if machine != other.machine || cpuModel != other.cpuModel { why.append("machine \(machine)/\(cpuModel) changed") }
            if protocolVersion != other.protocolVersion { why.append("identity protocol \(protocolVersion), not \(other.protocolVersion)") }
            return why.isEmpty ? nil : why.joined(separator: "; ")
        }
    }

    /// What vmctl records of a snapshot beside its files.
    public struct Meta: Codable, Sendable {
        public var key: Key
        /// The template's NIC MACs in order (a clone's restored NICs carry them until it changes them).
        public var macs: [String]
        public var user: String
        public var madeAt: Date
        /// Seconds from defining the template to its save finishing.
        public var seconds: Double
        public var saveBytes: UInt64
        /// Zero pages of guest RAM left out of the saved stream (nil: none, see `streamUnchanged`).
        public var zeroPagesLeftOut: Int?
        /// Why the saved stream is as libvirt wrote it, if it is.
        public var streamUnchanged: String?
    }

    public let directory: String
    public let meta: Meta

    public static func directory(for key: Key, in root: String) -> String { "\(root)/\(key.name)" }
    static func saveFile(_ dir: String) -> String { "\(dir)/guest.save" }
    static func diskFile(_ dir: String) -> String { "\(dir)/disk.qcow2" }
    static func metaFile(_ dir: String) -> String { "\(dir)/snapshot.json" }
    public var saveFile: String { Self.saveFile(directory) }
    public var disk: String { Self.diskFile(directory) }

    /// The finished snapshot in `dir` (its record is written last), or nil.
    static func load(_ dir: String) -> WarmSnapshot? {
        guard let data = FileManager.default.contents(atPath: metaFile(dir)),
              let meta = try? JSONDecoder.iso.decode(Meta.self, from: data) else { return nil }
        return WarmSnapshot(directory: dir, meta: meta)
    }

    /// The snapshot for `key` under `root`, if one was finished and both its files are there.
    public static func find(_ key: Key, in root: String) -> WarmSnapshot? {
        let dir = directory(for: key, in: root)
        guard let snap = load(dir), snap.meta.key == key,
              FileManager.default.fileExists(atPath: saveFile(dir)), FileManager.default.fileExists(atPath: diskFile(dir))
        else { return nil }
        return snap
    }

    /// Every finished snapshot under `root`.
    public static func all(in root: String) -> [WarmSnapshot] {
        ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).sorted().compactMap { load("\(root)/\($0)") }
    }

    /// Removes every snapshot under `root` of an image that is neither tagged now (`current`
    /// hashes) nor under a cluster's disks (`inUse`): a rebuilt image's old snapshots go once
    /// no clone sits on them; so do snapshots of an older identity protocol (never used again).
    /// Also removes templates left by a maker that died. Returns what went.
    @discardableResult
    public static func prune(in root: String, current: Set<String>, inUse: Set<String>) -> [String] {
        let fm = FileManager.default
        var gone: [String] = []
        for snap in all(in: root) where !inUse.contains(snap.meta.key.image)
            && (!current.contains(snap.meta.key.image) || snap.meta.key.protocolVersion != protocolVersion) {
            if (try? fm.removeItem(atPath: snap.directory)) != nil { gone.append(snap.meta.key.name) }
        }
        for name in (try? fm.contentsOfDirectory(atPath: root)) ?? [] where name.hasPrefix("template-") {
            if let pid = Int32(name.dropFirst("template-".count)), kill(pid, 0) != 0, errno == ESRCH {
                try? fm.removeItem(atPath: "\(root)/\(name)")
            }
        }
        return gone
    }

    /// Why no snapshot under `root` serves `key` although one of its image exists, for
    /// `up`'s one line; nil when there is none of this image at all.
    public static func whyNot(_ key: Key, in root: String) -> String? {
        let near = all(in: root).filter { $0.meta.key.image == key.image || $0.meta.key.cpus == key.cpus && $0.meta.key.memoryMiB == key.memoryMiB }
        return near.compactMap { $0.meta.key.mismatch(key) }.first
    }
}

extension JSONDecoder {
    static var iso: JSONDecoder { let d = JSONDecoder(); d.dateDecodingStrategy = .iso8601; return d }
}

extension JSONEncoder {
    static var iso: JSONEncoder {
        let e = JSONEncoder(); e.dateEncodingStrategy = .iso8601; e.outputFormatting = [.prettyPrinted, .sortedKeys]; return e
    }
}
