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
    var ice: STUNAuthenticator
    var ufrag = IceUfrag()
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
        ice = STUNAuthenticator(password: "")
    }
}

/// A server-chosen ICE username fragment, inline: "vx" + the slot in 6 hex digits + a
/// random part (DESIGN §2a), so a connectivity check names its slot without a lookup and
/// the random part makes it unguessable.
public struct IceUfrag: Equatable, Sendable, BitwiseCopyable {
    public static let capacity = 32
    @usableFromInline var bytes: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
    public private(set) var length: UInt8 = 0

    public static func == (a: IceUfrag, b: IceUfrag) -> Bool {
        a.length == b.length && a.bytes.0 == b.bytes.0 && a.bytes.1 == b.bytes.1 && a.bytes.2 == b.bytes.2
            && a.bytes.3 == b.bytes.3
    }

    public init() {}

    public init?(_ text: String) {
        let utf8 = Array(text.utf8)
        guard utf8.count >= 4, utf8.count <= IceUfrag.capacity else { return nil }
        length = UInt8(utf8.count)
        withUnsafeMutableBytes(of: &bytes) { b in for (i, c) in utf8.enumerated() { b[i] = c } }
    }

    /// The ufrag for `slot` with a random suffix.
    public static func make(slot: Int, random: String) -> IceUfrag? {
        let hex = String(slot, radix: 16)
        return IceUfrag("vx" + String(repeating: "0", count: max(0, 6 - hex.count)) + hex + random)
    }

    /// The slot a ufrag of ours names, from `count` bytes at `p`; nil when it is not ours.
    @inlinable
    public static func slot(in p: UnsafeRawPointer, count: Int) -> Int? {
        guard count >= 8, p.loadByte(at: 0) == 0x76, p.loadByte(at: 1) == 0x78 else { return nil }  // "vx"
        var slot = 0
        for i in 2..<8 {
            let c = p.loadByte(at: i)
            let d: Int
            switch c {
            case 0x30...0x39: d = Int(c - 0x30)
            case 0x61...0x66: d = Int(c - 0x61 + 10)
            default: return nil
            }
            slot = slot << 4 | d
        }
        return slot
    }

    /// True when the `count` bytes at `p` are this ufrag.
    @inlinable
    public func matches(_ p: UnsafeRawPointer, count: Int) -> Bool {
        guard count == Int(length) else { return false }
        var copy = bytes
        return withUnsafeBytes(of: &copy) { memcmp($0.baseAddress!, p, count) == 0 }
    }

    public var description: String {
        var copy = bytes
        return withUnsafeBytes(of: &copy) { String(decoding: $0.prefix(Int(length)), as: UTF8.self) }
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
