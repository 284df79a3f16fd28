import VoxMedia
import VoxWire

/// SRTP master key and salt, inline (at most 32 + 14 bytes), for commands.
public struct KeyMaterial: Sendable, BitwiseCopyable {
    var bytes: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0)
    var keyLength: UInt8 = 0
    var saltLength: UInt8 = 0

    public init() {}

    public init?(key: [UInt8], salt: [UInt8]) {
        guard key.count <= 32, salt.count <= 14 else { return nil }
        keyLength = UInt8(key.count)
        saltLength = UInt8(salt.count)
        withUnsafeMutableBytes(of: &bytes) { b in
            for (i, v) in key.enumerated() { b[i] = v }
            for (i, v) in salt.enumerated() { b[32 + i] = v }
        }
    }

    func withKeyAndSalt<R>(_ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) -> R) -> R {
        var copy = bytes
        defer { withUnsafeMutableBytes(of: &copy) { for i in 0..<$0.count { $0[i] = 0 } } }
        return withUnsafeBytes(of: &copy) { b in
            body(UnsafeRawBufferPointer(rebasing: b[0..<Int(keyLength)]),
                UnsafeRawBufferPointer(rebasing: b[32..<(32 + Int(saltLength))]))
        }
    }
}

/// An ICE password, inline.
public struct IcePassword: Sendable, BitwiseCopyable {
    var bytes: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)
    var length: UInt8 = 0

    public init() {}

    public init?(_ text: String) {
        let utf8 = Array(text.utf8)
        guard utf8.count <= 64 else { return nil }
        length = UInt8(utf8.count)
        withUnsafeMutableBytes(of: &bytes) { b in for (i, c) in utf8.enumerated() { b[i] = c } }
    }

    func withBytes<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
        var copy = bytes
        defer { withUnsafeMutableBytes(of: &copy) { for i in 0..<$0.count { $0[i] = 0 } } }
        return withUnsafeBytes(of: &copy) { body(UnsafeRawBufferPointer(rebasing: $0[0..<Int(length)])) }
    }
}

/// What other threads ask of a worker (DESIGN §2a): the only way a session changes. Applied
/// by the owning worker between bursts, in order. Plain data, so it crosses an `SPSCRing`.
public struct WorkerCommand: Sendable, BitwiseCopyable {
    public enum Kind: UInt8, Sendable, BitwiseCopyable {
        /// Start a session in `slot`: keys, ICE credentials, backend, and (static-key
        /// sessions) the client's 5-tuple and MAC.
        case create
        /// The client is now at `flow` (NAT rebinding, or learned out of band).
        case bindClient
        /// Send the session's audio to backend `backend` from now on.
        case changeBackend
        /// End the session; the slot comes back on the worker's release ring.
        case drop
        /// The session's DTLS handshake finished: its SRTP keys (`clientKey` is what the
        /// client protects with, `edgeKey` ours), from the handshake thread.
        case installKeys
    }

    /// Why a session is ended by command: told to its backend (`end`), and counted.
    public enum EndReason: UInt8, Sendable, BitwiseCopyable {
        /// The operator dropped it (`session.drop`), or a caller that gave no reason.
        case none
        /// The DTLS handshake failed (timeout, bad fingerprint, no SRTP profile in common).
        case handshakeFailed
        /// The client sent close_notify.
        case closedByClient
        /// The client left: signaling's DELETE.
        case clientLeft
        /// The engine's drain reached its deadline with the call still up.
        case drained

        /// What the session's backend is told (docs/backend-protocol.md's end reasons).
        public var backendReason: BackendEndReason {
            switch self {
            case .none: .dropped
            case .handshakeFailed: .handshakeFailed
            case .closedByClient: .closedByClient
            case .clientLeft: .clientLeft
            case .drained: .drained
            }
        }
    }

    public var kind: Kind
    public var slot: Int32
    /// The session the command is for. `drop` and `installKeys` from the handshake thread
    /// set it, so a command meant for a session that has ended meanwhile cannot touch the
    /// slot's next one; 0 on a `drop` from the control thread: whatever the slot holds.
    public var sessionID: UInt64 = 0
    public var endReason = EndReason.none
    public var flow: FlowKey? = nil
    public var clientMAC = MACAddress.zero
    /// `create`: the SSRC the client sends with, when the session may share its 5-tuple with
    /// others (SSRC-multiplexed trunks): its packets are then found by 5-tuple and SSRC.
    public var clientSSRC: UInt32? = nil
    public var backend: Int32 = -1
    public var profile = SRTPProfile.aes128CmHmacSha1_80
    /// The client's master key (what we unprotect with) and ours (what we protect with).
    public var clientKey = KeyMaterial()
    public var edgeKey = KeyMaterial()
    /// ICE credentials: ours (`ufrag` names the slot) and the client's ufrag. A session
    /// created without them does no ICE: its client flow is given.
    public var ufrag = IceUfrag()
    public var remoteUfrag = IceUfrag()
    public var icePassword = IcePassword()
    /// The client leg's own stream: SSRC, first sequence number and timestamp.
    public var edgeSSRC: UInt32 = 0
    public var firstSequence: UInt16 = 0
    public var firstTimestamp: UInt32 = 0
    /// `create` on the socket port: the backend leg's socket, bound by the control thread
    /// (so a port already taken fails the create, with its reason), handed to the owner,
    /// which adopts it. -1: the owner's port opens what it needs itself.
    public var backendSocket: Int32 = -1
    /// A WebRTC session: its SRTP keys come from its DTLS handshake (`installKeys`), which
    /// must finish by `connectDeadline` (monotonic ns; 10 s after the offer), or it ends.
    public var keysFromHandshake = false
    public var connectDeadline: UInt64 = .max
    /// `create`: what the backend is told in its start (docs/backend-protocol.md): the stream
    /// it will receive, and the call's model and subject.
    public var backendStream = WorkerCommand.defaultStream

