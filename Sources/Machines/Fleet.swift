import VMCtlSupport

/// Many machines doing one thing at once behind one barrier: every member's work runs in
/// parallel, the fleet waits for all of them, and then reports each failure with its
/// machine and reason. Cancellation (Ctrl-C) reaches every member and wins over failures.
public struct Fleet<Member: Sendable>: Sendable {
    /// The members, each with the name its failures are reported under.
    public let members: [(name: String, member: Member)]

    public init(_ members: [(name: String, member: Member)]) { self.members = members }

    /// Runs `work` for every member at once and waits for all. Returns each member's result
    /// by name when all succeed; otherwise throws a `FleetFailure` naming every member that
    /// failed (the others ran to completion), or `CancellationError` when cancelled.
    @discardableResult
    public func run<T: Sendable>(_ work: @escaping @Sendable (String, Member) async throws -> T) async throws -> [String: T] {
        let outcomes = await withTaskGroup(of: (String, Result<T, any Error>).self) { group in
            for (name, member) in members {
                group.addTask {
                    do { return (name, .success(try await work(name, member))) } catch { return (name, .failure(error)) }
                }
            }
            var out: [(String, Result<T, any Error>)] = []
            for await o in group { out.append(o) }
            return out
        }
        try Task.checkCancellation()
        var results: [String: T] = [:]
        var failures: [FleetFailure.Member] = []
        for (name, outcome) in outcomes {
            switch outcome {
            case .success(let value): results[name] = value
            case .failure(let error as CancellationError): throw error
            case .failure(let error): failures.append(.init(name: name, error: error))
            }
        }
        guard failures.isEmpty else {
            throw FleetFailure(failures: failures.sorted { $0.name.localizedStandardCompare($1.name) == .orderedAscending },
                               total: members.count)
        }
        return results
    }
}

/// Members of a fleet that failed, each with its reason.
public struct FleetFailure: Error, CustomStringConvertible, Sendable {
    public struct Member: Sendable {
        public let name: String
        public let error: any Error
        /// The stable code of its error, for a controller's status.
        public var code: VMCtlError.Code { VMCtlError.Code(of: error) }
    }
    public let failures: [Member]
    /// How many members the fleet had.
    public let total: Int

    public var description: String {
        let names = failures.map(\.name).joined(separator: ", ")
        return "\(failures.count) of \(total) failed (\(names)):\n" + failures.map { "  \($0.error)" }.joined(separator: "\n")
    }
}
