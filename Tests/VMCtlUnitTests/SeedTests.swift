import CloudInit
import Foundation
import Testing
import Yams

@Suite("cloud-init seed")
struct SeedTests {
    static let config = SeedConfig(
        instanceID: "c1-node1-abc", hostname: "node1",
        user: .init(name: "vmctl", authorizedKeys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKey user"]),
        hostKey: .init(privateKey: "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n",
                       publicKey: "ssh-ed25519 AAAAhost node1"),
        interfaces: [.init(id: "mgmt", mac: "52:54:00:10:01:01", addresses: ["10.0.2.15/24"], gateway: "10.0.2.2"),
                     .init(id: "cluster", mac: "52:54:00:20:01:01", addresses: ["10.77.1.11/24"])],
        hosts: [("10.77.1.11", ["node1"]), ("10.77.1.12", ["node2"])])

    @Test("user-data pins the host key, creates the user, and writes /etc/hosts with every node")
    func userData() throws {
        let text = try Self.config.userData()
        #expect(text.hasPrefix("#cloud-config\n"))
        let doc = try #require(try Yams.load(yaml: text) as? [String: Any])
        let keys = try #require(doc["ssh_keys"] as? [String: String])
        #expect(keys["ed25519_private"] == Self.config.hostKey.privateKey)
        #expect(keys["ed25519_public"] == "ssh-ed25519 AAAAhost node1")
        #expect(doc["ssh_genkeytypes"] as? [String] == ["ed25519"])
        #expect(doc["ssh_deletekeys"] as? Bool == true)
        let user = try #require((doc["users"] as? [[String: Any]])?.first)
        #expect(user["name"] as? String == "vmctl")
        #expect(user["ssh_authorized_keys"] as? [String] == Self.config.user.authorizedKeys)
        let files = try #require(doc["write_files"] as? [[String: Any]])
        let hosts = try #require(files.first { $0["path"] as? String == "/etc/hosts" }?["content"] as? String)
        #expect(hosts.contains("10.77.1.12 node2"))
        #expect(hosts.contains("127.0.1.1 node1"))
    }

    @Test("meta-data asks for dsmode local so keys are written before sshd starts")
    func metaData() throws {
        let doc = try #require(try Yams.load(yaml: try Self.config.metaData()) as? [String: String])
        #expect(doc == ["instance-id": "c1-node1-abc", "local-hostname": "node1", "dsmode": "local"])
    }

    @Test("network-config v2 matches NICs by MAC with static addresses")
    func networkConfig() throws {
        let doc = try #require(try Yams.load(yaml: try Self.config.networkConfig()) as? [String: Any])
        #expect(doc["version"] as? Int == 2)
        let eth = try #require(doc["ethernets"] as? [String: [String: Any]])
        #expect((eth["mgmt"]?["match"] as? [String: String])?["macaddress"] == "52:54:00:10:01:01")
        #expect(eth["mgmt"]?["addresses"] as? [String] == ["10.0.2.15/24"])
        #expect(eth["cluster"]?["addresses"] as? [String] == ["10.77.1.11/24"])
        #expect(eth["cluster"]?["routes"] == nil)
    }

    @Test("the seed ISO has volume id cidata and the three files, read back with xorriso")
    func iso() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("seed-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let iso = "\(dir)/seed.iso"
        let files = try SeedISO.files(for: Self.config)
        try await SeedISO.write(files, to: iso)
        let back = try await SeedISO.read(iso)
        #expect(back == files)
        let data = try Data(contentsOf: URL(fileURLWithPath: iso))
        // ISO 9660 primary volume descriptor at sector 16; volume id at offset 40.
        let volid = String(decoding: data[(16 * 2048 + 40)..<(16 * 2048 + 46)], as: UTF8.self)
        #expect(volid.uppercased() == "CIDATA")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["seed.iso"])
    }
}
