import ArgumentParser
import Blocking
import Foundation
import VMCtlSupport
import Images
import Machines
import VNodes

struct VNodeInstall: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "install",
        abstract: "(Re)install vnodes in parallel from cloud images; returns when all answer SSH or at --timeout.",
        discussion: "Each SPEC is NODE[:DISTRO]: 3, 03, vnode3 → vnode03; DISTRO a short name from images/catalog.yaml (default: the pool's, else the catalog's latest Fedora). An existing vnode is reinstalled fresh (new disk, seed and host key).")

    @Argument(help: "NODE[:DISTRO], e.g. 3:f33 vnode4 vnode18:u18.04 20:u20.04")
    var specs: [String] = []

    @OptionGroup var pool: VNodePoolOptions

    @OptionGroup var global: GlobalOptions

    @Option(help: "The image catalog (default: images/catalog.yaml; env VMCTL_CATALOG).")
    var catalog: String?

    @Option(help: "Where downloaded images are cached (e.g. /var/lib/libvirt/boot; default: the state dir's images/cloud).")
    var cacheDir: String?

    @Flag(help: "Use only cached images (and locally built ones); name what is missing instead of downloading.")
    var offline = false

    @OptionGroup var shape: MachineShapeOptions

    @Option(help: "user (a loopback SSH forward) or bridge=NAME (a tap on the host's bridge; the site's DHCP gives the address by MAC). Default: the pool's.")
    var network: String?

    @Option(help: "Time until every node must answer SSH (default: the seed's 2 minutes with KVM, 10 under TCG).")
    var timeout: TimeLimit?

    func run() async throws {
        let m = try pool.manager()
        // Everything is checked before anything is made: specs, distros, sizes, cached images.
        let requests = try VNodeRequest.parse(specs, pools: m.pools, stem: pool.stem)
        let cat = try CloudCatalog.load(catalog ?? CloudCatalog.locate())
        let nodes = try m.entries(for: requests, catalog: cat)
        let memMiB = try shape.memoryMiB()
        guard memMiB >= 256 else {
            throw VMCtlError.usage("--memory takes a size from 256M up, like 2G or 1536M (got '\(shape.memory)')")
        }
        let diskGiB = try shape.diskGiB(default: "10G")
        guard diskGiB >= 3 else { throw VMCtlError.usage("--disk takes a size from 3G up, like 20G (got '\(shape.disk ?? "")')") }
        guard (1...64).contains(shape.cpus) else { throw VMCtlError.usage("--cpus takes 1 to 64") }
        let net = try network.map(VNodeNetwork.init)
        // A bridge is never made behind the user's back: the exact command instead.
        let bridges = Set(try requests.map { r -> VNodeNetwork in try net ?? VNodeNetwork(r.stem.network) }.compactMap { n -> String? in
            if case .bridge(let b) = n { return b } else { return nil }
        })
        for b in bridges.sorted() where !HostBridge.exists(b) {
            throw VMCtlError(.notFound, message: "there is no bridge \(b) on this host; vmctl does not make one implicitly "
                + "(it moves the uplink's addresses and cuts connectivity for a few seconds): `\(HostBridge.createCommand(b))`")
        }
        let state = StateDir.resolve()
        let cache = cacheDir.map { CloudImageCache(directory: absolute($0)) } ?? .standard(state)
        let images = ImageStore(state: state)
        var bases: [String: String] = [:]
        var missing: [CloudCatalog.Entry] = []
        for e in Dictionary(grouping: nodes.map(\.1), by: \.name).values.map({ $0[0] }).sorted(by: { $0.name < $1.name }) {
            switch e.source {
            case .download:
                if cache.isCached(e) { bases[e.name] = cache.path(of: e) } else { missing.append(e) }
            case .recipe(let recipe):
                if let img = try images.find(recipe) { bases[e.name] = img.rootDisk } else { missing.append(e) }
            }
        }
        if offline && !missing.isEmpty {
            throw VMCtlError.usage("--offline: not cached: " + missing.map { e -> String in
                if case .recipe(let r) = e.source { return "\(e.name) (`vmctl image build \(r)`)" }
                return "\(e.name) (\(cache.path(of: e)); `vmctl image fetch \(e.name)`)"
            }.joined(separator: ", "))
        }
        if let free = HostMemory.availableMiB() {
            let tcg = !AccelProbe.kvmUsable || global.accel == .tcg
            let fit = HostMemory.fit(memoryMiB: memMiB, tcg: tcg, availableMiB: free)
            if nodes.count > fit {
                throw VMCtlError(.hostMemory, message: "\(nodes.count) vnode(s) of \(memMiB) MiB do not fit in this host's \(free) MiB available "
                    + "(\(HostMemory.reserveMiB) MiB kept for itself): \(fit) fit; use fewer nodes or a smaller --memory")
            }
        }
        _ = try Command.require("qemu-img")
        _ = try Command.require("xorrisofs")
        _ = try Command.require("ssh-keygen")
        try state.ensureWritable()

        let verdict = try await AccelProbe(state: state).resolve(global.accel, kernel: try probeKernel(state))
        var options = VNodeManager.InstallOptions()
        options.cpus = shape.cpus
        options.memoryMiB = memMiB
        options.diskGiB = diskGiB
        options.accelerator = verdict.accelerator
        options.network = net
        let (defaultLimit, why) = VNodeManager.defaultTimeout(verdict.accelerator)
        let limit = timeout?.duration ?? defaultLimit
        if timeout == nil, let why { say(why) }

        let (target, note) = try await m.chooseTarget(connect: global.connectURI)
        if let note { say(note) }
        let connection = try await MachineHost(target).connect()
        try await connection.closing { connection in
            let existing = try await m.checkNames(requests, on: connection)
            // What is missing now comes: downloads (verified before they get their names), local builds.
            for e in missing {
                switch e.source {
                case .download:
                    say("fetching \(e.name): \(e.title)")
                    let f = try await cache.fetch(e, progress: isatty(2) == 1) { say($0) }
                    if case .unverified(let why) = f.signature { say("\(e.name): checksum verified; its signature was not: \(why)") }
                    bases[e.name] = f.path
                case .recipe(let recipe):
                    say("\(e.name): building \(recipe) (`vmctl image build \(recipe)`)")
                    bases[e.name] = try await buildImage(recipe, state: state) { say(imageBuildLine($0, seconds: $1)) }.rootDisk
                }
            }
            for r in requests where existing.contains(r.name) { say("\(r.name): exists, reinstalling it fresh") }
            for b in bridges.sorted() { say(try await BridgeFirewall.allow(b)) }
            let deadline = ContinuousClock.now + limit
            let outcomes = try await m.install(nodes, bases: bases, options: options, reinstalling: existing, target: target, connection: connection,
                                               deadline: deadline) { say($0) }
            say("")
            say(renderTable(["NAME", "DISTRO", "ADDRESS", "STATE", "SECONDS"], outcomes.map {
                [$0.name, $0.distro, $0.address, $0.state, String(format: "%.1f", $0.seconds)]
            }))
            let failed = outcomes.filter { $0.failure != nil }
            if !failed.isEmpty {
                let codes = failed.compactMap { $0.failure.map(VMCtlError.Code.init(of:)) }
                throw VMCtlError(Set(codes).count == 1 ? codes[0] : .nodeFailed,
                                 message: "\(failed.count) of \(outcomes.count) vnode(s) did not come up (removed):\n"
                                    + failed.map { "  \($0.failure!)" }.joined(separator: "\n"))
            }
        }
    }

    /// A kernel `--accel auto` can probe KVM with: vmctl's debian-12 image's, else the host's own.
    func probeKernel(_ state: StateDir) throws -> String {
        if let img = try? ImageStore(state: state).find("debian-12"), !img.isCloudImage { return img.kernel }
        var u = utsname()
        uname(&u)
        let release = withUnsafeBytes(of: &u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        return "/boot/vmlinuz-\(release)"
    }

    func absolute(_ p: String) -> String { p.hasPrefix("/") ? p : FileManager.default.currentDirectoryPath + "/" + p }
}
