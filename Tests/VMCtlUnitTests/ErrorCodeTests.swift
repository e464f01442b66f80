import CLibvirt
import Foundation
import Testing
@testable import VMCtlSupport
@testable import Machines
@testable import Libvirt
@testable import SSH
@testable import VMCtlCommands

@Suite("Error codes: stable strings, exit statuses, libvirt's classification")
struct ErrorCodeTests {
    @Test("every code has a stable kebab-case string and the exit status the CLI has always used")
    func codes() throws {
        let expected: [String: Int32] = [
            "failure": 1, "usage": 2, "not-found": 2, "wrong-state": 2, "name-in-use": 2, "locked": 2, "in-use": 2,
            "image-not-built": 2, "node-timeout": 1, "node-failed": 1, "host-key-mismatch": 1, "ssh-failed": 1,
            "libvirt-busy": 2, "libvirt-unavailable": 1, "libvirt-failed": 1, "cancelled": 130, "host-memory": 2,
        ]
        #expect(Dictionary(uniqueKeysWithValues: VMCtlError.Code.all.map { ("\($0)", $0.exitStatus) }) == expected)
        for code in VMCtlError.Code.all {
            #expect("\(code)".range(of: "^[a-z]+(-[a-z]+)*$", options: .regularExpression) != nil)
            #expect(VMCtlError.Code("\(code)") == code)
        }
        #expect(VMCtlError.Code.imageNotBuilt.description == "image-not-built")
        #expect(VMCtlError.Code("no-such-code") == nil)
    }

    @Test("a code is encoded as its string and an unknown string is refused")
    func codable() throws {
        let data = try JSONEncoder().encode([VMCtlError.Code.nodeTimeout, .hostKeyMismatch])
        #expect(String(decoding: data, as: UTF8.self) == #"["node-timeout","host-key-mismatch"]"#)
        #expect(try JSONDecoder().decode([VMCtlError.Code].self, from: data) == [.nodeTimeout, .hostKeyMismatch])
        #expect(throws: DecodingError.self) { try JSONDecoder().decode([VMCtlError.Code].self, from: Data(#"["nope"]"#.utf8)) }
    }

    @Test("the old initializers still compile and map exit statuses to generic codes")
    func compatibility() {
        #expect(VMCtlError("x").code == .failure)
        #expect(VMCtlError("x").exitCode == 1)
        #expect(VMCtlError("x", exitCode: 2).code == .usage)
        #expect(VMCtlError("x", exitCode: 130).code == .cancelled)
        #expect(VMCtlError.usage("x").code == .usage)
        #expect(VMCtlError.usage("x").exitCode == 2)
        #expect(VMCtlError.usage("bad flag").message == "bad flag")
        #expect(VMCtlError("x").cause == nil)
    }

    @Test("it prints as its message; the debug form adds code and cause")
    func printing() {
        let cause = LibvirtError(operation: "connect to qemu:///system", code: 38, domain: 7, systemErrno: 2, message: "no socket")
        let e = VMCtlError(.libvirtUnavailable, message: "cannot connect", cause: cause)
        #expect("\(e)" == "cannot connect")
        #expect(String(reflecting: e) == #"libvirt-unavailable: "cannot connect" (cause: "connect to qemu:///system: no socket")"#)
        #expect(String(reflecting: VMCtlError(.notFound, message: "no cluster 'a'")) == #"not-found: "no cluster 'a'""#)
    }

