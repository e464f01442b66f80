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
    // A rebuilt image's snapshots are never restored: they go now (unless clones sit on them),
    // and the next `cluster up` of each shape makes a new one (faster than a cold boot here).
    for gone in pruneWarmSnapshots(state) {
        progress("warm snapshot \(gone) removed (its image was rebuilt or removed); the next `cluster up` of its shape makes a new one",
                 (ContinuousClock.now - start).seconds)
    }
    return image
}

/// Warm snapshots of images no longer tagged go, unless clones' disks still sit on them.
@discardableResult
func pruneWarmSnapshots(_ state: StateDir) -> [String] {
    WarmSnapshot.prune(in: state.warm, current: Set(ImageStore(state: state).list().map(\.hash)),
                       inUse: Set(ClusterRegistry(state: state).imageUsers().keys))
}

/// A progress line as `vmctl image build` prints it: `[ 12.3s] debian-12: stage disk: …`.
func imageBuildLine(_ line: String, seconds: Double) -> String {
    "[\(String(format: "%5.1f", seconds))s] \(line)"
}
