/// What a UDP datagram on the media port carries, from its first byte (RFC 7983 §7).
public enum PayloadClass: UInt8, Sendable, CaseIterable {
    case stun  // 0...3
    case zrtp  // 16...19
    case dtls  // 20...63
    case turnChannel  // 64...79
    case rtp  // 128...191, second byte not an RTCP packet type
    case rtcp  // 128...191, second byte 192...223 (RFC 5761 §4)
    case other

    /// Classifies a datagram of at least one byte; `second` is its second byte, or 0.
    @inlinable
    public static func classify(first: UInt8, second: UInt8) -> PayloadClass {
        switch first {
        case 0...3: return .stun
        case 16...19: return .zrtp
        case 20...63: return .dtls
        case 64...79: return .turnChannel
        case 128...191: return (192...223).contains(second) ? .rtcp : .rtp
        default: return .other
        }
    }

    /// Classifies `length` bytes at `p`.
    @inlinable
    public static func classify(_ p: UnsafeRawPointer, length: Int) -> PayloadClass {
        guard length > 0 else { return .other }
        return classify(first: p.loadByte(at: 0), second: length > 1 ? p.loadByte(at: 1) : 0)
    }
}
