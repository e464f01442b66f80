import Blocking
import Foundation
internal import Libvirt
import VMCtlSupport

/// What the user asked for with `--accel`.
public enum AccelRequest: String, Sendable, CaseIterable, Codable {
    case auto, kvm, tcg
}

/// Decides between KVM and TCG. `auto` uses KVM only where it really boots a standard
/// guest kernel: some hosts expose /dev/kvm yet hang every stock kernel (nested PVM).
/// The verdict is cached per host kernel; the probe is bounded and never hangs.
public struct AccelProbe: Sendable {
    public let state: StateDir
    /// How long the kernel gets to reach its root-mount panic under KVM.
    public var probeTimeout: Duration = .seconds(15)

    public init(state: StateDir) { self.state = state }

    public struct Verdict: Codable, Sendable, Equatable {
        public var accelerator: Accelerator
        public var reason: String
        public var hostKernel: String
    }

    static var hostKernel: String {
        var u = utsname()
        uname(&u)
        return withUnsafeBytes(of: &u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }

    public static var kvmUsable: Bool { access("/dev/kvm", R_OK | W_OK) == 0 }

    private var cachePath: String { "\(state.cache)/accel-\(Self.hostKernel).json" }

    /// The accelerator to use for `request`, probing with `kernel` if needed.
    public func resolve(_ request: AccelRequest, kernel: String) async throws -> Verdict {
        switch request {
        case .tcg:
            return Verdict(accelerator: .tcg, reason: "requested", hostKernel: Self.hostKernel)
        case .kvm:
            guard Self.kvmUsable else {
                throw VMCtlError.usage("--accel kvm: /dev/kvm is missing or not writable for this user; use --accel auto or tcg")
            }
            return Verdict(accelerator: .kvm, reason: "requested", hostKernel: Self.hostKernel)
        case .auto:
            guard Self.kvmUsable else {
                return Verdict(accelerator: .tcg, reason: "no usable /dev/kvm", hostKernel: Self.hostKernel)
            }
            if let cached = try? AtomicFile.readJSON(Verdict.self, from: cachePath) { return cached }
            let v = try await probe(kernel: kernel)
            try? AtomicFile.writeJSON(v, to: cachePath)
            return v
        }
    }

    /// The cached verdict, if any (for `doctor`).
    public func cached() -> Verdict? { try? AtomicFile.readJSON(Verdict.self, from: cachePath) }

    /// Boots `kernel` under KVM with no root disk: a working KVM reaches the kernel's
    /// "unable to mount root" panic within a second or two; a broken one prints nothing.
    public func probe(kernel: String) async throws -> Verdict {
        let qemu = try Command.require("qemu-system-x86_64")
        let dir = try PrivateTemp.makeDirectory(in: state.cache, prefix: "accel-probe")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = "\(dir)/serial.log"
        FileManager.default.createFile(atPath: log, contents: nil)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: qemu)
        p.arguments = ["-accel", "kvm", "-machine", "q35", "-cpu", "host", "-m", "256", "-smp", "1",
                       "-display", "none", "-nodefaults", "-no-reboot", "-serial", "file:\(log)",
                       "-kernel", kernel, "-append", "console=ttyS0 panic=-1 earlyprintk=serial"]
        let errLog = "\(dir)/stderr.log"
        FileManager.default.createFile(atPath: errLog, contents: nil)
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle(forWritingAtPath: errLog)
        p.standardInput = FileHandle.nullDevice
        try p.run()
        let timeout = probeTimeout
        let outcome = try await onOwnThreadCancellable("accel.probe") { flag in
            SerialLogWatcher.wait(path: log, from: 0, marker: "Kernel panic", deadline: .now + timeout, cancel: flag,
                                  stopIf: { p.isRunning ? nil : "qemu exited with status \(p.terminationStatus)" })
        }
        if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
        let kernelName = Self.hostKernel
        switch outcome {
        case .found:
            return Verdict(accelerator: .kvm, reason: "KVM boots a stock kernel", hostKernel: kernelName)
        case .timedOut:
            return Verdict(accelerator: .tcg, reason: "KVM hangs a stock kernel on this host (no progress in \(timeout))",
                           hostKernel: kernelName)
        case .stopped(let why):
            let said = ((try? String(contentsOfFile: errLog, encoding: .utf8)) ?? "")
                .split(separator: "\n").first { $0.contains("error") }.map { ": \($0)" } ?? ""
            return Verdict(accelerator: .tcg, reason: "KVM cannot run a guest here (\(why)\(said))", hostKernel: kernelName)
        case .cancelled:
            throw CancellationError()
        }
    }
}
