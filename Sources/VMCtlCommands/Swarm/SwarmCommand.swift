import ArgumentParser
import Foundation
import Swarm

struct SwarmCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "swarm",
        abstract: "A Docker Swarm on vmctl nodes and seed 000's cases (stacks/*.yml).",
        discussion: """
            EXAMPLES:
              vmctl swarm init                 3 swarm-node VMs (cluster `swarm`), swarm formed, nodes labelled vm-capable
              vmctl swarm case00 up            two services on two distinct random nodes, one overlay network
              vmctl swarm case00 test          ping and HTTP between them from inside their containers
              vmctl swarm case00 exec-list     CONTAINER NODE OVERLAY_IP SERVICE
              vmctl swarm case00 exec NAME     a shell in that container, on whichever node runs it
              vmctl swarm case00 exec NAME -- cat /etc/hostname
              vmctl swarm case00 down          the stack goes, the swarm stays
              vmctl swarm case01 up            case00's services plus a VM runner (QEMU in a container, its guest's SSH at 127.0.0.1:2222 inside it)
              vmctl swarm case01 test          case00's checks, then SSH from inside the runner to its guest with /var/lib/vmrunner/keys/id_ed25519
              vmctl swarm case02 up --iso WIN.iso --virtio-iso virtio-win.iso     Windows in a runner (media you provide)
            """,
        subcommands: [SwarmInit.self, SwarmCase.self],
        defaultSubcommand: SwarmCase.self)
}

/// `--name`: the swarm's cluster (default `swarm`).
struct SwarmNameOption: ParsableArguments {
    @Option(name: .long, help: "The swarm's cluster (a DNS label).")
    var name: String = "swarm"

    var manager: SwarmManager { SwarmManager(clusters: .current, name: name) }
}
