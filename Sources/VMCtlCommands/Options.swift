import ArgumentParser
import Foundation
import VMCtlSupport
import Images
import Machines
import Clusters
import Media

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

/// Prints JSON for `--json`.
func printJSON<T: Encodable>(_ value: T) throws {
    let enc = JSONEncoder()
    enc.outputFormatting = [.prettyPrinted, .sortedKeys]
    enc.dateEncodingStrategy = .iso8601
    print(String(decoding: try enc.encode(value), as: UTF8.self))
}

/// A plain text table with aligned columns.
func renderTable(_ header: [String], _ rows: [[String]]) -> String {
    var widths = header.map(\.count)
    for r in rows { for (i, c) in r.enumerated() where i < widths.count { widths[i] = max(widths[i], c.count) } }
    func line(_ cells: [String]) -> String {
        cells.enumerated().map { i, c in i == cells.count - 1 ? c : c.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
            .joined(separator: "  ")
    }
    return ([line(header)] + rows.map(line)).joined(separator: "\n")
}

/// Prints a line and flushes at once, so piped progress is not held in a buffer.
func say(_ line: String) {
    print(line)
    fflush(nil)
}
