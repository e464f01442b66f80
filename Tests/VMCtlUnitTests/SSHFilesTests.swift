import Foundation
import SSH
import Testing

@Suite("Keys, host-key pins, known_hosts and ssh_config")
struct SSHFilesTests {
    @Test("a generated key pair is 0600 and its public half parses as a pin that matches its own blob")
    func keyPair() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("keys-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let kp = try await KeyPair.generate(at: "\(dir)/id", comment: "test")
        let mode = try FileManager.default.attributesOfItem(atPath: kp.privateKeyPath)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        let pin = try kp.pin()
        #expect(pin.type == "ssh-ed25519")
        #expect(pin.matches(blob: try #require(Data(base64Encoded: pin.base64))))
        let other = try await KeyPair.generate(at: "\(dir)/other", comment: "other").pin()
        #expect(!pin.matches(blob: try #require(Data(base64Encoded: other.base64))))
    }

    @Test("pins refuse lines that are not keys or whose blob names another type")
    func pinParsing() throws {
        #expect(throws: SSHError.self) { try HostKeyPin(openSSHLine: "garbage") }
        #expect(throws: SSHError.self) { try HostKeyPin(openSSHLine: "ssh-ed25519 !!!notbase64") }
        // A valid ed25519 blob presented as ssh-rsa.
        let blob = "AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f"
        #expect(throws: SSHError.self) { try HostKeyPin(openSSHLine: "ssh-rsa \(blob)") }
        #expect(try HostKeyPin(openSSHLine: "ssh-ed25519 \(blob) c").base64 == blob)
    }

    @Test("known_hosts pins each node under [127.0.0.1]:port and its alias; ssh_config is strict")
    func files() {
        let pin = HostKeyPin(type: "ssh-ed25519", base64: "AAAAkey")
        let hosts = [OpenSSHFiles.Host(alias: "node1", hostName: "127.0.0.1", port: 2223, user: "vmctl", hostKey: pin),
                     OpenSSHFiles.Host(alias: "node2", hostName: "127.0.0.1", port: 22, user: "vmctl", hostKey: pin)]
        let kh = OpenSSHFiles.knownHosts(hosts)
        #expect(kh == "[127.0.0.1]:2223,node1 ssh-ed25519 AAAAkey\n127.0.0.1,node2 ssh-ed25519 AAAAkey\n")
        let cfg = OpenSSHFiles.sshConfig(hosts, identityFile: "/k/id", knownHostsPath: "/k/known_hosts")
        #expect(cfg.contains("Host node1\n  HostName 127.0.0.1\n  Port 2223\n  User vmctl"))
        #expect(cfg.contains("StrictHostKeyChecking yes"))
        #expect(cfg.contains("UserKnownHostsFile \"/k/known_hosts\""))
        #expect(cfg.contains("HostKeyAlias [127.0.0.1]:2223"))
        #expect(!cfg.contains("StrictHostKeyChecking no"))
    }
}
