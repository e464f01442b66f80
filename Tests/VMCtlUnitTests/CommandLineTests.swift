import ArgumentParser
import Foundation
import Testing
@testable import VMCtlCommands
@testable import VMCtlSupport
@testable import Clusters

@Suite("Command line: --version; cluster up checks its arguments before it builds an image")
struct CommandLineTests {
    @Test("swarm's case and verb are parsed as enums; a bad one is a usage error led by `vmctl: ` like every other error")
    func swarmVerbs() throws {
        let ok = try #require(try VMCtlRoot.parseAsRoot(["swarm", "case01", "exec-list"]) as? SwarmCase)
        #expect(ok.caseName == .case01 && ok.verb == .execList)
        for (args, says) in [(["swarm", "case09", "up"], "vmctl: The value 'case09' is invalid for '<case-name>'"),
                             (["swarm", "case00", "frobnicate"], "vmctl: The value 'frobnicate' is invalid for '<verb>'"),
                             (["swarm", "case00", "exec"], "vmctl: exec needs a container"),
                             (["cluster", "up", "3", "--bogus"], "vmctl: Unknown option '--bogus'")] {
            do {
                _ = try VMCtlRoot.parseAsRoot(args)
                Issue.record("\(args) parsed")
            } catch {
                #expect(VMCtlRoot.exitCode(for: error) != .success)
                let text = VMCtl.usageText(VMCtlRoot.fullMessage(for: error))
                #expect(text.hasPrefix(says) && !text.contains("Error:"), "\(args): \(text)")
            }
        }
    }

    @Test("vmctl --version prints the version (MAJOR.MINOR.PATCH) and exits 0")
    func version() {
        #expect(VMCtlVersion.current.range(of: #"^[0-9]+\.[0-9]+\.[0-9]+$"#, options: .regularExpression) != nil)
        do {
            _ = try VMCtlRoot.parseAsRoot(["--version"])
            Issue.record("--version parsed as a command")
        } catch {
            #expect(VMCtlRoot.exitCode(for: error) == .success)
            #expect(VMCtlRoot.fullMessage(for: error) == VMCtlVersion.current)
        }
    }

    @Test("cluster up: a bad argument exits 2 before the image is looked at or built")
    func upChecksFirst() async throws {
        // An image with no recipe: even a regression could not start a real build here.
        let image = ["--image", "no-such-recipe"]
        let cases: [([String], String)] = [
            (["0"], "at least 1 node"),
            (["1", "--cpus", "99"], "--cpus"),
            (["1", "--memory", "100M"], "--memory"),
            (["1", "--disk", "1G"], "--disk"),
            (["1", "--memory", "99999999T"], "--memory"),
            (["1", "--name", "Bad_Name"], "DNS label"),
            (["1", "--connect", "qemu+ssh://h/system"], "remote libvirt URIs"),
        ]
        for (args, message) in cases {
            let up = try ClusterUp.parse(args + image)
            #expect(throws: VMCtlError.self) { _ = try up.checkedSpec() }
            do {
                try await up.run()
                Issue.record("\(args) accepted")
            } catch let e as VMCtlError {
                #expect(e.exitCode == 2, "\(args)")
                #expect(e.message.contains(message), "\(args): \(e.message)")
                #expect(!e.message.contains("not built"), "\(args): \(e.message)")
            }
        }
        let bad = try ClusterUp.parse(["1", "--image", "../x"])
        #expect(throws: VMCtlError.self) { _ = try bad.checkedSpec() }
        let good = try ClusterUp.parse(["2", "--memory", "256M", "--name", "ut-spec"])
        #expect(try good.checkedSpec() == ClusterSpec(nodes: 2, image: "debian-12", memoryMiB: 256))
    }

    @Test("cluster up with an image that is neither built nor has a recipe: one line, exit 2, says both")
    func upNoRecipe() async throws {
        let up = try ClusterUp.parse(["1", "--name", "ut-norecipe", "--memory", "256M", "--image", "no-such-recipe"])
        do {
            try await up.run()
            Issue.record("accepted")
        } catch let e as VMCtlError {
            #expect(e.exitCode == 2)
            #expect(e.message.contains("image 'no-such-recipe' is not built"), "\(e.message)")
            #expect(e.message.contains("no recipe 'no-such-recipe'"), "\(e.message)")
            #expect(!e.message.contains("\n"))
        }
    }
}
