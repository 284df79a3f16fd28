import Testing
import VoxTestKit
import VoxWire

/// A name per packet kind, so tests can compare kinds without unpacking them.
func kindName(_ kind: RTCPPacketKind) -> String {
    switch kind {
    case .senderReport: "SR"
    case .receiverReport: "RR"
    case .sourceDescription: "SDES"
    case .bye: "BYE"
    case .application: "APP"
    case .genericNACK: "NACK"
    case .transportFeedback: "RTPFB"
    case .pictureLossIndication: "PLI"
    case .payloadFeedback: "PSFB"
    case .unknown: "unknown"
    case .malformed: "malformed"
    }
}

/// The verdict of a compound and the kinds of its packets.
func rtcpKinds(_ compound: [UInt8]) -> (RTCPVerdict, [String]) {
    compound.withUnsafeBytes { raw in
        let verdict = RTCPCompound.validate(raw.baseAddress!, length: raw.count)
        guard verdict == .ok else { return (verdict, []) }
        return (verdict, RTCPCompound(raw.baseAddress!, length: raw.count).map { kindName($0.kind) })
    }
}

/// Builds a compound with `RTCPWriter` in a buffer of `capacity` bytes; nil if an append failed.
func buildRTCP(capacity: Int = 1500, _ body: (inout RTCPWriter) -> Bool) -> [UInt8]? {
    var buffer = [UInt8](repeating: 0xEE, count: capacity)
    let length = buffer.withUnsafeMutableBytes { raw -> Int? in
        var writer = RTCPWriter(raw.baseAddress!, capacity: raw.count)
        return body(&writer) ? writer.length : nil
    }
    return length.map { Array(buffer[0..<$0]) }
}

func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

/// The lost sequence numbers a NACK packet (alone in its compound) reports, and its entries.
func decodeNACK(_ packet: [UInt8]) -> (lost: [UInt16], pairs: [UInt16])? {
    packet.withUnsafeBytes { raw -> ([UInt16], [UInt16])? in
        var compound = RTCPCompound(raw.baseAddress!, length: raw.count)
        guard let first = compound.next(), case .genericNACK(let nack) = first.kind else { return nil }
        let pairs = (0..<nack.pairCount).flatMap { [nack.pair($0).pid, nack.pair($0).blp] }
        return (Array(nack.lostSequenceNumbers), pairs)
    }
}

@Suite struct RTCPCompoundTests {
    let block = RTCPReportBlock(
        ssrc: SSRC(0x0BAD_CAFE), fractionLost: 0x40, cumulativeLost: 3, extendedHighestSequence: 0x0001_0010,
        jitter: 0x20, lastSR: 0xB2C3_4000, delaySinceLastSR: 0x8000)
    let senderInfo = RTCPSenderInfo(
        ntpTimestamp: 0xE8A1_B2C3_4000_0000, rtpTimestamp: 123_456, packetCount: 100, octetCount: 16000)

    /// SR with one report block, then SDES with a CNAME, assembled by hand from RFC 3550
    /// §6.4.1 and §6.5 and compared with what the writer produces.
    var handBuiltSRAndSDES: [UInt8] {
        hexBytes(
            """
            81C8000C 5D4C3B2A E8A1B2C3 40000000 0001E240 00000064 00003E80
            0BADCAFE 40000003 00010010 00000020 B2C34000 00008000
            81CA0004 5D4C3B2A 0108 6162636431323334 0000
            """)
    }

    @Test func senderReportAndSDESParse() {
        let compound = handBuiltSRAndSDES
        #expect(rtcpKinds(compound).0 == .ok)
        #expect(rtcpKinds(compound).1 == ["SR", "SDES"])
        compound.withUnsafeBytes { raw in
            let packets = Array(RTCPCompound(raw.baseAddress!, length: raw.count))
            #expect(packets.map(\.offset) == [0, 52])
            #expect(packets.map(\.length) == [52, 20])
            guard case .senderReport(let sr) = packets[0].kind else {
                Issue.record("not an SR")
                return
            }
            #expect(sr.ssrc == SSRC(0x5D4C_3B2A))
            #expect(sr.senderInfo == senderInfo)
            #expect(sr.senderInfo.compactNTP == 0xB2C3_4000)
            #expect(Array(sr.reportBlocks) == [block])
            guard case .sourceDescription(let sdes) = packets[1].kind else {
                Issue.record("not SDES")
                return
            }
            #expect(sdes.cname(for: SSRC(0x5D4C_3B2A)).map { Array($0) } == bytes("abcd1234"))
            #expect(sdes.cname(for: SSRC(1)) == nil)
        }
    }

