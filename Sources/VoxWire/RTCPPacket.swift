/// RTCP (RFC 3550 §6, RFC 4585 §6) constants.
public enum RTCP {
    public static let version: UInt8 = 2
    /// V/P/count, packet type, length: the header every RTCP packet starts with.
    public static let headerLength = 4

    public enum PacketType {
        public static let senderReport: UInt8 = 200
        public static let receiverReport: UInt8 = 201
        public static let sourceDescription: UInt8 = 202
        public static let bye: UInt8 = 203
        public static let application: UInt8 = 204
        /// Transport-layer feedback (RFC 4585 §6.2).
        public static let transportFeedback: UInt8 = 205
        /// Payload-specific feedback (RFC 4585 §6.3).
        public static let payloadFeedback: UInt8 = 206
    }

    /// FMT values of transport-layer feedback (PT 205).
    public enum TransportFeedbackFormat {
        public static let genericNACK: UInt8 = 1
    }

    /// FMT values of payload-specific feedback (PT 206).
    public enum PayloadFeedbackFormat {
        public static let pictureLossIndication: UInt8 = 1
    }

    /// SDES item types (RFC 3550 §6.5).
    public enum SDESItemType {
        public static let end: UInt8 = 0
        public static let cname: UInt8 = 1
        public static let name: UInt8 = 2
        public static let email: UInt8 = 3
        public static let phone: UInt8 = 4
        public static let location: UInt8 = 5
        public static let tool: UInt8 = 6
        public static let note: UInt8 = 7
        public static let priv: UInt8 = 8
    }

    /// Report and source counts are 5-bit fields.
    public static let maxCount = 31
}

/// Why a datagram is not a well-formed RTCP compound packet.
public enum RTCPVerdict: UInt8, Sendable, CaseIterable {
    case ok
    /// Shorter than one 4-byte RTCP header.
    case truncated
    /// A packet's version field is not 2.
    case badVersion
    /// A packet's length runs past the end of the datagram, or leaves a piece shorter
    /// than a header after the last packet: the packets do not tile the datagram exactly.
    case badLength
    /// A packet's P bit is set but its last byte's count is 0 or eats into its header.
    case badPadding
}

/// One packet of an RTCP compound: a view over its bytes with the common header decoded.
///
/// ```
///  0                   1                   2                   3
///  |V=2|P| count:5 |  packet type  |  length (32-bit words − 1)    |  ← base
///  |  body (bodyLength bytes) ...                  |  padding (paddingLength) |
///  <------------------------------- length bytes ------------------------------>
/// ```
/// Offsets given by the typed views are from `base`, the packet's first byte. A packet
/// handed out by `RTCPCompound` has been checked to fit its datagram, so everything in
/// `base[0 ..< length]` may be read. Valid only while the bytes it views are.
public struct RTCPPacket {
    public let base: UnsafeRawPointer
    /// Where this packet starts in its compound.
    public let offset: Int
    /// The whole packet: header, body and padding.
    public let length: Int
    /// Padding bytes at the end, the count byte included; 0 without the P bit.
    public let paddingLength: Int
    /// The 5-bit count field: reception report count, source count, APP subtype or
    /// feedback message type (FMT), depending on `packetType`.
    public let count: UInt8
    public let packetType: UInt8

    @inlinable
    init(base: UnsafeRawPointer, offset: Int, length: Int, paddingLength: Int, count: UInt8, packetType: UInt8) {
        self.base = base
        self.offset = offset
        self.length = length
        self.paddingLength = paddingLength
        self.count = count
        self.packetType = packetType
    }

    /// The body after the 4-byte header, padding excluded.
    @inlinable
    public var bodyLength: Int { length - RTCP.headerLength - paddingLength }

