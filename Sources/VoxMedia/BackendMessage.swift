import COpenSSL
import VoxWire

/// One side of a backend leg.
public enum BackendPeer: UInt8, Sendable, BitwiseCopyable {
    case edge = 0
    case backend = 1

    public var other: BackendPeer { self == .edge ? .backend : .edge }
}

/// What a control message says (docs/backend-protocol.md).
public enum BackendMessageType: UInt8, Sendable, BitwiseCopyable, CaseIterable {
    case start = 1
    case end = 2
    case flush = 3
    case keepalive = 4
    case keepaliveAck = 5
    case migratedAway = 6
    case migratedIn = 7

    /// Whether `sender` may send this type: start and the migrations come from the edge,
    /// flush from the backend, the rest from either.
    @inlinable
    public func isSent(by sender: BackendPeer) -> Bool {
        switch self {
        case .start, .migratedAway, .migratedIn: sender == .edge
        case .flush: sender == .backend
        case .end, .keepalive, .keepaliveAck: true
        }
    }
}

/// Why a session's leg ends. A code this build does not know is carried as its number.
public struct BackendEndReason: RawRepresentable, Hashable, Sendable, BitwiseCopyable, CustomStringConvertible {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    public static let clientLeft = BackendEndReason(rawValue: 1)
    public static let connectTimeout = BackendEndReason(rawValue: 2)
    public static let consentExpired = BackendEndReason(rawValue: 3)
    public static let handshakeFailed = BackendEndReason(rawValue: 4)
    public static let closedByClient = BackendEndReason(rawValue: 5)
    public static let drained = BackendEndReason(rawValue: 6)
    public static let migrated = BackendEndReason(rawValue: 7)
    public static let noBackend = BackendEndReason(rawValue: 8)
    public static let backendFinished = BackendEndReason(rawValue: 9)
    public static let backendOverloaded = BackendEndReason(rawValue: 10)
    /// Ended by the operator (`session.drop` on the control socket).
    public static let dropped = BackendEndReason(rawValue: 11)

    static let names = [
        "client_left", "connect_timeout", "consent_expired", "handshake_failed", "closed_by_client", "drained",
        "migrated", "no_backend", "backend_finished", "backend_overloaded", "dropped",
    ]

    /// The name in docs/backend-protocol.md, or `reason_<code>`.
    public var description: String {
        (1...BackendEndReason.names.count).contains(Int(rawValue))
            ? BackendEndReason.names[Int(rawValue) - 1] : "reason_\(rawValue)"
    }
}

/// What a start or migrated-in says about the session's stream toward the backend, with the
/// call's model and subject, inline (no heap): it can live in a session's slot, so the worker
/// can send it again on a migration.
///
/// Invariants: 1 ≤ codec name ≤ 32 bytes, model and subject ≤ 256 bytes, payload type ≤ 127,
/// clock rate and channels ≥ 1. Every initializer checks them.
public struct BackendStreamDescription: Sendable, BitwiseCopyable, Equatable, CustomStringConvertible {
    public static let codecNameCapacity = 32
    public static let textCapacity = 256
    /// The fixed part of the body before the strings.
    static let fixedLength = 16

    public var ssrc: UInt32
    public var clockRate: UInt32
    public var payloadType: UInt8
    public var channels: UInt8
    @usableFromInline var codecName: InlineArray<32, UInt8> = .init(repeating: 0)
    @usableFromInline var model: InlineArray<256, UInt8> = .init(repeating: 0)
    @usableFromInline var subject: InlineArray<256, UInt8> = .init(repeating: 0)
    public private(set) var codecNameLength: UInt8 = 0
    public private(set) var modelLength: UInt16 = 0
    public private(set) var subjectLength: UInt16 = 0

    /// nil when a field breaks the invariants. The strings are raw bytes, valid for the call.
    public init?(
        ssrc: UInt32, clockRate: UInt32, payloadType: UInt8, channels: UInt8, codecName: UnsafeRawBufferPointer,
        model: UnsafeRawBufferPointer, subject: UnsafeRawBufferPointer
    ) {
        guard clockRate >= 1, payloadType <= 127, channels >= 1,
            (1...BackendStreamDescription.codecNameCapacity).contains(codecName.count),
            model.count <= BackendStreamDescription.textCapacity, subject.count <= BackendStreamDescription.textCapacity
        else { return nil }
        self.ssrc = ssrc
        self.clockRate = clockRate
        self.payloadType = payloadType
        self.channels = channels
        codecNameLength = UInt8(codecName.count)
        modelLength = UInt16(model.count)
        subjectLength = UInt16(subject.count)
        withUnsafeMutableBytes(of: &self.codecName) { $0.copyMemory(from: codecName) }
        withUnsafeMutableBytes(of: &self.model) { $0.copyMemory(from: model) }
        withUnsafeMutableBytes(of: &self.subject) { $0.copyMemory(from: subject) }
    }