    @Test func writerProducesTheHandBuiltBytes() {
        let built = buildRTCP { w in
            w.appendSenderReport(ssrc: SSRC(0x5D4C_3B2A), senderInfo: senderInfo, reportBlocks: [block])
                && bytes("abcd1234").withUnsafeBytes { w.appendSourceDescription(ssrc: SSRC(0x5D4C_3B2A), cname: $0) }
        }
        #expect(built == handBuiltSRAndSDES)
    }

    @Test func receiverReportAndByeRoundTrip() {
        let blocks = (0..<3).map {
            RTCPReportBlock(
                ssrc: SSRC(UInt32(100 + $0)), fractionLost: UInt8($0), cumulativeLost: Int32(-$0),
                extendedHighestSequence: 65536 * 2 + UInt32($0), jitter: 7, lastSR: 0, delaySinceLastSR: 0)
        }
        let compound = buildRTCP { w in
            w.appendReceiverReport(ssrc: SSRC(9), reportBlocks: blocks)
                && bytes("bye").withUnsafeBytes { w.appendBye(sources: [SSRC(9), SSRC(10)], reason: $0) }
        }!
        #expect(compound.count == 8 + 3 * 24 + 4 + 8 + 4)
        #expect(rtcpKinds(compound).1 == ["RR", "BYE"])
        compound.withUnsafeBytes { raw in
            var it = RTCPCompound(raw.baseAddress!, length: raw.count)
            guard case .receiverReport(let rr) = it.next()!.kind, case .bye(let bye) = it.next()!.kind else {
                Issue.record("wrong kinds")
                return
            }
            #expect(it.next() == nil && it.verdict == .ok)
            #expect(rr.ssrc == SSRC(9))
            #expect(Array(rr.reportBlocks) == blocks)
            #expect(Array(bye.sources) == [SSRC(9), SSRC(10)])
            #expect(bye.reason.map { Array($0) } == bytes("bye"))
        }
        // The short forms by hand: an RR without blocks, a BYE without reason.
        let plain = hexBytes("80C90001 00000009 81CB0001 00000009")
        #expect(rtcpKinds(plain).1 == ["RR", "BYE"])
        plain.withUnsafeBytes { raw in
            let packets = Array(RTCPCompound(raw.baseAddress!, length: raw.count))
            guard case .bye(let bye) = packets[1].kind else { return }
            #expect(bye.reason == nil)
        }
        // A BYE whose reason length runs past the packet.
        #expect(rtcpKinds(hexBytes("81CB0002 00000009 09626965")).1 == ["malformed"])
    }

    @Test func sdesChunksAndItems() {
        // Chunk 1: CNAME "a", NAME "bob". Chunk 2: CNAME "xy".
        let compound = hexBytes(
            """
            82CA0007
            00000001 0101 61 0203 626F62 00 000000
            00000002 0102 7879 00 000000
            """)
        #expect(rtcpKinds(compound).0 == .ok)
        compound.withUnsafeBytes { raw in
            var it = RTCPCompound(raw.baseAddress!, length: raw.count)
            guard case .sourceDescription(let sdes) = it.next()!.kind else {
                Issue.record("not SDES")
                return
            }
            var chunks = sdes.chunks
            let first = chunks.next()!
            #expect(first.ssrc == SSRC(1))
            #expect(first.items.map(\.type) == [1, 2])
            #expect(first.item(RTCP.SDESItemType.name).map { Array($0) } == bytes("bob"))
            let second = chunks.next()!
            #expect(second.ssrc == SSRC(2) && second.cname.map { Array($0) } == bytes("xy"))
            #expect(chunks.next() == nil && !chunks.isMalformed)
        }
        // Items that fill the packet with no terminating zero, and SC above the chunks present.
        for bad in ["81CA0002 00000001 01026162", "82CA0002 00000001 01016100"] {
            hexBytes(bad).withUnsafeBytes { raw in
                var it = RTCPCompound(raw.baseAddress!, length: raw.count)
                guard case .sourceDescription(let sdes) = it.next()!.kind else { return }
                var chunks = sdes.chunks
                while chunks.next() != nil {}
                #expect(chunks.isMalformed)
            }
        }
    }