    /// The packet decoded by type: the typed view, or why there is none.
    @inlinable
    public var kind: RTCPPacketKind {
        switch packetType {
        case RTCP.PacketType.senderReport:
            return RTCPSenderReport(self).map { .senderReport($0) } ?? .malformed
        case RTCP.PacketType.receiverReport:
            return RTCPReceiverReport(self).map { .receiverReport($0) } ?? .malformed
        case RTCP.PacketType.sourceDescription:
            return RTCPSourceDescription(self).map { .sourceDescription($0) } ?? .malformed
        case RTCP.PacketType.bye:
            return RTCPBye(self).map { .bye($0) } ?? .malformed
        case RTCP.PacketType.application:
            return RTCPApplication(self).map { .application($0) } ?? .malformed
        case RTCP.PacketType.transportFeedback:
            guard let feedback = RTCPFeedback(self) else { return .malformed }
            if count == RTCP.TransportFeedbackFormat.genericNACK {
                return RTCPGenericNACK(feedback).map { .genericNACK($0) } ?? .malformed
            }
            return .transportFeedback(feedback)
        case RTCP.PacketType.payloadFeedback:
            guard let feedback = RTCPFeedback(self) else { return .malformed }
            if count == RTCP.PayloadFeedbackFormat.pictureLossIndication { return .pictureLossIndication(feedback) }
            return .payloadFeedback(feedback)
        default:
            return .unknown
        }
    }
}

/// An RTCP packet by type. Feedback messages the engine does not act on (transport-wide
/// congestion control, REMB, FIR, …) are kept opaque as `RTCPFeedback`.
public enum RTCPPacketKind {
    case senderReport(RTCPSenderReport)
    case receiverReport(RTCPReceiverReport)
    case sourceDescription(RTCPSourceDescription)
    case bye(RTCPBye)
    case application(RTCPApplication)
    /// RTPFB FMT 1 (RFC 4585 §6.2.1).
    case genericNACK(RTCPGenericNACK)
    /// Another RTPFB FMT.
    case transportFeedback(RTCPFeedback)
    /// PSFB FMT 1 (RFC 4585 §6.3.1): no FCI, the two SSRCs say it all.
    case pictureLossIndication(RTCPFeedback)
    /// Another PSFB FMT.
    case payloadFeedback(RTCPFeedback)
    /// A packet type not listed here (XR, …).
    case unknown
    /// A type listed here whose body is too short for what its header announces.
    case malformed
}

/// The packets of an RTCP compound (RFC 3550 §6.1), in order.
///
/// ```
///  | packet 0 (4 × (len0 + 1)) | packet 1 (4 × (len1 + 1)) | ... |   = exactly `length` bytes
/// ```
/// Each step checks the next packet's header (V=2), that its length fits, and its padding
/// count; a failure ends the iteration with `verdict` saying why. Call `validate` first to
/// accept a compound only when *every* packet fits exactly, the way RFC 3550 A.2 does.
/// The first packet is not required to be SR or RR: reduced-size RTCP (RFC 5506, which
/// WebRTC negotiates with `a=rtcp-rsize`) sends feedback on its own.
public struct RTCPCompound: Sequence, IteratorProtocol {
    public let base: UnsafeRawPointer
    public let length: Int
    @usableFromInline var offset = 0
    @usableFromInline var _verdict: RTCPVerdict
    /// `.ok` while the packets so far were well formed; otherwise why iteration stopped.
    @inlinable public var verdict: RTCPVerdict { _verdict }

    @inlinable
    public init(_ p: UnsafeRawPointer, length: Int) {
        base = p
        self.length = length
        _verdict = length >= RTCP.headerLength ? .ok : .truncated
    }

    /// Walks the whole compound: `.ok` when every packet is well formed and together they
    /// fill the `length` bytes at `p` exactly.
    @inlinable
    public static func validate(_ p: UnsafeRawPointer, length: Int) -> RTCPVerdict {
        var compound = RTCPCompound(p, length: length)
        while compound.next() != nil {}
        return compound.verdict
    }