    /// For the control side and tools: the strings as Swift strings (UTF-8).
    public init?(
        ssrc: UInt32, clockRate: UInt32, payloadType: UInt8, channels: UInt8, codecName: String, model: String,
        subject: String
    ) {
        let c = Array(codecName.utf8)
        let m = Array(model.utf8)
        let s = Array(subject.utf8)
        let made = c.withUnsafeBytes { c in
            m.withUnsafeBytes { m in
                s.withUnsafeBytes { s in
                    BackendStreamDescription(
                        ssrc: ssrc, clockRate: clockRate, payloadType: payloadType, channels: channels, codecName: c,
                        model: m, subject: s)
                }
            }
        }
        guard let made else { return nil }
        self = made
    }

    /// Calls `body` with the codec name, model and subject bytes.
    @inlinable
    public func withBytes<R>(
        _ body: (
            _ codecName: UnsafeRawBufferPointer, _ model: UnsafeRawBufferPointer, _ subject: UnsafeRawBufferPointer
        ) -> R
    ) -> R {
        withUnsafeBytes(of: codecName) { c in
            withUnsafeBytes(of: model) { m in
                withUnsafeBytes(of: subject) { s in
                    body(
                        UnsafeRawBufferPointer(rebasing: c[0..<Int(codecNameLength)]),
                        UnsafeRawBufferPointer(rebasing: m[0..<Int(modelLength)]),
                        UnsafeRawBufferPointer(rebasing: s[0..<Int(subjectLength)]))
                }
            }
        }
    }

    public var codecNameString: String { withBytes { c, _, _ in String(decoding: c, as: UTF8.self) } }
    public var modelString: String { withBytes { _, m, _ in String(decoding: m, as: UTF8.self) } }
    public var subjectString: String { withBytes { _, _, s in String(decoding: s, as: UTF8.self) } }

    /// The body's length on the wire.
    public var encodedLength: Int {
        BackendStreamDescription.fixedLength + Int(codecNameLength) + Int(modelLength) + Int(subjectLength)
    }

    public static func == (a: BackendStreamDescription, b: BackendStreamDescription) -> Bool {
        guard a.ssrc == b.ssrc, a.clockRate == b.clockRate, a.payloadType == b.payloadType, a.channels == b.channels,
            a.codecNameLength == b.codecNameLength, a.modelLength == b.modelLength, a.subjectLength == b.subjectLength
        else { return false }
        return a.withBytes { ac, am, asub in
            b.withBytes { bc, bm, bsub in ac.elementsEqual(bc) && am.elementsEqual(bm) && asub.elementsEqual(bsub) }
        }
    }

    public var description: String {
        "\(codecNameString)/\(clockRate)/\(channels) pt \(payloadType) ssrc \(ssrc)"
            + " model \"\(modelString)\" subject \"\(subjectString)\""
    }
}

/// What a receiver made of a datagram on a backend leg. Everything but `ok` is a refusal,
/// counted by its case (docs/backend-protocol.md, "Order of checks").
public enum BackendVerdict: UInt8, Sendable, BitwiseCopyable, CaseIterable, CustomStringConvertible {
    case ok
    /// Not this protocol's first byte: RTP's, or noise.
    case notControl
    /// Too short, lengths that disagree, reserved bits set, a body that breaks its layout.
    case malformed
    case unsupportedVersion
    /// The MAC does not match: a spoofed or corrupted message. Nothing else of it was read.
    case badMAC
    /// Authentic, but a type this build does not know.
    case unknownType
    /// Authentic, but for another session than this 5-tuple's.
    case wrongSession
    /// Authentic, but claiming to come from this side (a reflected message).
    case wrongDirection
    /// Authentic, but its sequence is not above the highest accepted.
    case replayed

    public var description: String {
        switch self {
        case .ok: "ok"
        case .notControl: "not_control"
        case .malformed: "malformed"
        case .unsupportedVersion: "unsupported_version"
        case .badMAC: "bad_mac"
        case .unknownType: "unknown_type"
        case .wrongSession: "wrong_session"
        case .wrongDirection: "wrong_direction"
        case .replayed: "replayed"
        }
    }
}

