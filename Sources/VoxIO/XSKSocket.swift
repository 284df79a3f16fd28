import CXDP
import Glibc
import Synchronization

/// A failure setting up AF_XDP, with a stable code.
public struct XSKError: Error, Sendable, CustomStringConvertible {
    public var code: String
    public var message: String
    public var errno: Int32

    public init(code: String, message: String, errno: Int32 = 0) {
        self.code = code
        self.message = message
        self.errno = errno
    }

    public var description: String {
        errno == 0 ? "\(code): \(message)" : "\(code): \(message) (\(String(cString: strerror(errno))))"
    }
}

/// How big the UMEM and the rings are.
public struct XSKConfiguration: Sendable, Equatable {
    /// Frames in the UMEM, shared by every queue (each worker starts with an equal share).
    public var frameCount: Int = 4096
    /// Bytes per frame; a power of two (aligned mode: `address & ~(frameSize - 1)` is the chunk).
    public var frameSize: Int = 2048
    /// Bytes the kernel leaves free in front of each received packet, beyond its own
    /// XDP_PACKET_HEADROOM: room for headers to grow (an IPv4 client, an IPv6 backend).
    public var headroom: Int = 0
    /// Entries in each RX, TX, fill and completion ring; powers of two.
    public var ringSize: UInt32 = 2048
    /// Try 2 MiB hugepages for the UMEM first (fewer TLB misses); fall back to 4 KiB pages.
    public var hugePages: Bool = true
    /// Ask the kernel to set the need_wakeup flags, so an idle queue costs no system calls.
    public var needWakeup: Bool = true
    /// Bind mode: the driver's choice (zero-copy where it can), or force one.
    public var bindMode: BindMode = .automatic

    public enum BindMode: String, Sendable, Equatable, CaseIterable, Codable {
        case automatic = "auto"
        case copy
        case zeroCopy = "zerocopy"
    }

    public init() {}

    public func problems() -> [String] {
        var out: [String] = []
        if frameSize < 2048 || frameSize > 4096 || frameSize & (frameSize - 1) != 0 {
            out.append("xdp frame size must be 2048 or 4096")
        }
        if ringSize < 64 || ringSize & (ringSize - 1) != 0 { out.append("xdp ring size must be a power of two ≥ 64") }
        if frameCount < Int(ringSize) { out.append("xdp frame count must be at least the ring size") }
        if headroom < 0 || headroom > 512 { out.append("xdp headroom must be 0...512") }
        return out
    }
}

/// One `mmap`'d region that backs every queue's frames: hugepages when the machine has
/// them reserved, ordinary pages otherwise. Unmapped at `deinit`.
public struct UMEMRegion: ~Copyable, @unchecked Sendable {
    public let base: UnsafeMutableRawPointer
    public let byteCount: Int
    public let usesHugePages: Bool

    public init(byteCount: Int, hugePages: Bool) throws(XSKError) {
        let flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE
        let failed = UnsafeMutableRawPointer(bitPattern: -1)
        if hugePages {
            let huge = 2 << 20
            let rounded = (byteCount + huge - 1) / huge * huge
            if let p = mmap(nil, rounded, PROT_READ | PROT_WRITE, flags | MAP_HUGETLB, -1, 0), p != failed {
                base = p
                self.byteCount = rounded
                usesHugePages = true
                return
            }
        }
        guard let p = mmap(nil, byteCount, PROT_READ | PROT_WRITE, flags, -1, 0), p != failed else {
            throw XSKError(code: "xsk.umem", message: "mmap of \(byteCount) bytes for the UMEM", errno: Glibc.errno)
        }
        base = p
        self.byteCount = byteCount
        usesHugePages = false
    }

    deinit { munmap(base, byteCount) }
}

/// What the kernel counted for one AF_XDP socket (`XDP_STATISTICS`): frames it could not
/// give us, and descriptors it refused. These are drops before the worker sees a packet.
public struct XSKStatistics: Sendable, Equatable {
    /// Dropped for other reasons (in copy mode: the frame did not fit, or allocation failed).
    public var rxDropped: UInt64 = 0
    public var rxInvalidDescriptors: UInt64 = 0
    public var txInvalidDescriptors: UInt64 = 0
    /// The RX ring was full: the worker fell behind.
    public var rxRingFull: UInt64 = 0
    /// The fill ring was empty when a packet arrived: no frame to put it in.
    public var rxFillRingEmpty: UInt64 = 0
    public var txRingEmpty: UInt64 = 0