    @inlinable
    public mutating func next() -> RTCPPacket? {
        guard _verdict == .ok, offset < length else { return nil }
        guard length - offset >= RTCP.headerLength else { return stop(.badLength) }
        let b0 = base.loadByte(at: offset)
        guard b0 >> 6 == RTCP.version else { return stop(.badVersion) }
        let packetLength = 4 * (Int(base.loadBE16(at: offset + 2)) + 1)
        guard packetLength <= length - offset else { return stop(.badLength) }
        var paddingLength = 0
        if b0 & 0x20 != 0 {
            paddingLength = Int(base.loadByte(at: offset + packetLength - 1))
            guard paddingLength >= 1, paddingLength <= packetLength - RTCP.headerLength else {
                return stop(.badPadding)
            }
        }
        let packet = RTCPPacket(
            base: base + offset, offset: offset, length: packetLength, paddingLength: paddingLength,
            count: b0 & 0x1F, packetType: base.loadByte(at: offset + 1))
        offset += packetLength
        return packet
    }

    @inlinable
    mutating func stop(_ why: RTCPVerdict) -> RTCPPacket? {
        _verdict = why
        offset = length
        return nil
    }
}

// MARK: - Report blocks and sender info

/// One reception report block (RFC 3550 §6.4.1), as values.
///
/// ```
///  0       4              5                8          12       16       20       24
///  | SSRC | fraction lost | cumulative lost | ext. highest seq | jitter | LSR | DLSR |
/// ```
public struct RTCPReportBlock: Hashable, Sendable {
    public static let length = 24
    /// The source this block reports on.
    public var ssrc: SSRC
    /// Packets lost since the last report, as a fixed-point fraction × 256.
    public var fractionLost: UInt8
    /// Packets expected minus packets received, a signed 24-bit number: duplicates can
    /// make it negative. Stored clamped to −0x800000...0x7FFFFF (RFC 3550 A.3).
    public var cumulativeLost: Int32
    /// Sequence-number cycles × 65536 + the highest sequence number received.
    public var extendedHighestSequence: UInt32
    /// Interarrival jitter, in timestamp units.
    public var jitter: UInt32
    /// The middle 32 bits of the NTP timestamp of the last SR received from the source, or 0.
    public var lastSR: UInt32
    /// Time from receiving that SR to sending this block, in units of 1/65536 s, or 0.
    public var delaySinceLastSR: UInt32

    @inlinable
    public init(
        ssrc: SSRC, fractionLost: UInt8 = 0, cumulativeLost: Int32 = 0, extendedHighestSequence: UInt32 = 0,
        jitter: UInt32 = 0, lastSR: UInt32 = 0, delaySinceLastSR: UInt32 = 0
    ) {
        self.ssrc = ssrc
        self.fractionLost = fractionLost
        self.cumulativeLost = cumulativeLost
        self.extendedHighestSequence = extendedHighestSequence
        self.jitter = jitter
        self.lastSR = lastSR
        self.delaySinceLastSR = delaySinceLastSR
    }

    @inlinable
    public static func load(from p: UnsafeRawPointer, at offset: Int) -> RTCPReportBlock {
        let word = p.loadBE32(at: offset + 4)
        return RTCPReportBlock(
            ssrc: SSRC(p.loadBE32(at: offset)),
            fractionLost: UInt8(truncatingIfNeeded: word >> 24),
            // Sign-extend the low 24 bits.
            cumulativeLost: Int32(bitPattern: word << 8) >> 8,
            extendedHighestSequence: p.loadBE32(at: offset + 8),
            jitter: p.loadBE32(at: offset + 12),
            lastSR: p.loadBE32(at: offset + 16),
            delaySinceLastSR: p.loadBE32(at: offset + 20))
    }

    @inlinable
    public func store(to p: UnsafeMutableRawPointer, at offset: Int) {
        let lost = min(max(cumulativeLost, -0x80_0000), 0x7F_FFFF)
        p.storeBE32(ssrc.rawValue, at: offset)
        p.storeBE32(UInt32(fractionLost) << 24 | UInt32(bitPattern: lost) & 0x00FF_FFFF, at: offset + 4)
        p.storeBE32(extendedHighestSequence, at: offset + 8)
        p.storeBE32(jitter, at: offset + 12)
        p.storeBE32(lastSR, at: offset + 16)
        p.storeBE32(delaySinceLastSR, at: offset + 20)
    }
}