    @Test("errors of the layers below are classified; each of them still exits 1")
    func classification() {
        #expect(VMCtlError.Code(of: CancellationError()) == .cancelled)
        #expect(VMCtlError.Code(of: SSHError(.hostKeyMismatch, "verify host key", "mismatch")) == .hostKeyMismatch)
        #expect(VMCtlError.Code(of: SSHError(.timeout, "exec", "timed out")) == .sshFailed)
        #expect(VMCtlError.Code(of: NodeFailure(node: "node1", reason: "late", serialTail: "", code: .nodeTimeout)) == .nodeTimeout)
        #expect(VMCtlError.Code(of: NodeFailure(node: "node1", reason: "the guest stopped", serialTail: "")) == .nodeFailed)
        #expect(VMCtlError.Code(of: BootStall(node: "node1", reason: "silent", lastLine: "")) == .nodeTimeout)
        #expect(VMCtlError.Code(of: LibvirtError(operation: "start", code: 1, message: "internal")) == .libvirtFailed)
        #expect(VMCtlError.Code(of: CocoaError(.fileNoSuchFile)) == .failure)
        for e: any Error in [SSHError(.auth, "auth", "refused"), LibvirtError(operation: "x", code: 42, message: "m"),
                             NodeFailure(node: "n", reason: "r", serialTail: "", code: .hostKeyMismatch)] {
            #expect(VMCtlError.Code(of: e).exitStatus == 1)
        }
        let late = NodeFailure(node: "node1", reason: "late", serialTail: "", code: .nodeTimeout)
        let stopped = NodeFailure(node: "node2", reason: "stopped", serialTail: "")
        #expect(VMCtlError.Code(commonTo: [late, late]) == .nodeTimeout)
        #expect(VMCtlError.Code(commonTo: [late, stopped]) == nil)
        #expect(VMCtlError.Code(commonTo: []) == nil)
    }

    @Test("the CLI's exit status comes from the code")
    func exitStatuses() {
        #expect(VMCtl.report(VMCtlError(.imageNotBuilt, message: "image 'x' is not built")) == 2)
        #expect(VMCtl.report(VMCtlError(.nodeTimeout, message: "node1 did not come up")) == 1)
        #expect(VMCtl.report(CancellationError()) == 130)
        #expect(VMCtl.report(SSHError(.hostKeyMismatch, "verify host key", "mismatch")) == 1)
        #expect(VMCtl.report(LibvirtError(operation: "x", code: 42, message: "Domain not found")) == 1)
    }

    /// A domain XML the test driver accepts, with a chosen name and UUID.
    static func xml(name: String, uuid: UUID) -> String {
        "<domain type='test'><name>\(name)</name><uuid>\(uuid.uuidString.lowercased())</uuid>"
            + "<memory>1024</memory><os><type>hvm</type></os></domain>"
    }

    @Test("libvirt (test:///default): an unknown domain is VIR_ERR_NO_DOMAIN (42) from VIR_FROM_TEST (12)")
    func unknownDomain() async throws {
        let conn = try await Connection.open("test:///default")
        let name = "no-such-domain-\(UUID())"
        // Read on the thread that made the call: libvirt's last error is thread-local.
        let e = try await conn.call("lookup") { h -> LibvirtError in
            #expect(virDomainLookupByName(h, name) == nil)
            return LibvirtError.last("look up domain \(name)")
        }
        #expect(e.code == 42)
        #expect(e.domain == 12)
        #expect(e.kind == .noDomain)
        #expect(e.isNoDomain)
        #expect(VMCtlError.Code(of: e) == .libvirtFailed)
        // Which is why domain(named:) answers nil rather than throwing.
        #expect(try await conn.domain(named: name) == nil)
        await conn.close()
    }

    @Test("libvirt (test:///default): a second domain with the same name and another UUID is VIR_ERR_OPERATION_FAILED (9) from VIR_FROM_DOMAIN (20)")
    func duplicateName() async throws {
        let conn = try await Connection.open("test:///default")
        let name = "dup-\(UInt32.random(in: 0...999_999))"
        let first = try await conn.define(xml: Self.xml(name: name, uuid: UUID()))
        do {
            let second = try await conn.define(xml: Self.xml(name: name, uuid: UUID()))
            second.close()
            Issue.record("libvirt accepted a second domain named \(name)")
        } catch let e as LibvirtError {
            #expect(e.code == 9)
            #expect(e.domain == 20)
            #expect(e.kind == .domainExists)
        }
        try? await first.undefine()
        first.close()
        await conn.close()
    }

