import Glibc
import Synchronization
import VoxMedia
import VoxWire

/// The edge's own RTP stream toward the client (DESIGN §2a). Its SSRC, sequence numbers and
/// timestamps belong to the edge and run on monotonically whichever backend is speaking,
/// so an (SSRC, index) pair is never reused under the session's key.
public struct ClientLegStream: Sendable {
    public var ssrc: UInt32
    public var nextSequence: UInt16
    public var lastTimestamp: UInt32 = 0
    /// Added to a backend's timestamps to place them on this stream's timeline.
    public var timestampOffset: UInt32 = 0
    /// The next backend packet re-anchors `timestampOffset` (first packet, backend change).
    public var needsAnchor = true
    /// What one packet advances the timeline by when re-anchoring (20 ms at 48 kHz).
    public static let anchorStep: UInt32 = 960

    public init(ssrc: UInt32, firstSequence: UInt16, firstTimestamp: UInt32) {
        self.ssrc = ssrc
        self.nextSequence = firstSequence
        self.lastTimestamp = firstTimestamp &- ClientLegStream.anchorStep
    }

    /// Rewrites the RTP header at `rtp` (a backend's packet) into this stream in place.
    @inlinable
    public mutating func rewrite(_ rtp: UnsafeMutableRawPointer) {
        let backendTimestamp = rtp.loadBE32(at: 4)
        if needsAnchor {
            timestampOffset = lastTimestamp &+ ClientLegStream.anchorStep &- backendTimestamp
            needsAnchor = false
        }
        let ts = backendTimestamp &+ timestampOffset
        rtp.storeBE16(nextSequence, at: 2)
        rtp.storeBE32(ts, at: 4)
        rtp.storeBE32(ssrc, at: 8)
        nextSequence &+= 1
        lastTimestamp = ts
    }
}

/// A token bucket over a client's packets, in nanoseconds of credit: time adds credit (up to
/// the bucket's capacity), a packet spends its cost. A client within its rate never runs
/// dry; one far above it is held to the rate, with bursts of capacity / cost packets.
public struct ClientPolicer: Sendable {
    var credit: UInt64
    var last: UInt64

    /// Whether a packet at `now` fits; spends its `cost` when it does. Allocation-free.
    mutating func admit(now: UInt64, cost: UInt64, capacity: UInt64) -> Bool {
        if now > last {
            credit = min(capacity, credit &+ (now - last))
            last = now
        }
        guard credit >= cost else { return false }
        credit -= cost
        return true
    }
}

