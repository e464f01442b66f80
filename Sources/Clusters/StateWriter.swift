import Foundation
import VMCtlSupport
import Machines

/// Serialises updates to a cluster's state and writes each one atomically.
actor StateWriter {
    private(set) var state: ClusterState
    let path: String

    init(_ state: ClusterState, path: String) {
        self.state = state
        self.path = path
    }

    func save() throws { try AtomicFile.writeJSON(state, to: path) }

    func update(_ change: (inout ClusterState) -> Void) throws {
        change(&state)
        try save()
    }

    func setNode(_ plan: NodePlan, phase: NodePhase, booted: Bool = false, warmFrom: String? = nil) throws {
        try update { s in
            guard let i = s.nodes.firstIndex(where: { $0.plan.name == plan.name }) else { return }
            s.nodes[i].plan = plan
            s.nodes[i].phase = phase
            if booted { s.nodes[i].bootedAt = Date() }
            if let w = warmFrom { s.nodes[i].warmFrom = w }
        }
    }

    /// Records `phase` for node `name`, leaving its plan as recorded.
    func setPhase(_ name: String, _ phase: NodePhase) throws {
        try update { s in
            guard let i = s.nodes.firstIndex(where: { $0.plan.name == name }) else { return }
            s.nodes[i].phase = phase
        }
    }
}