    @Test("libvirt (test:///default): a running domain cannot be started again, which is not a classified kind")
    func otherErrors() async throws {
        let conn = try await Connection.open("test:///default")
        // The test driver's built-in domain "test" is running.
        let d = try #require(try await conn.domain(named: "test"))
        do {
            try await d.start()
            Issue.record("starting a running domain should fail")
        } catch let e as LibvirtError {
            #expect(e.code == 1)  // VIR_ERR_INTERNAL_ERROR, from the test driver
            #expect(e.kind == .other)
        }
        d.close()
        await conn.close()
    }

    /// What libvirt 9.0 reported (observed with two processes) when a second process opened
    /// `qemu:///embed?root=DIR` that another held open: "Failed to acquire pid file
    /// 'DIR/run/qemu/driver.pid': Resource temporarily unavailable".
    static let lockedRoot = LibvirtError(operation: "connect to qemu:///embed?root=/r", code: 38, domain: 0,
                                         systemErrno: EAGAIN, message: "Failed to acquire pid file '/r/run/qemu/driver.pid': "
                                             + "Resource temporarily unavailable")

    @Test("a root another process holds (VIR_ERR_SYSTEM_ERROR 38, VIR_FROM_NONE 0, EAGAIN) is libvirt-busy, exit 2, with libvirt's error as cause")
    func busyRoot() throws {
        #expect(Self.lockedRoot.kind == .busy)
        #expect(LibvirtError(operation: "x", code: 87, message: "").kind == .busy)  // VIR_ERR_RESOURCE_BUSY
        // Classified by numbers, not words: the same text with another errno is not busy.
        #expect(LibvirtError(operation: "x", code: 38, domain: 0, systemErrno: ENOENT, message: Self.lockedRoot.message).kind == .other)
        #expect(LibvirtError(operation: "x", code: 1, message: "the root is locked and in use").kind == .other)

        let target = HypervisorTarget.embedded(root: "/r")
        let e = target.openFailure(Self.lockedRoot)
        #expect(e.code == .libvirtBusy)
        #expect(e.exitCode == 2)
        #expect(e.message == "libvirt root /r is in use by another process: \(Self.lockedRoot.message)")
        #expect((e.cause as? LibvirtError)?.kind == .busy)
        // The same error on a daemon's URI is no connection, not a busy root.
        let system = try HypervisorTarget.resolve(connect: "qemu:///system", defaultRoot: "/r")
        #expect(system.openFailure(Self.lockedRoot).code == .libvirtUnavailable)
    }

    @Test("no daemon socket (VIR_ERR_SYSTEM_ERROR from VIR_FROM_RPC) is a failed connection")
    func noDaemon() throws {
        // As observed for qemu:///system with no libvirtd: code 38, domain 7, errno ENOENT.
        let e = LibvirtError(operation: "connect to qemu:///system", code: 38, domain: 7, systemErrno: ENOENT,
                             message: "Failed to connect socket to '/var/run/libvirt/libvirt-sock': No such file or directory")
        #expect(e.kind == .connectionFailed)
        #expect(VMCtlError.Code(of: e) == .libvirtUnavailable)
        let target = try HypervisorTarget.resolve(connect: "qemu:///system", defaultRoot: "/r")
        let wrapped = target.openFailure(e)
        #expect(wrapped.code == .libvirtUnavailable)
        #expect(wrapped.exitCode == 1)
        #expect(wrapped.message.hasPrefix("cannot connect to qemu:///system: Failed to connect socket"))
        #expect(wrapped.message.hasSuffix("(is libvirtd running? try `virtlogd -d; libvirtd -d`, or omit --connect)"))
    }

    @Test("opening a URI libvirt cannot open throws libvirt-unavailable with the libvirt error as cause")
    func cannotConnect() async throws {
        let target = try HypervisorTarget.resolve(connect: "test:///no/such/vmctl-file.xml", defaultRoot: "/r")
        do {
            _ = try await MachineHost(target).connect()
            Issue.record("a test driver with a missing file should not open")
        } catch let e as VMCtlError {
            #expect(e.code == .libvirtUnavailable)
            #expect(e.message.hasPrefix("cannot connect to test:///no/such/vmctl-file.xml: "))
            #expect(e.cause is LibvirtError)
        }
    }
}
