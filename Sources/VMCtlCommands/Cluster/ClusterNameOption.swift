import ArgumentParser
import Foundation

/// `--name`, shared by every cluster verb.
struct ClusterNameOption: ParsableArguments {
    @Option(name: .long, help: "Cluster name (a DNS label).")
    var name: String = "default"
}
