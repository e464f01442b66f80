import ArgumentParser
import VMCtlSupport
import Images
import Clusters

struct ImageRm: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rm", abstract: "Remove a built image (refused while a cluster uses it).")

    @Argument(help: "Image name.")
    var name: String

    func run() async throws {
        let state = StateDir.resolve()
        let store = ImageStore(state: state)
        let img = try store.image(named: name)
        try store.remove(name, usedBy: ClusterRegistry(state: state).imageUsers()[img.hash] ?? [])
        ImageBuilds.pruneWarmSnapshots(state)  // its warm snapshots too
        print("removed image \(name) (\(img.shortHash))")
    }
}
