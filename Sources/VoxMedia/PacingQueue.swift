/// How a session's pacing queue is sized and when it starts a new talk spurt.
public struct PacingConfiguration: Sendable, Equatable {
    /// Entries the queue holds; e.g. 100 = 2 s of 20 ms frames.
    public var depth: Int
    /// The largest payload an entry holds, in bytes. 1,500 fits any payload of an Ethernet MTU.
    public var slotBytes: Int
    /// The stream's RTP clock rate, Hz (48,000 for Opus).
    public var clockRate: UInt32
    /// A packet whose timestamp moves more than this (ns of RTP time) from the previous one's,
    /// either way, starts a new talk spurt.
    public var maxJump: UInt64
    /// With the queue empty, a packet more than this (ns) past its playout time starts a new
    /// talk spurt: its sender paused without advancing its timestamps.
    public var lateness: UInt64

    public init(
        depth: Int = 100, slotBytes: Int = 1500, clockRate: UInt32 = 48_000, maxJump: UInt64 = 1_000_000_000,
        lateness: UInt64 = 20_000_000
    ) {
        self.depth = depth
        self.slotBytes = slotBytes
        self.clockRate = clockRate
        self.maxJump = maxJump
        self.lateness = lateness
    }

    /// Bytes a queue of this configuration allocates: `depth × (slotBytes + 16)`.
    public var memoryBytes: Int { depth * (slotBytes + MemoryLayout<PacingQueue.Entry>.stride) }
}

/// What `PacingQueue.offer` did with a packet.
public enum PacingDecision: UInt8, Sendable, BitwiseCopyable {
    /// On schedule and nothing queued before it: the caller sends it now (not copied).
    case sendNow
    /// Copied into the queue; `due` releases it at its playout time.
    case queued
    /// Copied into the queue, which was full: its oldest entry was dropped (counted).
    case droppedOldest
    /// Larger than a slot and not on schedule: refused (counted).
    case tooLarge
}

/// A packet the queue released: its payload stays in the queue's arena until the next
/// `offer`, `flush` or `reset`.
public struct PacedPacket {
    public var payload: UnsafeRawBufferPointer
    public var rtpTimestamp: UInt32
    public var marker: Bool
    public var payloadType: UInt8
    /// Its playout time (ns).
    public var due: UInt64
}

/// One session's audio toward its client, paced by RTP timestamps (docs/backend-protocol.md,
/// "Pacing toward the client"). Sans-IO: time is passed in (ns, `MonotonicClock`); the
/// caller sends what `offer` and `due` hand back and arms its timer at `nextDeadline`.
///
/// Owns, from `init` to `deinit`, one arena of `depth × slotBytes` bytes and `depth` entries;
/// nothing is allocated after `init`. The entries are a ring:
/// ```
/// entries: [ ... | head | head+1 | ... | head+count-1 | ... ]   (indices mod depth)
/// slot i of the arena holds entry i's payload; 0 ≤ count ≤ depth, 0 ≤ head < depth
/// ```
/// Entries are released in the order offered (FIFO); their playout times follow their
/// timestamps, so a reordered packet leaves with the one before it.
///
/// Playout time = the anchor's time + (timestamp − the anchor's timestamp) / clock rate, the
/// difference summed packet to packet as signed 32-bit steps (wrap-around safe). The anchor
/// is the first packet of a talk spurt; a spurt starts at the first packet, after a flush,
/// on a jump of more than `maxJump`, and when a packet with the queue empty is more than
/// `lateness` late.
public struct PacingQueue: ~Copyable {
    @usableFromInline
    struct Entry {
        var due: UInt64
        var timestamp: UInt32
        var length: UInt16
        var marker: Bool
        var payloadType: UInt8
    }

    public private(set) var configuration: PacingConfiguration
    @usableFromInline let entries: UnsafeMutablePointer<Entry>
    @usableFromInline let arena: UnsafeMutableRawPointer
    @usableFromInline var head = 0
    public private(set) var count = 0

    /// The spurt's anchor: its time, and the RTP time elapsed since it (ticks), advanced
    /// by each packet's step from the one before.
    var anchored = false
    var anchorTime: UInt64 = 0
    var offsetTicks: Int64 = 0
    var lastTimestamp: UInt32 = 0
    var lastDue: UInt64 = 0
    /// The last forward step's duration (ns): where a new spurt starts behind queued audio.
    var lastStep: UInt64 = 20_000_000

    /// Packets dropped because the queue was full.
    public private(set) var droppedOldest: UInt64 = 0
    /// Packets refused for not fitting a slot.
    public private(set) var tooLarge: UInt64 = 0
    /// Packets dropped by flushes, and the flushes.
    public private(set) var flushedPackets: UInt64 = 0
    public private(set) var flushes: UInt64 = 0
    /// Talk spurts started (the first packet's included).
    public private(set) var spurts: UInt64 = 0

