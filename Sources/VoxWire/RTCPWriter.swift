/// Writes an RTCP compound packet into a buffer, one packet after another (RFC 3550 §6.1:
/// the usual compound is SR or RR, then SDES with a CNAME, then anything else).
///
/// ```
///  base                                  length                 capacity
///  | packet | packet | ... (complete)     | free ...              |
/// ```
/// Every append checks `capacity` before writing and returns false, leaving the packets
/// already written as they were, when the packet does not fit or cannot be expressed
/// (more than 31 report blocks or SSRCs, a CNAME or reason over 255 bytes, an empty NACK).
/// `length` is always the length of a complete, valid compound. Bytes past `length` may
/// have been scribbled on by a failed append.
public struct RTCPWriter {
    public let base: UnsafeMutableRawPointer
    public let capacity: Int
    @usableFromInline var _length = 0
    /// Bytes written so far: the compound.
    @inlinable public var length: Int { _length }

    @inlinable
    public init(_ base: UnsafeMutableRawPointer, capacity: Int) {
        self.base = base
        self.capacity = capacity
    }

    /// Writes a packet header at `length` for a body of `bodyLength` bytes (a multiple of 4),
    /// if the packet fits; returns where the packet starts. Does not advance `length`.
    @inlinable
    func header(type: UInt8, count: Int, bodyLength: Int) -> Int? {
        guard count >= 0, count <= RTCP.maxCount, bodyLength & 3 == 0,
            capacity - length >= RTCP.headerLength + bodyLength,
            bodyLength / 4 <= Int(UInt16.max)
        else { return nil }
        base.storeByte(RTCP.version << 6 | UInt8(count), at: length)
        base.storeByte(type, at: length + 1)
        base.storeBE16(UInt16(bodyLength / 4), at: length + 2)
        return length
    }

    /// SR: sender info and up to 31 report blocks.
    @inlinable
    public mutating func appendSenderReport(
        ssrc: SSRC, senderInfo: RTCPSenderInfo, reportBlocks: some Collection<RTCPReportBlock>
    ) -> Bool {
        let count = reportBlocks.count
        guard
            let at = header(
                type: RTCP.PacketType.senderReport, count: count,
                bodyLength: 4 + RTCPSenderInfo.length + count * RTCPReportBlock.length)
        else { return false }
        base.storeBE32(ssrc.rawValue, at: at + 4)
        senderInfo.store(to: base, at: at + 8)
        var o = at + 8 + RTCPSenderInfo.length
        for block in reportBlocks {
            block.store(to: base, at: o)
            o += RTCPReportBlock.length
        }
        _length = o
        return true
    }

    /// RR: up to 31 report blocks (none is fine: "I receive nothing" still opens a compound).
    @inlinable
    public mutating func appendReceiverReport(ssrc: SSRC, reportBlocks: some Collection<RTCPReportBlock>) -> Bool {
        let count = reportBlocks.count
        guard
            let at = header(
                type: RTCP.PacketType.receiverReport, count: count, bodyLength: 4 + count * RTCPReportBlock.length)
        else { return false }
        base.storeBE32(ssrc.rawValue, at: at + 4)
        var o = at + 8
        for block in reportBlocks {
            block.store(to: base, at: o)
            o += RTCPReportBlock.length
        }
        _length = o
        return true
    }

    /// SDES with one chunk holding one CNAME item (at most 255 bytes).
    @inlinable
    public mutating func appendSourceDescription(ssrc: SSRC, cname: UnsafeRawBufferPointer) -> Bool {
        let n = cname.count
        guard n <= 255 else { return false }
        // SSRC, type, length, text, then at least one zero byte, padded to 32 bits.
        let bodyLength = (4 + 2 + n + 1 + 3) & ~3
        guard let at = header(type: RTCP.PacketType.sourceDescription, count: 1, bodyLength: bodyLength) else {
            return false
        }
        base.storeBE32(ssrc.rawValue, at: at + 4)
        base.storeByte(RTCP.SDESItemType.cname, at: at + 8)
        base.storeByte(UInt8(n), at: at + 9)
        if n > 0 { (base + at + 10).copyMemory(from: cname.baseAddress!, byteCount: n) }
        let end = at + 4 + bodyLength
        (base + at + 10 + n).initializeMemory(as: UInt8.self, repeating: 0, count: end - (at + 10 + n))
        _length = end
        return true
    }

