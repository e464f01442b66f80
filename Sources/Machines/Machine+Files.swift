import Blocking
import CloudInit
import Foundation
import SSH
import VMCtlSupport

extension Machine {
    /// Makes the machine's directory, its overlay disk (on `base`, or its spec's base image),
    /// serial log, a fresh host key and the seed `seed` describes for that key. Returns the key.
    func makeFiles(base: String? = nil, seed: (KeyPair) throws -> SeedConfig) async throws -> KeyPair {
        guard let rootDisk = spec.rootDisk, spec.boot != nil else {
            throw VMCtlError("machine \(spec.hostname) cannot be created: its image is not known (it can only be stopped or removed)")
        }
        let f = spec.files
        let fm = FileManager.default
        // QEMU (libvirt-qemu) reaches its files by name through directories it cannot list.
        try FileAccess.directory((f.directory as NSString).deletingLastPathComponent, qemu: true)
        try FileAccess.directory(f.directory, qemu: true)
        try Self.makeVNCDirectory(f.vncDirectory)
        try? fm.removeItem(atPath: f.disk)
        try await Command("qemu-img", ["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base ?? rootDisk.base,
                                       f.disk, String(rootDisk.sizeBytes)]).checkedAsync()
        try FileAccess.shareWithQemu(f.disk, writable: true)
        try Self.makeSerialLog(f.serialLog)
        try? fm.removeItem(atPath: f.hostKey)
        try? fm.removeItem(atPath: f.hostKey + ".pub")
        let hostKey = try await KeyPair.generate(at: f.hostKey, comment: "\(spec.hostname) host key")
        // The seed carries the machine's host private key: QEMU's group may read it, nobody else.
        try await SeedISO.write(try SeedISO.files(for: seed(hostKey)), to: f.seed)
        try FileAccess.shareWithQemu(f.seed)
        return hostKey
    }
}
