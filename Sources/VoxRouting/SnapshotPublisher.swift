import Synchronization

/// An immutable snapshot the control side replaces and workers read without locks: the
/// backend table, the client-flow directory. The control side publishes a new one with one
/// atomic exchange; each worker picks it up at its next burst. Old ones are freed once
/// every worker has started a burst after the exchange (quiescent-state reclamation: a
/// worker holds a snapshot only within one burst).
///
/// Worker side, per burst: `enter(worker:)` announces the generation it has seen, then
/// reads the current snapshot — no lock, no allocation, no reference counting. Before it
/// sleeps, `leave(worker:)` says it holds nothing. Control side: `publish(_:)`, from any
/// one thread at a time (a mutex orders publishers; workers never take it).
public final class SnapshotPublisher<Snapshot: AnyObject>: @unchecked Sendable {
    /// The current snapshot, as `Unmanaged` bits (+1, owned by the publisher).
    let current: Atomic<UInt>
    /// Bumped after every exchange.
    let generation = Atomic<UInt64>(0)
    /// The generation each worker saw at the start of its burst; `.max` while it holds nothing.
    let observed: UnsafeMutablePointer<Atomic<UInt64>>
    public let workerCount: Int
    struct Retired {
        var generation: UInt64
        var table: Unmanaged<Snapshot>
    }
    let retired = Mutex<[Retired]>([])

    public init(_ table: Snapshot, workers: Int) {
        current = Atomic(UInt(bitPattern: Unmanaged.passRetained(table).toOpaque()))
        workerCount = workers
        observed = .allocate(capacity: max(1, workers))
        for w in 0..<max(1, workers) { (observed + w).initialize(to: Atomic(UInt64.max)) }
    }

    deinit {
        Unmanaged<Snapshot>.fromOpaque(UnsafeRawPointer(bitPattern: current.load(ordering: .acquiring))!).release()
        retired.withLock { list in for r in list { r.table.release() } }
        observed.deinitialize(count: max(1, workerCount))
        observed.deallocate()
    }

    /// The snapshot now (control side, tests). Not for workers, which use `enter`.
    public var snapshot: Snapshot {
        Unmanaged<Snapshot>.fromOpaque(UnsafeRawPointer(bitPattern: current.load(ordering: .acquiring))!)
            .takeUnretainedValue()
    }

    /// A worker starts a burst: returns the snapshot it may use until its next `enter` or
    /// `leave`, unretained (no reference counting on the packet path). The announcement is
    /// sequentially consistent with the load after it (a store–load pair; the publisher's
    /// exchange and its read of `observed` are the other half).
    public func enter(worker: Int) -> Unmanaged<Snapshot> {
        let seen = generation.load(ordering: .acquiring)
        observed[worker].store(seen, ordering: .sequentiallyConsistent)
        let bits = current.load(ordering: .sequentiallyConsistent)
        return Unmanaged<Snapshot>.fromOpaque(UnsafeRawPointer(bitPattern: bits)!)
    }

    /// A worker holds no table (it is about to sleep, or stops).
    public func leave(worker: Int) {
        observed[worker].store(UInt64.max, ordering: .sequentiallyConsistent)
    }

    /// Makes `table` the one workers use from their next burst; frees the tables no worker
    /// can still hold.
    public func publish(_ table: Snapshot) {
        retired.withLock { list in
            let new = UInt(bitPattern: Unmanaged.passRetained(table).toOpaque())
            let old = current.exchange(new, ordering: .sequentiallyConsistent)
            let g = generation.wrappingAdd(1, ordering: .sequentiallyConsistent).newValue
            list.append(Retired(generation: g, table: Unmanaged.fromOpaque(UnsafeRawPointer(bitPattern: old)!)))
            reclaim(&list)
        }
    }

    /// Frees what no worker can hold any more; called by `publish` and by the control
    /// thread's periodic work. Returns how many tables are still waiting.
    @discardableResult
    public func reclaim() -> Int {
        retired.withLock { list in
            reclaim(&list)
            return list.count
        }
    }

    func reclaim(_ list: inout [Retired]) {
        var oldest = UInt64.max
        for w in 0..<workerCount { oldest = min(oldest, observed[w].load(ordering: .sequentiallyConsistent)) }
        list.removeAll { r in
            guard r.generation <= oldest else { return false }
            r.table.release()
            return true
        }
    }
}
