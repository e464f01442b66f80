import Foundation
import VMCtlSupport
import Images
import Machines

extension VNodeManager {
    /// What `vmctl vnode` was asked for, as parsed.
    public struct InstallRequest: Sendable {
        public var specs: [String]
        public var stem: String?
        public var catalog: String
        /// Where downloaded images are cached; nil: the state dir's.
        public var cacheDir: String?
        public var offline = false
        public var cpus = 2
        public var memoryMiB = 2048
        public var diskGiB = 10
        /// `user` or `bridge=NAME`; nil: each pool's own.
        public var network: String?
        public var accel: AccelRequest = .auto
        public var connect: String?
        /// nil: the seed's 2 minutes with KVM, 10 under TCG.
        public var timeout: Duration?
        public init(specs: [String], catalog: String) { self.specs = specs; self.catalog = catalog }
    }

    /// Everything an install needs, checked before anything is made: the nodes and their
    /// distros, the bridges (which must exist), the disks already at hand and the ones to fetch
    /// or build, the options, the time limit, and where the nodes live.
    public struct InstallPlan: Sendable {
        public var requests: [VNodeRequest]
        public var nodes: [(VNodeRequest, CloudCatalog.Entry)]
        public var bridges: [String]
        public var cache: CloudImageCache
        public var bases: [String: String]
        public var missing: [CloudCatalog.Entry]
        public var options: InstallOptions
        public var limit: Duration
        public var target: HypervisorTarget
    }

    /// Checks every argument and the host before anything is made: specs, distros, sizes,
    /// bridges, cached images (with `offline`, every one), host memory, tools, acceleration.
    /// `probeKernel` is what `--accel auto` probes KVM with. `notes` hears what the user should
    /// be told (a default timeout, where the nodes live).
    public func plan(_ r: InstallRequest, probeKernel: String, notes: @Sendable (String) -> Void) async throws -> InstallPlan {
        let requests = try VNodeRequest.parse(r.specs, pools: pools, stem: r.stem)
        let nodes = try entries(for: requests, catalog: try CloudCatalog.load(r.catalog))
        guard r.memoryMiB >= 256 else { throw VMCtlError.usage("--memory takes a size from 256M up, like 2G or 1536M (got \(r.memoryMiB) MiB)") }
        guard r.diskGiB >= 3 else { throw VMCtlError.usage("--disk takes a size from 3G up, like 20G (got \(r.diskGiB) GiB)") }
        guard (1...64).contains(r.cpus) else { throw VMCtlError.usage("--cpus takes 1 to 64") }
        let net = try r.network.map(VNodeNetwork.init)
        // A bridge is never made behind the user's back: the exact command instead.
        let bridges = Set(try requests.map { q -> VNodeNetwork in try net ?? VNodeNetwork(q.stem.network) }.compactMap { n -> String? in
            if case .bridge(let b) = n { return b } else { return nil }
        }).sorted()
        for b in bridges where !HostBridge.exists(b) {
            throw VMCtlError(.notFound, message: "there is no bridge \(b) on this host; vmctl does not make one implicitly "
                + "(it moves the uplink's addresses and cuts connectivity for a few seconds): `\(HostBridge.createCommand(b))`")
        }
        let cache = r.cacheDir.map { CloudImageCache(directory: Self.absolute($0)) } ?? .standard(state)
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
        if r.offline && !missing.isEmpty {
            throw VMCtlError.usage("--offline: not cached: " + missing.map { e -> String in
                if case .recipe(let recipe) = e.source { return "\(e.name) (`vmctl image build \(recipe)`)" }
                return "\(e.name) (\(cache.path(of: e)); `vmctl image fetch \(e.name)`)"
            }.joined(separator: ", "))
        }
        if let free = HostMemory.availableMiB() {
            let tcg = !AccelProbe.kvmUsable || r.accel == .tcg
            let fit = HostMemory.fit(memoryMiB: r.memoryMiB, tcg: tcg, availableMiB: free)
            if nodes.count > fit {
                throw VMCtlError(.hostMemory, message: "\(nodes.count) vnode(s) of \(r.memoryMiB) MiB do not fit in this host's \(free) MiB available "
                    + "(\(HostMemory.reserveMiB) MiB kept for itself): \(fit) fit; use fewer nodes or a smaller --memory")
            }
        }
        for tool in ["qemu-img", "xorrisofs", "ssh-keygen"] { _ = try locateTool(tool) }
        try state.ensureWritable()

        let verdict = try await AccelProbe(state: state).resolve(r.accel, kernel: probeKernel)
        var options = InstallOptions()
        options.cpus = r.cpus
        options.memoryMiB = r.memoryMiB
        options.diskGiB = r.diskGiB
        options.accelerator = verdict.accelerator
        options.network = net
        let (defaultLimit, why) = Self.defaultTimeout(verdict.accelerator)
        if r.timeout == nil, let why { notes(why) }
        let (target, note) = try await chooseTarget(connect: r.connect)
        if let note { notes(note) }
        return InstallPlan(requests: requests, nodes: nodes, bridges: bridges, cache: cache, bases: bases, missing: missing,
                           options: options, limit: r.timeout ?? defaultLimit, target: target)
    }

    /// Carries out `plan`: checks the names on the host, fetches (verified) or builds what is
    /// missing (`build` makes a recipe's image and returns its root disk), opens each bridge's
    /// firewall for the nodes, and installs them all behind one barrier (`install`).
    public func execute(_ plan: InstallPlan, build: @escaping (String) async throws -> String,
                        events: @escaping @Sendable (String) -> Void) async throws -> [Outcome] {
        let connection = try await MachineHost(plan.target).connect()
        return try await connection.closing { connection in
            let existing = try await checkNames(plan.requests, on: connection)
            var bases = plan.bases
            // What is missing now comes: downloads (verified before they get their names), local builds.
            for e in plan.missing {
                switch e.source {
                case .download:
                    events("fetching \(e.name): \(e.title)")
                    let f = try await plan.cache.fetch(e, progress: isatty(2) == 1) { events($0) }
                    if case .unverified(let why) = f.signature { events("\(e.name): checksum verified; its signature was not: \(why)") }
                    bases[e.name] = f.path
                case .recipe(let recipe):
                    events("\(e.name): building \(recipe) (`vmctl image build \(recipe)`)")
                    bases[e.name] = try await build(recipe)
                }
            }
            for q in plan.requests where existing.contains(q.name) { events("\(q.name): exists, reinstalling it fresh") }
            for b in plan.bridges { events(try await BridgeFirewall.allow(b)) }
            return try await install(plan.nodes, bases: bases, options: plan.options, reinstalling: existing, target: plan.target,
                                     connection: connection, deadline: ContinuousClock.now + plan.limit, events: events)
        }
    }

    static func absolute(_ p: String) -> String { p.hasPrefix("/") ? p : FileManager.default.currentDirectoryPath + "/" + p }
}
