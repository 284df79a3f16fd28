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
    /// The producer's last view of `head`, and the consumer's of `tail`.
    @usableFromInline var producerCachedHead = 0
    @usableFromInline var consumerCachedTail = 0

    /// `capacity` is rounded up to a power of two.
    public init(capacity: Int) {
        var c = 1
        while c < capacity { c <<= 1 }
        self.capacity = c
        mask = c - 1
        storage = .allocate(capacity: c)
    }

    deinit { storage.deallocate() }

    /// Producer: appends `element`; false when the ring is full (nothing is written).
    @inlinable
    public func push(_ element: Element) -> Bool {
        let t = tail.load(ordering: .relaxed)
        if t - producerCachedHead == capacity {
            producerCachedHead = head.load(ordering: .acquiring)
            if t - producerCachedHead == capacity { return false }
        }
        (storage + (t & mask)).initialize(to: element)
        tail.store(t + 1, ordering: .releasing)
        return true
    }

    /// Consumer: removes the oldest element, or nil when empty.
    @inlinable
    public func pop() -> Element? {
        let h = head.load(ordering: .relaxed)
        if h == consumerCachedTail {
            consumerCachedTail = tail.load(ordering: .acquiring)
            if h == consumerCachedTail { return nil }
        }
        let element = storage[h & mask]
        head.store(h + 1, ordering: .releasing)
        return element
    }

    /// Consumer: the oldest element in place, to read (and wipe) before `advance()`.
    @inlinable
    public func peek() -> UnsafeMutablePointer<Element>? {
        let h = head.load(ordering: .relaxed)
        if h == consumerCachedTail {
            consumerCachedTail = tail.load(ordering: .acquiring)
            if h == consumerCachedTail { return nil }
        }
        return storage + (h & mask)
    }

    /// Consumer: drops the element `peek()` returned.
    @inlinable
    public func advance() {
        head.store(head.load(ordering: .relaxed) + 1, ordering: .releasing)
    }

    /// Elements waiting (exact from either side when the other is idle).
    public var count: Int { tail.load(ordering: .acquiring) - head.load(ordering: .acquiring) }
}
