import VMCtlSupport

/// Many machines doing one thing at once behind one barrier: every member's work runs in
/// parallel, the fleet waits for all of them, and then reports each failure with its
/// machine and reason. Cancellation (Ctrl-C) reaches every member and wins over failures.
public struct Fleet<Member: Sendable>: Sendable {
    /// The members, each with the name its failures are reported under.
    public let members: [(name: String, member: Member)]
    /// At most this many members work at once (nil: all of them); the others start, in
    /// order, as soon as one finishes.
    public var limit: Int?

    public init(_ members: [(name: String, member: Member)], limit: Int? = nil) {
        self.members = members
        self.limit = limit
    }

    /// The same members, at most `n` at once (nil: all).
    public func limited(to n: Int?) -> Fleet { Fleet(members, limit: n) }

    /// Runs `work` for every member (all at once, or `limit` at a time) and waits for all.
    /// Returns each member's result by name when all succeed; otherwise throws a
    /// `FleetFailure` naming every member that failed (the others ran to completion), or
    /// `CancellationError` when cancelled.
    @discardableResult
    public func run<T: Sendable>(_ work: @escaping @Sendable (String, Member) async throws -> T) async throws -> [String: T] {
        let width = max(1, limit ?? members.count)
        let outcomes = await withTaskGroup(of: (String, Result<T, any Error>).self) { group in
            var queue = members.makeIterator()
            func startNext() -> Bool {
                guard let (name, member) = queue.next() else { return false }
                group.addTask {
                    do {
                        try Task.checkCancellation()
                        return (name, .success(try await work(name, member)))
                    } catch { return (name, .failure(error)) }
                }
                return true
            }
            for _ in 0..<width {
                if !startNext() { break }
            }
            var out: [(String, Result<T, any Error>)] = []
            for await o in group {
                out.append(o)
                _ = startNext()
            }
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
