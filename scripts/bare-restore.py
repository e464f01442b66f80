#!/usr/bin/env python3
"""make bench's bare-QEMU reference for warm start: the same save restored by
qemu-system-x86_64 -incoming, N at once, timed from launch until every guest runs.

  bare-restore.py QEMU_LOG SNAPSHOT_DIR SEED N WORKDIR   -> prints seconds (or "nan")

QEMU_LOG is libvirt's log of a warm clone (its command line is the device set the stream
needs); the clone's fd-passed chardevs, master key, sandbox, VNC and switch NIC are replaced
with plain equivalents, its disk with a fresh overlay on the snapshot's disk. Each guest is
killed once it runs. No SSH: the template's sshd is stopped until vmctl's identity arrives.
"""
import json, os, re, shlex, signal, socket, subprocess, sys, time


def command_line(log):
    text = open(log, encoding="utf-8", errors="replace").read()
    start = text.rfind("/usr/bin/qemu-system-x86_64")
    if start < 0:
        raise SystemExit("no QEMU command line in " + log)
    lines, out = text[start:].split("\n"), []
    for line in lines:
        out.append(line.rstrip("\\").strip())
        if not line.endswith("\\"):
            break
    return shlex.split(" ".join(out))


def adapt(args, i, snapshot, seed, work):
    disk = f"{work}/bare-restore-{i}.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", f"{snapshot}/disk.qcow2", disk],
                   check=True)
    out, k = [], 0
    while k < len(args):
        a = args[k]
        v = args[k + 1] if k + 1 < len(args) else ""
        if a in ("-S",):
            k += 1; continue
        if a in ("-sandbox", "-add-fd", "-incoming"):
            k += 2; continue
        if a == "-vnc":
            out += ["-vnc", "none"]; k += 2; continue
        if a == "-chardev" and "id=charmonitor" in v:
            out += ["-chardev", f"socket,id=charmonitor,path={work}/bare-mon-{i}.sock,server=on,wait=off"]; k += 2; continue
        if a == "-chardev" and "id=charserial0" in v:
            out += ["-chardev", f"file,id=charserial0,path={work}/bare-serial-{i}.log"]; k += 2; continue
        if a == "-chardev" and "id=charchannel0" in v:
            out += ["-chardev", f"socket,id=charchannel0,path={work}/bare-chan-{i}.sock,server=on,wait=off"]; k += 2; continue
        if a == "-object" and '"secret"' in v:
            o = json.loads(v); o.pop("file", None); o["data"] = "0" * 32
            out += ["-object", json.dumps(o)]; k += 2; continue
        if a == "-netdev" and v.startswith("stream,"):
            nid = re.search(r"id=([^,]+)", v).group(1)
            out += ["-netdev", f"user,id={nid},restrict=on"]; k += 2; continue
        if a == "-netdev" and v.startswith("user,"):
            nid = re.search(r"id=([^,]+)", v).group(1)
            out += ["-netdev", f"user,id={nid},restrict=on"]; k += 2; continue
        if a == "-blockdev" and '"driver":"file"' in v and "/nodes/" in v and "disk.qcow2" in v:  # the clone's overlay
            o = json.loads(v); o["filename"] = disk
            out += ["-blockdev", json.dumps(o)]; k += 2; continue
        if a == "-blockdev" and '"driver":"file"' in v and "seed.iso" in v:
            o = json.loads(v); o["filename"] = seed
            out += ["-blockdev", json.dumps(o)]; k += 2; continue
        if a == "-name":
            out += ["-name", f"guest=bench-bare-restore-{i}"]; k += 2; continue
        out.append(a); k += 1
    return out


def running(sock):
    """Whether the guest runs; once the incoming migration has completed it is resumed, as
    libvirt does (the stream keeps the paused state libvirt saved it in)."""
    try:
        s = socket.socket(socket.AF_UNIX); s.settimeout(2); s.connect(sock)
        f = s.makefile("rw")
        f.readline()

        def ask(cmd):
            f.write(json.dumps({"execute": cmd}) + "\n"); f.flush()
            while True:
                r = json.loads(f.readline())
                if "return" in r or "error" in r:
                    return r.get("return", {})
        ask("qmp_capabilities")
        status = ask("query-status").get("status")
        if status == "paused" and ask("query-migrate").get("status") == "completed":
            ask("cont")
            status = ask("query-status").get("status")
        s.close()
        return status == "running"
    except (OSError, ValueError):
        return False


def main():
    log, snapshot, seed, n, work = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
    base = command_line(log)
    header = open(f"{snapshot}/guest.save", "rb").read(92)
    offset = 92 + int.from_bytes(header[20:24], "little")
    cmds = [adapt(base[1:], i, snapshot, seed, work) for i in range(n)]
    t0 = time.time()
    procs = []
    for i, c in enumerate(cmds):
        procs.append(subprocess.Popen(["qemu-system-x86_64"] + c + ["-incoming", f"exec:tail -c +{offset + 1} {snapshot}/guest.save"],
                                      stdout=subprocess.DEVNULL, stderr=open(f"{work}/bare-restore-{i}.err", "w")))
    done = set()
    while len(done) < n and time.time() - t0 < 300:
        for i in range(n):
            if i not in done and running(f"{work}/bare-mon-{i}.sock"):
                done.add(i)
        if any(p.poll() is not None for p in procs):
            break
        time.sleep(0.05)
    t1 = time.time()
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
        p.wait()
    print("%.1f" % (t1 - t0) if len(done) == n else "nan")


if __name__ == "__main__":
    main()
