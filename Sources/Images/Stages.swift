import Blocking
import Foundation
import VMCtlSupport

/// Stage 1: the root filesystem from packages, as a tarball, by mmdebstrap.
struct RootfsStage {
    let recipe: Recipe
    let mirror: String

    func arguments(output: String) -> [String] {
        var args = ["--quiet", "--variant=\(recipe.resolvedVariant)", "--format=tar",
                    "--components=\(recipe.resolvedComponents.joined(separator: ","))"]
        let include = [recipe.resolvedKernel] + (recipe.packages ?? [])
        args.append("--include=\(include.joined(separator: ","))")
        for p in recipe.excludePaths ?? [] { args.append("--dpkgopt=path-exclude=\(p)") }
        args += [recipe.resolvedSuite, output, mirror]
        return args
    }

    func run(output: String) async throws {
        let tmp = "\(output).tmp-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        do {
            try await Command("mmdebstrap", arguments(output: tmp), umask: Command.guestUmask).checkedAsync()
        } catch let e as CommandError {
            throw VMCtlError("image \(recipe.name): mmdebstrap could not build the root filesystem from \(mirror) "
                + "(check the package names and that the mirror is reachable): \(e)")
        }
        try FileManager.default.moveItem(atPath: tmp, toPath: output)
    }
}

/// Stage 2: recipe files and commands, then the seal.
struct CustomizeStage {
    let recipe: Recipe
    /// Where fetched binaries are cached by checksum.
    let downloads: String

    func run(tarball: String, output: String) async throws {
        let fm = FileManager.default
        let tmp = "\(output).tmp-\(getpid())"
        try? fm.removeItem(atPath: tmp)
        try fm.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        do {
            // xattrs carry file capabilities (ping's cap_net_raw); without them they are lost.
            try await Command("tar", ["--numeric-owner", "--xattrs", "--xattrs-include=*", "-xpf", tarball, "-C", tmp],
                              umask: Command.guestUmask).checkedAsync()
            chmod(tmp, 0o755)  // the guest's `/`
            for f in recipe.files ?? [] { try Self.place(f, in: tmp) }
            for f in recipe.fetch ?? [] {
                let cached = try await Downloader(cache: downloads).fetch(f)
                // Resolved as inside a chroot: links in the tree never lead the write out of it.
                try RootPath.copy(cached, to: f.path, in: tmp, mode: mode_t(UInt16(f.mode ?? "0755", radix: 8) ?? 0o755))
            }
            let commands = recipe.commands ?? []
            if !commands.isEmpty { try await Self.chroot(tmp, commands: commands, recipe: recipe.name) }
            try Seal.apply(to: tmp)
            try? fm.removeItem(atPath: output)
            try fm.moveItem(atPath: tmp, toPath: output)
        } catch {
            try? fm.removeItem(atPath: tmp)
            throw error
        }
    }

    /// Writes a recipe file into the tree at `root`, its path resolved as inside a chroot
    /// (symlinks re-rooted, `..` stopped at the root), so it cannot land outside the tree.
    static func place(_ f: Recipe.File, in root: String) throws {
        try RootPath.write(Data((f.content ?? "").utf8), to: f.path, in: root,
                           mode: mode_t(UInt16(f.mode ?? "0644", radix: 8) ?? 0o644))
    }

    /// Runs the recipe's commands inside the tree, in a private mount namespace (so /proc
    /// and /dev mounts vanish with it), with service starts blocked by policy-rc.d.
    static func chroot(_ root: String, commands: [String], recipe: String) async throws {
        let script = """
            set -e
            mount -t proc proc "$1/proc"
            mount --rbind /dev "$1/dev"
            mount -t sysfs sysfs "$1/sys"
            printf '#!/bin/sh\\nexit 101\\n' > "$1/usr/sbin/policy-rc.d"; chmod 755 "$1/usr/sbin/policy-rc.d"
            rc=0
            chroot "$1" /bin/sh -ec "$2" || rc=$?
            rm -f "$1/usr/sbin/policy-rc.d"
            exit $rc
            """
        let joined = commands.joined(separator: "\n")
        let env = ["PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                   "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C.UTF-8", "HOME": "/root"]
        do {
            try await Command("unshare", ["--mount", "--propagation", "private", "/bin/sh", "-c", script, "sh", root, joined],
                              environment: env, umask: Command.guestUmask).checkedAsync()
        } catch let e as CommandError {
            throw VMCtlError("image \(recipe): a recipe command failed in the image root: \(e)")
        }
    }
}

/// Stage 3: the disk formats, into the store under the image's hash.
struct DiskStage {
    let recipe: Recipe
    let hash: String