/// A control message of the backend protocol, parsed or to be sent: header fields and a body.
/// Plain values, no heap; the stream description's strings are copied inline.
///
/// Wire layout (docs/backend-protocol.md): a 32-byte header, the body, a 16-byte MAC.
/// ```
/// 0 magic 0x0B | 1 version | 2 type | 3 flags (bit 0: sent by the backend)
/// 4 body length (16) | 6 reserved (16) | 8 session id (64) | 16 sequence (64) | 24 timestamp (64)
/// 32 body … | MAC: first 16 bytes of HMAC-SHA1 over everything before it
/// ```
public struct BackendMessage: Sendable, BitwiseCopyable, Equatable {
    public enum Body: Sendable, BitwiseCopyable, Equatable {
        case start(BackendStreamDescription)
        case end(BackendEndReason)
        case flush
        case keepalive
        /// Echoes the keepalive's timestamp: its sender's RTT is now − echo.
        case keepaliveAck(echo: UInt64)
        case migratedAway
        case migratedIn(BackendStreamDescription)

        @inlinable
        public var type: BackendMessageType {
            switch self {
            case .start: .start
            case .end: .end
            case .flush: .flush
            case .keepalive: .keepalive
            case .keepaliveAck: .keepaliveAck
            case .migratedAway: .migratedAway
            case .migratedIn: .migratedIn
            }
        }

        var encodedLength: Int {
            switch self {
            case .start(let d), .migratedIn(let d): d.encodedLength
            case .end: 4
            case .keepaliveAck: 8
            case .flush, .keepalive, .migratedAway: 0
            }
        }
    }

    public static let magic: UInt8 = 0x0B
    public static let version: UInt8 = 1
    public static let headerLength = 32
    public static let macLength = 16
    /// The shortest message: a header, an empty body and the MAC.
    public static let minimumLength = headerLength + macLength
    /// The longest: a start with every string at its limit.
    public static let maximumLength =
        minimumLength + BackendStreamDescription.fixedLength + BackendStreamDescription.codecNameCapacity + 2
        * BackendStreamDescription.textCapacity

    public var sender: BackendPeer
    public var sessionID: UInt64
    public var sequence: UInt64
    /// The sender's monotonic clock, ns.
    public var timestamp: UInt64
    public var body: Body

    public init(sender: BackendPeer, sessionID: UInt64, sequence: UInt64, timestamp: UInt64, body: Body) {
        self.sender = sender
        self.sessionID = sessionID
        self.sequence = sequence
        self.timestamp = timestamp
        self.body = body
    }

    /// An empty message to parse into.
    public init() { self.init(sender: .edge, sessionID: 0, sequence: 0, timestamp: 0, body: .keepalive) }

    /// Whether a datagram on a backend leg starting with `firstByte` is a control message.
    /// RTP and RTCP start with 0x80–0xBF (version 2) and never with 0x0B.
    @inlinable
    public static func isControl(_ firstByte: UInt8) -> Bool { firstByte == magic }

    /// The message's length on the wire.
    public var encodedLength: Int { BackendMessage.minimumLength + body.encodedLength }

    /// Writes the message and its MAC into `out`; the bytes written, or nil when `out` is too
    /// small (nothing meaningful written then). Allocates nothing.
    public func encode(key: HMACSHA1Key, into out: UnsafeMutableRawBufferPointer) -> Int? {
        let bodyLength = body.encodedLength
        let total = BackendMessage.minimumLength + bodyLength
        guard out.count >= total, let p = out.baseAddress else { return nil }
        p.storeByte(BackendMessage.magic, at: 0)
        p.storeByte(BackendMessage.version, at: 1)
        p.storeByte(body.type.rawValue, at: 2)
        p.storeByte(sender.rawValue, at: 3)
        p.storeBE16(UInt16(bodyLength), at: 4)
        p.storeBE16(0, at: 6)
        p.storeBE64(sessionID, at: 8)
        p.storeBE64(sequence, at: 16)
        p.storeBE64(timestamp, at: 24)
        let b = p + BackendMessage.headerLength
        switch body {
        case .start(let d), .migratedIn(let d):
            b.storeBE32(d.ssrc, at: 0)
            b.storeBE32(d.clockRate, at: 4)
            b.storeByte(d.payloadType, at: 8)
            b.storeByte(d.channels, at: 9)
            b.storeByte(d.codecNameLength, at: 10)
            b.storeByte(0, at: 11)
            b.storeBE16(d.modelLength, at: 12)
            b.storeBE16(d.subjectLength, at: 14)
            d.withBytes { c, m, s in
                let strings = b + BackendStreamDescription.fixedLength
                UnsafeMutableRawBufferPointer(start: strings, count: c.count).copyMemory(from: c)
                UnsafeMutableRawBufferPointer(start: strings + c.count, count: m.count).copyMemory(from: m)
                UnsafeMutableRawBufferPointer(start: strings + c.count + m.count, count: s.count).copyMemory(from: s)
            }
        case .end(let reason):
            b.storeBE16(reason.rawValue, at: 0)
            b.storeBE16(0, at: 2)
        case .keepaliveAck(let echo):
            b.storeBE64(echo, at: 0)
        case .flush, .keepalive, .migratedAway:
            break
        }
        let signed = BackendMessage.headerLength + bodyLength
        var digest: Digest20 = (0, 0, 0)
        withUnsafeMutableBytes(of: &digest) { d in
            var state = key.begin()
            HMACSHA1Key.update(&state, p, count: signed)
            key.finish(&state, into: d.baseAddress!)
            (p + signed).copyMemory(from: d.baseAddress!, byteCount: BackendMessage.macLength)
        }
        return total
    }

