import Foundation

/// How a guest tells vmctl it is booting and ready, carried by the seed vmctl writes, so a
/// cloud image vmctl never built reports the same way as its own. The NoCloud user-data's
/// `bootcmd` (cloud-init's init stage, every boot) quiets the kernel's console messages,
/// prints the early marker, and hands a small poller to systemd (`systemd-run --no-block`,
/// so cloud-init is not held up) that prints the ready marker, with the guest's addresses,
/// once the login user's keys are written and sshd runs with its pinned host key.
public enum Readiness {
    /// Printed when cloud-init starts its init stage: userspace is up.
    public static let bootingMarker = "vmctl-booting"
    /// Printed once SSH logins with the injected key work: `vmctl-ready HOST UPTIME addrs=A/N,B/N`.
    public static let readyMarker = "vmctl-ready"
    /// What starts a ready line: the marker and a space. systemd's own console lines name the
    /// poller's unit (`Started vmctl-ready.service`) as it starts, long before it is ready.
    public static let readyLinePrefix = readyMarker + " "
    /// Printed by the poller when readiness never came: `vmctl-failed HOST: why`.
    public static let failedMarker = "vmctl-failed"

    /// The poller: bounded (60 s to readiness), 0.2 s steps. sshd is `ssh.service` on Debian and Ubuntu,
    /// `sshd.service` on Fedora; the host key must be the seed's (cloud-init removes the image's
    /// and writes the pinned one), the user's authorized_keys written, logins allowed, and a
    /// NIC addressed.
    /// `dropCaches`: once ready and once cloud-init's final stage is done (at most 120 s more),
    /// the guest gives back what its boot left (below), so that with a free-page-reporting
    /// balloon those pages go back to the host (issue: density). This comes after vmctl's SSH
    /// check, so it may overlap a node's first commands: they then start with the page cache
    /// empty (read again from the host's page cache, which holds the disk).
    ///
    /// The balloon reports free blocks of 2 MiB (order 9) by default, and a guest's free memory
    /// after a boot is mostly smaller pieces. Once, when the boot is over (cloud-init's final
    /// stage allocates and frees a lot after sshd is up), the guest reports every free page
    /// (order 0), drops the page cache and slab caches the boot filled, and gives the balloon
    /// `giveBackSettle` seconds to hand them back; then it goes on reporting at order 5
    /// (128 KiB): a busy guest does not report every 4 KiB it frees. Measured on a cold 2 GiB
    /// debian-12 node: its guest RAM resident on the host stayed at 220 MiB after a drop at
    /// order 5 and fell to 167 MiB within 5 s of a drop at order 0 (163 MiB two minutes later:
    /// the kernel drains its free lists in passes, most in the first); a warm template's save
    /// 257 → 165 MiB. A stop of the unit (TERM) does not cut the settle short, so the order
    /// is always set back.
    public static func returnFreePages() -> String {
        "trap : TERM; echo 0 > \(reportingOrder) 2>/dev/null; echo 3 > /proc/sys/vm/drop_caches; sleep \(giveBackSettle); echo 5 > \(reportingOrder) 2>/dev/null"
    }
    public static let reportingOrder = "/sys/module/page_reporting/parameters/page_reporting_order"
    public static let giveBackSettle = 5

    /// The poller's last step with `dropCaches`: waits (bounded, 2 s steps: each `sleep` is a
    /// process, costly under TCG) for cloud-init's final stage to finish, then gives back.
    static let afterBoot = """
        j=0
        while [ ! -e /var/lib/cloud/instance/boot-finished ] && [ $j -lt 60 ]; do sleep 2; j=$((j+1)); done
        \(returnFreePages())
        """

    public static func pollerScript(user: String, dropCaches: Bool = false) -> String {
        """
        keys=$(getent passwd \(user) | cut -d: -f6)/.ssh/authorized_keys
        i=0
        while [ $i -lt 300 ]; do
          if { systemctl -q is-active ssh.service || systemctl -q is-active sshd.service; } \\
             && [ -s /etc/ssh/ssh_host_ed25519_key ] && [ -s "$keys" ] && [ ! -e /run/nologin ] \\
             && ip -4 -o addr show scope global | grep -q inet; then
            addrs=$(ip -o addr show scope global | awk '{print $4}' | paste -sd, -)
            echo "\(readyMarker) $(hostname) $(cut -d' ' -f1 /proc/uptime) addrs=$addrs" > /dev/ttyS0
            # What cloud-init wrote at this boot reaches the disk now, not in 30 s: a node
            # powered off hard soon after it was verified still boots again.
            sync\(dropCaches ? "\n" + Readiness.afterBoot : "")
            exit 0
          fi
          sleep 0.2; i=$((i+1))
        done
        echo "\(failedMarker) $(hostname): sshd, host key, keys of \(user) or an address not ready after 60 s" > /dev/ttyS0
        exit 1
        """
    }

    /// cloud-init `bootcmd` entries (argument lists, quoted by cloud-init) for a guest whose
    /// login user is `user`.
    public static func bootcmd(user: String, dropCaches: Bool = false) -> [[String]] {
        [
            // From here on only serious kernel messages reach the console: they cannot split
            // marker lines. Until here the kernel's messages show where a hung boot stopped.
            ["sh", "-c", "dmesg -n 3 2>/dev/null; echo \"\(bootingMarker) $(cut -d' ' -f1 /proc/uptime)\" > /dev/ttyS0"],
            // Ordered after sshd (and cloud-init's local stage, which runs this), so the poller
            // usually succeeds at its first look: under TCG every process it spawns costs the
            // boot CPU (a poller looking 10 times a second made `cluster up 3` 12% slower). Not
            // after cloud-init's network stage: with the seed's dsmode local it writes nothing
            // SSH needs, and waiting for its Python cost 2.5 s of every boot.
            ["systemd-run", "--quiet", "--no-block", "--collect", "--unit=vmctl-ready",
             "--property=After=cloud-init-local.service ssh.service sshd.service",
             "--description=Tell vmctl on the serial console that SSH logins work", "/bin/sh", "-c", pollerScript(user: user, dropCaches: dropCaches)],
        ]
    }

    /// What a ready line says: the guest's uptime and its addresses (CIDR).
    public struct Report: Sendable, Equatable {
        public var uptime: Double?
        public var addresses: [String]
    }

    /// Parses `vmctl-ready HOST UPTIME addrs=A,B` (older images print no addresses).
    public static func parse(_ line: String) -> Report? {
        guard let r = line.range(of: readyLinePrefix) else { return nil }
        // A log copied from a console stream has the tty's \r\n line ends.
        let words = line[r.upperBound...].trimmingCharacters(in: .whitespacesAndNewlines)
            .split(separator: " ").map(String.init)
        let uptime = words.count > 1 ? Double(words[1]) : nil
        let addrs = words.first { $0.hasPrefix("addrs=") }.map {
            $0.dropFirst(6).split(separator: ",").map(String.init).filter { !$0.isEmpty }
        } ?? []
        return Report(uptime: uptime, addresses: addrs)
    }
}