    public init() {}
}

/// The AF_XDP sockets of one interface: one UMEM shared by every queue's socket, each
/// socket with its own fill and completion rings (`XDP_SHARED_UMEM`), so a frame received
/// on one queue can be sent from another and hand-off between workers copies nothing.
///
/// ```
///  UMEM (one region): | queue 0's share | queue 1's share | ... |   frameSize each frame
///  queue q socket:     fill_q → kernel → rx_q → worker q → tx_q → kernel → completion_q
/// ```
///
/// Sockets are created without libxdp's own program (`XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD`):
/// VoxEdge's XDP program steers to them through its `vox_xsks` map, which the caller fills
/// with `socketFD(queue:)`. The ring structs libxdp keeps pointers to live in memory owned
/// here until every socket and the UMEM are deleted (`deinit`, sockets first).
public final class XSKSet: @unchecked Sendable {
    public let interface: String
    public let configuration: XSKConfiguration
    public let region: UMEMRegion
    public let queueCount: Int
    let umem: OpaquePointer
    let sockets: [OpaquePointer]
    // Stable homes for the ring structs libxdp was given (it reads them again at delete).
    let fills: UnsafeMutablePointer<xsk_ring_prod>
    let completions: UnsafeMutablePointer<xsk_ring_cons>
    let rxs: UnsafeMutablePointer<xsk_ring_cons>
    let txs: UnsafeMutablePointer<xsk_ring_prod>
    /// Whether the kernel runs the sockets in zero-copy mode (veth: never).
    public let isZeroCopy: Bool

    /// Creates the UMEM and one socket for each of `queues` (queue ids 0 ..< queues).
    /// The corresponding C functions are `xsk_umem__create` and `xsk_socket__create_shared`.
    public init(interface: String, queues: Int, configuration c: XSKConfiguration) throws(XSKError) {
        let problems = c.problems()
        guard problems.isEmpty else { throw XSKError(code: "xsk.config", message: problems.joined(separator: "; ")) }
        guard queues >= 1 else { throw XSKError(code: "xsk.config", message: "at least one queue") }
        self.interface = interface
        configuration = c
        queueCount = queues
        region = try UMEMRegion(byteCount: c.frameCount * c.frameSize, hugePages: c.hugePages)
        // Zeroed: libxdp 1.3.1 leaves the cached indices of rings it did not set uninitialised
        // (FINDINGS), and the first peek would return garbage.
        fills = .allocate(capacity: queues)
        fills.initialize(repeating: xsk_ring_prod(), count: queues)
        completions = .allocate(capacity: queues)
        completions.initialize(repeating: xsk_ring_cons(), count: queues)
        rxs = .allocate(capacity: queues)
        rxs.initialize(repeating: xsk_ring_cons(), count: queues)
        txs = .allocate(capacity: queues)
        txs.initialize(repeating: xsk_ring_prod(), count: queues)

        var umemConfig = xsk_umem_config(
            fill_size: c.ringSize,
            comp_size: c.ringSize,
            frame_size: UInt32(c.frameSize),
            frame_headroom: UInt32(c.headroom),
            flags: 0
        )
        var created: OpaquePointer? = nil
        let status = xsk_umem__create(
            &created,
            region.base,
            UInt64(c.frameCount * c.frameSize),
            fills,
            completions,
            &umemConfig
        )
        guard status == 0, let created else {
            XSKSet.free(fills, completions, rxs, txs)
            throw XSKError(code: "xsk.umem", message: "UMEM of \(c.frameCount) × \(c.frameSize) bytes", errno: -status)
        }
        umem = created

        var bindFlags: UInt16 = 0
        if c.needWakeup { bindFlags |= UInt16(XDP_USE_NEED_WAKEUP) }
        switch c.bindMode {
        case .automatic: break
        case .copy: bindFlags |= UInt16(XDP_COPY)
        case .zeroCopy: bindFlags |= UInt16(XDP_ZEROCOPY)
        }
        var socketConfig = xsk_socket_config()
        socketConfig.rx_size = c.ringSize
        socketConfig.tx_size = c.ringSize
        socketConfig.libxdp_flags = UInt32(XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD)
        socketConfig.bind_flags = bindFlags
        var made: [OpaquePointer] = []
        for q in 0..<queues {
            var socket: OpaquePointer? = nil
            let status = xsk_socket__create_shared(
                &socket,
                interface,
                UInt32(q),
                created,
                rxs + q,
                txs + q,
                fills + q,
                completions + q,
                &socketConfig
            )
            guard status == 0, let socket else {
                for s in made.reversed() { xsk_socket__delete(s) }
                _ = xsk_umem__delete(created)
                XSKSet.free(fills, completions, rxs, txs)
                throw XSKError(
                    code: status == -ENODEV || status == -EINVAL ? "xsk.bind" : "xsk.socket",
                    message: "AF_XDP socket on \(interface) queue \(q)",
                    errno: -status
                )
            }
            made.append(socket)
        }
        sockets = made
        var options = xdp_options()
        var length = socklen_t(MemoryLayout<xdp_options>.size)
        let fd = xsk_socket__fd(made[0])
        isZeroCopy =
            getsockopt(fd, Int32(SOL_XDP), Int32(XDP_OPTIONS), &options, &length) == 0
            && options.flags & UInt32(XDP_OPTIONS_ZEROCOPY) != 0
    }

