import ArgumentParser
import Foundation
import VMCtlSupport
import Clusters

struct ClusterInventory: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "inventory",
        abstract: "An Ansible inventory for the cluster: groups per cluster and role, vmctl's key and pinned known_hosts.",
        discussion: "ansible all -i <(vmctl cluster inventory --name swarm) -m ping")
    @OptionGroup var cluster: ClusterNameOption

    @Option(help: "ini or yaml.")
    var format: String = "ini"

    func run() async throws {
        guard let f = AnsibleInventory.Format(rawValue: format) else { throw VMCtlError.usage("--format takes ini or yaml (got '\(format)')") }
        print(try ClusterManager.current.inventory(cluster.name, format: f), terminator: "")
    }
}
