import Foundation
import VMCtlSupport

/// What vmctl adds to every image and the seal that keeps clones from colliding.
public enum Seal {
    /// Printed on the first serial port once sshd accepts logins with the injected keys:
    /// vmctl watches the serial log for it instead of polling.
    public static let readyMarker = "vmctl-ready"

    /// Printed when the guest's userspace starts, just before cloud-init runs.
    public static let bootingMarker = "vmctl-booting"

    /// An early oneshot unit: the kernel and systemd are up, cloud-init is next. The kernel
    /// prints its messages on the console until here (so a hung boot shows where it stopped);
    /// from here on only serious ones, so they cannot split vmctl's marker lines.
    public static let bootingUnit = """
        [Unit]
        Description=Tell vmctl on the serial console that userspace is up
        DefaultDependencies=no
        After=local-fs.target
        Before=cloud-init-local.service sysinit.target

        [Service]
        Type=oneshot
        ExecStart=/bin/sh -c 'dmesg -n 3; echo "\(bootingMarker) $(cut -d" " -f1 /proc/uptime)" > /dev/ttyS0'

        [Install]
        WantedBy=sysinit.target

        """

    /// A oneshot unit that announces, on the first serial port, that SSH logins work.
    public static let readinessUnit = """
        [Unit]
        Description=Tell vmctl on the serial console that SSH logins work
        After=ssh.service cloud-init-local.service systemd-user-sessions.service systemd-networkd.service
        Wants=ssh.service

        [Service]
        Type=oneshot
        RemainAfterExit=yes
        ExecStart=/usr/local/sbin/vmctl-ready

        [Install]
        WantedBy=multi-user.target

        """

    /// Announces once sshd runs with the injected host key, logins are allowed and a NIC has
    /// an IPv4 address (so the forwarded port reaches sshd). Checking these directly is
    /// seconds faster than waiting for networkd's "online". Bounded: 60 s, then says so.
    public static let readinessScript = """
        #!/bin/sh
        # Written by vmctl: announce on the first serial port that SSH logins work.
        i=0
        while [ $i -lt 600 ]; do
          if systemctl -q is-active ssh.service && [ -s /etc/ssh/ssh_host_ed25519_key ] \\
             && [ ! -e /run/nologin ] && ip -4 -o addr show scope global | grep -q inet; then
            echo "\(readyMarker) $(hostname) $(cut -d' ' -f1 /proc/uptime)" > /dev/ttyS0
            exit 0
          fi
          sleep 0.1; i=$((i+1))
        done
        echo "vmctl-failed $(hostname): sshd, host key or address not ready after 60 s" > /dev/ttyS0
        exit 1

        """

    static func installReadinessUnit(in root: String) throws {
        let fm = FileManager.default
        let dir = "\(root)/etc/systemd/system"
        try guestFile(readinessUnit, at: "\(dir)/vmctl-ready.service", mode: 0o644, root: root)
        try guestFile(readinessScript, at: "\(root)/usr/local/sbin/vmctl-ready", mode: 0o755, root: root)
        try guestFile(bootingUnit, at: "\(dir)/vmctl-booting.service", mode: 0o644, root: root)
        for (target, unit) in [("multi-user.target.wants", "vmctl-ready.service"), ("sysinit.target.wants", "vmctl-booting.service")] {
            try guestDirectory("\(dir)/\(target)", root: root)
            let link = "\(dir)/\(target)/\(unit)"
            try? fm.removeItem(atPath: link)
            try fm.createSymbolicLink(atPath: link, withDestinationPath: "/etc/systemd/system/\(unit)")
        }
    }

    /// A file in the image with its guest mode, whatever vmctl's own umask (077) is.
    static func guestFile(_ content: String, at path: String, mode: mode_t, root: String) throws {
        try guestDirectory((path as NSString).deletingLastPathComponent, root: root)
        unlink(path)
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
        guard fd >= 0 else { throw VMCtlError("cannot write \(path) in the image: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        try Array(content.utf8).withUnsafeBytes { try AtomicFile.writeAll(fd, $0, path: path) }
        guard fchmod(fd, mode) == 0 else {
            throw VMCtlError("cannot write \(path) in the image: \(String(cString: strerror(errno)))")
        }
    }

    /// Makes `path` and missing parents below `root` as 0755 directories, as a guest expects.
    static func guestDirectory(_ path: String, root: String) throws {
        guard path.hasPrefix(root), !FileManager.default.fileExists(atPath: path) else { return }
        try guestDirectory((path as NSString).deletingLastPathComponent, root: root)
        guard mkdir(path, 0o755) == 0 || errno == EEXIST, chmod(path, 0o755) == 0 else {
            throw VMCtlError("cannot create \(path) in the image: \(String(cString: strerror(errno)))")
        }
    }

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