/// The report blocks of an SR or RR, read in place.
public struct RTCPReportBlocks: RandomAccessCollection {
    @usableFromInline let base: UnsafeRawPointer
    public let count: Int

    @inlinable
    init(_ base: UnsafeRawPointer, count: Int) {
        self.base = base
        self.count = count
    }

    @inlinable public var startIndex: Int { 0 }
    @inlinable public var endIndex: Int { count }

    @inlinable
    public subscript(i: Int) -> RTCPReportBlock {
        precondition(i >= 0 && i < count, "report block index out of range")
        return RTCPReportBlock.load(from: base, at: i * RTCPReportBlock.length)
    }
}

/// The sender information of an SR (RFC 3550 §6.4.1).
///
/// ```
///  0                8               12             16             20
///  | NTP timestamp | RTP timestamp | packet count | octet count |
/// ```
public struct RTCPSenderInfo: Hashable, Sendable {
    public static let length = 20
    /// Wall-clock time of the report, NTP format (seconds since 1900 in the high 32 bits).
    public var ntpTimestamp: UInt64
    /// The same instant on the stream's RTP clock.
    public var rtpTimestamp: UInt32
    public var packetCount: UInt32
    public var octetCount: UInt32

    @inlinable
    public init(ntpTimestamp: UInt64, rtpTimestamp: UInt32, packetCount: UInt32, octetCount: UInt32) {
        self.ntpTimestamp = ntpTimestamp
        self.rtpTimestamp = rtpTimestamp
        self.packetCount = packetCount
        self.octetCount = octetCount
    }

    /// The middle 32 bits of the NTP timestamp: what a receiver echoes as LSR.
    @inlinable
    public var compactNTP: UInt32 { UInt32(truncatingIfNeeded: ntpTimestamp >> 16) }

    @inlinable
    public static func load(from p: UnsafeRawPointer, at offset: Int) -> RTCPSenderInfo {
        RTCPSenderInfo(
            ntpTimestamp: p.loadBE64(at: offset), rtpTimestamp: p.loadBE32(at: offset + 8),
            packetCount: p.loadBE32(at: offset + 12), octetCount: p.loadBE32(at: offset + 16))
    }

    @inlinable
    public func store(to p: UnsafeMutableRawPointer, at offset: Int) {
        p.storeBE64(ntpTimestamp, at: offset)
        p.storeBE32(rtpTimestamp, at: offset + 8)
        p.storeBE32(packetCount, at: offset + 12)
        p.storeBE32(octetCount, at: offset + 16)
    }
}

// MARK: - Typed views

/// SR (PT 200): `| header | SSRC | sender info (20) | report blocks (24 × RC) | [extension]`.
/// Profile-specific extension bytes after the blocks are allowed and ignored.
public struct RTCPSenderReport {
    public let packet: RTCPPacket

    /// Nil unless `packet` is an SR long enough for its report count.
    @inlinable
    public init?(_ packet: RTCPPacket) {
        guard packet.packetType == RTCP.PacketType.senderReport,
            packet.bodyLength >= 4 + RTCPSenderInfo.length + RTCPReportBlock.length * Int(packet.count)
        else { return nil }
        self.packet = packet
    }

    @inlinable public var ssrc: SSRC { SSRC(packet.base.loadBE32(at: 4)) }
    @inlinable public var senderInfo: RTCPSenderInfo { RTCPSenderInfo.load(from: packet.base, at: 8) }
    @inlinable
    public var reportBlocks: RTCPReportBlocks { RTCPReportBlocks(packet.base + 28, count: Int(packet.count)) }
}

/// RR (PT 201): `| header | SSRC | report blocks (24 × RC) | [extension]`.
public struct RTCPReceiverReport {
    public let packet: RTCPPacket