/// One session's state in a worker-owned slot. Only the owning worker writes it.
///
/// What the control thread reads while the owner may be writing (`SessionStore`'s
/// `packetCounts`, `backendState`, `isKeyed`, `profile`) is kept in relaxed atomics behind
/// the same property names: the single writer does a relaxed load and a relaxed store (no
/// read-modify-write; on x86-64 the same plain `mov`s as a plain field), the reader a relaxed
/// load, so neither races in Swift's memory model (ThreadSanitizer, docs/reliability.md).
/// Each is a snapshot on its own: a reader may see one field updated and its neighbour not yet.
public struct SessionSlot: ~Copyable {
    public internal(set) var active: Bool {
        get { _active.load(ordering: .relaxed) }
        nonmutating set { _active.store(newValue, ordering: .relaxed) }
    }
    let _active = Atomic<Bool>(false)
    /// The SSRC its create named (nil: none): its client 5-tuple may be shared with other such
    /// sessions of this worker, and its packets are found by (5-tuple, SSRC). Beside `active`:
    /// the packet path reads it for every session.
    public internal(set) var demuxSSRC: UInt32? = nil
    /// The other sessions sharing its 5-tuple, as a list through their slots (-1: none). The
    /// first is the one the 5-tuple's index entry and `vox_flows` name.
    var previousSharing: Int32 = -1
    var nextSharing: Int32 = -1
    public internal(set) var sessionID: UInt64 = 0
    public internal(set) var clientFlow: FlowKey? = nil
    public internal(set) var clientMAC = MACAddress.zero
    public internal(set) var backendIndex: Int32 = -1
    /// The client's RTP SSRC, once it has sent authenticated media.
    public internal(set) var clientSSRC: UInt32? = nil
    /// Loss and jitter of the client's audio (RFC 3550 A.1/A.3/A.8), on the 48 kHz Opus clock.
    public internal(set) var clientStats = RTPReceiveStatistics()
    /// Client → edge: unprotects what the client sends.
    var inbound: SRTPContext
    /// Edge → client: protects the client leg.
    var outbound: SRTPContext
    /// A second pair of contexts of the other cipher family (AEAD-GCM beside AES-CM): a
    /// session whose profile the first pair cannot take swaps them in, so re-keying a slot
    /// for whatever profile a client negotiates allocates nothing.
    var spareInbound: SRTPContext
    var spareOutbound: SRTPContext
    /// A WebRTC session: DTLS runs on the handshake thread and its keys arrive by command.
    public internal(set) var usesHandshake = false
    /// False until the session has keys: a WebRTC session's media waits for its handshake.
    public internal(set) var keyed: Bool {
        get { _keyed.load(ordering: .relaxed) }
        nonmutating set { _keyed.store(newValue, ordering: .relaxed) }
    }
    let _keyed = Atomic<Bool>(true)
    /// The SRTP profile the inbound context runs (`installKeys` sets it as it keys them).
    public internal(set) var profile: SRTPProfile {
        get { SRTPProfile(rawValue: _profile.load(ordering: .relaxed)) ?? .aes128CmHmacSha1_80 }
        nonmutating set { _profile.store(newValue.rawValue, ordering: .relaxed) }
    }
    let _profile = Atomic<UInt16>(SRTPProfile.aes128CmHmacSha1_80.rawValue)
    /// When a session still without keys ends (10 s after its offer).
    var keyDeadline: UInt64 = .max
    public internal(set) var clientLeg = ClientLegStream(ssrc: 0, firstSequence: 0, firstTimestamp: 0)
    /// The session's ICE-lite state (closed for sessions without ICE credentials).
    public internal(set) var ice = ICELiteAgent()
    /// Whether the session does ICE (its create had credentials): only then does a failed
    /// agent end it (a closed agent reads as failed).
    public internal(set) var doesICE = false
    /// What the client may send (`WorkerConfiguration.clientPacketCost`), refilled from its start.
    var policer = ClientPolicer(credit: 0, last: 0)
    public internal(set) var packetsFromClient: UInt64 {
        get { _packetsFromClient.load(ordering: .relaxed) }
        nonmutating set { _packetsFromClient.store(newValue, ordering: .relaxed) }
    }
    let _packetsFromClient = Atomic<UInt64>(0)
    public internal(set) var packetsToClient: UInt64 {
        get { _packetsToClient.load(ordering: .relaxed) }
        nonmutating set { _packetsToClient.store(newValue, ordering: .relaxed) }
    }
    let _packetsToClient = Atomic<UInt64>(0)

    // The backend protocol (docs/backend-protocol.md), for a backend with a key.
    /// The session's channel to its current backend: the sequence it stamps next, the highest
    /// it accepted. A new one per session and per backend (migration).
    var backendChannel = BackendChannelState(sessionID: 0, local: .edge)
    /// What the start said, sent again in a migrated-in.
    var backendStream = WorkerCommand.defaultStream
    /// The backend's round-trip time from the last keepalive-ack (ns; 0 before the first).
    public internal(set) var backendRTT: UInt64 {
        get { _backendRTT.load(ordering: .relaxed) }
        nonmutating set { _backendRTT.store(newValue, ordering: .relaxed) }
    }
    let _backendRTT = Atomic<UInt64>(0)
    /// When the backend was last heard from with an authentic message (ns; 0: never).
    public internal(set) var backendHeard: UInt64 = 0
    /// When the next keepalive goes to the backend (.max: none, the backend has no key).
    var nextKeepalive: UInt64 = .max
    /// The backend's audio toward the client, paced by its timestamps; its arena is the
    /// slot's own memory, allocated with the slot and reused by every session in it.
    var pacing: PacingQueue
    /// Whether the backend's audio goes through `pacing` (the backend has a key).
    public internal(set) var paced: Bool {
        get { _paced.load(ordering: .relaxed) }
        nonmutating set { _paced.store(newValue, ordering: .relaxed) }
    }
    let _paced = Atomic<Bool>(false)
    /// Flushes the backend asked for, and the client-leg sequence number last sent before
    /// the latest one.
    public internal(set) var flushes: UInt64 {
        get { _flushes.load(ordering: .relaxed) }
        nonmutating set { _flushes.store(newValue, ordering: .relaxed) }
    }
    let _flushes = Atomic<UInt64>(0)
    public internal(set) var lastFlushSequence: UInt16 {
        get { _lastFlushSequence.load(ordering: .relaxed) }
        nonmutating set { _lastFlushSequence.store(newValue, ordering: .relaxed) }
    }
    let _lastFlushSequence = Atomic<UInt16>(0)