    @Test func applicationPacketRoundTrip() {
        let data: [UInt8] = [1, 2, 3, 4, 5, 6, 7, 8]
        let compound = buildRTCP { w in
            data.withUnsafeBytes { w.appendApplication(subtype: 3, ssrc: SSRC(77), name: 0x564F_5845, data: $0) }
        }!
        #expect(compound == hexBytes("83CC0004 0000004D 564F5845 01020304 05060708"))
        compound.withUnsafeBytes { raw in
            var it = RTCPCompound(raw.baseAddress!, length: raw.count)
            guard case .application(let app) = it.next()!.kind else { return }
            #expect(app.subtype == 3 && app.ssrc == SSRC(77) && app.name == 0x564F_5845)
            #expect(Array(app.data) == data)
        }
        // APP data must be whole words.
        #expect(
            buildRTCP { w in
                [UInt8](repeating: 0, count: 3).withUnsafeBytes {
                    w.appendApplication(subtype: 0, ssrc: SSRC(1), name: 0, data: $0)
                }
            } == nil)
    }

    @Test func pictureLossIndication() {
        let compound = buildRTCP { w in w.appendPictureLossIndication(senderSSRC: SSRC(1), mediaSSRC: SSRC(2)) }!
        #expect(compound == hexBytes("81CE0002 00000001 00000002"))
        #expect(rtcpKinds(compound).1 == ["PLI"])
        // Other feedback formats stay opaque, FCI and all.
        let remb = hexBytes("8FCE0003 00000001 00000000 52454D42")
        #expect(rtcpKinds(remb).1 == ["PSFB"])
        remb.withUnsafeBytes { raw in
            var it = RTCPCompound(raw.baseAddress!, length: raw.count)
            guard case .payloadFeedback(let fb) = it.next()!.kind else { return }
            #expect(fb.format == 15 && fb.senderSSRC == SSRC(1) && Array(fb.fci) == bytes("REMB"))
        }
        let twcc = hexBytes("8FCD0002 00000001 00000002")
        #expect(rtcpKinds(twcc).1 == ["RTPFB"])
    }

    @Test func verdicts() {
        #expect(rtcpKinds([]).0 == .truncated)
        #expect(rtcpKinds([0x80, 0xC9, 0x00]).0 == .truncated)
        #expect(rtcpKinds(hexBytes("40C90001 00000009")).0 == .badVersion)
        // The second packet's version.
        #expect(rtcpKinds(hexBytes("80C90001 00000009 00CB0001 00000009")).0 == .badVersion)
        // A length past the end; bytes left over that are not a packet.
        #expect(rtcpKinds(hexBytes("80C90002 00000009")).0 == .badLength)
        #expect(rtcpKinds(hexBytes("80C90001 00000009 81CB")).0 == .badLength)
        #expect(rtcpKinds(hexBytes("80C90001 00000009 00")).0 == .badLength)
        // Padding: a count of 0, a count into the header, and a good one.
        #expect(rtcpKinds(hexBytes("A0C90002 00000009 00000000")).0 == .badPadding)
        #expect(rtcpKinds(hexBytes("A0C90001 00000005")).0 == .badPadding)
        // All padding: a valid compound, but an RR without its SSRC.
        #expect(rtcpKinds(hexBytes("A0C90001 00000004")).1 == ["malformed"])
        let padded = hexBytes("A0C90002 00000009 00000004")
        #expect(rtcpKinds(padded).1 == ["RR"])
        padded.withUnsafeBytes { raw in
            var it = RTCPCompound(raw.baseAddress!, length: raw.count)
            let rr = it.next()!
            #expect(rr.paddingLength == 4 && rr.bodyLength == 4)
        }
        // Types we do not interpret, and known types too short for their counts.
        #expect(rtcpKinds(hexBytes("80CF0001 00000009")).1 == ["unknown"])
        #expect(rtcpKinds(hexBytes("81C90001 00000009")).1 == ["malformed"])
        #expect(rtcpKinds(hexBytes("80C80001 00000009")).1 == ["malformed"])
        #expect(rtcpKinds(hexBytes("80CD0001 00000009")).1 == ["malformed"])
        #expect(rtcpKinds(hexBytes("80CC0001 00000009")).1 == ["malformed"])
        #expect(rtcpKinds(hexBytes("81CB0000")).1 == ["malformed"])
        #expect(Set(RTCPVerdict.allCases).count == 5)
    }

    @Test func reportBlockSignedLossAndClamping() {
        let values: [(Int32, Int32)] = [
            (-5, -5), (0, 0), (0x7F_FFFF, 0x7F_FFFF), (0x100_0000, 0x7F_FFFF), (-0x80_0000, -0x80_0000),
            (-0x90_0000, -0x80_0000),
        ]
        for (written, read) in values {
            var raw = [UInt8](repeating: 0, count: 24)
            raw.withUnsafeMutableBytes {
                RTCPReportBlock(ssrc: SSRC(1), fractionLost: 0xFF, cumulativeLost: written).store(
                    to: $0.baseAddress!, at: 0)
            }
            let block = raw.withUnsafeBytes { RTCPReportBlock.load(from: $0.baseAddress!, at: 0) }
            #expect(block.cumulativeLost == read)
            #expect(block.fractionLost == 0xFF)
        }
        var raw = [UInt8](repeating: 0, count: 24)
        raw.withUnsafeMutableBytes {
            RTCPReportBlock(ssrc: SSRC(1), cumulativeLost: -5).store(to: $0.baseAddress!, at: 0)
        }
        #expect(Array(raw[4..<8]) == [0x00, 0xFF, 0xFF, 0xFB])
    }

    @Test func writerRefusesWhatDoesNotFit() {
        // One RR with a block is 32 bytes.
        #expect(buildRTCP(capacity: 31) { $0.appendReceiverReport(ssrc: SSRC(1), reportBlocks: [block]) } == nil)
        #expect(buildRTCP(capacity: 32) { $0.appendReceiverReport(ssrc: SSRC(1), reportBlocks: [block]) }?.count == 32)
        // 32 blocks do not fit the 5-bit count.
        let blocks = [RTCPReportBlock](repeating: block, count: 32)
        #expect(buildRTCP { $0.appendReceiverReport(ssrc: SSRC(1), reportBlocks: blocks) } == nil)
        #expect(buildRTCP { $0.appendBye(sources: Array(repeating: SSRC(1), count: 32)) } == nil)
        #expect(
            buildRTCP { w in
                [UInt8](repeating: 0x61, count: 256).withUnsafeBytes {
                    w.appendSourceDescription(ssrc: SSRC(1), cname: $0)
                }
            } == nil)
        #expect(buildRTCP { $0.appendGenericNACK(senderSSRC: SSRC(1), mediaSSRC: SSRC(2), lost: [UInt16]()) } == nil)
        // A failed append leaves the compound as it was: still whole and valid.
        var buffer = [UInt8](repeating: 0, count: 40)
        buffer.withUnsafeMutableBytes { raw in
            var w = RTCPWriter(raw.baseAddress!, capacity: raw.count)
            let reportFits = w.appendReceiverReport(ssrc: SSRC(1), reportBlocks: [block])
            #expect(reportFits)
            #expect(!bytes("abcd").withUnsafeBytes { w.appendSourceDescription(ssrc: SSRC(1), cname: $0) })
            let nackFits = w.appendGenericNACK(senderSSRC: SSRC(1), mediaSSRC: SSRC(2), lost: [1, 100])
            #expect(!nackFits)
            #expect(w.length == 32)
            let byeFits = w.appendBye(sources: [SSRC(1)])
            #expect(byeFits)
            #expect(w.length == 40)
            #expect(RTCPCompound.validate(raw.baseAddress!, length: w.length) == .ok)
        }
    }
}

