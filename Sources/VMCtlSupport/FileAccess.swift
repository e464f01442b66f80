import Foundation

/// Who may open vmctl's files. vmctl runs as root; QEMU runs as the unprivileged
/// `libvirt-qemu` user. What QEMU must open (overlays, seeds, kernels, base images, serial
/// logs, the switch socket and the directories above them) is owned `root:libvirt-qemu` and
/// group-readable or -traversable only; everything else (keys, state, facts, stage trees)
/// is root's alone (0600/0700). Run as another user, QEMU runs as that user and every file
/// stays private (0600/0700).
public enum FileAccess {
    /// The group QEMU runs in (`qemu.conf`), and the user.
    public static let qemuUser = "libvirt-qemu"
    public static let qemuGroupName = "libvirt-qemu"

    /// QEMU's primary group: `kvm` (it opens /dev/kvm), else its own. Its files are shared
    /// through the supplementary group `libvirt-qemu` either way.
    public static var qemuProcessGroup: String { getgrnam("kvm") != nil ? "kvm" : qemuGroupName }

    /// The group id QEMU's files are shared with, when vmctl runs as root; nil otherwise.
    public static var qemuGroup: gid_t? {
        guard getuid() == 0 else { return nil }
        return getgrnam(qemuGroupName).map { $0.pointee.gr_gid }
    }

    /// Refuses to go on as root when QEMU's user is missing (QEMU would otherwise run as root).
    public static func requireQemuUser() throws {
        guard getuid() == 0 else { return }
        guard getpwnam(qemuUser) != nil, getgrnam(qemuGroupName) != nil else {
            throw VMCtlError("the unprivileged user '\(qemuUser)' that runs QEMU does not exist: "
                + "run scripts/install-prereqs.sh (Debian package libvirt-daemon-system creates it)")
        }
    }

    /// A directory vmctl trusts: made by a `mkdir` that must succeed (or find it already there),
    /// then checked with `lstat`: a real directory (not a symlink), owned by this user, writable
    /// by nobody else. Then set to `mode` (0700), or 0710 `root:libvirt-qemu` when `qemu` is set
    /// so QEMU can reach files inside by name. Anything else is refused in one line.
    public static func directory(_ path: String, qemu: Bool = false) throws {
        if mkdir(path, 0o700) != 0 && errno != EEXIST {
            throw VMCtlError("cannot create directory \(path): \(String(cString: strerror(errno)))")
        }
        var st = stat()
        guard lstat(path, &st) == 0 else {
            throw VMCtlError("cannot inspect \(path): \(String(cString: strerror(errno)))")
        }
        guard (st.st_mode & S_IFMT) == S_IFDIR else {
            throw VMCtlError("refusing \(path): it is not a directory (a symlink or file is in its place); remove it or set VMCTL_HOME elsewhere")
        }
        guard st.st_uid == getuid() else {
            throw VMCtlError("refusing \(path): it belongs to uid \(st.st_uid), not to this user (uid \(getuid())); remove it or set VMCTL_HOME elsewhere")
        }
        if let gid = qemu ? qemuGroup : nil {
            guard chown(path, getuid(), gid) == 0, chmod(path, 0o710) == 0 else {
                throw VMCtlError("cannot share \(path) with QEMU: \(String(cString: strerror(errno)))")
            }
        } else if st.st_mode & 0o7777 != 0o700 {
            guard chmod(path, 0o700) == 0 else {
                throw VMCtlError("cannot make \(path) private: \(String(cString: strerror(errno)))")
            }
        }
    }

    /// Like `directory`, creating missing parents first (mode 0755: they hold nothing of
    /// ours, and QEMU must be able to pass through them).
    public static func directoryWithParents(_ path: String, qemu: Bool = false) throws {
        var missing: [String] = []
        var p = (path as NSString).deletingLastPathComponent
        while !p.isEmpty && p != "/" && !FileManager.default.fileExists(atPath: p) {
            missing.append(p)
            p = (p as NSString).deletingLastPathComponent
        }
        for dir in missing.reversed() {
            if mkdir(dir, 0o755) != 0 && errno != EEXIST {
                throw VMCtlError("cannot create directory \(dir): \(String(cString: strerror(errno)))")
            }
            chmod(dir, 0o755)
        }
        try directory(path, qemu: qemu)
    }

    /// Lets QEMU open an existing file of ours: `root:libvirt-qemu`, 0640 (0660 when QEMU
    /// writes it). As another user it stays 0600.
    public static func shareWithQemu(_ path: String, writable: Bool = false) throws {
        guard let gid = qemuGroup else { return }
        guard chown(path, getuid(), gid) == 0, chmod(path, writable ? 0o660 : 0o640) == 0 else {
            throw VMCtlError("cannot share \(path) with QEMU: \(String(cString: strerror(errno)))")
        }
    }

    /// Whether QEMU's user already reads `path`: it owns it (relabelled by a libvirtd), or
    /// it is group-readable by QEMU's group and private to others.
    public static func qemuCanRead(_ path: String) -> Bool {
        guard let gid = qemuGroup else { return true }
        var st = stat()
        guard lstat(path, &st) == 0 else { return false }
        if let pw = getpwnam(qemuUser), st.st_uid == pw.pointee.pw_uid { return true }
        return st.st_uid == getuid() && st.st_gid == gid && st.st_mode & 0o040 != 0 && st.st_mode & 0o007 == 0
    }

    /// Whether QEMU's user can walk down to `path`: every ancestor must be traversable by
    /// others, or by QEMU's group. Returns the first one that is not.
    public static func blockedAncestor(of path: String) -> String? {
        guard let gid = qemuGroup else { return nil }
        var p = (path as NSString).deletingLastPathComponent
        while !p.isEmpty {
            var st = stat()
            if stat(p, &st) == 0 {
                let others = st.st_mode & 0o001 != 0
                let group = st.st_gid == gid && st.st_mode & 0o010 != 0
                if !others && !group { return p }
            }
            if p == "/" { break }
            p = (p as NSString).deletingLastPathComponent
        }
        return nil
    }
}
