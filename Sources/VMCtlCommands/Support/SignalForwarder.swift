import Foundation

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
