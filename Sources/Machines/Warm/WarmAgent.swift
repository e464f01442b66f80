import CloudInit
import Foundation

/// The template's side of warm start, carried by the template's seed (so any image with
/// cloud-init and python3 can be a template). Once cloud-init is done, the template stops
/// sshd and removes its host keys, drops its page cache, opens vmctl's identity port and says
/// `vmctl-warm-idle` on the serial console: vmctl saves it then. In every clone restored from
/// that save, the agent is still waiting on the port; it reads the identity script vmctl
/// sends, runs it and answers `ok` or `failed …` on the port.
///
/// The port stays open the whole time: a virtio-serial port the guest does not hold open
/// discards what arrives, and a read while the host is not connected returns end-of-file,
/// so the agent polls instead of reading blindly.
public enum WarmAgent {
    /// Printed when the template is ready to be saved.
    public static let idleMarker = "vmctl-warm-idle"
    /// Where the template's seed writes the agent.
    public static let path = "/var/lib/vmctl-warm/agent.py"

    public static func python() -> String {
        """
        import os, select, subprocess, sys, time
        END = b"\\n\(WarmIdentity.endMarker)\\n"
        fd = os.open("/dev/virtio-ports/\(WarmIdentity.portName)", os.O_RDWR)
        with open("/proc/uptime") as f:
            up = f.read().split()[0]
        with open("/dev/ttyS0", "w") as tty:
            print("\(idleMarker) %s" % up, file=tty, flush=True)
        buf = b""
        while END not in buf:
            p = select.poll()
            p.register(fd, select.POLLIN)
            ev = p.poll(1000)
            if ev and ev[0][1] & select.POLLIN:
                chunk = os.read(fd, 65536)
                if chunk:
                    buf += chunk
                    continue
            time.sleep(0.02)
        script = buf.split(END)[0].decode()
        r = subprocess.run(["/bin/sh", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        out = r.stdout.decode(errors="replace").strip().replace("\\n", " | ")[-400:]
        os.write(fd, (("ok" if r.returncode == 0 else "failed (exit %d): %s" % (r.returncode, out)) + "\\n").encode())
        sys.exit(r.returncode)
        """
    }

    /// The template's preparation before it says it is idle: cloud-init finished, sshd stopped
    /// (masked until a clone's identity unmasks it) and no host key left, everything on disk,
    /// the page cache dropped (less to save, less for every clone to load).
    static let prepare = """
        timeout 120 cloud-init status --wait >/dev/null 2>&1
        systemctl mask --runtime --now ssh.service ssh.socket sshd.service >/dev/null 2>&1
        rm -f /etc/ssh/ssh_host_*
        sync; echo 3 > /proc/sys/vm/drop_caches
        exec python3 \(path)
        """

    /// The template's `bootcmd`: the usual early marker, then the preparation and the agent as
    /// a transient unit (cloud-init is not held up waiting for itself).
    public static func bootcmd() -> [[String]] {
        [Readiness.bootcmd(user: "root")[0],
         ["systemd-run", "--quiet", "--no-block", "--collect", "--unit=vmctl-warm-agent",
          "--description=Wait for vmctl's warm-start identity", "/bin/sh", "-c", prepare]]
    }

    /// The template's seed: no identity beyond a placeholder hostname and a host key that is
    /// deleted before the save; the login user exists with no key; only `interfaces` (the
    /// management NIC) are configured, the cluster NIC gets its address from each clone's identity.
    public static func seed(name: String, user: String, hostKey: SeedConfig.HostKey,
                            interfaces: [SeedConfig.Interface]) -> SeedConfig {
        SeedConfig(instanceID: "\(name)-\(UUID().uuidString.prefix(8).lowercased())", hostname: "vmctl-warm",
                   user: .init(name: user, authorizedKeys: []), hostKey: hostKey, interfaces: interfaces,
                   files: [.init(path: path, content: python(), permissions: "0700")],
                   bootcmd: bootcmd())
    }
}