    /// `configuration.depth` and `slotBytes` must be 1 or more (slotBytes at most 65,535).
    public init(_ configuration: PacingConfiguration) {
        precondition(configuration.depth >= 1 && (1...65_535).contains(configuration.slotBytes))
        precondition(configuration.clockRate >= 1)
        self.configuration = configuration
        entries = .allocate(capacity: configuration.depth)
        arena = .allocate(byteCount: configuration.depth * configuration.slotBytes, alignment: 64)
    }

    deinit {
        entries.deallocate()
        arena.deallocate()
    }

    public var isEmpty: Bool { count == 0 }

    /// When the oldest entry is due (ns), or nil when the queue is empty: the timer to arm.
    public var nextDeadline: UInt64? { count > 0 ? entries[head].due : nil }

    /// `ticks` of RTP time in ns, exact for any magnitude (no 64-bit overflow).
    @inlinable
    func nanoseconds(ticks: Int64) -> Int64 {
        let rate = Int64(configuration.clockRate)
        return (ticks / rate) * 1_000_000_000 + (ticks % rate) * 1_000_000_000 / rate
    }

    /// Starts a talk spurt: now, or after the previous packet has played if that is later,
    /// so a spurt never plays over audio already sent or queued.
    mutating func startSpurt(now: UInt64) {
        anchorTime = anchored ? max(now, lastDue &+ lastStep) : now
        anchored = true
        offsetTicks = 0
        spurts &+= 1
    }

    /// Takes a packet from the backend at `now`: `.sendNow` when the queue is empty and its
    /// playout time has come (the caller sends `payload` itself); otherwise a copy is queued.
    /// Allocates nothing.
    public mutating func offer(
        _ payload: UnsafeRawBufferPointer, rtpTimestamp: UInt32, marker: Bool = false, payloadType: UInt8 = 0,
        now: UInt64
    ) -> PacingDecision {
        var due: UInt64
        if !anchored {
            startSpurt(now: now)
            due = anchorTime
        } else {
            let step = Int64(Int32(bitPattern: rtpTimestamp &- lastTimestamp))
            let stepTime = nanoseconds(ticks: step)
            let maxJump = Int64(clamping: configuration.maxJump)
            if stepTime > maxJump || stepTime < -maxJump {
                startSpurt(now: now)
                due = anchorTime
            } else {
                offsetTicks += step
                let offset = nanoseconds(ticks: offsetTicks)
                due = offset >= 0 ? anchorTime &+ UInt64(offset) : anchorTime - min(anchorTime, UInt64(-offset))
                if count == 0, now > due, now - due > configuration.lateness {
                    startSpurt(now: now)
                    due = anchorTime
                } else if stepTime > 0 {
                    lastStep = UInt64(stepTime)
                }
            }
        }
        lastTimestamp = rtpTimestamp
        lastDue = due
        if count == 0 && due <= now { return .sendNow }
        guard payload.count <= configuration.slotBytes else {
            tooLarge &+= 1
            return .tooLarge
        }
        var decision = PacingDecision.queued
        if count == configuration.depth {
            head = head + 1 == configuration.depth ? 0 : head + 1
            count -= 1
            droppedOldest &+= 1
            decision = .droppedOldest
        }
        var slot = head + count
        if slot >= configuration.depth { slot -= configuration.depth }
        entries[slot] = Entry(
            due: due, timestamp: rtpTimestamp, length: UInt16(payload.count), marker: marker, payloadType: payloadType)
        if payload.count > 0 {
            (arena + slot * configuration.slotBytes).copyMemory(from: payload.baseAddress!, byteCount: payload.count)
        }
        count += 1
        return decision
    }

    /// The oldest entry if its playout time has come by `now`, removed from the queue; call
    /// until nil. Its payload stays valid until the next `offer`, `flush` or `reset`.
    public mutating func due(now: UInt64) -> PacedPacket? {
        guard count > 0 else { return nil }
        let e = entries[head]
        guard e.due <= now else { return nil }
        let slot = head
        head = head + 1 == configuration.depth ? 0 : head + 1
        count -= 1
        return PacedPacket(
            payload: UnsafeRawBufferPointer(start: arena + slot * configuration.slotBytes, count: Int(e.length)),
            rtpTimestamp: e.timestamp, marker: e.marker, payloadType: e.payloadType, due: e.due)
    }

    /// Drops everything queued at once (barge-in) and forgets the anchor, so the next packet
    /// plays immediately. Returns how many packets it dropped.
    @discardableResult
    public mutating func flush() -> Int {
        let dropped = count
        head = 0
        count = 0
        anchored = false
        flushedPackets &+= UInt64(dropped)
        flushes &+= 1
        return dropped
    }

    /// Empties the queue and zeroes its state and counters, for the slot's next session,
    /// whose stream runs at `clockRate` (the arena is kept).
    public mutating func reset(clockRate: UInt32) {
        precondition(clockRate >= 1)
        configuration.clockRate = clockRate
        head = 0
        count = 0
        anchored = false
        lastStep = 20_000_000
        droppedOldest = 0
        tooLarge = 0
        flushedPackets = 0
        flushes = 0
        spurts = 0
    }
}
