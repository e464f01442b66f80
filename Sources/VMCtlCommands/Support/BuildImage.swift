import Foundation
import VMCtlSupport
import Images
import Clusters

/// Builds `name` from its recipe as `vmctl image build` does: the recipes found the usual way,
/// and the cluster registry saying which clusters use a disk (so `--force` cannot replace one
/// under them). `progress` gets each line with the seconds since the build began.
func buildImage(_ name: String, state: StateDir, force: Bool = false,
                progress: @escaping @Sendable (_ line: String, _ seconds: Double) -> Void) async throws -> Image {
    let builder = ImageBuilder(state: state, recipes: RecipeStore.locate(),
                               users: { ClusterRegistry(state: state).imageUsers()[$0] ?? [] })
    let start = ContinuousClock.now
    return try await builder.build(name, force: force) { progress($0, (ContinuousClock.now - start).seconds) }
}

/// A progress line as `vmctl image build` prints it: `[ 12.3s] debian-12: stage disk: …`.
func imageBuildLine(_ line: String, seconds: Double) -> String {
    "[\(String(format: "%5.1f", seconds))s] \(line)"
}
