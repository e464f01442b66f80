import ArgumentParser
import Foundation
import VMCtlSupport
import Images

struct ImageBuild: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "build", abstract: "Build an image from its recipe.")

    @Argument(help: "Recipe name (images/NAME.yaml).")
    var name: String

    @Flag(help: "Rebuild every stage, ignoring the cache.")
    var force = false

    @Flag(help: "Print the result as JSON.")
    var json = false

    func run() async throws {
        let quiet = json
        let img = try await buildImage(name, state: StateDir.resolve(), force: force) { line, seconds in
            if !quiet { say(imageBuildLine(line, seconds: seconds)) }
        }
        if json { try printJSON(img) }
    }
}
