import ArgumentParser

struct VMCtlRoot: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vmctl",
        abstract: "Fleets of QEMU virtual machines for cluster testing, through libvirt.",
        discussion: """
            EXAMPLES:
              vmctl doctor                    check prerequisites and acceleration
              vmctl image build debian-12     build an image from images/debian-12.yaml
              vmctl cluster up 3              three nodes, verified over SSH
              vmctl cluster test              integration checks on every node
              vmctl cluster ssh node1         a shell on node1
              vmctl cluster clean             remove everything the cluster made
              vmctl vnode 3:f33 20:u20.04     fresh VMs from a pool of names, in parallel
            """,
        version: VMCtlVersion.current,
        subcommands: [ImageCommand.self, ClusterCommand.self, VNodeCommand.self, NetCommand.self, SwarmCommand.self, DoctorCommand.self, SwitchDaemonCommand.self])
}
