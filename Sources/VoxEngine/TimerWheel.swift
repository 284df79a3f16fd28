/// A hashed timing wheel (Varghese & Lauck) over preallocated timers, on an injected clock:
/// every deadline the engine needs — ICE connect, consent, reorder, pacing, RTCP — is a
/// timer id scheduled here, and a worker's poll sleeps until `nextDeadline`. Nothing is
/// allocated after start-up; schedule and cancel are O(1); `expire` visits only due slots.
///
/// Time is in nanoseconds from any origin, read once per burst by the caller.
/// ```
///  slots[ (deadline / tick) % slotCount ] ─▶ timer ⇄ timer ⇄ ...   (doubly linked by index)
/// ```
public struct TimerWheel: ~Copyable {
    public let capacity: Int
    public let tick: UInt64
    let slotCount: Int
    let heads: UnsafeMutablePointer<Int32>  // per slot, -1 when empty
    let next: UnsafeMutablePointer<Int32>
    let prev: UnsafeMutablePointer<Int32>
    let deadlines: UnsafeMutablePointer<UInt64>
    let slotOf: UnsafeMutablePointer<Int32>  // -1 when not scheduled
    /// The tick up to which everything has expired.
    var currentTick: UInt64
    public private(set) var scheduled = 0

    /// `capacity` timers; `tick` is the resolution (default 1 ms); `slotCount` × `tick` is
    /// the horizon scanned per revolution (default ≈ 1 s; later deadlines wait for their round).
    public init(capacity: Int, tick: UInt64 = 1_000_000, slotCount: Int = 1024, now: UInt64 = 0) {
        self.capacity = capacity
        self.tick = tick
        self.slotCount = slotCount
        heads = .allocate(capacity: slotCount)
        heads.initialize(repeating: -1, count: slotCount)
        next = .allocate(capacity: capacity)
        next.initialize(repeating: -1, count: capacity)
        prev = .allocate(capacity: capacity)
        prev.initialize(repeating: -1, count: capacity)
        deadlines = .allocate(capacity: capacity)
        deadlines.initialize(repeating: 0, count: capacity)
        slotOf = .allocate(capacity: capacity)
        slotOf.initialize(repeating: -1, count: capacity)
        currentTick = now / tick
    }

    deinit {
        heads.deallocate()
        next.deallocate()
        prev.deallocate()
        deadlines.deallocate()
        slotOf.deallocate()
    }

    public func isScheduled(_ id: Int) -> Bool { slotOf[id] >= 0 }

    public func deadline(of id: Int) -> UInt64? { slotOf[id] >= 0 ? deadlines[id] : nil }

    /// Schedules timer `id` (0 ..< capacity) at `deadline`, replacing any earlier schedule.
    /// A deadline already past fires at the next `expire`.
    public mutating func schedule(_ id: Int, at deadline: UInt64) {
        cancel(id)
        let t = max(deadline / tick, currentTick)
        let slot = Int(t % UInt64(slotCount))
        deadlines[id] = deadline
        slotOf[id] = Int32(slot)
        let h = heads[slot]
        next[id] = h
        prev[id] = -1
        if h >= 0 { prev[Int(h)] = Int32(id) }
        heads[slot] = Int32(id)
        scheduled += 1
    }

    public mutating func cancel(_ id: Int) {
        let slot = slotOf[id]
        guard slot >= 0 else { return }
        let n = next[id]
        let p = prev[id]
        if p >= 0 { next[Int(p)] = n } else { heads[Int(slot)] = n }
        if n >= 0 { prev[Int(n)] = p }
        slotOf[id] = -1
        scheduled -= 1
    }

    /// Removes the timers due by `now` and writes their ids to `out` (at most `max`);
    /// returns how many. Call again while it returns `max`.
    public mutating func expire(upTo now: UInt64, into out: UnsafeMutablePointer<Int32>, max: Int) -> Int {
        var n = 0
        let target = now / tick
        // A clock that jumped more than a revolution visits each slot once.
        let steps = Int(min(target >= currentTick ? target - currentTick : 0, UInt64(slotCount - 1)))
        for step in 0...steps {
            let slot = Int((currentTick + UInt64(step)) % UInt64(slotCount))
            var id = heads[slot]
            while id >= 0 {
                let following = next[Int(id)]
                if deadlines[Int(id)] <= now {
                    if n == max {
                        currentTick += UInt64(step)
                        return n
                    }
                    cancel(Int(id))
                    out[n] = id
                    n += 1
                }
                id = following
            }
        }
        if target > currentTick { currentTick = target }
        return n
    }

    /// The earliest scheduled deadline, or nil: what a worker's poll waits for. With
    /// `withinOneRevolution`, nil also when everything is more than a revolution away
    /// (a caller that sleeps no longer than that need not scan every timer).
    public func nextDeadline(withinOneRevolution: Bool = false) -> UInt64? {
        guard scheduled > 0 else { return nil }
        var best = UInt64.max
        // Within one revolution the first slot holding a due-this-round timer wins.
        for step in 0..<slotCount {
            let slot = Int((currentTick + UInt64(step)) % UInt64(slotCount))
            var id = heads[slot]
            let roundEnd = (currentTick + UInt64(step) + 1) * tick
            while id >= 0 {
                let d = deadlines[Int(id)]
                if d < roundEnd { best = min(best, d) }
                id = next[Int(id)]
            }
            if best != UInt64.max { return best }
        }
        // Everything is more than a revolution away.
        if withinOneRevolution { return nil }
        for id in 0..<capacity where slotOf[id] >= 0 { best = min(best, deadlines[id]) }
        return best
    }
}
