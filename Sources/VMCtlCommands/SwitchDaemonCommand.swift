import ArgumentParser
import Foundation
import Machines

/// The cluster segment's switch, run detached by `cluster up`. Not for direct use.
struct SwitchDaemonCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "switch-daemon",
        abstract: "Run a cluster's L2 switch (started by `cluster up`).", shouldDisplay: false)

    @Option(help: "UNIX socket QEMU connects to.")
    var socket: String

    @Option(help: "Where to write the pid.")
    var pidfile: String

    @Option(help: "The cluster's nodes directory: keeps each NODE/serial.log under 16 MiB (VMCTL_SERIAL_LOG_CAP, test-only).")
    var logs: String?

    func run() throws {
        let rotator = logs.map { SerialLogRotator(nodesDirectory: $0, cap: SerialLogRotator.cap()) }
        try FrameSwitch(socketPath: socket).serveForever(pidFile: pidfile, logs: rotator)
    }
}
