import Foundation

/// A child process run to completion: the tools vmctl shells out to (xorrisofs, qemu-img,
/// mmdebstrap, mkfs.ext4). Output is captured; the status is checked by the caller or `checked()`.
public struct Command: Sendable {
    public var tool: String
    public var arguments: [String]
    public var environment: [String: String]?
    public var workingDirectory: String?
    /// The child's umask, when it must differ from vmctl's own 077 (image builds: files made
    /// inside a guest's root keep their usual modes).
    public var umask: mode_t?

    public init(_ tool: String, _ arguments: [String], environment: [String: String]? = nil, workingDirectory: String? = nil,
                umask: mode_t? = nil) {
        self.tool = tool; self.arguments = arguments; self.environment = environment; self.workingDirectory = workingDirectory
        self.umask = umask
    }

    /// The umask image-build children run with.
    public static let guestUmask: mode_t = 0o022

    /// What a finished command printed and returned.
    public struct Output: Sendable {
        public var status: Int32
        public var stdout: String
        public var stderr: String
    }

    /// Debian package that provides each tool vmctl runs, for "how to fix" messages.
    public static let packages: [String: String] = [
        "xorrisofs": "xorriso", "xorriso": "xorriso", "qemu-img": "qemu-utils",
        "qemu-system-x86_64": "qemu-system-x86", "mmdebstrap": "mmdebstrap", "mkfs.ext4": "e2fsprogs",
        "vde_switch": "vde2", "ssh": "openssh-client", "ssh-keygen": "openssh-client",
        "mcopy": "mtools", "mformat": "mtools", "mmd": "mtools", "cpio": "cpio", "gzip": "gzip", "sfdisk": "fdisk", "dnsmasq": "dnsmasq-base", "ip": "iproute2", "curl": "curl", "python3": "python3",
    ]

    /// The absolute path of `tool`, searching PATH and the sbin directories (mkfs.ext4 lives there).
    public static func locate(_ tool: String) -> String? {
        if tool.hasPrefix("/") { return FileManager.default.isExecutableFile(atPath: tool) ? tool : nil }
        let path = (ProcessInfo.processInfo.environment["PATH"] ?? "") + ":/usr/local/sbin:/usr/sbin:/sbin:/usr/bin:/bin"
        for dir in path.split(separator: ":") {
            let p = "\(dir)/\(tool)"
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        return nil
    }

    /// The path of `tool`, or an error that says which package to install.
    public static func require(_ tool: String) throws -> String {
        guard let p = locate(tool) else { throw CommandError.missingTool(tool, package: packages[tool]) }
        return p
    }

    /// Runs the command and waits. Blocks the calling thread.
    public func run(input: Data? = nil) throws -> Output {
        let p = Process()
        let path = try Self.require(tool)
        if let mask = umask {
            // Process cannot set a child's umask: a shell sets it and execs the tool.
            p.executableURL = URL(fileURLWithPath: "/bin/sh")
            p.arguments = ["-c", "umask \(String(mask, radix: 8)) && exec \"$0\" \"$@\"", path] + arguments
        } else {
            p.executableURL = URL(fileURLWithPath: path)
            p.arguments = arguments
        }
        if let environment { p.environment = environment }
        if let workingDirectory { p.currentDirectoryURL = URL(fileURLWithPath: workingDirectory) }
        let out = Pipe(), err = Pipe(), inp = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = input == nil ? FileHandle.nullDevice : inp
        try p.run()
        // Drain both pipes concurrently so a chatty tool never blocks on a full pipe.
        let errData = DataBox()
        let reader = Thread { errData.set(err.fileHandleForReading.readDataToEndOfFile()) }
        reader.start()
        if let input {
            inp.fileHandleForWriting.write(input)
            try? inp.fileHandleForWriting.close()
        }
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        while !errData.done { usleep(1000) }
        return Output(status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                      stderr: String(decoding: errData.get(), as: UTF8.self))
    }

    /// Runs the command and throws unless it exits 0; returns its stdout.
    @discardableResult
    public func checked(input: Data? = nil) throws -> String {
        let o = try run(input: input)
        guard o.status == 0 else {
            throw CommandError.failed(tool: tool, arguments: arguments, status: o.status,
                                      stderr: o.stderr.isEmpty ? o.stdout : o.stderr)
        }
        return o.stdout
    }

    /// Runs on a thread of its own.
    @discardableResult
    public func checkedAsync(input: Data? = nil) async throws -> String {
        let c = self
        return try await onOwnThread("cmd.\(tool)") { try c.checked(input: input) }
    }
}

private final class DataBox: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()
    private(set) var done = false
    func set(_ d: Data) { lock.lock(); data = d; done = true; lock.unlock() }
    func get() -> Data { lock.lock(); defer { lock.unlock() }; return data }
}

/// A tool that is missing or failed.
public enum CommandError: Error, CustomStringConvertible, Sendable {
    case missingTool(String, package: String?)
    case failed(tool: String, arguments: [String], status: Int32, stderr: String)

    public var description: String {
        switch self {
        case .missingTool(let t, let pkg):
            return "\(t) not found: run scripts/install-prereqs.sh" + (pkg.map { " (Debian package \($0))" } ?? "")
        case .failed(let t, _, let status, let stderr):
            let tail = stderr.split(separator: "\n").suffix(6).joined(separator: "\n  ")
            return "\(t) failed with status \(status)" + (tail.isEmpty ? "" : ":\n  \(tail)")
        }
    }
}
