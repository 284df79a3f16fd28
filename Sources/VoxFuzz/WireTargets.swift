import VoxMedia
import VoxWire

/// `ParsedFrame.parse` over a whole frame, then what `Worker` does next: the UDP checksum,
/// the payload's class (RFC 7983) and that class's parser.
enum FrameFuzz {
    static func run(_ data: UnsafeRawBufferPointer) {
        let frame = FuzzBuffer(data)
        var parsed = ParsedFrame()
        let verdict = ParsedFrame.parse(frame.pointer, length: data.count, into: &parsed)
        guard verdict == .ok else { return }
        FuzzCheck.expect(
            parsed.l3Offset >= 14 && parsed.l3Offset < parsed.l4Offset && parsed.l4Offset + 8 == parsed.payloadOffset
                && parsed.payloadLength >= 0 && parsed.payloadOffset + parsed.payloadLength <= data.count,
            "frame offsets outside the frame: \(parsed)")
        FuzzCheck.expect(parsed.isIPv6 == !parsed.source.isIPv4, "family disagrees with the addresses")
        FuzzCheck.consume(UDPChecksum.verify(frame.pointer, parsed))
        FuzzCheck.consume(parsed.flowKey)
        let payload = UnsafeRawBufferPointer(start: frame.pointer + parsed.payloadOffset, count: parsed.payloadLength)
        switch PayloadClass.classify(frame.pointer + parsed.payloadOffset, length: parsed.payloadLength) {
        case .stun: STUNFuzz.parseOnly(payload)
        case .rtp: RTPFuzz.run(payload)
        case .rtcp: RTCPFuzz.run(payload)
        case .dtls: FuzzCheck.consume(DTLSRecord.split(payload)?.count)
        case .zrtp, .turnChannel, .other: break
        }
    }
}

/// `RTPHeader.parse`, then everything a parsed header lets a caller read without checks.
enum RTPFuzz {
    static func run(_ data: UnsafeRawBufferPointer) {
        guard let base = data.baseAddress, data.count > 0 else {
            var h = RTPHeader()
            FuzzCheck.expect(
                RTPHeader.parse(UnsafeRawPointer(bitPattern: 0x10)!, length: 0, into: &h) != .ok, "empty RTP accepted")
            return
        }
        var h = RTPHeader()
        guard RTPHeader.parse(base, length: data.count, into: &h) == .ok else { return }
        FuzzCheck.expect(
            h.payloadOffset >= RTP.fixedHeaderLength && h.payloadLength >= 0
                && h.payloadOffset + h.payloadLength + h.paddingLength == data.count && h.length == data.count,
            "RTP parts do not add up to the packet: \(h)")
        var sum: UInt32 = 0
        for i in 0..<h.csrcCount { sum &+= h.csrc(i, in: base).rawValue }
        var extensions = h.extensions(in: base)
        while let e = extensions.next() {
            FuzzCheck.expect(
                e.offset >= h.extensionOffset && e.offset + e.length <= h.extensionOffset + h.extensionLength,
                "extension element outside the extension: \(e)")
            if e.length > 0 { sum &+= UInt32(base.loadByte(at: e.offset + e.length - 1)) }
            FuzzCheck.consume(RTPAudioLevel.load(from: base, e))
        }
        FuzzCheck.consume(h.headerExtension(id: 1, in: base))
        var stats = RTPReceiveStatistics()
        _ = stats.update(sequenceNumber: h.sequenceNumber, timestamp: h.timestamp, arrival: sum)
        _ = stats.update(sequenceNumber: h.sequenceNumber &+ UInt16(truncatingIfNeeded: sum), timestamp: h.timestamp &+ sum, arrival: 2 &* sum)
        FuzzCheck.consume(stats.makeReportBlock(ssrc: h.ssrc, now: sum))
    }
}

/// An RTCP compound, packet by packet, each through its typed view.
enum RTCPFuzz {
    static func run(_ data: UnsafeRawBufferPointer) {
        guard let base = data.baseAddress, data.count > 0 else { return }
        FuzzCheck.consume(RTCPCompound.validate(base, length: data.count))
        var sum: UInt64 = 0
        for packet in RTCPCompound(base, length: data.count) {
            FuzzCheck.expect(
                packet.offset >= 0 && packet.offset + packet.length <= data.count && packet.bodyLength >= 0,
                "RTCP packet outside the compound")
            switch packet.kind {
            case .senderReport(let sr):
                sum &+= UInt64(sr.ssrc.rawValue) &+ sr.senderInfo.ntpTimestamp
                for block in sr.reportBlocks { sum &+= UInt64(block.jitter) }
            case .receiverReport(let rr):
                sum &+= UInt64(rr.ssrc.rawValue)
                for block in rr.reportBlocks { sum &+= UInt64(bitPattern: Int64(block.cumulativeLost)) }
            case .sourceDescription(let sdes):
                var chunks = sdes.chunks
                while let chunk = chunks.next() {
                    sum &+= UInt64(chunk.cname?.count ?? 0)
                    for item in chunk.items { sum &+= UInt64(item.length) }
                }
                sum &+= UInt64(sdes.cname(for: SSRC(UInt32(truncatingIfNeeded: sum)))?.count ?? 0)
            case .bye(let bye):
                for s in bye.sources { sum &+= UInt64(s.rawValue) }
                sum &+= UInt64(bye.reason?.count ?? 0)
            case .application(let app):
                sum &+= UInt64(app.name) &+ UInt64(app.data.count)
            case .genericNACK(let nack):
                for i in 0..<nack.pairCount { sum &+= UInt64(nack.pair(i).blp) }
                var lost = nack.lostSequenceNumbers
                var n = 0
                while let s = lost.next() {
                    sum &+= UInt64(s)
                    n += 1
                }
                FuzzCheck.expect(n <= nack.pairCount * 17, "more lost packets than the NACK can name")
            case .transportFeedback(let f), .pictureLossIndication(let f), .payloadFeedback(let f):
                sum &+= UInt64(f.fci.count) &+ UInt64(f.mediaSSRC.rawValue)
            case .unknown, .malformed:
                break
            }
        }
        FuzzCheck.consume(sum)
    }
}
