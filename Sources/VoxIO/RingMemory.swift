import CXDP

/// Memory for one AF_XDP ring laid out as the kernel lays it out (net/xdp/xsk_queue.h
/// `struct xdp_ring`): producer, consumer and flags each on a cache line of its own,
/// then `size` entries (8-byte addresses for fill/completion, 16-byte `xdp_desc` for
/// RX/TX).
///
/// ```
///  0           64          128        192
///  | producer  | consumer  | flags    | entries[size] ...
/// ```
/// The in-memory port uses it for both sides of a ring; a real AF_XDP socket maps the
/// kernel's own. Either way the application drives it through libxdp's inline helpers
/// (`xsk_ring_prod__reserve`, `xsk_ring_cons__peek`, ...) over an `xsk_ring_prod`/`_cons`.
public struct RingMemory: ~Copyable {
    public let base: UnsafeMutableRawPointer
    public let size: UInt32
    public let entrySize: Int

    static let entriesOffset = 192

    /// `size` must be a power of two.
    public init(size: UInt32, entrySize: Int) {
        precondition(size > 0 && size & (size - 1) == 0, "ring size must be a power of two")
        self.size = size
        self.entrySize = entrySize
        let bytes = RingMemory.entriesOffset + Int(size) * entrySize
        base = .allocate(byteCount: bytes, alignment: 64)
        base.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
    }

    deinit { base.deallocate() }

    public var producer: UnsafeMutablePointer<UInt32> { base.assumingMemoryBound(to: UInt32.self) }
    public var consumer: UnsafeMutablePointer<UInt32> { (base + 64).assumingMemoryBound(to: UInt32.self) }
    public var flags: UnsafeMutablePointer<UInt32> { (base + 128).assumingMemoryBound(to: UInt32.self) }
    public var entries: UnsafeMutableRawPointer { base + RingMemory.entriesOffset }

    /// The producer's view, as libxdp sets it up in `xsk_socket__create` (cached_cons runs
    /// `size` ahead of the consumer: libxdp's free-entry arithmetic relies on it).
    public func producerRing() -> xsk_ring_prod {
        var r = xsk_ring_prod()
        r.mask = size - 1
        r.size = size
        r.producer = producer
        r.consumer = consumer
        r.ring = entries
        r.flags = flags
        r.cached_prod = producer.pointee
        r.cached_cons = consumer.pointee &+ size
        return r
    }

    /// The consumer's view.
    public func consumerRing() -> xsk_ring_cons {
        var r = xsk_ring_cons()
        r.mask = size - 1
        r.size = size
        r.producer = producer
        r.consumer = consumer
        r.ring = entries
        r.flags = flags
        r.cached_prod = producer.pointee
        r.cached_cons = consumer.pointee
        return r
    }
}

/// The application's four rings of one queue: fill and TX produced, RX and completion consumed.
public struct QueueRings {
    public var fill: xsk_ring_prod
    public var rx: xsk_ring_cons
    public var tx: xsk_ring_prod
    public var completion: xsk_ring_cons

    public init(fill: xsk_ring_prod, rx: xsk_ring_cons, tx: xsk_ring_prod, completion: xsk_ring_cons) {
        self.fill = fill
        self.rx = rx
        self.tx = tx
        self.completion = completion
    }
}
