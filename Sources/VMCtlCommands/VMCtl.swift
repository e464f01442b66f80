import ArgumentParser
import Foundation
import VMCtlSupport
import Machines

/// The `vmctl` command tree and its own `main()`: Ctrl-C and SIGTERM become task
/// cancellation, and cancellation tears down what the running command created.
public enum VMCtl {
    public static func main() async {
        // Everything vmctl creates is private unless it says otherwise (FileAccess); image
        // builds give their children the usual 022 back.
        umask(0o077)
        MemoryLevers.disableHugePagesForChildren()
        StateDir.onLogsReady { MachineHost.logLibvirt(to: "\($0)/libvirt.log") }
        StateDir.resolve().useLogIfPresent()
        let args = Array(CommandLine.arguments.dropFirst())
        let command: ParsableCommand
        do {
            command = try VMCtlRoot.parseAsRoot(args)
        } catch {
            exit(report(error))
        }
        let task = Task<Void, Error> {
            if var c = command as? AsyncParsableCommand { try await c.run() } else {
                var c = command
                try c.run()
            }
        }
        let signals = SignalForwarder { task.cancel() }
        let result = await task.result
        signals.stop()
        switch result {
        case .success:
            exit(0)
        case .failure(let error):
            exit(report(error))
        }
    }

    /// swift-argument-parser's message for a usage error, led by `vmctl: ` as every other error
    /// is, instead of its own `Error: `.
    static func usageText(_ text: String) -> String {
        text.hasPrefix("Error: ") ? "vmctl: " + text.dropFirst("Error: ".count) : "vmctl: " + text
    }

    /// Prints an error a person can act on; returns the exit status its code maps to.
    static func report(_ error: Error) -> Int32 {
        let (message, code): (String, Int32)
        switch error {
        case let e as VMCtlError: (message, code) = (e.message, e.exitCode)
        case is CancellationError:
            (message, code) = ("interrupted; what this command created was removed", VMCtlError.Code.cancelled.exitStatus)
        case let e as ExitCode: return e.rawValue
        case let e as CustomStringConvertible where !(String(reflecting: type(of: error)).hasPrefix("ArgumentParser")):
            // Errors of the layers below (libvirt, SSH, a node) are classified; each exits 1.
            (message, code) = (e.description, VMCtlError.Code(of: error).exitStatus)
        default:
            // Help and version (printed, exit 0), and usage errors from swift-argument-parser: the
            // same `vmctl: ` line as every other failure, then its usage and help lines.
            let text = VMCtlRoot.fullMessage(for: error)
            if VMCtlRoot.exitCode(for: error) == .success { print(text); return 0 }
            FileHandle.standardError.write(Data((usageText(text) + "\n").utf8))
            return 2
        }
        FileHandle.standardError.write(Data("vmctl: \(message)\n".utf8))
        return code
    }
}