    /// Opus at 48 kHz, stereo in SDP (RFC 7587), payload type 111, no SSRC, model or subject.
    public static let defaultStream = BackendStreamDescription(
        ssrc: 0, clockRate: 48_000, payloadType: 111, channels: 2, codecName: "opus", model: "", subject: "")!

    public init(kind: Kind, slot: Int32) {
        self.kind = kind
        self.slot = slot
    }
}

/// What a worker tells the control thread about a session, for its log (a worker never
/// logs): on the worker's `events` ring, taken every control tick. A full ring loses the
/// event (the counters still count it).
public struct WorkerEvent: Sendable, BitwiseCopyable {
    public enum Kind: UInt8, Sendable, BitwiseCopyable {
        /// The backend flushed: `sequence` is the client-leg sequence number last sent before
        /// it (nothing after it was audio queued before the flush), `count` the packets dropped.
        case flush
        /// The backend ended the session (`reason`, docs/backend-protocol.md's codes).
        case backendEnded
        /// The session ended on its worker, for `reason` (the end reasons' codes, whoever
        /// ended it): what `subscribe` streams as `session.ended`.
        case ended
    }
    public var kind: Kind
    public var slot: Int32
    public var sessionID: UInt64
    public var sequence: UInt16 = 0
    public var count: UInt32 = 0
    public var reason: UInt16 = 0

    public init(kind: Kind, slot: Int32, sessionID: UInt64) {
        self.kind = kind
        self.slot = slot
        self.sessionID = sessionID
    }
}

/// A frame given to the worker that owns its session: the UMEM is shared, so only the
/// descriptor moves (DESIGN §2a).
public struct FrameDescriptor: Sendable, BitwiseCopyable {
    public var address: UInt64
    public var length: UInt32
}

/// A bounded single-producer single-consumer queue of datagrams copied into preallocated
/// slots: DTLS records from a worker to the handshake thread, and the handshake thread's
/// flights back to the worker that owns the session. Handshakes are rare, so a record is
/// copied and its frame goes straight back to the pool; nothing is allocated.
public final class DatagramQueue: @unchecked Sendable {
    public static let maxDatagram = 1536
    public struct Entry: Sendable, BitwiseCopyable {
        public var slot: Int32
        /// The session the datagram belongs to (a slot is reused by later sessions).
        public var session: UInt64
        public var flow: FlowKey
        public var length: Int32
        var storage: Int32
    }
    let entries: SPSCRing<Entry>
    let buffers: UnsafeMutableRawPointer
    let slots: Int
    /// Producer-side cursor over the buffers (the ring bounds how many are in use).
    var nextBuffer = 0

    public init(capacity: Int) {
        entries = SPSCRing(capacity: capacity)
        slots = entries.capacity
        buffers = .allocate(byteCount: slots * DatagramQueue.maxDatagram, alignment: 64)
    }

    deinit { buffers.deallocate() }

    /// Producer: copies `length` bytes; false when full or too long.
    public func push(slot: Int32, session: UInt64, flow: FlowKey, _ p: UnsafeRawPointer, length: Int) -> Bool {
        // Check for room first: the next buffer is still the oldest entry's while full.
        guard length <= DatagramQueue.maxDatagram, entries.count < entries.capacity else { return false }
        let buffer = nextBuffer
        let entry = Entry(slot: slot, session: session, flow: flow, length: Int32(length), storage: Int32(buffer))
        (buffers + buffer * DatagramQueue.maxDatagram).copyMemory(from: p, byteCount: length)
        guard entries.push(entry) else { return false }
        nextBuffer = (nextBuffer + 1) % slots
        return true
    }

    /// Consumer: the oldest datagram, copied out (the handshake thread's side allocates freely).
    public func pop() -> (entry: Entry, bytes: [UInt8])? {
        var out: (Entry, [UInt8])? = nil
        _ = consume { e, bytes in out = (e, Array(bytes)) }
        return out
    }

    /// Consumer: hands the oldest datagram to `body` in place, then frees its buffer (a
    /// worker copies it into a frame: nothing is allocated). False when empty.
    public func consume(_ body: (Entry, UnsafeRawBufferPointer) -> Void) -> Bool {
        guard let e = entries.peek() else { return false }
        body(e.pointee, UnsafeRawBufferPointer(start: buffers + Int(e.pointee.storage) * DatagramQueue.maxDatagram, count: Int(e.pointee.length)))
        entries.advance()
        return true
    }

    /// Datagrams waiting.
    public var count: Int { entries.count }
}
