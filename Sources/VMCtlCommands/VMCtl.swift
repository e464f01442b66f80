import ArgumentParser
import Foundation
import Libvirt
import VMCtlSupport
import Images
import Machines
import Clusters
import Media

/// The `vmctl` command tree and its own `main()`: Ctrl-C and SIGTERM become task
/// cancellation, and cancellation tears down what the running command created.
public enum VMCtl {
    public static func main() async {
        // Everything vmctl creates is private unless it says otherwise (FileAccess); image
        // builds give their children the usual 022 back.
        umask(0o077)
        StateDir.onLogsReady { LibvirtEventLoop.setLogFile("\($0)/libvirt.log") }
        StateDir.resolve().useLogIfPresent()
        let args = Array(CommandLine.arguments.dropFirst())
        let command: ParsableCommand
        do {
            command = try VMCtlRoot.parseAsRoot(args)
        } catch {
            let code = VMCtlRoot.exitCode(for: error)
            let text = VMCtlRoot.fullMessage(for: error)
            if code == .success { print(text); exit(0) }
            FileHandle.standardError.write(Data((text + "\n").utf8))
            exit(2)
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
            // Help, version and usage errors from swift-argument-parser.
            let text = VMCtlRoot.fullMessage(for: error)
            if VMCtlRoot.exitCode(for: error) == .success { print(text); return 0 }
            FileHandle.standardError.write(Data((text + "\n").utf8))
            return 2
        }
        FileHandle.standardError.write(Data("vmctl: \(message)\n".utf8))
        return code
    }
}

/// Turns SIGINT/SIGTERM into one cancellation; a second signal exits at once.
final class SignalForwarder: @unchecked Sendable {
    private var sources: [DispatchSourceSignal] = []
    private var fired = false
    private let lock = NSLock()

    init(_ onSignal: @escaping @Sendable () -> Void) {
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let s = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            s.setEventHandler { [weak self] in
                guard let self else { return }
                self.lock.lock()
                let again = self.fired
                self.fired = true
                self.lock.unlock()
                if again { exit(130) }
                FileHandle.standardError.write(Data("vmctl: interrupted, cleaning up (again to abort)\n".utf8))
                onSignal()
            }
            s.resume()
            sources.append(s)
        }
    }

    func stop() { sources.forEach { $0.cancel() } }
}

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
            """,
        subcommands: [ImageCommand.self, ClusterCommand.self, DoctorCommand.self, SwitchDaemonCommand.self])
}
