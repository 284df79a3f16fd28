import Synchronization

/// A bounded single-producer single-consumer ring of plain values: how threads talk to
/// a worker (commands, frames handed over by another worker, DTLS to the handshake
/// thread) without a lock. One thread pushes, one thread pops; each side reads the
/// other's index with acquire only when its cached copy says the ring is full or empty.
///
/// ```
///  head (consumer) ──▶ [ e e e e . . . . ] ◀── tail (producer)      0 ≤ tail - head ≤ capacity
/// ```
public final class SPSCRing<Element: BitwiseCopyable>: @unchecked Sendable {
    public let capacity: Int
    @usableFromInline let mask: Int
    @usableFromInline let storage: UnsafeMutablePointer<Element>
    @usableFromInline let head = Atomic<Int>(0)
    // Keep the two indices on separate cache lines: producer and consumer run on different cores.
    @usableFromInline let padding = (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0))
    @usableFromInline let tail = Atomic<Int>(0)
    /// The producer's last view of `head` at [0], and the consumer's of `tail` at [8] (a
    /// cache line apart). Raw memory, not class `var`s: those pay a dynamic exclusivity
    /// check on every access (swift_beginAccess showed in callgrind).
    @usableFromInline let cached: UnsafeMutablePointer<Int>

    /// `capacity` is rounded up to a power of two.
    public init(capacity: Int) {
        var c = 1
        while c < capacity { c <<= 1 }
        self.capacity = c
        mask = c - 1
        storage = .allocate(capacity: c)
        cached = .allocate(capacity: 16)
        cached.initialize(repeating: 0, count: 16)
    }

    deinit {
        storage.deallocate()
        cached.deallocate()
    }

    /// Producer: appends `element`; false when the ring is full (nothing is written).
    @inlinable
    public func push(_ element: Element) -> Bool {
        let t = tail.load(ordering: .relaxed)
        if t - cached[0] == capacity {
            cached[0] = head.load(ordering: .acquiring)
            if t - cached[0] == capacity { return false }
        }
        (storage + (t & mask)).initialize(to: element)
        tail.store(t + 1, ordering: .releasing)
        return true
    }

    /// Consumer: removes the oldest element, or nil when empty.
    @inlinable
    public func pop() -> Element? {
        let h = head.load(ordering: .relaxed)
        if h == cached[8] {
            cached[8] = tail.load(ordering: .acquiring)
            if h == cached[8] { return nil }
        }
        let element = storage[h & mask]
        head.store(h + 1, ordering: .releasing)
        return element
    }

    /// Consumer: the oldest element in place, to read (and wipe) before `advance()`.
    @inlinable
    public func peek() -> UnsafeMutablePointer<Element>? {
        let h = head.load(ordering: .relaxed)
        if h == cached[8] {
            cached[8] = tail.load(ordering: .acquiring)
            if h == cached[8] { return nil }
        }
        return storage + (h & mask)
    }

    /// Consumer: drops the element `peek()` returned.
    @inlinable
    public func advance() {
        head.store(head.load(ordering: .relaxed) + 1, ordering: .releasing)
    }

    /// Elements ever pushed, and ever consumed (`pop`, or `advance` after `peek`): an
    /// element is done with once `consumed` passes its place (`pushed` right after its push).
    public var pushed: Int { tail.load(ordering: .acquiring) }
    public var consumed: Int { head.load(ordering: .acquiring) }

    /// Elements waiting (exact from either side when the other is idle).
    public var count: Int { tail.load(ordering: .acquiring) - head.load(ordering: .acquiring) }
}
