import CXDP
import VoxWire

/// A UMEM and per-queue rings in the kernel's layout, with the kernel's side played in
/// process: `deliver` does what the NIC + XDP redirect do (take a frame address from the
/// fill ring, write the packet after the headroom, post an RX descriptor) and
/// `collectTransmitted` what the driver does (read TX descriptors, hand the bytes to the
/// wire, post the addresses on the completion ring). The worker under test drives its
/// rings exactly as it drives an AF_XDP socket's, so the code tested is the code that runs.
///
/// UMEM: `frameCount` chunks of `frameSize` bytes, aligned mode; the packet of an RX
/// descriptor starts `headroom` bytes into its chunk.
public final class InMemoryPort {
    public let frameSize: Int
    public let frameCount: Int
    public let headroom: Int
    public let umem: UnsafeMutableRawPointer
    let queues: [Queue]

    final class Queue {
        let fill: RingMemory
        let rx: RingMemory
        let tx: RingMemory
        let completion: RingMemory
        // The kernel side's ring views, in raw memory (class `var`s would pay a dynamic
        // exclusivity check per access).
        let kernelFill: UnsafeMutablePointer<xsk_ring_cons>
        let kernelRX: UnsafeMutablePointer<xsk_ring_prod>
        let kernelTX: UnsafeMutablePointer<xsk_ring_cons>
        let kernelCompletion: UnsafeMutablePointer<xsk_ring_prod>

        init(ringSize: UInt32) {
            fill = RingMemory(size: ringSize, entrySize: 8)
            rx = RingMemory(size: ringSize, entrySize: MemoryLayout<xdp_desc>.stride)
            tx = RingMemory(size: ringSize, entrySize: MemoryLayout<xdp_desc>.stride)
            completion = RingMemory(size: ringSize, entrySize: 8)
            kernelFill = .allocate(capacity: 1)
            kernelFill.initialize(to: fill.consumerRing())
            kernelRX = .allocate(capacity: 1)
            kernelRX.initialize(to: rx.producerRing())
            kernelTX = .allocate(capacity: 1)
            kernelTX.initialize(to: tx.consumerRing())
            kernelCompletion = .allocate(capacity: 1)
            kernelCompletion.initialize(to: completion.producerRing())
        }

        deinit {
            kernelFill.deallocate()
            kernelRX.deallocate()
            kernelTX.deallocate()
            kernelCompletion.deallocate()
        }
    }

    public init(queues: Int, frameCount: Int, frameSize: Int = 2048, ringSize: UInt32 = 512, headroom: Int = 256) {
        precondition(frameSize & (frameSize - 1) == 0 && headroom < frameSize)
        self.frameSize = frameSize
        self.frameCount = frameCount
        self.headroom = headroom
        umem = .allocate(byteCount: frameCount * frameSize, alignment: 4096)
        umem.initializeMemory(as: UInt8.self, repeating: 0, count: frameCount * frameSize)
        self.queues = (0..<queues).map { _ in Queue(ringSize: ringSize) }
    }

    deinit { umem.deallocate() }

    /// The application-side rings of queue `q`.
    public func rings(queue q: Int) -> QueueRings {
        let queue = queues[q]
        return QueueRings(
            fill: queue.fill.producerRing(), rx: queue.rx.consumerRing(),
            tx: queue.tx.producerRing(), completion: queue.completion.consumerRing())
    }

    /// The UMEM addresses (chunk starts) given to queue `q` at start: an equal share.
    public func initialFrames(queue q: Int) -> Range<UInt64> {
        let share = frameCount / queues.count
        return UInt64(q * share * frameSize)..<UInt64((q + 1) * share * frameSize)
    }

    /// The NIC receives `bytes` on queue `q`. False when the fill ring is empty or the RX
    /// ring full (the kernel counts these as `rx_fill_ring_empty_descs` / `rx_ring_full`).
    @discardableResult
    public func deliver(_ bytes: [UInt8], queue q: Int) -> Bool {
        bytes.withUnsafeBytes { deliver($0.baseAddress!, length: $0.count, queue: q) }
    }

    /// `deliver` from raw memory (benchmarks: allocation-free).
    @discardableResult
    public func deliver(_ bytes: UnsafeRawPointer, length: Int, queue q: Int) -> Bool {
        let queue = queues[q]
        guard length <= frameSize - headroom else { return false }
        var fillIndex: UInt32 = 0
        guard xsk_ring_cons__peek(queue.kernelFill, 1, &fillIndex) == 1 else { return false }
        var rxIndex: UInt32 = 0
        guard xsk_ring_prod__reserve(queue.kernelRX, 1, &rxIndex) == 1 else {
            xsk_ring_cons__cancel(queue.kernelFill, 1)
            return false
        }
        let chunk = xsk_ring_cons__comp_addr(queue.kernelFill, fillIndex).pointee
        xsk_ring_cons__release(queue.kernelFill, 1)
        let addr = chunk + UInt64(headroom)
        (umem + Int(addr)).copyMemory(from: bytes, byteCount: length)
        let desc = xsk_ring_prod__tx_desc(queue.kernelRX, rxIndex)!
        desc.pointee.addr = addr
        desc.pointee.len = UInt32(length)
        desc.pointee.options = 0
        xsk_ring_prod__submit(queue.kernelRX, 1)
        return true
    }

    /// Everything queue `q` has posted for transmission since the last call, in order; the
    /// frames go back on its completion ring.
    public func collectTransmitted(queue q: Int) -> [[UInt8]] {
        let queue = queues[q]
        var out: [[UInt8]] = []
        var index: UInt32 = 0
        let n = xsk_ring_cons__peek(queue.kernelTX, queue.tx.size, &index)
        guard n > 0 else { return out }
        var completionIndex: UInt32 = 0
        precondition(xsk_ring_prod__reserve(queue.kernelCompletion, n, &completionIndex) == n, "completion ring full")
        for i in 0..<n {
            let desc = xsk_ring_cons__rx_desc(queue.kernelTX, index &+ i)!.pointee
            out.append(Array(UnsafeRawBufferPointer(start: umem + Int(desc.addr), count: Int(desc.len))))
            xsk_ring_prod__fill_addr(queue.kernelCompletion, completionIndex &+ i).pointee = desc.addr
        }
        xsk_ring_cons__release(queue.kernelTX, n)
        xsk_ring_prod__submit(queue.kernelCompletion, n)
        return out
    }

    /// Takes what queue `q` posted for transmission without copying it out (the wire ate it);
    /// the frames go back on its completion ring. Returns how many.
    @discardableResult
    public func discardTransmitted(queue q: Int) -> Int {
        let queue = queues[q]
        var index: UInt32 = 0
        let n = xsk_ring_cons__peek(queue.kernelTX, queue.tx.size, &index)
        guard n > 0 else { return 0 }
        var completionIndex: UInt32 = 0
        precondition(xsk_ring_prod__reserve(queue.kernelCompletion, n, &completionIndex) == n, "completion ring full")
        for i in 0..<n {
            xsk_ring_prod__fill_addr(queue.kernelCompletion, completionIndex &+ i).pointee =
                xsk_ring_cons__rx_desc(queue.kernelTX, index &+ i)!.pointee.addr
        }
        xsk_ring_cons__release(queue.kernelTX, n)
        xsk_ring_prod__submit(queue.kernelCompletion, n)
        return Int(n)
    }

    /// Frames waiting in queue `q`'s fill ring (posted by the application, not yet used).
    public func fillLevel(queue q: Int) -> UInt32 {
        let queue = queues[q]
        return queue.fill.producer.pointee &- queue.fill.consumer.pointee
    }
}
