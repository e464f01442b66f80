import ArgumentParser
import Foundation
import VMCtlSupport
import Images
import Machines
import Clusters
import Media

struct ImageList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List built images.")

    @Flag(help: "JSON output.")
    var json = false

    func run() async throws {
        let state = StateDir.resolve()
        let images = ImageStore(state: state).list()
        let users = ClusterRegistry(state: state).imageUsers()
        if json {
            struct Row: Encodable { var image: Image; var inUseBy: [String] }
            try printJSON(images.map { Row(image: $0, inUseBy: users[$0.hash] ?? []) })
            return
        }
        if images.isEmpty { print("no images: run `vmctl image build debian-12`"); return }
        let fmt = ISO8601DateFormatter()
        print(renderTable(["NAME", "SIZE", "CREATED", "HASH", "IN USE BY"], images.map {
            [$0.name, ByteSize.format($0.sizeBytes), fmt.string(from: $0.created), $0.shortHash,
             (users[$0.hash] ?? []).joined(separator: ",")]
        }))
    }
}
