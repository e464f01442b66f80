import ArgumentParser
import Foundation
import VMCtlSupport
import Images
import Machines
import Clusters
import Swarm

struct SwarmInit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "init",
        abstract: "Bring up (or reuse) a cluster of swarm-node VMs with the swarm formed (seed 000's `make ansible-swarm`).",
        discussion: "docker swarm init on node1 at its cluster address, the others joined with the real worker token, every node labelled vm-capable=true|false by whether /dev/kvm exists in it: the swarm-node image's bootstrap steps. On a formed swarm it changes nothing.")

    @OptionGroup var swarm: SwarmNameOption
    @OptionGroup var global: GlobalOptions

    @Option(help: "Nodes in the swarm.")
    var nodes = 3

    @OptionGroup var shape: MachineShapeOptions

    @Option(help: "Time for the whole `init` (seconds, or 90s, 10m, 1h).")
    var timeout = TimeLimit(seconds: 900)

    func run() async throws {
        try await Self.ensure(name: swarm.name, nodes: nodes, shape: shape, timeout: timeout, global: global)
    }

    /// Brings up (or reuses) the swarm's cluster, building the image first if needed.
    static func ensure(name: String, nodes: Int, shape: MachineShapeOptions, timeout: TimeLimit, global: GlobalOptions) async throws {
        let spec = ClusterSpec(nodes: nodes, image: SwarmManager.image, cpus: shape.cpus, memoryMiB: try shape.memoryMiB(),
                               diskGiB: try shape.diskGiB(default: "20G"))
        try ClusterManager.validateName(name)
        try spec.validate(freeMemoryMiB: HostMemory.availableMiB())
        let state = StateDir.resolve()
        if try ImageStore(state: state).find(SwarmManager.image) == nil {
            say("image \(SwarmManager.image) is not built: building it from its recipe first")
            _ = try await buildImage(SwarmManager.image, state: state) { say(imageBuildLine($0, seconds: $1)) }
        }
        let view = ProgressView(json: global.json)
        let start = ContinuousClock.now
        let s = try await ClusterManager.current.up(spec, options: ClusterOptions(
            name: name, connect: global.connectURI, accel: global.accel, timeout: timeout.duration,
            keepOnFailure: false, warm: true), events: view.sink)
        say(String(format: "swarm %@: %d node(s), formed in %.1fs; `vmctl swarm case00 up --name %@` deploys case00",
                   s.name, s.nodes.count, (ContinuousClock.now - start).seconds, s.name))
    }
}
