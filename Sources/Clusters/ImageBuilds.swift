import Foundation
import VMCtlSupport
import Images
import Machines

/// Image builds as every command makes them: the recipes found the usual way, the cluster
/// registry saying which clusters use a disk (so `--force` cannot replace one under them), and
/// the warm snapshots of images no longer tagged pruned afterwards. Here, not in Images,
/// because the policy needs the clusters (which disks are in use) and the machine layer's snapshots.
public enum ImageBuilds {
    /// Builds `name` from its recipe. `progress` gets each line with the seconds since the build began.
    public static func build(_ name: String, state: StateDir, force: Bool = false,
                             progress: @escaping @Sendable (_ line: String, _ seconds: Double) -> Void) async throws -> Image {
        let builder = ImageBuilder(state: state, recipes: RecipeStore.locate(),
                                   users: { ClusterRegistry(state: state).imageUsers()[$0] ?? [] })
        let start = ContinuousClock.now
        @Sendable func seconds() -> Double {
            let d = ContinuousClock.now - start
            return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
        }
        let image = try await builder.build(name, force: force) { progress($0, seconds()) }
        // A rebuilt image's snapshots are never restored: they go now (unless clones sit on them),
        // and the next `cluster up` of each shape makes a new one (faster than a cold boot here).
        for gone in pruneWarmSnapshots(state) {
            progress("warm snapshot \(gone) removed (its image was rebuilt or removed); the next `cluster up` of its shape makes a new one",
                     seconds())
        }
        return image
    }

    /// Warm snapshots of images no longer tagged go, unless clones' disks still sit on them.
    @discardableResult
    public static func pruneWarmSnapshots(_ state: StateDir) -> [String] {
        WarmSnapshot.prune(in: state.warm, current: Set(ImageStore(state: state).list().map(\.hash)),
                           inUse: Set(ClusterRegistry(state: state).imageUsers().keys))
    }
}