    /// Packets held in the pacing queue, as of the owner's last change to it
    /// (`publishPacing`), and what it has dropped (full, too large, flushed; owner only).
    public var pacingQueued: Int { _pacingQueued.load(ordering: .relaxed) }
    let _pacingQueued = Atomic<Int>(0)
    /// The owner, after it changed `pacing`: the count the control thread reads.
    func publishPacing() { _pacingQueued.store(pacing.count, ordering: .relaxed) }
    public var pacingDropped: (oldest: UInt64, tooLarge: UInt64, flushed: UInt64) {
        (pacing.droppedOldest, pacing.tooLarge, pacing.flushedPackets)
    }

    init(pacing configuration: PacingConfiguration) throws(SRTPSetupError) {
        pacing = PacingQueue(configuration)
        // Cipher contexts are created once per slot and re-keyed for each session.
        let key = [UInt8](repeating: 0, count: 16)
        let salt = [UInt8](repeating: 0, count: 14)
        let gcmSalt = [UInt8](repeating: 0, count: 12)
        let a = try SRTPContext(profile: .aes128CmHmacSha1_80, masterKey: key, masterSalt: salt)
        let b = try SRTPContext(profile: .aes128CmHmacSha1_80, masterKey: key, masterSalt: salt)
        let c = try SRTPContext(profile: .aeadAes128Gcm, masterKey: key, masterSalt: gcmSalt)
        let d = try SRTPContext(profile: .aeadAes128Gcm, masterKey: key, masterSalt: gcmSalt)
        inbound = a
        outbound = b
        spareInbound = c
        spareOutbound = d
    }

    /// Keys both directions for `profile`, swapping in the spare pair when only it has the
    /// right cipher. False when neither pair does (the caller then makes new contexts).
    mutating func rekey(
        _ profile: SRTPProfile, client: KeyMaterial, edge: KeyMaterial, deriver: borrowing SRTPKeyDeriver
    ) -> Bool {
        if !profile.sharesCipher(with: inbound.profile) && profile.sharesCipher(with: spareInbound.profile) {
            swap(&inbound, &spareInbound)
            swap(&outbound, &spareOutbound)
        }
        let ok = client.withKeyAndSalt { key, salt in
            inbound.rekey(profile: profile, masterKey: key, masterSalt: salt, deriver: deriver)
        }
        return ok && edge.withKeyAndSalt { key, salt in
            outbound.rekey(profile: profile, masterKey: key, masterSalt: salt, deriver: deriver)
        }
    }
}

/// Every session slot of the engine (`maxSessions`, allocated at start-up) and who owns
/// each. Slot contents are written only by the owner; `owner` is what any worker reads to
/// know where to hand a frame.
///
/// An owner is a worker (≥ 0), nobody (`free`), or the control thread holding a session
/// that no worker has claimed yet (≤ -2, see `hold`): a WebRTC session exists from its
/// offer but belongs to the worker whose queue receives its first valid check (DESIGN
/// §2a). That worker claims it, and the control thread reaps it at its connect deadline,
/// each by compare-and-swap from the same held value: exactly one wins. The held value
/// carries a generation, so a claim meant for a reaped session cannot take the slot's
/// next one.
public final class SessionStore: @unchecked Sendable {
    public let capacity: Int
    let slots: UnsafeMutablePointer<SessionSlot>
    @usableFromInline let owners: UnsafeMutablePointer<Atomic<Int32>>
    /// The create command of each held session: written by the control thread before it
    /// publishes the held owner, read by the worker whose claim succeeds.
    let held: UnsafeMutablePointer<WorkerCommand>
    /// Each slot's client 5-tuple as its owner last bound it from a check (a WebRTC client,
    /// a NAT rebinding), for the control thread's flow directory: a sequence word (odd while
    /// the owner writes), the session id, then the flow in five words. All atomics, so the
    /// control thread's read races nothing; the sequence word tells it the read was whole.
    let published: UnsafeMutablePointer<Atomic<UInt64>>
    static let publishedStride = 7
    /// Set by the owner when it queues a notice of a slot's new flow, cleared by the control
    /// thread as it takes the notice: at most one notice per slot is ever queued.
    let noticed: UnsafeMutablePointer<Atomic<Bool>>

