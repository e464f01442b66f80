import ArgumentParser
import VMCtlSupport

/// A machine's shape, for every command that makes machines (`cluster up`, `vnode`, `swarm init`).
struct MachineShapeOptions: ParsableArguments {
    @Option(help: "vCPUs per node.")
    var cpus = 2

    @Option(help: "Memory per node (e.g. 2G, 1536M).")
    var memory = "2G"

    @Option(help: "Disk per node, thin-provisioned (e.g. 20G; default 20G for a cluster's node, 10G for a vnode).")
    var disk: String?

    /// The memory asked for, in MiB; a size that does not parse is a usage error.
    func memoryMiB() throws -> Int {
        // ByteSize.parse refuses what is not a positive size of at most 16 EiB (nothing that overflows).
        guard let bytes = ByteSize.parse(memory) else {
            throw VMCtlError.usage("--memory takes a size from 256M up, like 2G or 1536M (got '\(memory)')")
        }
        return Int(bytes >> 20)
    }

    /// The disk asked for (else `defaultSize`), in GiB; a size that does not parse is a usage error.
    func diskGiB(default defaultSize: String) throws -> Int {
        let text = disk ?? defaultSize
        guard let bytes = ByteSize.parse(text) else {
            throw VMCtlError.usage("--disk takes a size from 3G to 4T, like 20G (got '\(text)')")
        }
        return Int(bytes >> 30)
    }
}
