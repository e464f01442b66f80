import ArgumentParser

struct ClusterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster",
        abstract: "N-node test clusters, verified over SSH.",
        discussion: """
            EXAMPLES:
              vmctl cluster up 3                      three debian-12 nodes (2 vCPUs, 2 GiB, 20 GiB thin)
              vmctl cluster up 5 --name big --memory 1G
              vmctl cluster status
              vmctl cluster ssh node1                 interactive shell (OpenSSH, strict host keys)
              vmctl cluster exec -- uname -r          on every node in parallel
              vmctl cluster test                      integration checks, N passed, N failed
              vmctl cluster down                      stop, keep disks
              vmctl cluster start                     boot stopped nodes again
              vmctl cluster clean                     remove everything, whatever state it is in
            """,
        subcommands: [ClusterUp.self, ClusterList.self, ClusterStatus.self, ClusterInfo.self, ClusterInventory.self, ClusterSSH.self,
                      ClusterExec.self, ClusterTest.self, ClusterLogs.self, ClusterConsole.self, ClusterCp.self, ClusterMemory.self, ClusterSetMemory.self, ClusterCompact.self, ClusterDown.self,
                      ClusterStart.self, ClusterClean.self])
}
