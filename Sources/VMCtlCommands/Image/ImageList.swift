import ArgumentParser
import Foundation
import VMCtlSupport
import Images
import Machines
import Clusters

struct ImageList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List built images.")

    @Flag(help: "JSON output.")
    var json = false

    func run() async throws {
        let state = StateDir.resolve()
        let images = ImageStore(state: state).list()
        let users = ClusterRegistry(state: state).imageUsers()
        let warm = Dictionary(grouping: WarmSnapshot.all(in: state.warm), by: \.meta.key.image)
        if json {
            struct Warm: Encodable { var cpus: Int; var memoryMiB: Int; var accelerator: String; var saveBytes: UInt64; var madeAt: Date; var directory: String }
            struct Row: Encodable { var image: Image; var inUseBy: [String]; var warmSnapshots: [Warm] }
            try printJSON(images.map { img in
                Row(image: img, inUseBy: users[img.hash] ?? [], warmSnapshots: (warm[img.hash] ?? []).map {
                    Warm(cpus: $0.meta.key.cpus, memoryMiB: $0.meta.key.memoryMiB, accelerator: $0.meta.key.accelerator,
                         saveBytes: $0.meta.saveBytes, madeAt: $0.meta.madeAt, directory: $0.directory)
                })
            })
            return
        }
        if images.isEmpty { print("no images: run `vmctl image build debian-12`"); return }
        let fmt = ISO8601DateFormatter()
        print(renderTable(["NAME", "SIZE", "CREATED", "HASH", "IN USE BY", "WARM SNAPSHOTS"], images.map {
            [$0.name, ByteSize.format($0.sizeBytes), fmt.string(from: $0.created), $0.shortHash,
             (users[$0.hash] ?? []).joined(separator: ","),
             (warm[$0.hash] ?? []).map { "\($0.meta.key.cpus)cpu/\($0.meta.key.memoryMiB)MiB (\(ByteSize.format($0.meta.saveBytes)))" }
                .joined(separator: ", ")]
        }))
    }
}
