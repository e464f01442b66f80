import Foundation
import Testing
@testable import VMCtlSupport
@testable import Images
@testable import Machines
@testable import Clusters
@testable import Media

extension RealVMTests {
    @Test("console through libvirt's stream (the remote-host path): started paused, stream attached, resumed; the log vmctl writes holds the boot from the kernel's first line and the seed's markers")
    func consoleThroughStream() async throws {
        try await VMFixture.ensureImage()
        let name = "it-stream"
        try await VMFixture.withCluster(name) {
            let r = try await VMFixture.vmctl(["cluster", "up", "1", "--name", name, "--memory", "1G"],
                                             env: ["VMCTL_CONSOLE": "stream"])
            #expect(r.status == 0, "\(r.out)\n\(r.err)")
            let log = "\(VMFixture.state.cluster(name))/nodes/node1/serial.log"
            let text = try String(decoding: Data(contentsOf: URL(fileURLWithPath: log)), as: UTF8.self)
            // Nothing before the stream was attached is lost: the initramfs's first line is the
            // log's first line (at loglevel=4 the kernel itself prints nothing earlier).
            #expect(text.hasPrefix("Loading, please wait"), "\(text.prefix(600))")
            #expect(text.contains(Readiness.bootingMarker))
            let ready = try #require(text.split(separator: "\n").first { $0.contains(Readiness.readyLinePrefix) })
            #expect(Readiness.parse(String(ready))?.addresses.contains("10.0.2.15/24") == true, "\(ready)")
            // QEMU was given no log file: vmctl wrote this one from the stream.
            let xml = try await VMFixture.run("/bin/sh", ["-c", "cat \(VMFixture.state.cluster(name))/libvirt/etc/qemu/*.xml 2>/dev/null || true"])
            #expect(!xml.isEmpty && !xml.contains("serial.log"), "\(xml.prefix(400))")
            let t = try await VMFixture.vmctl(["cluster", "exec", "--name", name, "--", "cat", "/etc/hostname"])
            #expect(t.status == 0 && t.out.contains("node1"), "\(t.out)\n\(t.err)")
        }
    }
}
