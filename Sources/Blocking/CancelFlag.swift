import Synchronization

/// Lets a blocking call on its own thread see that the task which started it was cancelled.
public final class CancelFlag: Sendable {
    private let value = Atomic<Bool>(false)
    public init() {}
    public func cancel() { value.store(true, ordering: .relaxed) }
    public var isCancelled: Bool { value.load(ordering: .relaxed) }
}

/// Runs `body` on its own thread; cancelling the calling task sets the flag `body` watches.
public func onOwnThreadCancellable<T: Sendable>(
    _ label: String,
    _ body: @escaping @Sendable (CancelFlag) throws -> T
) async throws -> T {
    let flag = CancelFlag()
    return try await withTaskCancellationHandler {
        try await onOwnThread(label) { try body(flag) }
    } onCancel: {
        flag.cancel()
    }
}