    /// Nil unless `packet` is an RR long enough for its report count.
    @inlinable
    public init?(_ packet: RTCPPacket) {
        guard packet.packetType == RTCP.PacketType.receiverReport,
            packet.bodyLength >= 4 + RTCPReportBlock.length * Int(packet.count)
        else { return nil }
        self.packet = packet
    }

    @inlinable public var ssrc: SSRC { SSRC(packet.base.loadBE32(at: 4)) }
    @inlinable
    public var reportBlocks: RTCPReportBlocks { RTCPReportBlocks(packet.base + 8, count: Int(packet.count)) }
}

/// SDES (PT 202): SC chunks, each an SSRC and a list of items ended by a zero byte and
/// padded to 32 bits (RFC 3550 §6.5).
///
/// ```
///  | SSRC | type | len | text ... | type | len | text ... | 0 | 0 pad to 4 |  × SC
/// ```
public struct RTCPSourceDescription {
    public let packet: RTCPPacket

    @inlinable
    public init?(_ packet: RTCPPacket) {
        guard packet.packetType == RTCP.PacketType.sourceDescription else { return nil }
        self.packet = packet
    }

    /// The chunks, in order; check `isMalformed` on the iterator after it ends.
    @inlinable
    public var chunks: RTCPSDESChunks { RTCPSDESChunks(packet) }

    /// The CNAME of `ssrc`, if a well-formed chunk for it has one.
    @inlinable
    public func cname(for ssrc: SSRC) -> UnsafeRawBufferPointer? {
        for chunk in chunks where chunk.ssrc == ssrc {
            if let cname = chunk.cname { return cname }
        }
        return nil
    }
}

/// The chunks of an SDES packet. Each step checks the chunk's items fit and end with a
/// zero byte; a chunk that does not, or fewer chunks than SC, ends the iteration with
/// `isMalformed` set.
public struct RTCPSDESChunks: Sequence, IteratorProtocol {
    @usableFromInline let base: UnsafeRawPointer
    @usableFromInline var offset = RTCP.headerLength
    @usableFromInline let end: Int
    @usableFromInline var remaining: Int
    @usableFromInline var _isMalformed = false
    /// A chunk did not fit, or there were fewer than SC; iteration stopped there.
    @inlinable public var isMalformed: Bool { _isMalformed }

    @inlinable
    init(_ packet: RTCPPacket) {
        base = packet.base
        end = RTCP.headerLength + packet.bodyLength
        remaining = Int(packet.count)
    }

    @inlinable
    public mutating func next() -> RTCPSDESChunk? {
        guard remaining > 0 else { return nil }
        guard end - offset >= 4 else { return malformed() }
        let ssrc = SSRC(base.loadBE32(at: offset))
        let itemsOffset = offset + 4
        var i = itemsOffset
        while true {
            guard i < end else { return malformed() }
            if base.loadByte(at: i) == RTCP.SDESItemType.end { break }
            guard end - i >= 2 else { return malformed() }
            let itemLength = Int(base.loadByte(at: i + 1))
            guard end - i - 2 >= itemLength else { return malformed() }
            i += 2 + itemLength
        }
        // Null bytes pad to the next 32-bit boundary; a short last chunk is forgiven.
        offset = Swift.min((i + 1 + 3) & ~3, end)
        remaining -= 1
        return RTCPSDESChunk(base: base, ssrc: ssrc, itemsOffset: itemsOffset, itemsEnd: i)
    }

    @inlinable
    mutating func malformed() -> RTCPSDESChunk? {
        _isMalformed = true
        remaining = 0
        return nil
    }
}

/// One SDES chunk whose items were checked to fit.
public struct RTCPSDESChunk {
    @usableFromInline let base: UnsafeRawPointer
    public let ssrc: SSRC
    /// Offsets from the packet's first byte: the first item, and the terminating zero byte.
    public let itemsOffset: Int
    public let itemsEnd: Int

    @inlinable
    init(base: UnsafeRawPointer, ssrc: SSRC, itemsOffset: Int, itemsEnd: Int) {
        self.base = base
        self.ssrc = ssrc
        self.itemsOffset = itemsOffset
        self.itemsEnd = itemsEnd
    }

