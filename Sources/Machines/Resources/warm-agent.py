# vmctl's warm agent (Sources/Machines/Warm/WarmAgent.swift says what it does). Its parameters
# arrive as one JSON argument: the identity port, the markers it prints, the directive words.
import base64, json, fcntl, glob, os, pwd, select, socket, struct, subprocess, sys, syslog, time
P = json.loads(sys.argv[1])
D = P["directives"]
END = b"\n" + P["end"].encode() + b"\n"
fd = os.open("/dev/virtio-ports/" + P["port"], os.O_RDWR)
def uptime():
    with open("/proc/uptime") as f:
        return f.read().split()[0]
def tty(line):
    with open("/dev/ttyS0", "w") as t:
        print(line, file=t, flush=True)
tty(P["idle"] + " %s" % uptime())
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
# rtnetlink, as `ip` speaks it: RTM_NEWLINK 16, RTM_NEWADDR 20, RTM_GETADDR 22; flags
# REQUEST 1, ACK 4, REPLACE 0x100, CREATE 0x400, DUMP 0x300; attributes IFLA_ADDRESS 1,
# IFA_ADDRESS 1, IFA_LOCAL 2. A NIC's MAC changes live when its driver can (virtio-net),
# else down, change, up.
NL = None
NLSEQ = [0]
def rtnl(mtype, flags, payload):
    global NL
    if NL is None:
        NL = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
    NLSEQ[0] += 1
    seq = NLSEQ[0]
    NL.send(struct.pack("=LHHLL", 16 + len(payload), mtype, flags | 1, seq, 0) + payload)
    out = []
    while True:
        data = NL.recv(1 << 16)
        off = 0
        while off + 16 <= len(data):
            ln, t, f, sq, pid = struct.unpack_from("=LHHLL", data, off)
            if ln < 16:
                raise OSError("netlink: bad message")
            if sq == seq:
                if t == 2:
                    err = struct.unpack_from("=i", data, off + 16)[0]
                    if err:
                        raise OSError(-err, os.strerror(-err))
                    return out
                if t == 3:
                    return out
                out.append((t, data[off + 16:off + ln]))
            off += (ln + 3) & ~3
def nlattr(t, v):
    n = 4 + len(v)
    return struct.pack("=HH", n, t) + v + bytes(-n % 4)
def setlink(index, up=None, mac=None):
    flags, change = (1, 1) if up else (0, 1) if up is not None else (0, 0)
    p = struct.pack("=BBHiII", 0, 0, 0, index, flags, change)
    if mac:
        p += nlattr(1, bytes.fromhex(mac.replace(":", "")))
    rtnl(16, 4, p)
def addaddr(index, cidr):
    a, _, plen = cidr.partition("/")
    fam = socket.AF_INET6 if ":" in a else socket.AF_INET
    b = socket.inet_pton(fam, a)
    p = struct.pack("=BBBBI", fam, int(plen), 0, 0, index) + nlattr(2, b) + nlattr(1, b)
    rtnl(20, 4 | 0x100 | 0x400, p)
def globaladdrs():
    out = []
    for t, m in rtnl(22, 0x300, struct.pack("=BBBBI", 0, 0, 0, 0, 0)):
        fam, plen, fl, scope, index = struct.unpack_from("=BBBBI", m)
        if t != 20 or scope != 0:
            continue
        got, at = {}, 8
        while at + 4 <= len(m):
            n, k = struct.unpack_from("=HH", m, at)
            if n < 4:
                break
            got[k] = m[at + 4:at + n]
            at += (n + 3) & ~3
        v = got.get(2) or got.get(1)
        if v:
            out.append("%s/%d" % (socket.inet_ntop(fam, v), plen))
    return out
def nic(template, mac, addrs):
    index = None
    for name in os.listdir("/sys/class/net"):
        with open("/sys/class/net/%s/address" % name) as f:
            if f.read().strip() == template:
                index = socket.if_nametoindex(name)
                break
    if index is None:
        raise OSError("no NIC with MAC %s" % template)
    if mac != template:
        try:
            setlink(index, mac=mac)
        except OSError:
            setlink(index, up=False)
            setlink(index, mac=mac)
    setlink(index, up=True)
    for a in addrs:
        addaddr(index, a)
