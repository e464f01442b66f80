import Blocking
import CLibvirt
import Foundation
import Synchronization

/// libvirt's default event loop, run on one dedicated thread for the life of the process.
/// The embedded QEMU driver needs it (monitor I/O, domain events).
public enum LibvirtEventLoop {
    private static let started = Mutex(false)
    private static let logFile = Mutex<String?>(nil)

    /// Where libvirt's own warnings go: a file in a directory the caller has checked is its
    /// own (never a predictable /tmp path). Without one, only errors reach stderr.
    public static func setLogFile(_ path: String) {
        logFile.withLock { $0 = path }
    }

    /// Registers the default implementation and starts its thread; later calls do nothing.
    /// Must run before the first connection is opened.
    public static func start() throws {
        try started.withLock { started in
            guard !started else { return }
            silenceDefaultErrorPrinter()
            // libvirt's own log lines (warnings from the embedded driver) go to a file, not
            // the user's terminal; LIBVIRT_LOG_OUTPUTS still overrides.
            if getenv("LIBVIRT_LOG_OUTPUTS") == nil {
                let output = logFile.withLock { $0 }.map { "3:file:\($0)" } ?? "4:stderr"
                setenv("LIBVIRT_LOG_OUTPUTS", output, 1)
            }
            try check(virInitialize(), "initialise libvirt")
            try check(virEventRegisterDefaultImpl(), "register libvirt's event loop")
            startThread("libvirt-events") {
                while true {
                    if virEventRunDefaultImpl() < 0 {
                        // Nothing useful to do with the error here; avoid a hot spin.
                        Thread.sleep(forTimeInterval: 0.05)
                    }
                }
            }
            started = true
        }
    }
}