    @inlinable
    public var items: RTCPSDESItems { RTCPSDESItems(base: base, offset: itemsOffset, end: itemsEnd) }

    /// The first CNAME item's text.
    @inlinable
    public var cname: UnsafeRawBufferPointer? { item(RTCP.SDESItemType.cname) }

    /// The first item of `type`'s text.
    @inlinable
    public func item(_ type: UInt8) -> UnsafeRawBufferPointer? {
        for item in items where item.type == type {
            return UnsafeRawBufferPointer(start: base + item.offset, count: item.length)
        }
        return nil
    }
}

/// The items of one checked SDES chunk: type, and where its text is (offset from the
/// packet's first byte).
public struct RTCPSDESItems: Sequence, IteratorProtocol {
    @usableFromInline let base: UnsafeRawPointer
    @usableFromInline var offset: Int
    @usableFromInline let end: Int

    @inlinable
    init(base: UnsafeRawPointer, offset: Int, end: Int) {
        self.base = base
        self.offset = offset
        self.end = end
    }

    @inlinable
    public mutating func next() -> (type: UInt8, offset: Int, length: Int)? {
        guard offset < end else { return nil }
        let type = base.loadByte(at: offset)
        let length = Int(base.loadByte(at: offset + 1))
        let item = (type: type, offset: offset + 2, length: length)
        offset += 2 + length
        return item
    }
}

/// BYE (PT 203): `| header | SSRC × SC | [length | reason ... | 0 pad] |`.
public struct RTCPBye {
    public let packet: RTCPPacket

    /// Nil unless `packet` is a BYE with room for its SSRCs and, if it has one, its reason.
    @inlinable
    public init?(_ packet: RTCPPacket) {
        guard packet.packetType == RTCP.PacketType.bye else { return nil }
        let listEnd = 4 * Int(packet.count)
        guard packet.bodyLength >= listEnd else { return nil }
        if packet.bodyLength > listEnd {
            let reasonLength = Int(packet.base.loadByte(at: RTCP.headerLength + listEnd))
            guard packet.bodyLength - listEnd - 1 >= reasonLength else { return nil }
        }
        self.packet = packet
    }

    @inlinable
    public var sources: RTCPSSRCList { RTCPSSRCList(packet.base + RTCP.headerLength, count: Int(packet.count)) }

    /// "Reason for leaving", if present (UTF-8 text, not terminated).
    @inlinable
    public var reason: UnsafeRawBufferPointer? {
        let at = RTCP.headerLength + 4 * Int(packet.count)
        guard packet.bodyLength > at - RTCP.headerLength else { return nil }
        return UnsafeRawBufferPointer(start: packet.base + at + 1, count: Int(packet.base.loadByte(at: at)))
    }
}

/// A list of SSRCs read in place.
public struct RTCPSSRCList: RandomAccessCollection {
    @usableFromInline let base: UnsafeRawPointer
    public let count: Int

    @inlinable
    init(_ base: UnsafeRawPointer, count: Int) {
        self.base = base
        self.count = count
    }

    @inlinable public var startIndex: Int { 0 }
    @inlinable public var endIndex: Int { count }

    @inlinable
    public subscript(i: Int) -> SSRC {
        precondition(i >= 0 && i < count, "SSRC index out of range")
        return SSRC(base.loadBE32(at: 4 * i))
    }
}

/// APP (PT 204): `| header (count = subtype) | SSRC | name (4 ASCII) | data ... |`.
public struct RTCPApplication {
    public let packet: RTCPPacket

    @inlinable
    public init?(_ packet: RTCPPacket) {
        guard packet.packetType == RTCP.PacketType.application, packet.bodyLength >= 8 else { return nil }
        self.packet = packet
    }

    @inlinable public var subtype: UInt8 { packet.count }
    @inlinable public var ssrc: SSRC { SSRC(packet.base.loadBE32(at: 4)) }
    /// The four ASCII characters, big-endian ("VOXE" is 0x564F_5845).
    @inlinable public var name: UInt32 { packet.base.loadBE32(at: 8) }
    @inlinable
    public var data: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: packet.base + 12, count: packet.bodyLength - 8)
    }
}