    public static let free: Int32 = -1

    /// `capacity` slots, each with a pacing queue of `pacing` (its arena's pages are touched
    /// only when a backend sends ahead: see docs/backend-protocol.md for the bytes per slot).
    public init(capacity: Int, pacing: PacingConfiguration = PacingConfiguration()) throws(SRTPSetupError) {
        // The slots first: if one cannot be made, nothing else exists yet and no deinit runs.
        let slots = UnsafeMutablePointer<SessionSlot>.allocate(capacity: capacity)
        for i in 0..<capacity {
            do {
                (slots + i).initialize(to: try SessionSlot(pacing: pacing))
            } catch {
                slots.deinitialize(count: i)
                slots.deallocate()
                throw error
            }
        }
        self.capacity = capacity
        self.slots = slots
        owners = .allocate(capacity: capacity)
        for i in 0..<capacity { (owners + i).initialize(to: Atomic<Int32>(SessionStore.free)) }
        held = .allocate(capacity: capacity)
        held.initialize(repeating: WorkerCommand(kind: .drop, slot: -1), count: capacity)
        published = .allocate(capacity: capacity * SessionStore.publishedStride)
        for i in 0..<(capacity * SessionStore.publishedStride) { (published + i).initialize(to: Atomic<UInt64>(0)) }
        noticed = .allocate(capacity: capacity)
        for i in 0..<capacity { (noticed + i).initialize(to: Atomic<Bool>(false)) }
    }

    deinit {
        slots.deinitialize(count: capacity)
        slots.deallocate()
        owners.deinitialize(count: capacity)
        owners.deallocate()
        held.deallocate()
        published.deinitialize(count: capacity * SessionStore.publishedStride)
        published.deallocate()
        noticed.deinitialize(count: capacity)
        noticed.deallocate()
    }

    /// The owner publishes `slot`'s client flow (nil: none) for session `id`. True when the
    /// control thread must be told (no notice of this slot is pending).
    func publish(_ slot: Int, session id: UInt64, flow: FlowKey?) -> Bool {
        let p = published + slot * SessionStore.publishedStride
        let sequence = p[0].load(ordering: .relaxed)
        p[0].store(sequence &+ 1, ordering: .relaxed)
        atomicMemoryFence(ordering: .releasing)
        p[1].store(id, ordering: .relaxed)
        p[2].store(flow?.remoteAddress.high ?? 0, ordering: .relaxed)
        p[3].store(flow?.remoteAddress.low ?? 0, ordering: .relaxed)
        p[4].store(flow?.localAddress.high ?? 0, ordering: .relaxed)
        p[5].store(flow?.localAddress.low ?? 0, ordering: .relaxed)
        let ports = flow.map { 1 << 32 | UInt64($0.remotePort.rawValue) << 16 | UInt64($0.localPort.rawValue) } ?? 0
        p[6].store(ports, ordering: .relaxed)
        p[0].store(sequence &+ 2, ordering: .releasing)
        return !noticed[slot].exchange(true, ordering: .acquiringAndReleasing)
    }

    /// The control thread takes the notice of `slot` and reads what its owner published:
    /// the session id and its client flow (nil: none).
    func takePublished(_ slot: Int) -> (session: UInt64, flow: FlowKey?) {
        noticed[slot].store(false, ordering: .sequentiallyConsistent)
        let p = published + slot * SessionStore.publishedStride
        while true {
            let before = p[0].load(ordering: .acquiring)
            guard before & 1 == 0 else { continue }
            let id = p[1].load(ordering: .relaxed)
            let remote = IPAddress(high: p[2].load(ordering: .relaxed), low: p[3].load(ordering: .relaxed))
            let local = IPAddress(high: p[4].load(ordering: .relaxed), low: p[5].load(ordering: .relaxed))
            let ports = p[6].load(ordering: .relaxed)
            atomicMemoryFence(ordering: .acquiring)
            guard p[0].load(ordering: .relaxed) == before else { continue }
            guard ports >> 32 == 1 else { return (id, nil) }
            return (
                id,
                FlowKey(
                    remoteAddress: remote, remotePort: UDPPort(UInt16(truncatingIfNeeded: ports >> 16)),
                    localAddress: local, localPort: UDPPort(UInt16(truncatingIfNeeded: ports)))
            )
        }
    }

    /// The worker that owns `slot`; `free`, or a held value (`isHeld`) when no worker does.
    @inlinable
    public func owner(of slot: Int) -> Int32 {
        owners[slot].load(ordering: .acquiring)
    }

