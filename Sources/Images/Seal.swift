import Foundation

/// The seal that keeps clones of an image from colliding, and how vmctl writes guest files.
/// (Readiness markers come from the seed vmctl writes at boot, not from the image:
/// `Machines.Readiness`.)
public enum Seal {
    /// Empties machine-id, drops host keys and cloud-init's state, so every clone is new.
    static func apply(to root: String) throws {
        let fm = FileManager.default
        try "".write(toFile: "\(root)/etc/machine-id", atomically: false, encoding: .utf8)
        try? fm.removeItem(atPath: "\(root)/var/lib/dbus/machine-id")
        // mmdebstrap leaves the build host's resolver config behind.
        try? fm.removeItem(atPath: "\(root)/etc/resolv.conf")
        for f in (try? fm.contentsOfDirectory(atPath: "\(root)/etc/ssh")) ?? [] where f.hasPrefix("ssh_host_") {
            try fm.removeItem(atPath: "\(root)/etc/ssh/\(f)")
        }
        for d in ["/var/lib/cloud", "/var/cache/apt/archives"] {
            for f in (try? fm.contentsOfDirectory(atPath: root + d)) ?? [] where f != "partial" && f != "lock" {
                try? fm.removeItem(atPath: "\(root)\(d)/\(f)")
            }
        }
        for f in (try? fm.contentsOfDirectory(atPath: "\(root)/var/log")) ?? [] where f.hasPrefix("cloud-init") {
            try? fm.removeItem(atPath: "\(root)/var/log/\(f)")
        }
    }
}
