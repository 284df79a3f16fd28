/// RTP (RFC 3550 §5.1) constants.
public enum RTP {
    public static let version: UInt8 = 2
    /// The fixed header: V/P/X/CC, M/PT, sequence number, timestamp, SSRC.
    public static let fixedHeaderLength = 12
    /// "defined by profile" of RFC 8285's one-byte header extensions.
    public static let oneByteExtensionProfile: UInt16 = 0xBEDE
    /// RFC 8285's two-byte header extensions: 0x100 in the top 12 bits, the low 4 bits
    /// are "appbits" the application may use, so 0x1000...0x100F all mean this form.
    public static let twoByteExtensionProfile: UInt16 = 0x1000
    public static let twoByteExtensionProfileMask: UInt16 = 0xFFF0
}

/// Why a datagram is not a well-formed RTP packet.
public enum RTPVerdict: UInt8, Sendable, CaseIterable {
    case ok
    /// Shorter than the 12-byte fixed header.
    case truncated
    /// The version field is not 2.
    case badVersion
    /// The CSRC list (CC × 4 bytes) runs past the end.
    case badCSRC
    /// The X bit is set but the extension header or its data runs past the end.
    case badExtension
    /// The P bit is set but the last byte's count is 0 or larger than what follows the header.
    case badPadding
}

/// Where the parts of one RTP packet are, found by `RTPHeader.parse`, with the fixed
/// header's fields decoded.
///
/// ```
///  0           12                                   extensionOffset  payloadOffset
///  | fixed 12  | CSRC × csrcCount | profile | words | extension data | payload ... | padding ... count |
///               ^ csrcOffset      '--- if X ------'                                '- if P: paddingLength -'
/// ```
/// Offsets are from the start of the packet. After `.ok`:
///
///     csrcOffset = 12 ≤ 12 + 4·csrcCount ≤ extensionOffset ≤ extensionOffset + extensionLength
///       = payloadOffset ≤ payloadOffset + payloadLength = length − paddingLength ≤ length
///
/// Without an extension, `extensionOffset == payloadOffset` and `extensionLength == 0`,
/// so the chain holds either way; `hasExtension` tells the two apart (an extension may be
/// present and empty). Code holding a `.ok` header may read and rewrite any field
/// without checks.
public struct RTPHeader: Sendable {
    public var version: UInt8 = 0
    public var hasPadding: Bool = false
    public var hasExtension: Bool = false
    public var csrcCount: Int = 0
    public var marker: Bool = false
    public var payloadType: UInt8 = 0
    public var sequenceNumber: UInt16 = 0
    public var timestamp: UInt32 = 0
    public var ssrc = SSRC(0)
    /// The whole packet, header to last padding byte.
    public var length: Int = 0
    public var csrcOffset: Int = RTP.fixedHeaderLength
    /// "defined by profile" (0xBEDE, 0x100X, or anything else), 0 without an extension.
    public var extensionProfile: UInt16 = 0
    /// Where the extension *data* starts (after its 4-byte header).
    public var extensionOffset: Int = 0
    /// Bytes of extension data (4 × the header's word count).
    public var extensionLength: Int = 0
    public var payloadOffset: Int = 0
    /// Payload bytes, padding excluded.
    public var payloadLength: Int = 0
    /// Padding bytes at the end, the count byte included; 0 without the P bit.
    public var paddingLength: Int = 0

    @inlinable
    public init() {}

    /// Parses the `length` bytes at `p` (a whole UDP payload, or an SRTP packet's
    /// authenticated part). Checks every length once; on a verdict other than `.ok` the
    /// fields of `h` are unspecified.
    @inlinable
    public static func parse(_ p: UnsafeRawPointer, length: Int, into h: inout RTPHeader) -> RTPVerdict {
        guard length >= RTP.fixedHeaderLength else { return .truncated }
        let b0 = p.loadByte(at: 0)
        guard b0 >> 6 == RTP.version else { return .badVersion }
        let b1 = p.loadByte(at: 1)
        let csrcCount = Int(b0 & 0x0F)
        var offset = RTP.fixedHeaderLength + 4 * csrcCount
        guard offset <= length else { return .badCSRC }
        let hasExtension = b0 & 0x10 != 0
        if hasExtension {
            guard length - offset >= 4 else { return .badExtension }
            let words = Int(p.loadBE16(at: offset + 2))
            guard length - offset - 4 >= 4 * words else { return .badExtension }
            h.extensionProfile = p.loadBE16(at: offset)
            h.extensionOffset = offset + 4
            h.extensionLength = 4 * words
            offset += 4 + 4 * words
        } else {
            h.extensionProfile = 0
            h.extensionOffset = offset
            h.extensionLength = 0
        }
        var paddingLength = 0
        let hasPadding = b0 & 0x20 != 0
        if hasPadding {
            // The count includes itself, so it is at least 1, and it cannot eat into the header.
            paddingLength = Int(p.loadByte(at: length - 1))
            guard paddingLength >= 1, paddingLength <= length - offset else { return .badPadding }
        }
        h.version = RTP.version
        h.hasPadding = hasPadding
        h.hasExtension = hasExtension
        h.csrcCount = csrcCount
        h.marker = b1 & 0x80 != 0
        h.payloadType = b1 & 0x7F
        h.sequenceNumber = p.loadBE16(at: 2)
        h.timestamp = p.loadBE32(at: 4)
        h.ssrc = SSRC(p.loadBE32(at: 8))
        h.length = length
        h.csrcOffset = RTP.fixedHeaderLength
        h.payloadOffset = offset
        h.payloadLength = length - offset - paddingLength
        h.paddingLength = paddingLength
        return .ok
    }