    /// `note` says why an image has no PVH kernel (it still boots, from its bzImage).
    func run(tree: String, storeDir: String, note: (String) -> Void = { _ in }) async throws -> Image {
        let fm = FileManager.default
        let final = "\(storeDir)/\(hash)"
        let tmp = "\(storeDir)/.tmp-\(hash.prefix(12))-\(getpid())"
        try? fm.removeItem(atPath: tmp)
        try fm.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        do {
            if recipe.isCloudImage {
                var img = try await cloudImage(tree: tree, in: tmp, final: final)
                try publish(img, from: tmp, as: final, in: storeDir)
                img.directory = final
                return img
            }
            let size = ByteSize.parse(recipe.resolvedRootSize) ?? (2 << 30)
            let raw = "\(tmp)/root.raw"
            guard fm.createFile(atPath: raw, contents: nil), truncate(raw, off_t(size)) == 0 else {
                throw VMCtlError("cannot create \(raw): \(String(cString: strerror(errno)))")
            }
            do {
                try await Command("mkfs.ext4", ["-q", "-F", "-L", "root", "-d", tree, raw]).checkedAsync()
            } catch let e as CommandError {
                throw VMCtlError("image \(recipe.name): the root filesystem does not fit in root_size \(recipe.resolvedRootSize) "
                    + "or mkfs.ext4 failed; raise root_size in the recipe: \(e)")
            }
            try await Command("qemu-img", ["convert", "-q", "-O", "qcow2", raw, "\(tmp)/root.qcow2"]).checkedAsync()
            try fm.removeItem(atPath: raw)
            let (kernel, initrd) = try Self.bootFiles(in: tree)
            try fm.copyItem(atPath: kernel, toPath: "\(tmp)/vmlinuz")
            try fm.copyItem(atPath: initrd, toPath: "\(tmp)/initrd.img")
            PVHKernel.extract(bzImage: "\(tmp)/vmlinuz", to: "\(tmp)/\(PVHKernel.fileName)", note: note)
            var layout: DiskLayout?
            if recipe.isBootable {
                let (used, count) = try await Self.usage(of: tree)
                let l = DiskLayout.plan(rootBytes: DiskLayout.rootSize(usedBytes: used, files: count), seed: hash)
                try await BootableDisk(layout: l, cmdline: recipe.resolvedCmdline, title: recipe.name)
                    .write(tree: tree, to: "\(tmp)/\(Image.rawDiskName)")
                // The signed loaders again, for the installer ISO (its GRUB is the CD build).
                try fm.createDirectory(atPath: "\(tmp)/efi", withIntermediateDirectories: true)
                for f in [BootableDisk.shim, BootableDisk.grubCD, BootableDisk.mokManager] where fm.fileExists(atPath: tree + f) {
                    try fm.copyItem(atPath: tree + f, toPath: "\(tmp)/efi/" + ((f as NSString).lastPathComponent as NSString).deletingPathExtension)
                }
                layout = l
            }
            let attrs = try fm.attributesOfItem(atPath: "\(tmp)/root.qcow2")
            var img = Image(name: recipe.name, hash: hash, created: Date(), directory: final,
                            user: recipe.resolvedUser, cmdline: recipe.resolvedCmdline, checks: recipe.checks ?? [],
                            sizeBytes: (attrs[.size] as? UInt64) ?? 0,
                            bootstrap: recipe.bootstrap, roles: recipe.roles, layout: layout)
            try AtomicFile.writeJSON(img, to: "\(tmp)/manifest.json")
            try publish(img, from: tmp, as: final, in: storeDir)
            img.directory = final
            return img
        } catch {
            try? fm.removeItem(atPath: tmp)
            throw error
        }
    }