@Suite struct RTCPGenericNACKTests {
    func nack(_ lost: [UInt16]) -> [UInt8]? {
        buildRTCP { $0.appendGenericNACK(senderSSRC: SSRC(0xA), mediaSSRC: SSRC(0xB), lost: lost) }
    }

    @Test func sixteenAfterThePIDShareOneEntry() {
        // 116 is PID + 16, the last bit of the BLP: bits 0, 2 and 15.
        let packet = nack([100, 101, 103, 116])!
        #expect(packet == hexBytes("81CD0003 0000000A 0000000B 0064 8005"))
        #expect(decodeNACK(packet)?.lost == [100, 101, 103, 116])
    }

    @Test func seventeenAfterThePIDNeedsASecondEntry() {
        let packet = nack([100, 101, 103, 117])!
        #expect(decodeNACK(packet)?.pairs == [100, 0x0005, 117, 0])
        #expect(decodeNACK(packet)?.lost == [100, 101, 103, 117])
    }

    @Test func aGapOverSixteenStartsANewEntry() {
        let packet = nack([10, 11, 40, 41, 56])!
        #expect(decodeNACK(packet)?.pairs == [10, 0x0001, 40, 0x8001])
        #expect(decodeNACK(packet)?.lost == [10, 11, 40, 41, 56])
    }