    /// Parses and authenticates `datagram` into `message`, in the order of
    /// docs/backend-protocol.md: framing, version, MAC, then the fields. `message` is written
    /// only when the verdict is `ok`. Allocates nothing. Session, direction and replay are
    /// `BackendChannelState`'s.
    public static func parse(_ datagram: UnsafeRawBufferPointer, key: HMACSHA1Key, into message: inout BackendMessage)
        -> BackendVerdict
    {
        guard let p = datagram.baseAddress, datagram.count >= 1, isControl(p.loadByte(at: 0)) else { return .notControl }
        guard datagram.count >= minimumLength else { return .malformed }
        guard p.loadByte(at: 1) == version else { return .unsupportedVersion }
        let bodyLength = Int(p.loadBE16(at: 4))
        guard datagram.count == minimumLength + bodyLength else { return .malformed }
        let signed = headerLength + bodyLength
        var digest: Digest20 = (0, 0, 0)
        let authentic = withUnsafeMutableBytes(of: &digest) { d in
            var state = key.begin()
            HMACSHA1Key.update(&state, p, count: signed)
            key.finish(&state, into: d.baseAddress!)
            return constantTimeEqual(d.baseAddress!, p + signed, count: macLength)
        }
        guard authentic else { return .badMAC }

        let flags = p.loadByte(at: 3)
        let sessionID = p.loadBE64(at: 8)
        let sequence = p.loadBE64(at: 16)
        guard flags & ~1 == 0, p.loadBE16(at: 6) == 0, sessionID != 0, sequence != 0 else { return .malformed }
        guard let type = BackendMessageType(rawValue: p.loadByte(at: 2)) else { return .unknownType }
        let sender = BackendPeer(rawValue: flags)!
        guard type.isSent(by: sender) else { return .malformed }
        let b = p + headerLength
        let body: Body
        switch type {
        case .start, .migratedIn:
            guard let d = parseStream(b, length: bodyLength) else { return .malformed }
            body = type == .start ? .start(d) : .migratedIn(d)
        case .end:
            guard bodyLength == 4, b.loadBE16(at: 2) == 0 else { return .malformed }
            body = .end(BackendEndReason(rawValue: b.loadBE16(at: 0)))
        case .keepaliveAck:
            guard bodyLength == 8 else { return .malformed }
            body = .keepaliveAck(echo: b.loadBE64(at: 0))
        case .flush, .keepalive, .migratedAway:
            guard bodyLength == 0 else { return .malformed }
            body = type == .flush ? .flush : type == .keepalive ? .keepalive : .migratedAway
        }
        message = BackendMessage(
            sender: sender, sessionID: sessionID, sequence: sequence, timestamp: p.loadBE64(at: 24), body: body)
        return .ok
    }

    static func parseStream(_ b: UnsafeRawPointer, length: Int) -> BackendStreamDescription? {
        let fixed = BackendStreamDescription.fixedLength
        guard length >= fixed, b.loadByte(at: 11) == 0 else { return nil }
        let c = Int(b.loadByte(at: 10))
        let m = Int(b.loadBE16(at: 12))
        let s = Int(b.loadBE16(at: 14))
        guard length == fixed + c + m + s else { return nil }
        let strings = b + fixed
        return BackendStreamDescription(
            ssrc: b.loadBE32(at: 0), clockRate: b.loadBE32(at: 4), payloadType: b.loadByte(at: 8),
            channels: b.loadByte(at: 9),
            codecName: UnsafeRawBufferPointer(start: strings, count: c),
            model: UnsafeRawBufferPointer(start: strings + c, count: m),
            subject: UnsafeRawBufferPointer(start: strings + c + m, count: s))
    }
}