    /// True for an owner value that means "held by the control thread, unclaimed".
    @inlinable
    public static func isHeld(_ owner: Int32) -> Bool { owner <= -2 }

    /// Assigns `slot` to `worker` (control thread, before sending it the create command).
    public func assign(_ slot: Int, to worker: Int) {
        owners[slot].store(Int32(worker), ordering: .releasing)
    }

    /// Holds `slot` for a session no worker owns yet (control thread; the slot is free):
    /// `command` is what the claiming worker will apply. Returns the held owner value that
    /// claim and reap race from.
    func hold(_ slot: Int, _ command: WorkerCommand, generation: UInt32) -> Int32 {
        held[slot] = command
        let mark = -2 - Int32(generation & 0x3FFF_FFFF)
        owners[slot].store(mark, ordering: .releasing)
        return mark
    }

    /// A worker takes a held session: true when it won (the held command is then its to
    /// apply), false when the control thread reaped it or another worker claimed it first.
    func claim(_ slot: Int, from mark: Int32, by worker: Int) -> Bool {
        owners[slot].compareExchange(
            expected: mark, desired: Int32(worker), successOrdering: .acquiringAndReleasing, failureOrdering: .acquiring
        ).exchanged
    }

    /// The control thread takes back a held session nobody claimed: true when it won.
    func reap(_ slot: Int, from mark: Int32) -> Bool {
        let won = owners[slot].compareExchange(
            expected: mark, desired: SessionStore.free, successOrdering: .acquiringAndReleasing,
            failureOrdering: .acquiring
        ).exchanged
        if won {
            // A backend-leg socket bound for it (socket port) goes with it.
            if held[slot].backendSocket >= 0 { close(held[slot].backendSocket) }
            wipeHeld(slot)
        }
        return won
    }

    /// Forgets a held command's keys (by whoever holds the slot).
    func wipeHeld(_ slot: Int) {
        held[slot] = WorkerCommand(kind: .drop, slot: -1)
    }

    /// Packets counted in `slot` so far. Read from the control thread while the owner writes
    /// them: relaxed atomic loads, a snapshot that may be a packet behind.
    public func packetCounts(slot: Int) -> (fromClient: UInt64, toClient: UInt64) {
        (slots[slot].packetsFromClient, slots[slot].packetsToClient)
    }

    /// `slot`'s backend-protocol state, read from the control thread while the owner writes
    /// it (relaxed atomic loads, a snapshot as `packetCounts`): whether its backend speaks the
    /// protocol (and so is paced), its RTT (ns, 0: none yet), packets queued for pacing, its
    /// flushes and the client-leg sequence number last sent before the latest.
    public func backendState(slot: Int) -> (paced: Bool, rtt: UInt64, queued: Int, flushes: UInt64, lastFlushSequence: UInt16) {
        let s = slots + slot
        return (s.pointee.paced, s.pointee.backendRTT, s.pointee.pacingQueued, s.pointee.flushes, s.pointee.lastFlushSequence)
    }

    /// What `slot`'s client sent as the edge received it: packets lost (RFC 3550 A.3, may be
    /// negative with duplicates) and interarrival jitter in ms (the 48 kHz Opus clock), and the
    /// SRTP profile its contexts last ran. Only for a session's record: after its worker ended
    /// it (the ended event, taken with acquire, orders the worker's last writes of the
    /// statistics before this read; they are plain fields) and before its slot is reused.
    public func clientReceiveStatistics(slot: Int) -> (lost: Int64, jitterMilliseconds: Double, profile: SRTPProfile) {
        let s = slots + slot
        let stats = s.pointee.clientStats
        return (stats.isStarted ? stats.cumulativeLost : 0, Double(stats.jitter) / 48, s.pointee.profile)
    }

    /// Whether `slot`'s session has its SRTP keys (a WebRTC session once its handshake is
    /// done). Read from the control thread while the owner writes it: a snapshot.
    public func isKeyed(slot: Int) -> Bool { slots[slot].active && slots[slot].keyed }

    /// The SRTP profile `slot`'s session runs (a snapshot, as `isKeyed`).
    public func profile(slot: Int) -> SRTPProfile? { slots[slot].active ? slots[slot].profile : nil }

    /// Frees `slot` (control thread, after its worker reported it released).
    public func unassign(_ slot: Int) {
        owners[slot].store(SessionStore.free, ordering: .releasing)
    }
}
