import ArgumentParser
import Foundation
import VMCtlSupport
import Machines

/// Flags every command that touches libvirt or prints shares.
struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: "libvirt URI (default: an embedded driver per cluster; env VMCTL_CONNECT). Local URIs only.")
    var connect: String?

    @Option(name: .long, help: "Acceleration: auto (KVM only where it really boots), kvm, or tcg.")
    var accel: AccelRequest = .auto

    @Flag(name: .long, help: "Machine-readable JSON output.")
    var json = false

    @Flag(name: .long, help: "More detail on progress.")
    var verbose = false

    var connectURI: String? { connect ?? ProcessInfo.processInfo.environment["VMCTL_CONNECT"] }
    var state: StateDir { StateDir.resolve() }
}

extension AccelRequest: ExpressibleByArgument {}
