import Synchronization
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
    /// A datagram of the handshake thread's flight sent to the session's client.
    case fromHandshake
    /// Given to the worker that owns the session.
    case handedOff
    /// Used here (RTCP terminates at the edge; an authentic backend control message).
    case consumed
    /// Backend audio ahead of its playout time: copied into the session's pacing queue, sent
    /// to the client when its timestamp says (`pacedSent`).
    case paced
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
    /// Media of a WebRTC session whose DTLS handshake has not given it keys yet.
    case notKeyed
    /// SRTP or SRTCP on a 5-tuple shared by SSRC-multiplexed sessions whose sender SSRC
    /// (read in the clear, before unprotect) none of them claims.
    case unknownSSRC
    /// A backend control message refused: no key for that backend, or a verdict other than
    /// ok (bad MAC, replay, wrong session, malformed; counted by verdict in `backendMessages`).
    case backendControl
    /// Backend audio ahead of schedule and larger than a pacing slot (`pacing_slot_bytes`).
    case pacingTooLarge
    /// SRTP or SRTCP from a client past its session's rate (`client_rate_limit_pps` with its
    /// burst): dropped before unprotect.
    case policed
}

/// Why a worker ended a session itself.
public enum SessionEndReason: Int, CaseIterable, Sendable {
    /// No valid check by the connect deadline, or ICE connected but no DTLS handshake
    /// finished by it (10 s after the offer).
    case connectTimeout
    /// No valid check nor authenticated media for the consent interval (RFC 7675).
    case consentExpired
    /// The DTLS handshake failed: its deadline, a certificate matching no offered
    /// fingerprint, no SRTP profile in common.
    case handshakeFailed
    /// The client ended the session with close_notify.
    case closedByClient
    /// The backend ended it (an authentic `end`: its conversation is over, or it is overloaded).
    case backendEnded

    public var name: String {
        switch self {
        case .connectTimeout: "connect_timeout"
        case .consentExpired: "consent_expired"
        case .handshakeFailed: "handshake_failed"
        case .closedByClient: "closed_by_client"
        case .backendEnded: "backend_ended"
        }
    }
}

/// What a worker did on the backend protocol's side (docs/backend-protocol.md).
public enum BackendCounter: Int, CaseIterable, Sendable {
    /// Control messages the edge sent: start, end, keepalive, keepalive-ack, migrated-*.
    case controlSent
    /// Control messages not sent: no free frame, or no room (never expected; counted).
    case controlUnsent
    /// Paced packets sent to the client at their playout time.
    case pacedSent
    /// Queued packets dropped because a session's pacing queue was full (the oldest go).
    case pacingOverflow
    /// Flushes the backends asked for, and the queued packets they dropped.
    case flushes
    case flushedPackets
    /// Paced packets that could not be sent at their time: no free frame, or no room.
    case pacedUnsent

    public var name: String {
        switch self {
        case .controlSent: "control_sent"
        case .controlUnsent: "control_unsent"
        case .pacedSent: "paced_sent"
        case .pacingOverflow: "pacing_overflow"
        case .flushes: "flushes"
        case .flushedPackets: "flushed_packets"
        case .pacedUnsent: "paced_unsent"
        }
    }
}

/// A worker's counters: one cache-aligned block, written only by its worker, read by the
/// control thread at any time. Every access is a relaxed atomic: with a single writer an
/// increment is a relaxed load and a relaxed store (no read-modify-write instruction), which
/// on x86-64 compiles to the same plain `mov`s as before, and the control thread's loads
/// race nothing in Swift's memory model (ThreadSanitizer found the plain ones,
/// docs/reliability.md). A reader may see a burst's counters part-way through: a snapshot.
public final class WorkerCounters: @unchecked Sendable {
    /// Verdicts, drop reasons, then seven loop and session counters, then session ends, then
    /// the backend protocol's: control messages by verdict, then `BackendCounter`s.
    static let misc = PacketVerdict.allCases.count + DropReason.allCases.count
    static let backendBase = misc + 7 + SessionEndReason.allCases.count
    static let backendCounters = backendBase + BackendVerdict.allCases.count
    static let slots = backendCounters + BackendCounter.allCases.count
    let values: UnsafeMutablePointer<Atomic<UInt64>>

