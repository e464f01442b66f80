import Foundation
import Testing
@testable import VMCtlSupport
@testable import Images
@testable import Machines
@testable import Clusters
@testable import Media

/// What a node prints is untrusted: facts are shape-checked, quoted with `|sh`, sent on stdin
/// and, when secret, never shown. Part of the BootstrapTests suite.
extension BootstrapTests {
    /// A fact a compromised node might return: quotes, substitutions, `;`, a newline.
    static func hostile(marker: String) -> String {
        "x'; touch \(marker); ' $(touch \(marker)) `touch \(marker)` \"$HOME\" \\ ; echo pwned\nline2 '\\'' & | > <"
    }

    /// Runs `script` with the real `/bin/sh -c` and returns its stdout bytes and exit status.
    static func sh(_ script: String) throws -> (out: Data, status: Int32) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", script]
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = FileHandle.nullDevice
        try p.run()
        let out = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (out, p.terminationStatus)
    }

    static func tempDir() throws -> URL {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("vmctl-facts-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        return d
    }

    static func step(_ r: Recipe, capture: String) throws -> BootstrapStep {
        try #require(r.bootstrap?.first { $0.capture == capture })
    }

    static func accepts(_ step: BootstrapStep, _ value: String) -> Bool {
        (try? step.checkCapture(value, node: "node2")) != nil
    }

    @Test("{{x|sh}} reaches /bin/sh byte for byte, in a list too; the same value unquoted runs its $(…)")
    func shellFilter() throws {
        let dir = try Self.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let marker = dir.appendingPathComponent("pwned").path
        let evil = Self.hostile(marker: marker)

        let cmd = try Template("printf %s {{x|sh}}").render(["x": .text(evil)])
        let r = try Self.sh(cmd)
        #expect(r.status == 0)
        #expect(r.out == Data(evil.utf8))
        #expect(!FileManager.default.fileExists(atPath: marker))

        // Facts of every node inside {{#nodes}}, and spaces around the filter.
        let nodes = [BootstrapNode(name: "node1", index: 1, address: "10.77.1.11", facts: ["x": evil]),
                     BootstrapNode(name: "node2", index: 2, address: "10.77.1.12", facts: ["x": "it's"])]
        let scope = BootstrapStep.scope(for: nodes[0], nodes: nodes, clusterFacts: [:])
        let list = try Template("{{#nodes}}printf '%s|' {{ facts_x | sh }} {{name|sh}};{{/nodes}}").render(scope)
        let lr = try Self.sh(list)
        #expect(lr.status == 0)
        #expect(lr.out == Data("\(evil)|node1|it's|node2|".utf8))
        #expect(!FileManager.default.fileExists(atPath: marker))
        #expect(try Template("printf %s {{x|sh}}").render(["x": .text("")]) == "printf %s ''")

        // The control: the old recipe's quoting (echo '{{x}}') lets the same value run a command.
        let unsafe = try Template("echo '{{x}}' >/dev/null").render(["x": .text(evil)])
        _ = try Self.sh(unsafe)
        #expect(FileManager.default.fileExists(atPath: marker))
    }

    @Test("filters: unknown filters and keys are errors, NUL refused, Go templates untouched")
    func filterRules() throws {
        let scope: [String: Template.Value] = ["x": .text("v")]
        #expect { try Template("{{x|upper}}").render(scope) } throws: { "\($0)".contains("unknown filter '|upper'") }
        #expect { try Template("{{nope|sh}}").render(scope) } throws: { "\($0)".contains("unknown value '{{nope|sh}}'") }
        #expect { try Template("{{x|sh}}").render(["x": .text("a\u{0}b")]) } throws: { "\($0)".contains("NUL") }
        #expect(try Template("docker ps --format '{{.Names | json}}' {{x|sh}}").render(scope)
                == "docker ps --format '{{.Names | json}}' 'v'")
    }

    @Test("a captured value outside its shape is refused, naming node, step and fact but not the value")
    func shapeRefusal() throws {
        let evil = Self.hostile(marker: "/tmp/m")
        let step = BootstrapStep(on: "all", name: "read the key", run: "cat k", capture: "key", shape: "[A-Za-z0-9+/=]+")
        try step.checkCapture("abc+/=", node: "node2")
        #expect {
            try step.checkCapture(evil, node: "node2")
        } throws: { e in
            let m = "\(e)"
            return m.contains("node2") && m.contains("'read the key'") && m.contains("'key'")
                && !m.contains("pwned") && !m.contains("touch") && !m.contains("\n")
        }
        // A shape must match the whole value, not a piece of it.
        #expect(!Self.accepts(step, "abc; rm -rf /"))
        #expect(!Self.accepts(step, "abc\nrm"))
        #expect(!Self.accepts(BootstrapStep(on: "all", name: "a", run: "r", capture: "k", shape: "a|ab"), "abx"))
        #expect(Self.accepts(BootstrapStep(on: "all", name: "a", run: "r", capture: "k", shape: "a|ab"), "ab"))
        // No shape: anything non-empty passes (and is still quoted by |sh); empty never does.
        #expect(Self.accepts(BootstrapStep(on: "all", name: "a", run: "r", capture: "k"), evil))
        #expect(!Self.accepts(BootstrapStep(on: "all", name: "a", run: "r", capture: "k"), ""))
    }

    @Test("recipe validation: shapes compile, shape/secret need capture, stdin needs run, modes are octal")
    func factValidation() {
        func refused(_ s: BootstrapStep, _ text: String) -> Bool {
            do { try s.validate(recipe: "r"); return false } catch let e as VMCtlError {
                return e.exitCode == 2 && e.message.contains(text) && e.message.contains("'x'")
            } catch { return false }
        }
        #expect(refused(BootstrapStep(on: "all", name: "x", run: "a", capture: "k", shape: "[z-a"), "not a regular expression"))
        #expect(refused(BootstrapStep(on: "all", name: "x", run: "a", shape: "[a-z]+"), "captures nothing"))
        #expect(refused(BootstrapStep(on: "all", name: "x", run: "a", secret: true), "captures nothing"))
        #expect(refused(BootstrapStep(on: "all", name: "x", stdin: "{{k}}", file: "/f", content: "c"), "stdin"))
        #expect(refused(BootstrapStep(on: "all", name: "x", file: "/f", content: "c", mode: "0644; rm"), "octal"))
        #expect(refused(BootstrapStep(on: "all", name: "x", run: "a", capture: "Bad-Name"), "lower-case"))
        #expect(throws: Never.self) {
            try BootstrapStep(on: "all", name: "x", run: "a", stdin: "{{k}}", capture: "k", shape: "[a-z]+", secret: true)
                .validate(recipe: "r")
        }
    }

    @Test("cluster-os-node's shapes take real munge keys, slurmd -C lines and WireGuard keys, and refuse injections")
    func recipeShapes() throws {
        let r = try Self.recipe()
        let munge = try Self.step(r, capture: "munge_key"), slurmd = try Self.step(r, capture: "slurmd_c")
        let wg = try Self.step(r, capture: "wg_pub")
        #expect(munge.isSecret && !slurmd.isSecret && !wg.isSecret)
        #expect(munge.shape != nil && slurmd.shape != nil && wg.shape != nil)

        func random(_ n: Int) -> Data { Data((0..<n).map { _ in UInt8.random(in: 0...255) }) }
        let key = random(1024).base64EncodedString()   // dd bs=1024 count=1 | base64 -w0
        #expect(Self.accepts(munge, key))
        #expect(Self.accepts(munge, random(32).base64EncodedString()) && Self.accepts(munge, random(33).base64EncodedString()))
        for bad in [key + "'; touch /tmp/x; '", key + "\nx", "$(reboot)" + key, String(key.dropLast(3)), "c2hvcnQ="] {
            #expect(!Self.accepts(munge, bad))
        }

        let line = "NodeName=node1 CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=1967"
        #expect(Self.accepts(slurmd, line))
        #expect(Self.accepts(slurmd, "NodeName=gpu-07 CPUs=64 Boards=1 SocketsPerBoard=2 CoresPerSocket=16 ThreadsPerCore=2 "
                                      + "RealMemory=515703 Gres=gpu:nvidia_a100:4(S:0-1)"))
        for bad in [line + "\nUpTime=0-00:01:02", line + "\nSlurmctldProlog=/tmp/evil", line + " NodeAddr=6.6.6.6",
                    line + " # x", line + "'; touch /tmp/x; '", line.replacingOccurrences(of: "node1", with: "$(id)"),
                    "SlurmctldProlog=/tmp/evil", "NodeName=node1 CPUs=2", ""] {
            #expect(!Self.accepts(slurmd, bad))
        }

        for _ in 0..<200 { #expect(Self.accepts(wg, random(32).base64EncodedString())) }
        let pub = random(32).base64EncodedString()
        for bad in [pub + "\n[Peer]", String(pub.dropLast()) + "A", "'" + pub.dropFirst(), String(repeating: "A", count: 42) + "B=",
                    pub + "\nEndpoint = 6.6.6.6:51820", random(33).base64EncodedString()] {
            #expect(!Self.accepts(wg, bad))
        }
    }

    @Test("cluster-os-node sends the munge key on stdin and quotes every value in its commands")
    func recipeQuoting() throws {
        let r = try Self.recipe()
        let install = try #require(r.bootstrap?.first { $0.stdin?.contains("{{munge_key}}") == true })
        #expect(install.run?.contains("munge_key") == false)
        // No bare {{key}} in a command: each is {{key|sh}} (list tags {{#…}}/{{/…}} aside).
        let commands = (r.bootstrap ?? []).compactMap(\.run) + (r.checks ?? []).map(\.run)
        for c in commands {
            #expect(c.range(of: "\\{\\{ *[a-z_][a-z0-9_]* *\\}\\}", options: .regularExpression) == nil, "\(c)")
        }
        #expect(commands.contains { $0.contains("{{count|sh}}") })
    }

    @Test("stdin is rendered and sent as input; file paths are one quoted word; secrets stay out of argv")
    func stdinRendering() throws {
        let r = try Self.recipe()
        let install = try #require(r.bootstrap?.first { $0.stdin != nil })
        let key = Data((0..<1024).map { UInt8($0 % 256) }).base64EncodedString()
        let scope = BootstrapStep.scope(for: Self.nodes[1], nodes: Self.nodes, clusterFacts: ["munge_key": key])
        let (cmd, input, _) = try ClusterManager.bootstrapCommand(install, scope: scope)
        #expect(input == Data(key.utf8))
        #expect(!cmd.contains(key) && cmd.hasPrefix("base64 -d |"))

        let plain = BootstrapStep(on: "all", name: "p", run: "echo {{node|sh}}")
        let p = try ClusterManager.bootstrapCommand(plain, scope: scope)
        #expect(p.command == "echo 'node2'" && p.input == nil)

        let dir = try Self.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = BootstrapStep(on: "all", name: "f", file: "\(dir.path)/{{x}}", content: "c", mode: "0600")
        let f = try ClusterManager.bootstrapCommand(file, scope: ["x": .text("a'; touch \(dir.path)/pwned; 'b")])
        #expect(f.command == "sudo install -D -m 0600 /dev/stdin '\(dir.path)/a'\\''; touch \(dir.path)/pwned; '\\''b'")
        #expect(f.input == Data("c".utf8))
        // What the path argument is to the shell: one word, the literal path.
        let word = try Self.sh("printf %s " + f.command.dropFirst("sudo install -D -m 0600 /dev/stdin ".count))
        #expect(word.out == Data("\(dir.path)/a'; touch \(dir.path)/pwned; 'b".utf8))
        #expect(!FileManager.default.fileExists(atPath: "\(dir.path)/pwned"))
    }

    @Test("redacted() hides secret facts in JSON, keeps the rest; old state files without secret names still load")
    func redaction() throws {
        let key = "c2VjcmV0LW11bmdlLWtleS0xMjM0NTY3ODkw"
        var s = ClusterState(name: "c", spec: ClusterSpec(nodes: 2), phase: .running, imageHash: "h", user: "vmctl",
                             connectURI: "qemu:///system", embeddedRoot: nil, accelerator: .tcg, subnet: "10.77.1.0/24",
                             created: Date(timeIntervalSince1970: 1_700_000_000), nodes: [])
        s.bootstrap = .init(finishedSteps: 3, clusterFacts: ["munge_key": key, "slurmd_c": "NodeName=node1 CPUs=2"],
                            nodeFacts: ["node1": ["munge_key": key, "wg_pub": "PUB1="], "node2": ["wg_pub": "PUB2="]],
                            secretFacts: ["munge_key"])
        let json = String(decoding: try JSONEncoder().encode(s.redacted()), as: UTF8.self)
        #expect(!json.contains(key))
        #expect(json.components(separatedBy: "<redacted>").count == 3)   // cluster and node1
        #expect(json.contains("PUB1=") && json.contains("PUB2=") && json.contains("NodeName=node1 CPUs=2"))
        #expect(s.bootstrap?.clusterFacts["munge_key"] == key)   // the state itself keeps it
        #expect(s.bootstrap?.secretValues == [key])

        let old = #"{"finishedSteps":2,"done":false,"clusterFacts":{"k":"v"},"nodeFacts":{"node1":{"k":"v"}}}"#
        let rec = try JSONDecoder().decode(ClusterState.BootstrapRecord.self, from: Data(old.utf8))
        #expect(rec.secretFacts.isEmpty && rec.clusterFacts == ["k": "v"] && rec.finishedSteps == 2)
        let back = try JSONDecoder().decode(ClusterState.BootstrapRecord.self, from: JSONEncoder().encode(s.bootstrap!))
        #expect(back == s.bootstrap)
    }

    @Test("failure messages withhold a secret step's output and scrub secrets and commands holding them")
    func secretMessages() throws {
        let secret = BootstrapStep(on: "first", name: "make key", run: "gen", capture: "k", secret: true)
        let m = secret.failure(node: "node1", status: 1, stdout: "S3CRET", stderr: "oops S3CRET").message
        #expect(!m.contains("S3CRET") && m.contains("node1") && m.contains("'make key'") && m.contains("withheld"))
        let empty = try #require(throws: VMCtlError.self) { try secret.checkCapture("", node: "n", stderr: "S3CRET") }
        #expect(!empty.message.contains("S3CRET") && empty.message.contains("printed nothing"))
        let open = BootstrapStep(on: "all", name: "use key", run: "use")
        #expect(open.failure(node: "node1", status: 2, stdout: "", stderr: "bad input").message.contains("bad input"))

        let key = String(repeating: "c2VjcmV0", count: 10)   // longer than the 60 characters an SSH error quotes
        let command = "echo '\(key)' | base64 -d"
        let sshError = "run `\(command.prefix(60))` on 127.0.0.1:2222: timed out; echoed \(key)"
        let scrubbed = BootstrapStep.scrub(sshError, secrets: [key], command: command)
        #expect(!scrubbed.contains(String(key.prefix(12))) && scrubbed.contains("timed out") && scrubbed.contains("127.0.0.1:2222"))
        #expect(BootstrapStep.scrub("plain \(key)", secrets: [key]) == "plain <redacted>")
        #expect(BootstrapStep.scrub("run `ls` failed", secrets: [key], command: "ls") == "run `ls` failed")
    }
}