    /// A cloud image the way distributions publish them: the partitioned disk (GPT, ESP with
    /// shim and GRUB, root; no CIDATA) converted to one qcow2, and nothing else: no root
    /// filesystem image, kernel or initrd beside it. An image with GRUB's BIOS modules
    /// (grub-pc-bin) also gets a BIOS boot partition, so it boots through SeaBIOS too.
    func cloudImage(tree: String, in tmp: String, final: String) async throws -> Image {
        let (used, count) = try await Self.usage(of: tree)
        let bios = FileManager.default.fileExists(atPath: "\(tree)\(BIOSBoot.modules)/boot.img")
        let layout = DiskLayout.plan(rootBytes: DiskLayout.rootSize(usedBytes: used, files: count), cidataBytes: 0,
                                     biosBootBytes: bios ? 1 << 20 : 0, seed: hash)
        let raw = "\(tmp)/\(Image.rawDiskName)"
        try await BootableDisk(layout: layout, cmdline: recipe.resolvedCmdline, title: recipe.name).write(tree: tree, to: raw)
        let disk = "\(tmp)/\(Image.cloudDiskName)"
        try await Command("qemu-img", ["convert", "-q", "-O", "qcow2", raw, disk]).checkedAsync()
        try FileManager.default.removeItem(atPath: raw)
        let attrs = try FileManager.default.attributesOfItem(atPath: disk)
        let img = Image(name: recipe.name, hash: hash, created: Date(), directory: final,
                        user: recipe.resolvedUser, cmdline: recipe.resolvedCmdline, checks: recipe.checks ?? [],
                        sizeBytes: (attrs[.size] as? UInt64) ?? 0,
                        bootstrap: recipe.bootstrap, roles: recipe.roles, layout: layout, cloudImage: true)
        try AtomicFile.writeJSON(img, to: "\(tmp)/manifest.json")
        return img
    }

    /// Makes the build in `tmp` the store's entry `final`: readable by QEMU, durable before
    /// it is visible (the build's files, then its name in the store).
    func publish(_ img: Image, from tmp: String, as final: String, in storeDir: String) throws {
        let fm = FileManager.default
        try img.shareWithQemu(at: tmp)
        try AtomicFile.syncTree(tmp)
        try? fm.removeItem(atPath: final)
        try fm.moveItem(atPath: tmp, toPath: final)
        try AtomicFile.syncDirectory(storeDir)
    }

    /// Bytes the tree occupies on disk and how many entries it has.
    static func usage(of tree: String) async throws -> (UInt64, Int) {
        let du = try await Command("du", ["-sx", "-B1", tree]).checkedAsync()
        guard let used = UInt64(du.split(whereSeparator: { $0 == " " || $0 == "\t" }).first ?? "") else {
            throw VMCtlError("cannot measure \(tree): du printed '\(du)'")
        }
        var count = 0
        if let e = FileManager.default.enumerator(atPath: tree) { while e.nextObject() != nil { count += 1 } }
        return (used, count)
    }

    /// The newest kernel and its initrd under `tree/boot`.
    static func bootFiles(in tree: String) throws -> (String, String) {
        let boot = "\(tree)/boot"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: boot)) ?? []
        let versions = names.filter { $0.hasPrefix("vmlinuz-") }.map { String($0.dropFirst(8)) }
            .sorted { $0.compare($1, options: .numeric) == .orderedAscending }
        guard let v = versions.last, names.contains("initrd.img-\(v)") else {
            throw VMCtlError("the image has no kernel and initrd in /boot: add a kernel package (kernel: linux-image-cloud-amd64)")
        }
        return ("\(boot)/vmlinuz-\(v)", "\(boot)/initrd.img-\(v)")
    }
}