/// RTPFB (PT 205) or PSFB (PT 206), RFC 4585 §6.1:
/// `| header (count = FMT) | sender SSRC | media SSRC | FCI ... |`.
public struct RTCPFeedback {
    public let packet: RTCPPacket

    @inlinable
    public init?(_ packet: RTCPPacket) {
        guard
            packet.packetType == RTCP.PacketType.transportFeedback
                || packet.packetType == RTCP.PacketType.payloadFeedback,
            packet.bodyLength >= 8
        else { return nil }
        self.packet = packet
    }

    /// FMT: which feedback message of the packet type this is.
    @inlinable public var format: UInt8 { packet.count }
    /// Who sends the feedback.
    @inlinable public var senderSSRC: SSRC { SSRC(packet.base.loadBE32(at: 4)) }
    /// The media source the feedback is about.
    @inlinable public var mediaSSRC: SSRC { SSRC(packet.base.loadBE32(at: 8)) }
    /// Feedback control information, from the packet's first byte.
    public static let fciOffset = 12
    @inlinable public var fciLength: Int { packet.bodyLength - 8 }
    @inlinable
    public var fci: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: packet.base + Self.fciOffset, count: fciLength)
    }
}

/// Generic NACK (RTPFB FMT 1, RFC 4585 §6.2.1): FCI entries of a packet ID and a
/// bitmask of the 16 packets after it.
///
/// ```
///  | PID (16) | BLP (16) |   bit i of BLP set  ⇔  PID + i + 1 is lost too
/// ```
public struct RTCPGenericNACK {
    public let feedback: RTCPFeedback

    @inlinable
    public init?(_ feedback: RTCPFeedback) {
        guard feedback.packet.packetType == RTCP.PacketType.transportFeedback,
            feedback.format == RTCP.TransportFeedbackFormat.genericNACK
        else { return nil }
        self.feedback = feedback
    }

    @inlinable public var senderSSRC: SSRC { feedback.senderSSRC }
    @inlinable public var mediaSSRC: SSRC { feedback.mediaSSRC }
    /// Whole FCI entries; a trailing fragment shorter than 4 bytes is ignored.
    @inlinable public var pairCount: Int { feedback.fciLength / 4 }

    @inlinable
    public func pair(_ i: Int) -> (pid: UInt16, blp: UInt16) {
        precondition(i >= 0 && i < pairCount, "NACK entry index out of range")
        let at = RTCPFeedback.fciOffset + 4 * i
        return (feedback.packet.base.loadBE16(at: at), feedback.packet.base.loadBE16(at: at + 2))
    }

    /// Every sequence number the NACK reports lost, entry by entry.
    @inlinable
    public var lostSequenceNumbers: RTCPNACKLostSequenceNumbers { RTCPNACKLostSequenceNumbers(self) }
}

/// The sequence numbers of a generic NACK, PID first then each set BLP bit, without allocating.
public struct RTCPNACKLostSequenceNumbers: Sequence, IteratorProtocol {
    @usableFromInline let nack: RTCPGenericNACK
    @usableFromInline var entry = 0
    /// -1: the PID is next; 0...15: BLP bits from here on.
    @usableFromInline var bit = -1
    @usableFromInline var pid: UInt16 = 0
    @usableFromInline var blp: UInt16 = 0

    @inlinable
    init(_ nack: RTCPGenericNACK) { self.nack = nack }

    @inlinable
    public mutating func next() -> UInt16? {
        while entry < nack.pairCount {
            if bit < 0 {
                (pid, blp) = nack.pair(entry)
                bit = 0
                return pid
            }
            while bit < 16 {
                let b = bit
                bit += 1
                if blp & (1 << UInt16(b)) != 0 { return pid &+ UInt16(b + 1) }
            }
            entry += 1
            bit = -1
        }
        return nil
    }
}
