import Foundation
import Testing
@testable import VMCtlSupport
@testable import Images
@testable import Machines
@testable import Clusters
@testable import Media

@Suite("Bootstrap as data: templates, roles, slurm.conf and WireGuard rendering")
struct BootstrapTests {
    static let nodes = [
        BootstrapNode(name: "node1", index: 1, address: "10.77.1.11",
                      facts: ["slurmd_c": "NodeName=node1 CPUs=2 Boards=1 SocketsPerBoard=2 CoresPerSocket=1 ThreadsPerCore=1 RealMemory=1967",
                              "wg_pub": "PUB1="]),
        BootstrapNode(name: "node2", index: 2, address: "10.77.1.12",
                      facts: ["slurmd_c": "NodeName=node2 CPUs=2 Boards=1 SocketsPerBoard=2 CoresPerSocket=1 ThreadsPerCore=1 RealMemory=1955",
                              "wg_pub": "PUB2="]),
        BootstrapNode(name: "node3", index: 3, address: "10.77.1.13", facts: ["slurmd_c": "NodeName=node3 CPUs=1 RealMemory=900", "wg_pub": "PUB3="]),
    ]

    static func recipe() throws -> Recipe {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("images").path
        return try RecipeStore(directory: dir).load("cluster-os-node")
    }

    static func step(_ r: Recipe, file: String) throws -> BootstrapStep {
        try #require(r.bootstrap?.first { $0.file == file })
    }

    @Test("values, lists with outer scope, unknown keys refused, foreign {{…}} left alone")
    func template() throws {
        let scope: [String: Template.Value] = ["who": .text("x"), "items": .list([["n": .text("1")], ["n": .text("2")]])]
        #expect(try Template("a {{who}} {{#items}}[{{n}}{{who}}]{{/items}} b").render(scope) == "a x [1x][2x] b")
        #expect(throws: VMCtlError.self) { try Template("{{nope}}").render(scope) }
        #expect(throws: VMCtlError.self) { try Template("{{#items}} never closed").render(scope) }
        #expect(try Template("docker ps --format '{{.Names}}'").render(scope) == "docker ps --format '{{.Names}}'")
    }

    @Test("steps select all, first, rest, roles and node names")
    func selection() throws {
        let roles = ["controller": ["first"], "workers": ["rest"]]
        #expect(try BootstrapStep.select("controller", nodes: Self.nodes, roles: roles).map(\.name) == ["node1"])
        #expect(try BootstrapStep.select("workers", nodes: Self.nodes, roles: roles).map(\.name) == ["node2", "node3"])
        #expect(try BootstrapStep.select("all", nodes: Self.nodes, roles: roles).count == 3)
        #expect(try BootstrapStep.select("node2", nodes: Self.nodes, roles: roles).map(\.name) == ["node2"])
        #expect(throws: VMCtlError.self) { try BootstrapStep.select("gpu", nodes: Self.nodes, roles: roles) }
    }

    @Test("cluster-os-node layers on debian-12 and keeps its own user, roles, steps and checks")
    func layering() throws {
        let r = try Self.recipe()
        #expect(r.packages?.contains("openssh-server") == true)   // from debian-12
        #expect(r.packages?.contains("slurm-wlm") == true)
        #expect(r.resolvedUser == "clusteros")
        #expect(r.roles?["controller"] == ["first"])
        #expect(r.checks?.contains { $0.name == "cloud-init finished" } == true)   // inherited
        #expect(r.checks?.contains { $0.name.hasPrefix("srun -N") } == true)
        #expect((r.bootstrap?.count ?? 0) >= 8)
    }

    @Test("slurm.conf lists every node with what slurmd -C reported, and the first node as controller")
    func slurmConf() throws {
        let step = try Self.step(try Self.recipe(), file: "/etc/slurm/slurm.conf")
        let scope = BootstrapStep.scope(for: Self.nodes[1], nodes: Self.nodes, clusterFacts: [:])
        let conf = try Template(try #require(step.content)).render(scope)
        let lines = conf.split(separator: "\n").map(String.init)
        #expect(lines.contains("SlurmctldHost=node1"))
        #expect(lines.contains("NodeName=node1 CPUs=2 Boards=1 SocketsPerBoard=2 CoresPerSocket=1 ThreadsPerCore=1 RealMemory=1967 NodeAddr=10.77.1.11"))
        #expect(lines.contains("NodeName=node3 CPUs=1 RealMemory=900 NodeAddr=10.77.1.13"))
        #expect(lines.filter { $0.hasPrefix("NodeName=") }.count == 3)
        #expect(lines.last == "PartitionName=main Nodes=ALL Default=YES MaxTime=INFINITE State=UP")
        #expect(lines.contains("ProctrackType=proctrack/cgroup"))
    }

    @Test("wg0.conf gives each node its address and every other node as a peer")
    func wireguard() throws {
        let step = try Self.step(try Self.recipe(), file: "/etc/wireguard/wg0.conf")
        #expect(step.mode == "0600")
        let scope = BootstrapStep.scope(for: Self.nodes[0], nodes: Self.nodes, clusterFacts: [:])
        let conf = try Template(try #require(step.content)).render(scope)
        #expect(conf.contains("Address = 10.99.0.1/24"))
        #expect(conf.components(separatedBy: "[Peer]").count == 3)   // two peers
        #expect(conf.contains("PublicKey = PUB2=\nAllowedIPs = 10.99.0.2/32\nEndpoint = 10.77.1.12:51820"))
        #expect(conf.contains("PublicKey = PUB3="))
        #expect(!conf.contains("PUB1="))   // not its own peer
        #expect(!conf.contains("PrivateKey"))   // the key stays in a file on the node
    }

    @Test("bootstrap steps must run or write exactly one thing")
    func stepValidation() {
        #expect(throws: VMCtlError.self) { try BootstrapStep(on: "all", name: "x").validate(recipe: "r") }
        #expect(throws: VMCtlError.self) { try BootstrapStep(on: "all", name: "x", run: "a", file: "/b").validate(recipe: "r") }
        #expect(throws: VMCtlError.self) { try BootstrapStep(on: "all", name: "x", file: "/b").validate(recipe: "r") }
        #expect(throws: VMCtlError.self) { try BootstrapStep(on: "all", name: "x", file: "/b", content: "c", capture: "k").validate(recipe: "r") }
    }
}