def dbus_start(units, timeout):
    # systemd's private bus (root only): StartUnit, then its job's JobRemoved signal (systemd
    # sends every signal to direct connections), with no systemctl process.
    end = time.monotonic() + timeout
    def pad(b, n):
        return b + bytes(-len(b) % n)
    def string(v):
        v = v.encode()
        return struct.pack("<I", len(v)) + v + b"\0"
    def strings(b, at, n):
        out = []
        for _ in range(n):
            at += -at % 4
            k = struct.unpack_from("<I", b, at)[0]
            out.append(b[at + 4:at + 4 + k].decode(errors="replace"))
            at += 5 + k
        return out
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect("/run/systemd/private")
    s.sendall(b"\0AUTH EXTERNAL " + str(os.getuid()).encode().hex().encode() + b"\r\n")
    buf = b""
    while b"\r\n" not in buf:
        chunk = s.recv(256)
        if not chunk:
            raise OSError("systemd closed its bus")
        buf += chunk
    if not buf.startswith(b"OK"):
        raise OSError("systemd refused the bus login: %r" % buf[:80])
    buf = buf[buf.index(b"\r\n") + 2:]
    s.sendall(b"BEGIN\r\n")
    serial = [0]
    heard = [False]
    def call(path, iface, member, sig="", args=()):
        serial[0] += 1
        body = b""
        for a in args:
            body = pad(body, 4) + string(a)
        fields = b""
        for code, t, val in ((1, "o", path), (2, "s", iface), (3, "s", member), (8, "g", sig)):
            if val:
                fields = pad(fields, 8) + bytes([code, 1, ord(t), 0])
                fields += bytes([len(val)]) + val.encode() + b"\0" if t == "g" else string(val)
        s.sendall(pad(b"l" + bytes([1, 0, 1]) + struct.pack("<III", len(body), serial[0], len(fields)) + fields, 8) + body)
        return serial[0]
    def message():
        # (type, member, reply serial, body) of the next message.
        nonlocal buf
        while True:
            if len(buf) >= 16:
                blen, _, flen = struct.unpack_from("<III", buf, 4)
                total = 16 + flen + (-flen % 8) + blen
                if len(buf) >= total:
                    m, buf = buf[:total], buf[total:]
                    member, reply, at = "", 0, 16
                    while at < 16 + flen:
                        at += -at % 8
                        code, n = m[at], m[at + 1]
                        sig = m[at + 2:at + 2 + n]
                        at += 3 + n
                        if sig == b"g":
                            at += 2 + m[at]
                            continue
                        at += -at % 4
                        if sig in (b"s", b"o"):
                            k = struct.unpack_from("<I", m, at)[0]
                            if code == 3:
                                member = m[at + 4:at + 4 + k].decode()
                            at += 5 + k
                        else:
                            if code == 5:
                                reply = struct.unpack_from("<I", m, at)[0]
                            at += 4
                    return m[1], member, reply, m[total - blen:]
            left = end - time.monotonic()
            if left <= 0:
                raise OSError("no answer from systemd in %d s" % timeout)
            ready, _, _ = select.select([s], [], [], left if heard[0] else min(left, 0.1))
            if not ready:
                # sd-bus does not look at what arrived together with BEGIN until more comes:
                # a Ping makes it read again.
                if not heard[0]:
                    call("/org/freedesktop/systemd1", "org.freedesktop.DBus.Peer", "Ping")
                continue
            chunk = s.recv(65536)
            if not chunk:
                raise OSError("systemd closed its bus")
            heard[0] = True
            buf += chunk
    last = "no unit"
    for unit in units:
        mine = call("/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager", "StartUnit", "ss", (unit, "replace"))
        done = {}
        while True:
            kind, member, reply, b = message()
            if kind == 4 and member == "JobRemoved":
                path, _, result = strings(b, 4, 3)
                done[path] = result
            elif kind in (2, 3) and reply == mine:
                break
        if kind == 3:
            last = strings(b, 0, 1)[0] if len(b) >= 4 else "error"
            continue
        job = strings(b, 0, 1)[0]
        while job not in done:
            kind, member, reply, b = message()
            if kind == 4 and member == "JobRemoved":
                path, _, result = strings(b, 4, 3)
                done[path] = result
        if done[job] != "done":
            raise OSError("%s: its start job %s" % (unit, done[job]))
        return unit
    raise OSError("systemd did not start %s: %s" % (" or ".join(units), last))
def start(units):
    try:
        return dbus_start(units, 90)
    except (FileNotFoundError, ConnectionRefusedError):
        for unit in units:
            if subprocess.run(["systemctl", "start", unit], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0:
                return unit
        raise OSError("systemctl could not start %s" % " or ".join(units))
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
    os.write(fd, (text + "\n").encode())
syslog.openlog(P["applied"])
def say(text):
    # On the serial console (vmctl's log of the node) and in the journal.
    tty(P["applied"] + " " + text)
    syslog.syslog(syslog.LOG_INFO, text)
try:
    for line in buf.split(END)[0].decode().split("\n"):
        word, _, arg = line.partition(" ")
        if word == D["entropy"]:
            # The kernel RNG: credit the host's bytes, then reseed the CRNG
            # (RNDADDENTROPY, RNDRESEEDCRNG).
            b = b64(arg)
            with open("/dev/random", "wb") as rnd:
                fcntl.ioctl(rnd, 0x40085203, struct.pack("ii", len(b) * 8, len(b)) + b)
                fcntl.ioctl(rnd, 0x5207)
        elif word == D["clock"]:
            time.clock_settime(time.CLOCK_REALTIME, float(arg))
        elif word == D["hostname"]:
            socket.sethostname(arg)
        elif word == D["remove"]:
            for f in glob.glob(b64(arg).decode()):
                os.unlink(f)
        elif word == D["file"]:
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
        elif word == D["log"]:
            say(arg)
        elif word == D["nic"]:
            # TEMPLATE-MAC MAC ADDRESSES (comma-separated CIDRs, or -)
            template, mac, addrs = arg.split(" ")
            nic(template, mac, [] if addrs == "-" else addrs.split(","))
        elif word == D["sshd"]:
            # UNIT... : the first one systemd has is started, and listens when its job is done.
            start(arg.split())
        elif word:
            raise ValueError("unknown directive %r" % word)
except Exception as e:
    answer("failed: %s" % e)
    sys.exit(1)
tty(P["ready"] + " %s %s addrs=%s" % (socket.gethostname(), uptime(), ",".join(globaladdrs())))
answer("ok")
os.sync()
