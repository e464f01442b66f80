import CloudInit
import Foundation
import VMCtlSupport

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

    /// The agent. A clone's identity arrives as directive lines (`#vmctl-…`), applied in order
    /// and all in this process: under TCG every process a restored clone starts costs it
    /// tenths of a second (its code is translated again: the save holds no translations), a
    /// `systemctl` more than half a second, a python3 a second. So the NICs are set through
    /// rtnetlink and sshd is started through systemd's private bus (StartUnit, then the job's
    /// JobRemoved: `Type=notify` sshd listens once it is done), with `systemctl` only as a
    /// fallback when that bus cannot be reached. Once all of it worked the agent prints the
    /// ready line itself: every condition the cold poller waits for was just made true.
    public static func python() -> String {
        String(decoding: PackageResources.warm_agent_py, as: UTF8.self)
    }

    /// What the agent is told when it starts (`warm-agent.py`'s one argument, JSON): the
    /// identity port, the markers it prints, and the word of each directive by its case name.
    static func parameters() -> String {
        let directives = Dictionary(uniqueKeysWithValues: WarmIdentity.Directive.allCases.map { ("\($0)", $0.rawValue) })
        let p = Parameters(port: WarmIdentity.portName, end: WarmIdentity.endMarker, idle: idleMarker,
                           applied: WarmIdentity.appliedMarker, ready: Readiness.readyMarker, directives: directives)
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: (try? e.encode(p)) ?? Data(), as: UTF8.self)
    }

    struct Parameters: Codable, Equatable {
        var port, end, idle, applied, ready: String
        var directives: [String: String]
    }

    /// The template's preparation before it says it is idle: cloud-init finished, sshd stopped
    /// and no host key left, everything on disk; with a balloon, its free pages given back
    /// and its page cache dropped (Readiness.returnFreePages: every page the balloon gave back
    /// is left out of the save, so less to save and less for every clone to load). Debian's sshd runs `sshd -t` before every start: the template
    /// checks its config once (sshd ran with it at boot) and drops that step for its clones
    /// with a runtime drop-in (in /run: gone at the next boot, which checks again). Stopped, not masked: the boot is over, nothing starts sshd again,
    /// and unmasking in every clone would cost two systemd reloads (seconds under TCG).
    static func prepare(giveBack: Bool) -> String {
        """
        timeout 120 cloud-init status --wait >/dev/null 2>&1
        systemctl stop ssh.socket ssh.service sshd.service >/dev/null 2>&1
        rm -f /etc/ssh/ssh_host_*
        if grep -qx 'ExecStartPre=/usr/sbin/sshd -t' /lib/systemd/system/ssh.service 2>/dev/null; then
          mkdir -p /run/systemd/system/ssh.service.d
          printf '[Service]\\nExecStartPre=\\n' > /run/systemd/system/ssh.service.d/vmctl-warm.conf
          systemctl daemon-reload
        fi
        sync\(giveBack ? "; " + Readiness.returnFreePages() : "")
        exec python3 \(path) \(Shell.quote(parameters()))
        """
    }

    /// The template's `bootcmd`: the usual early marker, then the preparation and the agent as
    /// a transient unit (cloud-init is not held up waiting for itself).
    public static func bootcmd(giveBack: Bool) -> [[String]] {
        [Readiness.bootcmd(user: "root")[0],
         ["systemd-run", "--quiet", "--no-block", "--collect", "--unit=vmctl-warm-agent",
          "--description=Wait for vmctl's warm-start identity", "/bin/sh", "-c", prepare(giveBack: giveBack)]]
    }

    /// The template's seed: no identity beyond a placeholder hostname and a host key that is
    /// deleted before the save; the login user exists with no key; only `interfaces` (the
    /// management NIC) are configured, the cluster NIC gets its address from each clone's identity.
    /// `giveBack`: the template has a free-page-reporting balloon to give its free pages back through.
    public static func seed(name: String, user: String, hostKey: SeedConfig.HostKey,
                            interfaces: [SeedConfig.Interface], giveBack: Bool) -> SeedConfig {
        SeedConfig(instanceID: "\(name)-\(UUID().uuidString.prefix(8).lowercased())", hostname: "vmctl-warm",
                   user: .init(name: user, authorizedKeys: []), hostKey: hostKey, interfaces: interfaces,
                   files: [.init(path: path, content: python(), permissions: "0700")],
                   bootcmd: bootcmd(giveBack: giveBack))
    }
}
