import Yams

extension SeedConfig {
    /// `meta-data`: instance id and hostname.
    public func metaData() throws -> String {
        // dsmode local: users and the host key are written by cloud-init-local, early,
        // instead of waiting for the network stage (a NoCloud seed found by label defaults to net).
        try Yams.dump(object: ["instance-id": instanceID, "local-hostname": hostname, "dsmode": "local"], sortKeys: true)
    }

    /// `user-data`: a #cloud-config document.
    public func userData() throws -> String {
        var cfg: [String: Any] = [
            "hostname": hostname,
            "fqdn": hostname,
            "preserve_hostname": false,
            "users": [[
                "name": user.name,
                "sudo": "ALL=(ALL) NOPASSWD:ALL",
                "shell": "/bin/bash",
                "lock_passwd": true,
                "ssh_authorized_keys": user.authorizedKeys,
            ] as [String: Any]],
            "disable_root": true,
            "ssh_pwauth": false,
            "ssh_deletekeys": true,
            // The supplied key exists already, so nothing is generated; `[]` fails cloud-init's schema.
            "ssh_genkeytypes": ["ed25519"],
            "ssh_keys": ["ed25519_private": hostKey.privateKey, "ed25519_public": hostKey.publicKey],
            // The full /etc/hosts comes from write_files below.
            "manage_etc_hosts": false,
        ]
        var writes = files.map { ["path": $0.path, "content": $0.content, "permissions": $0.permissions] }
        writes.append(["path": "/etc/hosts", "content": etcHosts(), "permissions": "0644"])
        cfg["write_files"] = writes
        if !runcmd.isEmpty { cfg["runcmd"] = runcmd }
        if !bootcmd.isEmpty { cfg["bootcmd"] = bootcmd }
        return "#cloud-config\n" + (try Yams.dump(object: cfg, sortKeys: true))
    }

    /// The guest's /etc/hosts: localhost, itself, and every name in `hosts`.
    public func etcHosts() -> String {
        var lines = ["127.0.0.1 localhost", "127.0.1.1 \(hostname)", "::1 localhost ip6-localhost ip6-loopback"]
        for h in hosts { lines.append("\(h.address) \(h.names.joined(separator: " "))") }
        return lines.joined(separator: "\n") + "\n"
    }

    /// `network-config`, version 2, matched by MAC: static addresses, or DHCP.
    public func networkConfig() throws -> String {
        var ethernets: [String: Any] = [:]
        for i in interfaces {
            var e: [String: Any] = ["match": ["macaddress": i.mac], "dhcp4": i.dhcp, "dhcp6": false]
            if !i.addresses.isEmpty || !i.dhcp { e["addresses"] = i.addresses }
            if let gw = i.gateway { e["routes"] = [["to": "0.0.0.0/0", "via": gw]] }
            if !i.nameservers.isEmpty { e["nameservers"] = ["addresses": i.nameservers] }
            ethernets[i.id] = e
        }
        return try Yams.dump(object: ["version": 2, "ethernets": ethernets] as [String: Any], sortKeys: true)
    }
}
