import ArgumentParser
import Foundation
import VMCtlSupport
import VNodes

struct VNodeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vnode",
        abstract: "Fresh VMs from a pool of names (vnode00–vnode30), on cloud images, in parallel.",
        discussion: """
            EXAMPLES:
              vmctl vnode 3:f33 vnode4 vnode18:u18.04 20:u20.04
                  (re)install vnode03 on Fedora 33, vnode04 on the pool's default (the latest
                  Fedora in images/catalog.yaml), vnode18 on Ubuntu 18.04, vnode20 on Ubuntu
                  20.04, all at once; returns when every one answers SSH, or at --timeout
              vmctl vnode 7:d12 --offline     only what is cached (d12: built locally)
              vmctl vnode list --json
              vmctl vnode ssh 7 -- uname -r
              vmctl vnode console vnode07     serial console; Ctrl-] leaves
              vmctl vnode rm --all
            """,
        subcommands: [VNodeInstall.self, VNodeList.self, VNodeSSH.self, VNodeConsole.self, VNodeRm.self],
        defaultSubcommand: VNodeInstall.self)
}

/// Options every vnode command shares: which pools file and which pool.
struct VNodePoolOptions: ParsableArguments {
    @Option(help: "The pools file (stems: prefix, range, distro, network, login key). Default: /etc/vmctl/vnodes.yaml if it exists (env VMCTL_VNODE_POOLS), else one pool vnode00–vnode30.")
    var pools: String?

    @Option(help: "The pool that bare numbers belong to (default: the first).")
    var stem: String?

    func manager() throws -> VNodeManager {
        VNodeManager(state: StateDir.resolve(), pools: try VNodePools.load(pools))
    }
}