    /// BYE for up to 31 SSRCs, with an optional reason (at most 255 bytes).
    @inlinable
    public mutating func appendBye(sources: some Collection<SSRC>, reason: UnsafeRawBufferPointer? = nil) -> Bool {
        let count = sources.count
        let reasonLength = reason?.count ?? 0
        guard reasonLength <= 255 else { return false }
        let reasonPart = reason == nil ? 0 : (1 + reasonLength + 3) & ~3
        guard let at = header(type: RTCP.PacketType.bye, count: count, bodyLength: 4 * count + reasonPart) else {
            return false
        }
        var o = at + 4
        for ssrc in sources {
            base.storeBE32(ssrc.rawValue, at: o)
            o += 4
        }
        if let reason {
            base.storeByte(UInt8(reasonLength), at: o)
            if reasonLength > 0 { (base + o + 1).copyMemory(from: reason.baseAddress!, byteCount: reasonLength) }
            let end = o + reasonPart
            (base + o + 1 + reasonLength).initializeMemory(
                as: UInt8.self, repeating: 0, count: end - (o + 1 + reasonLength))
            o = end
        }
        _length = o
        return true
    }

    /// APP with `data` (a multiple of 4 bytes, as RFC 3550 §6.7 requires).
    @inlinable
    public mutating func appendApplication(
        subtype: UInt8, ssrc: SSRC, name: UInt32, data: UnsafeRawBufferPointer
    ) -> Bool {
        guard data.count & 3 == 0,
            let at = header(type: RTCP.PacketType.application, count: Int(subtype), bodyLength: 8 + data.count)
        else { return false }
        base.storeBE32(ssrc.rawValue, at: at + 4)
        base.storeBE32(name, at: at + 8)
        if data.count > 0 { (base + at + 12).copyMemory(from: data.baseAddress!, byteCount: data.count) }
        _length = at + 12 + data.count
        return true
    }

    /// Generic NACK (RFC 4585 §6.2.1) for `lost`, packed into as few PID/BLP entries as its
    /// order allows: each entry takes its PID and the lost numbers up to 16 after it
    /// (counted modulo 2^16, so a run across the wrap shares an entry). Give the numbers in
    /// sending order; a repeat of one already covered is skipped. False for an empty list.
    @inlinable
    public mutating func appendGenericNACK(senderSSRC: SSRC, mediaSSRC: SSRC, lost: some Sequence<UInt16>) -> Bool {
        let at = length
        guard capacity - at >= RTCP.headerLength + 8 else { return false }
        var o = at + RTCPFeedback.fciOffset
        var pid: UInt16 = 0
        var blp: UInt16 = 0
        var open = false
        for seq in lost {
            if open {
                let distance = seq &- pid
                if distance == 0 { continue }
                if distance <= 16 {
                    blp |= 1 << (distance - 1)
                    continue
                }
                base.storeBE16(pid, at: o)
                base.storeBE16(blp, at: o + 2)
                o += 4
            }
            guard capacity - o >= 4 else { return false }
            pid = seq
            blp = 0
            open = true
        }
        guard open else { return false }
        base.storeBE16(pid, at: o)
        base.storeBE16(blp, at: o + 2)
        o += 4
        guard
            header(
                type: RTCP.PacketType.transportFeedback, count: Int(RTCP.TransportFeedbackFormat.genericNACK),
                bodyLength: o - at - RTCP.headerLength) != nil
        else { return false }
        base.storeBE32(senderSSRC.rawValue, at: at + 4)
        base.storeBE32(mediaSSRC.rawValue, at: at + 8)
        _length = o
        return true
    }

    /// Picture loss indication (PSFB FMT 1, RFC 4585 §6.3.1).
    @inlinable
    public mutating func appendPictureLossIndication(senderSSRC: SSRC, mediaSSRC: SSRC) -> Bool {
        guard
            let at = header(
                type: RTCP.PacketType.payloadFeedback, count: Int(RTCP.PayloadFeedbackFormat.pictureLossIndication),
                bodyLength: 8)
        else { return false }
        base.storeBE32(senderSSRC.rawValue, at: at + 4)
        base.storeBE32(mediaSSRC.rawValue, at: at + 8)
        _length = at + 12
        return true
    }
}