    deinit {
        for s in sockets.reversed() { xsk_socket__delete(s) }
        _ = xsk_umem__delete(umem)
        XSKSet.free(fills, completions, rxs, txs)
    }

    private static func free(
        _ fills: UnsafeMutablePointer<xsk_ring_prod>,
        _ completions: UnsafeMutablePointer<xsk_ring_cons>,
        _ rxs: UnsafeMutablePointer<xsk_ring_cons>,
        _ txs: UnsafeMutablePointer<xsk_ring_prod>
    ) {
        fills.deallocate()
        completions.deallocate()
        rxs.deallocate()
        txs.deallocate()
    }

    public var umemBase: UnsafeMutableRawPointer { region.base }
    public var frameSize: Int { configuration.frameSize }

    /// The socket of `queue`, for the XDP program's `vox_xsks` map and for `poll`.
    public func socketFD(queue: Int) -> Int32 { xsk_socket__fd(sockets[queue]) }

    /// The application-side rings of `queue`: copies of libxdp's structs that point at the
    /// same kernel memory, for the worker to drive (one owner each).
    public func rings(queue: Int) -> QueueRings {
        QueueRings(fill: fills[queue], rx: rxs[queue], tx: txs[queue], completion: completions[queue])
    }

    /// The UMEM frames (chunk addresses) queue `q` starts with: an equal share.
    public func initialFrames(queue q: Int) -> Range<UInt64> {
        let share = configuration.frameCount / queueCount
        return UInt64(q * share * configuration.frameSize)..<UInt64((q + 1) * share * configuration.frameSize)
    }

    /// The kernel's drop counters of `queue`'s socket.
    /// The corresponding C call is `getsockopt(fd, SOL_XDP, XDP_STATISTICS)`.
    public func statistics(queue: Int) -> XSKStatistics {
        var s = xdp_statistics()
        var length = socklen_t(MemoryLayout<xdp_statistics>.size)
        var out = XSKStatistics()
        guard getsockopt(socketFD(queue: queue), Int32(SOL_XDP), Int32(XDP_STATISTICS), &s, &length) == 0 else {
            return out
        }
        out.rxDropped = s.rx_dropped
        out.rxInvalidDescriptors = s.rx_invalid_descs
        out.txInvalidDescriptors = s.tx_invalid_descs
        out.rxRingFull = s.rx_ring_full
        out.rxFillRingEmpty = s.rx_fill_ring_empty_descs
        out.txRingEmpty = s.tx_ring_empty_descs
        return out
    }

