import VMCtlSupport
import Clusters

extension ClusterManager {
    /// The manager for the current environment.
    static var current: ClusterManager { ClusterManager(state: StateDir.resolve()) }
}
