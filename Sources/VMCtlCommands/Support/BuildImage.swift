import Foundation
import VMCtlSupport
import Images
import Machines
import Clusters

/// Builds `name` from its recipe as `vmctl image build` does: the recipes found the usual way,
/// and the cluster registry saying which clusters use a disk (so `--force` cannot replace one
/// under them). `progress` gets each line with the seconds since the build began.
func buildImage(_ name: String, state: StateDir, force: Bool = false,
                progress: @escaping @Sendable (_ line: String, _ seconds: Double) -> Void) async throws -> Image {
    let builder = ImageBuilder(state: state, recipes: RecipeStore.locate(),
                               users: { ClusterRegistry(state: state).imageUsers()[$0] ?? [] })
    let start = ContinuousClock.now
    let image = try await builder.build(name, force: force) { progress($0, (ContinuousClock.now - start).seconds) }
    pruneWarmSnapshots(state)
    return image
}

/// Warm snapshots of images no longer tagged go, unless clones' disks still sit on them.
func pruneWarmSnapshots(_ state: StateDir) {
    WarmSnapshot.prune(in: state.warm, current: Set(ImageStore(state: state).list().map(\.hash)),
                       inUse: Set(ClusterRegistry(state: state).imageUsers().keys))
}

/// A progress line as `vmctl image build` prints it: `[ 12.3s] debian-12: stage disk: …`.
func imageBuildLine(_ line: String, seconds: Double) -> String {
    "[\(String(format: "%5.1f", seconds))s] \(line)"
}
