import ArgumentParser
import Foundation
import VMCtlSupport
import Images
import Machines
import Clusters
import Media

struct ImageBuild: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "build", abstract: "Build an image from its recipe.")

    @Argument(help: "Recipe name (images/NAME.yaml).")
    var name: String

    @Flag(help: "Rebuild every stage, ignoring the cache.")
    var force = false

    @Flag(help: "Print the result as JSON.")
    var json = false

    func run() async throws {
        let state = StateDir.resolve()
        let builder = ImageBuilder(state: state, recipes: RecipeStore.locate(),
                                   users: { ClusterRegistry(state: state).imageUsers()[$0] ?? [] })
        let start = ContinuousClock.now
        let quiet = json
        let img = try await builder.build(name, force: force) { line in
            if !quiet { say("[\(String(format: "%5.1f", (ContinuousClock.now - start).seconds))s] \(line)") }
        }
        if json { try printJSON(img) }
    }
}
