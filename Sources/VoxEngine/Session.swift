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

/// One session's state in a worker-owned slot. Only the owning worker writes it.
public struct SessionSlot: ~Copyable {
    public internal(set) var active = false
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
    public internal(set) var clientLeg = ClientLegStream(ssrc: 0, firstSequence: 0, firstTimestamp: 0)
    /// The session's ICE-lite state (closed for sessions without ICE credentials).
    public internal(set) var ice = ICELiteAgent()
    public internal(set) var packetsFromClient: UInt64 = 0
    public internal(set) var packetsToClient: UInt64 = 0

    init() throws(SRTPSetupError) {
        // Cipher contexts are created once per slot and re-keyed for each session.
        let key = [UInt8](repeating: 0, count: 16)
        let salt = [UInt8](repeating: 0, count: 14)
        let a = try SRTPContext(profile: .aes128CmHmacSha1_80, masterKey: key, masterSalt: salt)
        let b = try SRTPContext(profile: .aes128CmHmacSha1_80, masterKey: key, masterSalt: salt)
        inbound = a
        outbound = b
    }
}

/// Every session slot of the engine (`maxSessions`, allocated at start-up) and which worker
/// owns each. Slot contents are written only by the owner; `owner` is what any worker reads
/// to know where to hand a frame.
public final class SessionStore: @unchecked Sendable {
    public let capacity: Int
    let slots: UnsafeMutablePointer<SessionSlot>
    @usableFromInline let owners: UnsafeMutablePointer<Atomic<Int32>>

    public init(capacity: Int) throws(SRTPSetupError) {
        self.capacity = capacity
        slots = .allocate(capacity: capacity)
        owners = .allocate(capacity: capacity)
        for i in 0..<capacity {
            do {
                (slots + i).initialize(to: try SessionSlot())
            } catch {
                slots.deinitialize(count: i)
                slots.deallocate()
                owners.deallocate()
                throw error
            }
            (owners + i).initialize(to: Atomic<Int32>(-1))
        }
    }

    deinit {
        slots.deinitialize(count: capacity)
        slots.deallocate()
        owners.deinitialize(count: capacity)
        owners.deallocate()
    }

    /// The worker that owns `slot`, or -1.
    @inlinable
    public func owner(of slot: Int) -> Int32 {
        owners[slot].load(ordering: .acquiring)
    }

    /// Assigns `slot` to `worker` (control thread, before sending it the create command).
    public func assign(_ slot: Int, to worker: Int) {
        owners[slot].store(Int32(worker), ordering: .releasing)
    }

    /// Packets counted in `slot` so far. Read from the control thread while the owner writes
    /// them: aligned 64-bit loads, a snapshot that may be a packet behind.
    public func packetCounts(slot: Int) -> (fromClient: UInt64, toClient: UInt64) {
        (slots[slot].packetsFromClient, slots[slot].packetsToClient)
    }

    /// Frees `slot` (control thread, after its worker reported it released).
    public func unassign(_ slot: Int) {
        owners[slot].store(-1, ordering: .releasing)
    }
}