    @Test func entriesSpanTheSixteenBitWrap() {
        let packet = nack([65534, 65535, 0, 2])!
        #expect(decodeNACK(packet)?.pairs == [65534, 0x000B])
        #expect(decodeNACK(packet)?.lost == [65534, 65535, 0, 2])
        // A repeat of the current PID or bit adds nothing.
        #expect(nack([65534, 65534, 65535, 65535]) == nack([65534, 65535]))
    }

    @Test func seededLossPatternsRoundTrip() {
        var rng = SeededRandom(seed: 0x4E41_434B)
        for _ in 0..<500 {
            var seq = UInt16.random(in: 0...UInt16.max, using: &rng)
            var lost: [UInt16] = []
            for _ in 0..<Int.random(in: 1...60, using: &rng) {
                lost.append(seq)
                // Mostly short gaps, sometimes long ones, wrapping freely.
                let longGap = Bool.random(using: &rng)
                seq &+= UInt16.random(in: 1...(longGap ? 40 : 3), using: &rng)
            }
            guard let packet = nack(lost), let decoded = decodeNACK(packet) else {
                Issue.record("NACK not built or not decoded")
                return
            }
            #expect(decoded.lost == lost)
            // Greedy packing: no entry could have absorbed the next entry's PID.
            let pids = stride(from: 0, to: decoded.pairs.count, by: 2).map { decoded.pairs[$0] }
            for (a, b) in zip(pids, pids.dropFirst()) { #expect(b &- a > 16) }
        }
    }

    @Test func nackWithRoomForOnlySomeEntriesIsRefused() {
        // Header and SSRCs (12) plus two entries (8).
        func twoEntries(capacity: Int) -> [UInt8]? {
            buildRTCP(capacity: capacity) {
                $0.appendGenericNACK(senderSSRC: SSRC(1), mediaSSRC: SSRC(2), lost: [1, 100])
            }
        }
        #expect(twoEntries(capacity: 19) == nil)
        #expect(twoEntries(capacity: 20)?.count == 20)
    }
}

/// Walks every packet of a compound through its typed view and every accessor, checking
/// that each offset and buffer it hands out lies inside the datagram. Works on any bytes:
/// the iterator stops on the first bad header.
func walkRTCP(_ raw: UnsafeRawBufferPointer) -> (packets: Int, inBounds: Bool) {
    let start = raw.baseAddress!
    let end = start + raw.count
    func inside(_ b: UnsafeRawBufferPointer?) -> Bool {
        guard let b, let base = b.baseAddress else { return true }
        return base >= start && base + b.count <= end
    }
    var ok = true
    var packets = 0
    var compound = RTCPCompound(start, length: raw.count)
    while let packet = compound.next() {
        packets += 1
        let bodyEnd = RTCP.headerLength + packet.bodyLength
        ok = ok && packet.offset >= 0 && packet.offset + packet.length <= raw.count && packet.bodyLength >= 0
        ok = ok && packet.base == start + packet.offset
        switch packet.kind {
        case .senderReport(let sr):
            ok = ok && 28 + 24 * sr.reportBlocks.count <= bodyEnd
            _ = (sr.ssrc, sr.senderInfo, Array(sr.reportBlocks))
        case .receiverReport(let rr):
            ok = ok && 8 + 24 * rr.reportBlocks.count <= bodyEnd
            _ = (rr.ssrc, Array(rr.reportBlocks))
        case .sourceDescription(let sdes):
            var chunks = sdes.chunks
            while let chunk = chunks.next() {
                ok = ok && chunk.itemsOffset >= 8 && chunk.itemsEnd < bodyEnd
                for item in chunk.items {
                    ok = ok && item.offset + item.length <= chunk.itemsEnd
                }
                ok = ok && inside(chunk.cname)
            }
            ok = ok && inside(sdes.cname(for: SSRC(0x5D4C_3B2A)))
        case .bye(let bye):
            ok = ok && 4 + 4 * bye.sources.count <= bodyEnd
            _ = Array(bye.sources)
            if let reason = bye.reason {
                ok = ok && inside(reason) && reason.baseAddress! + reason.count <= packet.base + bodyEnd
            }
        case .application(let app):
            ok = ok && inside(app.data) && app.data.count >= 0
        case .genericNACK(let nack):
            ok = ok && 12 + 4 * nack.pairCount <= bodyEnd
            var n = 0
            for _ in nack.lostSequenceNumbers { n += 1 }
            ok = ok && n <= 17 * nack.pairCount
        case .transportFeedback(let fb), .pictureLossIndication(let fb), .payloadFeedback(let fb):
            ok = ok && inside(fb.fci) && fb.fciLength >= 0
            _ = (fb.senderSSRC, fb.mediaSSRC)
        case .unknown, .malformed:
            break
        }
    }
    return (packets, ok)
}

/// Seeded truncations and bit flips of valid RTCP compounds: each must be a clean
/// rejection or a compound whose every packet and typed view stays inside the datagram.
@Suite struct RTCPMutationTests {
    @Test func hundredThousandMutatedCompounds() {
        let seeds: [[UInt8]] = [
            hexBytes(
                """
                81C8000C 5D4C3B2A E8A1B2C3 40000000 0001E240 00000064 00003E80
                0BADCAFE 40000003 00010010 00000020 B2C34000 00008000
                81CA0004 5D4C3B2A 0108 6162636431323334 0000
                """),
            hexBytes(
                "81C90007 00000009 0BADCAFE 40000003 00010010 00000020 B2C34000 00008000 81CB0002 00000009 03627965"),
            hexBytes(
                """
                80C90001 00000009 81CD0004 0000000A 0000000B 00648005 00750000
                81CE0002 00000001 00000002 83CC0004 0000004D 564F5845 01020304 05060708
                8FCE0003 00000001 00000000 52454D42
                """),
            hexBytes(
                """
                A0C90002 00000009 00000004
                82CA0007 00000001 0101 61 0203 626F62 00 000000 00000002 0102 7879 00 000000
                80CF0002 00000009 01000000
                """),
        ]
        for seed in seeds {
            seed.withUnsafeBytes { #expect(RTCPCompound.validate($0.baseAddress!, length: $0.count) == .ok) }
        }
        var rng = SeededRandom(seed: 0x5EED_0C7C)
        var verdicts: [RTCPVerdict: Int] = [:]
        for i in 0..<100_000 {
            var compound = seeds[i % seeds.count]
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                // Mostly the first bytes of each word, where headers, counts and lengths live.
                let limit = Int.random(in: 0..<4, using: &rng) == 0 ? compound.count : min(compound.count, 48)
                compound[Int.random(in: 0..<limit, using: &rng)] ^= UInt8(1) << UInt8.random(in: 0..<8, using: &rng)
            }
            if Int.random(in: 0..<3, using: &rng) == 0 {
                compound.removeLast(Int.random(in: 0...compound.count, using: &rng))
            }
            let verdict = compound.withUnsafeBytes { raw in
                raw.count == 0 ? RTCPVerdict.truncated : RTCPCompound.validate(raw.baseAddress!, length: raw.count)
            }
            verdicts[verdict, default: 0] += 1
            // Exactly sized, so a read past the end lands outside the allocation.
            let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: max(compound.count, 1), alignment: 1)
            defer { copy.deallocate() }
            copy.copyBytes(from: compound)
            let walked = walkRTCP(UnsafeRawBufferPointer(rebasing: copy[0..<compound.count]))
            #expect(walked.inBounds)
            if verdict == .ok {
                // A valid compound is walked to its end.
                var it = RTCPCompound(copy.baseAddress!, length: compound.count)
                var total = 0
                while let packet = it.next() { total += packet.length }
                #expect(total == compound.count && it.verdict == .ok)
            }
        }
        // Mutants are both accepted (so the views get walked) and refused, in numbers.
        #expect(verdicts[.ok, default: 0] > 10_000 && verdicts[.ok, default: 0] < 90_000)
        #expect(verdicts.values.reduce(0, +) == 100_000)
        #expect(Set(verdicts.keys) == Set(RTCPVerdict.allCases))
    }
}
