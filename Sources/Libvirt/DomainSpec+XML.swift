extension DomainSpec {
    /// libvirt domain XML for this spec. Everything user-supplied is escaped.
    ///
    /// NICs libvirt cannot express (user mode with `hostfwd` and `restrict`, VDE) are passed
    /// in the `qemu:commandline` namespace with explicit PCI addresses on `pcie.0`
    /// (q35 refuses to start without them, as libvirt does not manage those slots).
    public func xml() -> String {
        var w = XMLWriter()
        w.element("domain", ["type": accelerator == .kvm ? "kvm" : "qemu",
                             "xmlns:qemu": "http://libvirt.org/schemas/domain/qemu/1.0"]) { w in
            w.leaf("name", [:], name)
            if let uuid { w.leaf("uuid", [:], uuid) }
            if !labels.isEmpty {
                w.element("metadata") { w in
                    w.element("vmctl:labels", ["xmlns:vmctl": Self.metadataNamespace]) { w in
                        for (k, v) in labels.sorted(by: { $0.key < $1.key }) {
                            w.leaf("vmctl:label", ["key": k], v)
                        }
                    }
                }
            }
            w.leaf("memory", ["unit": "MiB"], String(memoryMiB))
            w.leaf("vcpu", [:], String(vcpus))
            writeOS(&w)
            w.element("features") { w in
                w.empty("acpi")
                // Secure Boot needs SMM to protect the firmware's variables.
                if uefi?.secureBoot == true { w.empty("smm", ["state": "on"]) }
                if accelerator == .tcg, let mb = tbCacheMiB {
                    w.element("tcg") { w in w.leaf("tb-cache", ["unit": "MiB"], String(mb)) }
                }
            }
            if let model = cpuModel {
                w.element("cpu", ["mode": "custom", "match": "exact", "check": "none"]) { w in
                    w.leaf("model", ["fallback": "allow"], model)
                }
            } else {
                w.empty("cpu", ["mode": "host-passthrough", "check": "none"])
            }
            w.element("clock", ["offset": "utc"]) { _ in }
            w.leaf("on_poweroff", [:], "destroy")
            w.leaf("on_reboot", [:], "restart")
            w.leaf("on_crash", [:], "destroy")
            w.element("devices") { w in writeDevices(&w) }
            let args = qemuArguments()
            if !args.isEmpty {
                w.element("qemu:commandline") { w in
                    for a in args { w.empty("qemu:arg", ["value": a]) }
                }
            }
        }
        return w.text
    }

    private func writeOS(_ w: inout XMLWriter) {
        let firmware: String? = uefi == nil ? nil : "efi"
        w.element("os", ["firmware": firmware]) { w in
            w.leaf("type", ["arch": "x86_64", "machine": "q35"], "hvm")
            if let uefi {
                w.element("firmware") { w in
                    w.empty("feature", ["enabled": uefi.secureBoot ? "yes" : "no", "name": "secure-boot"])
                    w.empty("feature", ["enabled": uefi.secureBoot ? "yes" : "no", "name": "enrolled-keys"])
                }
            }
            if let boot {
                w.leaf("kernel", [:], boot.kernel)
                if let initrd = boot.initrd { w.leaf("initrd", [:], initrd) }
                w.leaf("cmdline", [:], boot.cmdline)
            } else if !disks.contains(where: { $0.bootOrder != nil }) {
                w.empty("boot", ["dev": "hd"])
            }
        }
    }

    private func writeDevices(_ w: inout XMLWriter) {
        for d in disks {
            w.element("disk", ["type": "file", "device": d.device.rawValue]) { w in
                // Test guests are throw-away: no host fsync per guest flush.
                w.empty("driver", ["name": "qemu", "type": d.format.rawValue, "cache": "unsafe",
                                   "discard": d.readOnly || d.device == .cdrom ? nil : "unmap"])
                w.empty("source", ["file": d.path])
                w.empty("target", ["dev": d.target, "bus": d.bus.rawValue])
                if let order = d.bootOrder { w.empty("boot", ["order": String(order)]) }
                if d.readOnly || d.device == .cdrom { w.empty("readonly") }
            }
        }
        for nic in nics {
            if case .bridge(let br) = nic.mode {
                w.element("interface", ["type": "bridge"]) { w in
                    w.empty("source", ["bridge": br])
                    w.empty("mac", ["address": nic.mac])
                    w.empty("model", ["type": "virtio"])
                }
            }
        }
        w.element("serial", ["type": "pty"]) { w in
            if let log = serialLog { w.empty("log", ["file": log, "append": "on"]) }
            w.empty("target", ["port": "0"])
        }
        w.element("console", ["type": "pty"]) { w in w.empty("target", ["type": "serial", "port": "0"]) }
        if let channel {
            w.element("channel", ["type": "unix"]) { w in
                w.empty("source", ["mode": "bind", "path": channel.socket])
                w.empty("target", ["type": "virtio", "name": channel.name])
            }
        }
        if let socket = vncSocket {
            w.element("graphics", ["type": "vnc"]) { w in w.empty("listen", ["type": "socket", "socket": socket]) }
            w.element("video") { w in w.empty("model", ["type": "vga", "vram": "16384", "heads": "1"]) }
        } else if let port = vncPort {
            w.element("graphics", ["type": "vnc", "port": String(port), "autoport": "no", "listen": "127.0.0.1"]) { w in
                w.empty("listen", ["type": "address", "address": "127.0.0.1"])
            }
            w.element("video") { w in w.empty("model", ["type": "vga", "vram": "16384", "heads": "1"]) }
        } else {
            w.element("video") { w in w.empty("model", ["type": "none"]) }
        }
        if balloon {
            w.element("memballoon", ["model": "virtio", "freePageReporting": "on"]) { w in w.empty("stats", ["period": "5"]) }
        } else {
            w.empty("memballoon", ["model": "none"])
        }
        w.element("rng", ["model": "virtio"]) { w in w.leaf("backend", ["model": "random"], "/dev/urandom") }
    }

    /// Extra QEMU arguments for NICs that libvirt's XML cannot express.
    func qemuArguments() -> [String] {
        var args: [String] = []
        for (i, nic) in nics.enumerated() where !nic.mode.isNativeToLibvirt {
            guard let netdev = nic.mode.netdevArgument(id: "vmnet\(i)") else { continue }
            let slot = String(0x10 + i, radix: 16)
            args += ["-netdev", netdev,
                     "-device", "virtio-net-pci,netdev=vmnet\(i),mac=\(nic.mac),bus=pcie.0,addr=0x\(slot)"]
        }
        return args
    }
}
