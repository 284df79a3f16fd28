import VoxMedia

/// What the pipeline did with a packet.
public enum PacketVerdict: Int, CaseIterable, Sendable {
    /// Client SRTP unprotected and sent to the session's backend as RTP.
    case toBackend
    /// Backend RTP rewritten into the client leg's stream, protected, sent to the client.
    case toClient
    /// A STUN Binding request answered in the same frame.
    case answered
    /// A DTLS record queued for the handshake thread.
    case toHandshake
    /// Given to the worker that owns the session.
    case handedOff
    /// Used here (RTCP terminates at the edge).
    case consumed
    /// Dropped, for a `DropReason`.
    case dropped
}

/// Why a packet was dropped.
public enum DropReason: Int, CaseIterable, Sendable {
    case malformedFrame
    case notForUs
    case unsupportedPayload
    case unknownFlow
    case unknownSession
    case stunRejected
    case srtpAuthentication
    case srtpReplay
    case srtpOther
    case malformedRTP
    case noRoom
    case backendUnavailable
    case wrongSource
    case handoffFull
    case handshakeFull
    case transmitFull
    /// Backend audio for a client the edge has not heard from yet: on AF_XDP there is no MAC
    /// to send it to (the worker answers at the MAC the client's packets come from).
    case clientUnheard
    /// A packet the engine would have sent to one of its own endpoints (its media address and
    /// port, or a backend-leg port): refused rather than looped back into itself.
    case ownAddress
    /// SRTP or SRTCP on a 5-tuple shared by SSRC-multiplexed sessions whose sender SSRC
    /// (read in the clear, before unprotect) none of them claims.
    case unknownSSRC
}

/// A worker's counters: one cache-aligned block, written only by its worker (plain
/// stores), read by the control thread at any time (aligned 64-bit loads do not tear on
/// the machines we run on).
public final class WorkerCounters: @unchecked Sendable {
    static let slots = PacketVerdict.allCases.count + DropReason.allCases.count + 9
    let values: UnsafeMutablePointer<UInt64>

    init() {
        let raw = UnsafeMutableRawPointer.allocate(byteCount: WorkerCounters.slots * 8, alignment: 64)
        values = raw.bindMemory(to: UInt64.self, capacity: WorkerCounters.slots)
        values.initialize(repeating: 0, count: WorkerCounters.slots)
    }

    deinit { values.deallocate() }

    @inline(__always)
    func count(_ v: PacketVerdict) { values[v.rawValue] &+= 1 }

    @inline(__always)
    func drop(_ r: DropReason) {
        values[PacketVerdict.dropped.rawValue] &+= 1
        values[PacketVerdict.allCases.count + r.rawValue] &+= 1
    }

    public subscript(_ v: PacketVerdict) -> UInt64 { values[v.rawValue] }
    public subscript(_ r: DropReason) -> UInt64 { values[PacketVerdict.allCases.count + r.rawValue] }

    /// Bursts processed, and packets received through the RX ring and through hand-off.
    public var bursts: UInt64 { values[WorkerCounters.slots - 8] }
    public var received: UInt64 { values[WorkerCounters.slots - 7] }
    public var handedIn: UInt64 { values[WorkerCounters.slots - 6] }
    /// Loop utilisation: nanoseconds of the worker's loop spent on bursts that handled
    /// packets, and spent idle (empty bursts and sleeping in poll). Busy / (busy + idle) is
    /// how loaded the core is, whatever the idle strategy (busy-polling shows 100 % CPU).
    public var busyNanoseconds: UInt64 { values[WorkerCounters.slots - 5] }
    public var idleNanoseconds: UInt64 { values[WorkerCounters.slots - 4] }
    public func addLoopTime(busy: UInt64, idle: UInt64) {
        values[WorkerCounters.slots - 5] &+= busy
        values[WorkerCounters.slots - 4] &+= idle
    }
    /// Heartbeat: the monotonic time (ns) at which the worker's loop last came round, busy or
    /// idle (an idle worker wakes at least once a second). Health checks read it: a worker
    /// whose heartbeat stops is stuck. Zero until the loop starts.
    public var heartbeat: UInt64 { values[WorkerCounters.slots - 3] }
    public func beat(_ now: UInt64) { values[WorkerCounters.slots - 3] = now }
    /// Sessions the worker ended itself because ICE failed: no valid check by the connect
    /// deadline, or consent expired (RFC 7675).
    public func sessionsEnded(_ failure: ICEFailure) -> UInt64 { values[WorkerCounters.endedIndex(failure)] }
    func countEnded(_ failure: ICEFailure) { values[WorkerCounters.endedIndex(failure)] &+= 1 }
    static func endedIndex(_ failure: ICEFailure) -> Int { slots - 2 + (failure == .consentExpired ? 1 : 0) }
    /// Held sessions this worker claimed with their first valid check (DESIGN §2a).
    public var sessionsClaimed: UInt64 { values[WorkerCounters.slots - 9] }
    func countClaimed() { values[WorkerCounters.slots - 9] &+= 1 }
    func addBurst(received n: Int, handedIn h: Int) {
        values[WorkerCounters.slots - 8] &+= 1
        values[WorkerCounters.slots - 7] &+= UInt64(n)
        values[WorkerCounters.slots - 6] &+= UInt64(h)
    }
}
