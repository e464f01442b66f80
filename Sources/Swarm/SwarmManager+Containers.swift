import Foundation
import VMCtlSupport
import Clusters

/// A case's containers: listed, located, their logs.
extension SwarmManager {
    /// A container's log (the runner's: its own lines and its guest's serial console), on its node.
    func log(_ s: ClusterState, of x: Container) async throws -> String {
        try await run(s, "sudo docker logs \(x.container) 2>&1 | tail -n 400", on: x.node)
    }

    /// One container of a case: `CONTAINER NODE OVERLAY_IP SERVICE`.
    public struct Container: Codable, Sendable, Equatable {
        public var container: String
        public var node: String
        public var overlayIP: String
        public var service: String
    }

    /// Every running container of the case, from every node.
    public func containers(_ c: Case) async throws -> [Container] {
        let s = try cluster()
        let script = "for c in $(sudo docker ps -q --filter label=com.docker.stack.namespace=\(c.rawValue)); do "
            + "sudo docker inspect -f '{{.Name}} {{index .Config.Labels \"com.docker.swarm.service.name\"}} "
            + "{{range $k, $v := .NetworkSettings.Networks}}{{if eq $k \"\(c.network)\"}}{{$v.IPAddress}}{{end}}{{end}}' \"$c\"; done"
        let results = await clusters.exec(s, nodes: try clusters.select(s, []), command: script, timeout: .seconds(120))
        var out: [Container] = []
        for r in results {
            if let e = r.error { throw VMCtlError("\(r.node): \(e)") }
            out += Self.parseContainers(r.stdout, node: r.node)
        }
        return out.sorted { ($0.service, $0.container) < ($1.service, $1.container) }
    }

    /// Lines of `/NAME SERVICE IP` (docker inspect's format above) as containers on `node`.
    static func parseContainers(_ text: String, node: String) -> [Container] {
        text.split(separator: "\n").compactMap { line in
            let f = line.split(separator: " ").map(String.init)
            guard f.count >= 2 else { return nil }
            return Container(container: String(f[0].drop { $0 == "/" }), node: node, overlayIP: f.count > 2 ? f[2] : "-", service: f[1])
        }
    }

    /// `exec-list`'s text: a header, then one line per container.
    public static func formatList(_ cs: [Container]) -> String {
        var widths = [9, 4, 10]
        for c in cs { widths = [max(widths[0], c.container.count), max(widths[1], c.node.count), max(widths[2], c.overlayIP.count)] }
        func line(_ a: String, _ b: String, _ c: String, _ d: String) -> String {
            [a.padding(toLength: widths[0], withPad: " ", startingAt: 0), b.padding(toLength: widths[1], withPad: " ", startingAt: 0),
             c.padding(toLength: widths[2], withPad: " ", startingAt: 0), d].joined(separator: "  ")
        }
        return ([line("CONTAINER", "NODE", "OVERLAY_IP", "SERVICE")] + cs.map { line($0.container, $0.node, $0.overlayIP, $0.service) })
            .joined(separator: "\n")
    }

    /// The node running `container` (a name from `exec-list`, or its unique prefix).
    public func locate(_ c: Case, container: String) async throws -> Container {
        let cs = try await containers(c)
        if let exact = cs.first(where: { $0.container == container }) { return exact }
        let matches = cs.filter { $0.container.hasPrefix(container) }
        guard matches.count == 1 else {
            throw VMCtlError(.notFound, message: matches.isEmpty
                ? "no container \(container) in \(c.rawValue): `vmctl swarm \(c.rawValue) exec-list` shows them"
                : "\(container) matches \(matches.count) containers: \(matches.map(\.container).joined(separator: ", "))")
        }
        return matches[0]
    }
}
