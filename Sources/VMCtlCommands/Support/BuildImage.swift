import Foundation
import VMCtlSupport
import Images
import Clusters

/// Builds `name` from its recipe as `vmctl image build` does (`ImageBuilds.build`).
func buildImage(_ name: String, state: StateDir, force: Bool = false,
                progress: @escaping @Sendable (_ line: String, _ seconds: Double) -> Void) async throws -> Image {
    try await ImageBuilds.build(name, state: state, force: force, progress: progress)
}

/// A progress line as `vmctl image build` prints it: `[ 12.3s] debian-12: stage disk: …`.
func imageBuildLine(_ line: String, seconds: Double) -> String {
    "[\(String(format: "%5.1f", seconds))s] \(line)"
}
