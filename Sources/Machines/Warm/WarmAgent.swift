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

    /// The agent. A clone's identity arrives as directive lines (`#vmctl-…`, applied here in
    /// order, in this process: under TCG every process a clone starts costs it tens of
    /// milliseconds, a python3 a second) and a shell remainder (NICs, sshd). Once both worked
    /// the agent prints the ready line itself: sshd (`Type=notify`) listens when `systemctl
    /// start` returns, and every other condition the cold poller waits for was just written.
    public static func python() -> String {
        let d = WarmIdentity.Directive.self
        return """
        import base64, fcntl, glob, os, pwd, select, socket, struct, subprocess, sys, time
        END = b"\\n\(WarmIdentity.endMarker)\\n"
        fd = os.open("/dev/virtio-ports/\(WarmIdentity.portName)", os.O_RDWR)
        def uptime():
            with open("/proc/uptime") as f:
                return f.read().split()[0]
        def tty(line):
            with open("/dev/ttyS0", "w") as t:
                print(line, file=t, flush=True)
        tty("\(idleMarker) %s" % uptime())
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
        def b64(s):
            return base64.b64decode(s)
        def put(path, data, mode, owner):
            tmp = path + ".vmctl-new"
            if os.path.lexists(tmp):
                os.unlink(tmp)
            f = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                os.write(f, data)
                os.fchown(f, owner.pw_uid, owner.pw_gid)
                os.fchmod(f, mode)
            finally:
                os.close(f)
            os.rename(tmp, path)
        def answer(text):
            os.write(fd, (text + "\\n").encode())
        shell = []
        try:
            for line in buf.split(END)[0].decode().split("\\n"):
                word, _, arg = line.partition(" ")
                if word == "\(d.entropy.rawValue)":
                    # The kernel RNG: credit the host's bytes, then reseed the CRNG
                    # (RNDADDENTROPY, RNDRESEEDCRNG).
                    b = b64(arg)
                    with open("/dev/random", "wb") as rnd:
                        fcntl.ioctl(rnd, 0x40085203, struct.pack("ii", len(b) * 8, len(b)) + b)
                        fcntl.ioctl(rnd, 0x5207)
                elif word == "\(d.clock.rawValue)":
                    time.clock_settime(time.CLOCK_REALTIME, float(arg))
                elif word == "\(d.hostname.rawValue)":
                    socket.sethostname(arg)
                elif word == "\(d.remove.rawValue)":
                    for f in glob.glob(b64(arg).decode()):
                        os.unlink(f)
                elif word == "\(d.file.rawValue)":
                    # MODE OWNER PATH CONTENT; a path starting ~/ is in OWNER's home (made 0700).
                    mode, owner, path, content = arg.split(" ")
                    who = pwd.getpwnam(owner)
                    path = b64(path).decode()
                    if path.startswith("~/"):
                        path = os.path.join(who.pw_dir, path[2:])
                        parent = os.path.dirname(path)
                        if not os.path.isdir(parent):
                            os.mkdir(parent, 0o700)
                            os.chown(parent, who.pw_uid, who.pw_gid)
                    put(path, b64(content), int(mode, 8), who)
                else:
                    shell.append(line)
        except Exception as e:
            answer("failed: %s" % e)
            sys.exit(1)
        r = subprocess.run(["/bin/sh", "-c", "\\n".join(shell)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if r.returncode != 0:
            out = r.stdout.decode(errors="replace").strip().replace("\\n", " | ")[-400:]
            answer("failed (exit %d): %s" % (r.returncode, out))
            sys.exit(r.returncode)
        addrs = subprocess.run(["ip", "-o", "addr", "show", "scope", "global"], stdout=subprocess.PIPE).stdout.decode()
        addrs = ",".join(l.split()[3] for l in addrs.splitlines() if len(l.split()) > 3)
        tty("\(Readiness.readyMarker) %s %s addrs=%s" % (socket.gethostname(), uptime(), addrs))
        answer("ok")
        os.sync()
        """
    }

    /// The template's preparation before it says it is idle: cloud-init finished, sshd stopped
    /// and no host key left, everything on disk, the page cache dropped (less to save, less for
    /// every clone to load). Stopped, not masked: the boot is over, nothing starts sshd again,
    /// and unmasking in every clone would cost two systemd reloads (seconds under TCG).
    static let prepare = """
        timeout 120 cloud-init status --wait >/dev/null 2>&1
        systemctl stop ssh.socket ssh.service sshd.service >/dev/null 2>&1
        rm -f /etc/ssh/ssh_host_*
        sync; \(Readiness.returnFreePages)
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
