import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
@testable import Libvirt
import Testing

@Suite("Domain XML from typed values")
struct DomainXMLTests {
    static func spec(name: String = "c1-node1", nics: [DomainSpec.NIC]? = nil) -> DomainSpec {
        DomainSpec(
            name: name, accelerator: .tcg, memoryMiB: 1024, vcpus: 2, cpuModel: "qemu64",
            boot: .init(kernel: "/img/vmlinuz", initrd: "/img/initrd.img", cmdline: "root=/dev/vda rw console=ttyS0"),
            disks: [.init(path: "/n/disk.qcow2", format: .qcow2, target: "vda"),
                    .init(path: "/n/seed.iso", format: .raw, target: "vdb", readOnly: true)],
            nics: nics ?? [.init(mode: .user(.init(forwards: [.init(host: 2223, guest: 22)])), mac: "52:54:00:10:01:01"),
                           .init(mode: .stream(socket: "/c/switch.sock"), mac: "52:54:00:20:01:01")],
            serialLog: "/n/serial.log", vncPort: nil, vncSocket: "/n/vnc/vnc.sock", labels: ["cluster": "c1", "node": "node1"])
    }

    @Test("user-mode NICs are restricted and forward SSH from 127.0.0.1 only, on explicit pcie.0 slots")
    func userModeNIC() {
        let args = Self.spec().qemuArguments()
        #expect(args.contains("user,id=vmnet0,restrict=on,hostfwd=tcp:127.0.0.1:2223-:22"))
        #expect(args.contains("virtio-net-pci,netdev=vmnet0,mac=52:54:00:10:01:01,bus=pcie.0,addr=0x10"))
        #expect(args.contains("stream,id=vmnet1,server=off,addr.type=unix,addr.path=/c/switch.sock"))
        #expect(args.contains("virtio-net-pci,netdev=vmnet1,mac=52:54:00:20:01:01,bus=pcie.0,addr=0x11"))
        let open = DomainSpec.NIC(mode: .user(.init(forwards: [], restrict: false)), mac: "52:54:00:00:00:01")
        #expect(Self.spec(nics: [open]).qemuArguments().contains("user,id=vmnet0,restrict=off"))
    }

    @Test("commas in socket paths are doubled for QEMU's option parser")
    func commaEscaping() {
        let s = Self.spec(nics: [.init(mode: .stream(socket: "/a,b/s.sock"), mac: "52:54:00:00:00:02")])
        #expect(s.qemuArguments().contains("stream,id=vmnet0,server=off,addr.type=unix,addr.path=/a,,b/s.sock"))
    }

    @Test("every value is escaped: markup in a label or path cannot break the document")
    func escaping() throws {
        var s = Self.spec()
        s.labels["note"] = "<b>&\"quoted\"' </domain>"
        s.serialLog = "/tmp/a&b<c>.log"
        let xml = s.xml()
        #expect(xml.contains("&lt;b&gt;&amp;&quot;quoted&quot;&apos; &lt;/domain&gt;"))
        #expect(xml.contains("/tmp/a&amp;b&lt;c&gt;.log"))
        #expect(!xml.contains("<b>"))
        // A real XML parser agrees it is well-formed and reads the values back.
        let doc = try XMLDocument(xmlString: xml)
        let label = try doc.nodes(forXPath: "//*[local-name()='label'][@key='note']").first?.stringValue
        #expect(label == "<b>&\"quoted\"' </domain>")
        #expect(try doc.nodes(forXPath: "/domain/devices/serial/log/@file").first?.stringValue == "/tmp/a&b<c>.log")
    }

    @Test("direct kernel boot, disks, serial log and VNC on a UNIX socket (no TCP port) are all in the XML")
    func structure() throws {
        let doc = try XMLDocument(xmlString: Self.spec().xml())
        func value(_ xpath: String) throws -> String? { try doc.nodes(forXPath: xpath).first?.stringValue }
        #expect(try value("/domain/@type") == "qemu")
        #expect(try value("/domain/os/kernel") == "/img/vmlinuz")
        #expect(try value("/domain/os/cmdline") == "root=/dev/vda rw console=ttyS0")
        #expect(try value("/domain/cpu/model") == "qemu64")
        #expect(try doc.nodes(forXPath: "/domain/devices/disk").count == 2)
        #expect(try value("/domain/devices/disk[target/@dev='vdb']/readonly") != nil)
        #expect(try value("/domain/devices/graphics/listen/@type") == "socket")
        #expect(try value("/domain/devices/graphics/listen/@socket") == "/n/vnc/vnc.sock")
        #expect(try value("/domain/devices/graphics/@port") == nil)
        #expect(try value("/domain/devices/graphics/@listen") == nil)
    }

    @Test("libvirt's own parser (test:///default driver) accepts the XML and keeps name and labels")
    func libvirtAccepts() async throws {
        let conn = try await Connection.open("test:///default")
        var s = Self.spec(name: "xml-test-\(UInt32.random(in: 0...999_999))")
        // The test driver has no qemu namespace; define the portable part.
        s.nics = [.init(mode: .bridge(name: "br0"), mac: "52:54:00:30:00:01")]
        let d = try await conn.define(xml: s.xml())
        #expect(d.name == s.name)
        let back = try await d.xml()
        #expect(back.contains("52:54:00:30:00:01"))
        #expect(back.contains(DomainSpec.metadataNamespace))
        // Labels read back through virDomainGetMetadata: how clean finds a cluster's domains.
        #expect(try await d.labels() == s.labels)
        var marked = s
        marked.name += "-unlabelled"
        marked.labels = [:]
        let plain = try await conn.define(xml: marked.xml())
        #expect(try await plain.labels() == [:])
        #expect(try await d.state() == .shutOff)
        try? await plain.undefine(); plain.close()
        try? await d.undefine(); d.close()
        await conn.close()
    }

    @Test("labels parse back whatever prefix libvirt gives the namespace, with values unescaped")
    func labelParsing() {
        let xml = #"<x:labels xmlns:x="u"><x:label key="cluster">a-node1</x:label><x:label key="note">&lt;b&gt;&amp;</x:label><x:label key="e"/></x:labels>"#
        #expect(DomainSpec.parseLabels(xml) == ["cluster": "a-node1", "note": "<b>&", "e": ""])
    }

    @Test("libvirt failures carry libvirt's own message")
    func libvirtErrors() async throws {
        let conn = try await Connection.open("test:///default")
        #expect(try await conn.domain(named: "no-such-domain") == nil)
        do {
            _ = try await conn.define(xml: "<domain type='test'><name>x</name></domain>")
            Issue.record("defining a domain without memory should fail")
        } catch let e as LibvirtError {
            #expect(e.code != 0)
            #expect(!e.message.isEmpty && e.message != "unknown libvirt error")
        }
        await conn.close()
    }
}
