import ArgumentParser
import Foundation
import VMCtlSupport
import Images
import Machines
import Clusters
import Media

struct ClusterUp: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "up", abstract: "Create N nodes, boot them in parallel, verify each over SSH.")

    @Argument(help: "Number of nodes.")
    var nodes: Int

    @OptionGroup var cluster: ClusterNameOption
    @OptionGroup var global: GlobalOptions

    @Option(help: "Image to boot (see `vmctl image list`).")
    var image = "debian-12"

    @OptionGroup var shape: MachineShapeOptions

    @Option(help: "Time for the whole `up`: every node booted and SSH-verified, then the image's bootstrap (seconds, or 90s, 10m, 1h).")
    var timeout = TimeLimit(seconds: 600)

    @Flag(help: "Leave what was made in place when `up` fails, for inspection.")
    var keepOnFailure = false

    @Flag(help: "Let guests reach the outside through the host (off: user-mode NICs use restrict=on).")
    var guestInternet = false

    @Flag(help: ArgumentHelp("Boot every node cold, not restored from the warm snapshot of the image and shape.",
                             discussion: "By default nodes are restored from a warm snapshot (made by the first `up` of an image and shape, in the time of about one cold boot), then each gets its own hostname, host key, login key, machine-id, cluster MAC and address, clock and reseeded RNG over a virtio-serial port before sshd starts. A clone keeps the template's boot_id and SMBIOS UUID until it reboots: use --cold for software that needs those unique (kubeadm)."))
    var cold = false

    func run() async throws {
        let spec = try checkedSpec()
        try await buildImageIfMissing(state: StateDir.resolve())
        let view = ProgressView(json: global.json)
        let start = ContinuousClock.now
        let s = try await ClusterManager.current.up(spec, options: ClusterOptions(
            name: cluster.name, connect: global.connectURI, accel: global.accel, timeout: timeout.duration,
            keepOnFailure: keepOnFailure, warm: !cold), events: view.sink)
        let secs = (ContinuousClock.now - start).seconds
        if global.json {
            say(ClusterEvent.note("cluster \(s.name) up", elapsed: secs).jsonLine)
        } else {
            say(String(format: "cluster %@: %d node(s) SSH-verified in %.1fs; `vmctl cluster ssh node1 --name %@` for a shell",
                       s.name, s.nodes.count, secs, s.name))
        }
    }

    /// The spec the arguments ask for, checked as `ClusterManager.up` checks it (name, counts,
    /// sizes, image name, libvirt URI), so a bad argument exits 2 before an image is built.
    func checkedSpec() throws -> ClusterSpec {
        let spec = ClusterSpec(nodes: nodes, image: image, cpus: shape.cpus, memoryMiB: try shape.memoryMiB(),
                               diskGiB: try shape.diskGiB(default: "20G"), guestInternet: guestInternet)
        try ClusterManager.validateName(cluster.name)
        try spec.validate(freeMemoryMiB: HostMemory.availableMiB(), hugePages: HostMemory.hugePages(sharedLibvirt: global.connectURI != nil))
        try ImageStore.checkName(image)
        _ = try HypervisorTarget.resolve(connect: global.connectURI,
                                         defaultRoot: ClusterPaths(state: StateDir.resolve(), name: cluster.name).libvirtRoot)
        return spec
    }

    /// Builds the image from its recipe when it was never built (a stale one is left to
    /// `vmctl image build`), printing what `vmctl image build` prints (JSON notes with --json).
    private func buildImageIfMissing(state: StateDir) async throws {
        guard try ImageStore(state: state).find(image) == nil else { return }
        do {
            _ = try RecipeStore.locate().load(image)
        } catch let e as VMCtlError {
            throw VMCtlError("image '\(image)' is not built, and \(e.message)", exitCode: e.exitCode)
        }
        let json = global.json
        let show: @Sendable (String, Double) -> Void = { line, seconds in
            say(json ? ClusterEvent.note(line, elapsed: seconds).jsonLine : imageBuildLine(line, seconds: seconds))
        }
        show("image \(image) is not built: building it from its recipe first", 0)
        _ = try await buildImage(image, state: state, progress: show)
    }
}
