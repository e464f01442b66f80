import ArgumentParser
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
        let state = StateDir.resolve()
        // Everything is checked before anything is made (VNodeManager.plan).
        var request = VNodeManager.InstallRequest(specs: specs, catalog: catalog ?? CloudCatalog.locate())
        request.stem = pool.stem
        request.cacheDir = cacheDir
        request.offline = offline
        request.cpus = shape.cpus
        request.memoryMiB = try shape.memoryMiB()
        request.diskGiB = try shape.diskGiB(default: "10G")
        request.network = network
        request.accel = global.accel
        request.connect = global.connectURI
        request.timeout = timeout?.duration
        let plan = try await m.plan(request, probeKernel: try probeKernel(state)) { say($0) }
        let outcomes = try await m.execute(plan, build: { recipe in
            try await buildImage(recipe, state: state) { say(imageBuildLine($0, seconds: $1)) }.rootDisk
        }) { say($0) }
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

    /// A kernel `--accel auto` can probe KVM with: vmctl's debian-12 image's, else the host's own.
    func probeKernel(_ state: StateDir) throws -> String {
        if let img = try? ImageStore(state: state).find("debian-12"), !img.isCloudImage { return img.kernel }
        var u = utsname()
        uname(&u)
        let release = withUnsafeBytes(of: &u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        return "/boot/vmlinuz-\(release)"
    }
}
