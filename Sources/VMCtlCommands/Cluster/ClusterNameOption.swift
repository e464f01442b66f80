import ArgumentParser
import Foundation
import VMCtlSupport
import Images
import Machines
import Clusters
import Media

/// `--name`, shared by every cluster verb.
struct ClusterNameOption: ParsableArguments {
    @Option(name: .long, help: "Cluster name (a DNS label).")
    var name: String = "default"
}
