import ArgumentParser
import Foundation
import VMCtlSupport
import Images
import Machines
import Clusters

struct ImageWarm: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "warm",
        abstract: "Make the warm snapshot of an image for a node shape now (the first `cluster up` of that shape would).",
        discussion: "Boots a template with no identity, saves it through libvirt and keeps its disk; later `cluster up`s of this image and shape restore their nodes from it. Shown by `image list`, removed with the image.")

    @Argument(help: "Image name.")
    var name: String

    @OptionGroup var global: GlobalOptions

    @Option(help: "vCPUs per node.")
    var cpus = 2

    @Option(help: "Memory per node (e.g. 2G, 1536M).")
    var memory = "2G"

    func run() async throws {
        guard let mem = ByteSize.parse(memory) else {
            throw VMCtlError.usage("--memory takes a size from 256M up, like 2G or 1536M (got '\(memory)')")
        }
        try ImageStore.checkName(name)
        let spec = ClusterSpec(nodes: 1, image: name, cpus: cpus, memoryMiB: Int(mem >> 20), diskGiB: 20, guestInternet: false)
        try spec.validate(freeMemoryMiB: HostMemory.availableMiB())
        _ = try ImageStore(state: StateDir.resolve()).image(named: name)  // built first: `vmctl image build NAME`
        let view = ProgressView(json: global.json)
        try await ClusterManager.current.makeWarm(image: name, cpus: cpus, memoryMiB: Int(mem >> 20), accel: global.accel, events: view.sink)
        say("image \(name): warm snapshot for \(cpus) vCPU/\(mem >> 20) MiB ready (`vmctl image list` shows it)")
    }
}