    init() {
        let raw = UnsafeMutableRawPointer.allocate(
            byteCount: WorkerCounters.slots * MemoryLayout<Atomic<UInt64>>.stride, alignment: 64)
        values = raw.bindMemory(to: Atomic<UInt64>.self, capacity: WorkerCounters.slots)
        for i in 0..<WorkerCounters.slots { (values + i).initialize(to: Atomic<UInt64>(0)) }
    }

    deinit {
        values.deinitialize(count: WorkerCounters.slots)
        values.deallocate()
    }

    /// Counter `i` (any thread).
    func load(_ i: Int) -> UInt64 { values[i].load(ordering: .relaxed) }

    /// Adds `n` to counter `i` (its worker only: the single writer, so no RMW).
    func add(_ i: Int, _ n: UInt64 = 1) { values[i].store(values[i].load(ordering: .relaxed) &+ n, ordering: .relaxed) }

    @inline(__always)
    func count(_ v: PacketVerdict) { add(v.rawValue) }

    @inline(__always)
    func drop(_ r: DropReason) {
        add(PacketVerdict.dropped.rawValue)
        add(PacketVerdict.allCases.count + r.rawValue)
    }

    public subscript(_ v: PacketVerdict) -> UInt64 { load(v.rawValue) }
    public subscript(_ r: DropReason) -> UInt64 { load(PacketVerdict.allCases.count + r.rawValue) }

    /// Bursts processed, and packets received through the RX ring and through hand-off.
    public var bursts: UInt64 { load(WorkerCounters.misc + 1) }
    public var received: UInt64 { load(WorkerCounters.misc + 2) }
    public var handedIn: UInt64 { load(WorkerCounters.misc + 3) }
    /// Loop utilisation: nanoseconds of the worker's loop spent on bursts that handled
    /// packets, and spent idle (empty bursts and sleeping in poll). Busy / (busy + idle) is
    /// how loaded the core is, whatever the idle strategy (busy-polling shows 100 % CPU).
    public var busyNanoseconds: UInt64 { load(WorkerCounters.misc + 4) }
    public var idleNanoseconds: UInt64 { load(WorkerCounters.misc + 5) }
    public func addLoopTime(busy: UInt64, idle: UInt64) {
        add(WorkerCounters.misc + 4, busy)
        add(WorkerCounters.misc + 5, idle)
    }
    /// Heartbeat: the monotonic time (ns) at which the worker's loop last came round, busy or
    /// idle (an idle worker wakes at least once a second). Health checks read it: a worker
    /// whose heartbeat stops is stuck. Zero until the loop starts.
    public var heartbeat: UInt64 { load(WorkerCounters.misc + 6) }
    public func beat(_ now: UInt64) { values[WorkerCounters.misc + 6].store(now, ordering: .relaxed) }
    /// Sessions the worker ended itself, by reason.
    public func sessionsEnded(_ reason: SessionEndReason) -> UInt64 { load(WorkerCounters.endedIndex(reason)) }
    func countEnded(_ reason: SessionEndReason) { add(WorkerCounters.endedIndex(reason)) }
    static func endedIndex(_ reason: SessionEndReason) -> Int {
        misc + 7 + reason.rawValue
    }
    /// Control messages from backends, by verdict (`ok`: accepted and acted on).
    public func backendMessages(_ verdict: BackendVerdict) -> UInt64 {
        load(WorkerCounters.backendBase + Int(verdict.rawValue))
    }
    func count(_ verdict: BackendVerdict) { add(WorkerCounters.backendBase + Int(verdict.rawValue)) }
    public subscript(_ c: BackendCounter) -> UInt64 { load(WorkerCounters.backendCounters + c.rawValue) }
    func count(_ c: BackendCounter, _ n: UInt64 = 1) { add(WorkerCounters.backendCounters + c.rawValue, n) }

    /// Held sessions this worker claimed with their first valid check (DESIGN §2a).
    public var sessionsClaimed: UInt64 { load(WorkerCounters.misc + 0) }
    func countClaimed() { add(WorkerCounters.misc + 0) }
    func addBurst(received n: Int, handedIn h: Int) {
        add(WorkerCounters.misc + 1)
        add(WorkerCounters.misc + 2, UInt64(n))
        add(WorkerCounters.misc + 3, UInt64(h))
    }
}