    /// The header's length: everything before the payload.
    @inlinable
    public var headerLength: Int { payloadOffset }

    /// CSRC `i` (`i < csrcCount`).
    @inlinable
    public func csrc(_ i: Int, in p: UnsafeRawPointer) -> SSRC {
        precondition(i >= 0 && i < csrcCount, "CSRC index out of range")
        return SSRC(p.loadBE32(at: csrcOffset + 4 * i))
    }

    /// The RFC 8285 elements of this packet's extension (none without one, or with a
    /// profile that is neither one-byte nor two-byte).
    @inlinable
    public func extensions(in p: UnsafeRawPointer) -> RTPHeaderExtensions {
        RTPHeaderExtensions(
            p, profile: hasExtension ? extensionProfile : 0, offset: extensionOffset, length: extensionLength)
    }
}

// MARK: - Writing and rewriting in place

extension RTPHeader {
    /// Writes a 12-byte fixed header (V=2, no padding, no extension, no CSRCs) at `p`.
    /// Returns 12, or 0 when `capacity` is smaller.
    @inlinable
    public static func write(
        to p: UnsafeMutableRawPointer, capacity: Int, payloadType: UInt8, marker: Bool, sequenceNumber: UInt16,
        timestamp: UInt32, ssrc: SSRC
    ) -> Int {
        guard capacity >= RTP.fixedHeaderLength else { return 0 }
        p.storeByte(RTP.version << 6, at: 0)
        p.storeByte((marker ? 0x80 : 0) | (payloadType & 0x7F), at: 1)
        p.storeBE16(sequenceNumber, at: 2)
        p.storeBE32(timestamp, at: 4)
        p.storeBE32(ssrc.rawValue, at: 8)
        return RTP.fixedHeaderLength
    }

    // The mutators below change the bytes at `p` and this view together, so the view
    // keeps describing the packet. `p` must be the packet this header was parsed from.

    /// Moves the packet into another stream's numbering in one call: the engine sends the
    /// client leg as its own stream (own SSRC, sequence numbers and timestamps) whatever
    /// backend the media came from.
    @inlinable
    public mutating func rewrite(ssrc: SSRC, sequenceNumber: UInt16, timestamp: UInt32, in p: UnsafeMutableRawPointer) {
        setSSRC(ssrc, in: p)
        setSequenceNumber(sequenceNumber, in: p)
        setTimestamp(timestamp, in: p)
    }

    @inlinable
    public mutating func setSSRC(_ ssrc: SSRC, in p: UnsafeMutableRawPointer) {
        self.ssrc = ssrc
        p.storeBE32(ssrc.rawValue, at: 8)
    }

    @inlinable
    public mutating func setSequenceNumber(_ sequenceNumber: UInt16, in p: UnsafeMutableRawPointer) {
        self.sequenceNumber = sequenceNumber
        p.storeBE16(sequenceNumber, at: 2)
    }

    @inlinable
    public mutating func setTimestamp(_ timestamp: UInt32, in p: UnsafeMutableRawPointer) {
        self.timestamp = timestamp
        p.storeBE32(timestamp, at: 4)
    }

    /// Only the low 7 bits count; the marker bit beside it is kept.
    @inlinable
    public mutating func setPayloadType(_ payloadType: UInt8, in p: UnsafeMutableRawPointer) {
        self.payloadType = payloadType & 0x7F
        p.storeByte((p.loadByte(at: 1) & 0x80) | self.payloadType, at: 1)
    }

    @inlinable
    public mutating func setMarker(_ marker: Bool, in p: UnsafeMutableRawPointer) {
        self.marker = marker
        p.storeByte((p.loadByte(at: 1) & 0x7F) | (marker ? 0x80 : 0), at: 1)
    }
}