    /// Turns on `SO_PREFER_BUSY_POLL` with a budget on `queue`'s socket: the kernel then
    /// leaves the queue's NAPI to the worker's system calls while it keeps polling.
    public func preferBusyPoll(queue: Int, budget: Int32 = 64, microseconds: Int32 = 20) throws(XSKError) {
        let fd = socketFD(queue: queue)
        for (option, value) in [
            (SO_PREFER_BUSY_POLL_OPTION, 1), (SO_BUSY_POLL_OPTION, microseconds),
            (SO_BUSY_POLL_BUDGET_OPTION, budget),
        ] {
            var v = value
            guard setsockopt(fd, SOL_SOCKET, option, &v, socklen_t(MemoryLayout<Int32>.size)) == 0 else {
                throw XSKError(
                    code: "xsk.busypoll",
                    message: "socket option \(option) on queue \(queue)",
                    errno: Glibc.errno
                )
            }
        }
    }
}

// asm-generic/socket.h; not every Glibc module map exports them.
let SO_BUSY_POLL_OPTION: Int32 = 46
let SO_PREFER_BUSY_POLL_OPTION: Int32 = 69
let SO_BUSY_POLL_BUDGET_OPTION: Int32 = 70

/// The system calls an AF_XDP queue needs besides its rings: the TX kick and the RX
/// wake-up. Holds only the socket's fd and views of the flags words, so it is cheap to
/// keep beside the worker on its thread.
public struct XSKQueueDriver: @unchecked Sendable {
    public let fd: Int32
    let fillFlags: UnsafeMutablePointer<UInt32>
    let txFlags: UnsafeMutablePointer<UInt32>
    let txProducer: UnsafeMutablePointer<UInt32>
    let txConsumer: UnsafeMutablePointer<UInt32>
    /// Kicks made, and kicks the kernel answered with EAGAIN/EBUSY (it had more to send).
    public private(set) var kicks: UInt64 = 0
    public private(set) var kicksBusy: UInt64 = 0

    public init(set: XSKSet, queue: Int) {
        fd = set.socketFD(queue: queue)
        fillFlags = set.fills[queue].flags
        txFlags = set.txs[queue].flags
        txProducer = set.txs[queue].producer
        txConsumer = set.txs[queue].consumer
    }

    /// Whether the kernel wants a system call before it takes frames from the fill ring.
    public var fillNeedsWakeup: Bool { fillFlags.pointee & UInt32(XDP_RING_NEED_WAKEUP) != 0 }

    /// Frames on the TX ring the kernel has not taken yet.
    public var txPending: UInt32 {
        UnsafeAtomicLoad.acquire(txProducer) &- UnsafeAtomicLoad.acquire(txConsumer)
    }

    /// Makes the kernel send what is on the TX ring. In copy mode one `sendto` sends at
    /// most 32 frames and answers EAGAIN while more wait (FINDINGS), so it repeats up to
    /// `attempts` times while frames are pending; the TX flag is always set in copy mode,
    /// so it always kicks when something is pending.
    public mutating func kickTX(attempts: Int = 8) {
        var tries = 0
        while txPending > 0 && tries < attempts {
            kicks &+= 1
            let r = sendto(fd, nil, 0, Int32(MSG_DONTWAIT), nil, 0)
            if r < 0 {
                let e = Glibc.errno
                if e == EAGAIN || e == EBUSY || e == ENOBUFS {
                    kicksBusy &+= 1
                } else if e != ENETDOWN {
                    return
                }
            }
            tries += 1
        }
    }

    /// Lets the kernel fill the RX ring when it asked to be woken (need_wakeup).
    public func wakeRX() {
        if fillNeedsWakeup { _ = recvfrom(fd, nil, 0, Int32(MSG_DONTWAIT), nil, nil) }
    }
}

/// Acquire loads of the kernel's ring indices (the kernel publishes them with release),
/// viewed as `Atomic<UInt32>` the way swift-system's `SQRing` does.
enum UnsafeAtomicLoad {
    static func acquire(_ p: UnsafeMutablePointer<UInt32>) -> UInt32 {
        UnsafeMutableRawPointer(p).assumingMemoryBound(to: Atomic<UInt32>.self).pointee.load(ordering: .acquiring)
    }
}
