import Testing
import VoxTestKit
import VoxWire

func parseRTP(_ packet: [UInt8]) -> (RTPVerdict, RTPHeader) {
    var header = RTPHeader()
    let verdict = packet.withUnsafeBytes { RTPHeader.parse($0.baseAddress!, length: $0.count, into: &header) }
    return (verdict, header)
}

/// Header extension elements with their data, and whether the walk stopped on a malformed one.
typealias ExtensionWalk = (elements: [(id: UInt8, data: [UInt8])], malformed: Bool)

func rtpExtensions(_ packet: [UInt8], _ header: RTPHeader) -> ExtensionWalk {
    packet.withUnsafeBytes { raw in
        var iterator = header.extensions(in: raw.baseAddress!)
        var out: [(UInt8, [UInt8])] = []
        while let e = iterator.next() {
            out.append((e.id, Array(packet[e.offset..<(e.offset + e.length)])))
        }
        return (out, iterator.isMalformed)
    }
}

@Suite struct RTPHeaderTests {
    let payload: [UInt8] = (0..<160).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 5) }

    @Test func writtenHeaderParsesBack() {
        var packet = [UInt8](repeating: 0, count: 12 + payload.count)
        let written = packet.withUnsafeMutableBytes {
            RTPHeader.write(
                to: $0.baseAddress!, capacity: $0.count, payloadType: 111, marker: true, sequenceNumber: 0xFFFE,
                timestamp: 0xDEAD_BEEF, ssrc: SSRC(0x1234_5678))
        }
        #expect(written == 12)
        packet.replaceSubrange(12..., with: payload)
        #expect(Array(packet[0..<12]) == hexBytes("80EF FFFE DEADBEEF 12345678"))
        let (verdict, h) = parseRTP(packet)
        #expect(verdict == .ok)
        #expect(h.version == 2)
        #expect(!h.hasPadding && !h.hasExtension)
        #expect(h.csrcCount == 0)
        #expect(h.marker)
        #expect(h.payloadType == 111)
        #expect(h.sequenceNumber == 0xFFFE)
        #expect(h.timestamp == 0xDEAD_BEEF)
        #expect(h.ssrc == SSRC(0x1234_5678))
        #expect(h.length == packet.count)
        #expect(h.headerLength == 12)
        #expect(h.payloadOffset == 12 && h.payloadLength == payload.count && h.paddingLength == 0)
        #expect(h.extensionOffset == 12 && h.extensionLength == 0 && h.extensionProfile == 0)
        #expect(Array(packet[h.payloadOffset..<(h.payloadOffset + h.payloadLength)]) == payload)
        #expect(rtpExtensions(packet, h).elements.isEmpty)
    }

    @Test func writeRefusesASmallBuffer() {
        var buffer = [UInt8](repeating: 0xAA, count: 11)
        let written = buffer.withUnsafeMutableBytes {
            RTPHeader.write(
                to: $0.baseAddress!, capacity: $0.count, payloadType: 0, marker: false, sequenceNumber: 1,
                timestamp: 2, ssrc: SSRC(3))
        }
        #expect(written == 0)
        #expect(buffer.allSatisfy { $0 == 0xAA })
    }

    @Test func csrcListIsSkippedAndReadable() {
        // CC=2, PT 0, then two CSRCs.
        let packet = hexBytes("8200 0001 00000010 AAAAAAAA 11111111 22222222") + payload
        let (verdict, h) = parseRTP(packet)
        #expect(verdict == .ok)
        #expect(h.csrcCount == 2)
        #expect(h.csrcOffset == 12)
        #expect(h.payloadOffset == 20)
        #expect(h.payloadLength == payload.count)
        packet.withUnsafeBytes {
            #expect(h.csrc(0, in: $0.baseAddress!) == SSRC(0x1111_1111))
            #expect(h.csrc(1, in: $0.baseAddress!) == SSRC(0x2222_2222))
        }
        // 15 CSRCs announced, two present.
        #expect(parseRTP(hexBytes("8F00 0001 00000010 AAAAAAAA 11111111 22222222")).0 == .badCSRC)
    }

    @Test func paddingIsCountedFromTheLastByte() {
        // P bit, 4 bytes of padding (00 00 00 04).
        let packet = hexBytes("A000 0001 00000010 AAAAAAAA") + payload + [0, 0, 0, 4]
        let (verdict, h) = parseRTP(packet)
        #expect(verdict == .ok)
        #expect(h.hasPadding)
        #expect(h.paddingLength == 4)
        #expect(h.payloadLength == payload.count)
        // Padding only: everything after the header.
        let allPadding = hexBytes("A000 0001 00000010 AAAAAAAA 00000004")
        #expect(parseRTP(allPadding).1.payloadLength == 0)
        #expect(parseRTP(allPadding).0 == .ok)
        // A count of zero, and one reaching into the header, are refused.
        #expect(parseRTP(hexBytes("A000 0001 00000010 AAAAAAAA 01020300")).0 == .badPadding)
        #expect(parseRTP(hexBytes("A000 0001 00000010 AAAAAAAA 01020305")).0 == .badPadding)
        // The P bit on a bare 12-byte header: its last byte (of the SSRC) is the count.
        #expect(parseRTP(hexBytes("A000 0001 00000010 AAAAAA01")).0 == .badPadding)
    }

    @Test func malformedHeadersGetTheirVerdicts() {
        #expect(parseRTP([]).0 == .truncated)
        #expect(parseRTP(hexBytes("8000 0001 00000010 AAAAAA")).0 == .truncated)
        #expect(parseRTP(hexBytes("4000 0001 00000010 AAAAAAAA")).0 == .badVersion)
        #expect(parseRTP(hexBytes("C000 0001 00000010 AAAAAAAA")).0 == .badVersion)
        // X bit without room for the extension header, or with too little data.
        #expect(parseRTP(hexBytes("9000 0001 00000010 AAAAAAAA BEDE")).0 == .badExtension)
        #expect(parseRTP(hexBytes("9000 0001 00000010 AAAAAAAA BEDE0002 10FF0000")).0 == .badExtension)
        #expect(parseRTP(hexBytes("9000 0001 00000010 AAAAAAAA BEDE0000")).0 == .ok)
        #expect(Set(RTPVerdict.allCases).count == 6)
    }

    @Test func mutatorsRewriteInPlace() {
        var packet = hexBytes("90EF 1234 0001E240 5D4C3B2A BEDE0001 10AA0000") + payload
        var (verdict, h) = parseRTP(packet)
        #expect(verdict == .ok)
        packet.withUnsafeMutableBytes { raw in
            let p = raw.baseAddress!
            h.rewrite(ssrc: SSRC(0xCAFE_F00D), sequenceNumber: 7, timestamp: 960, in: p)
            h.setPayloadType(0x60, in: p)
            h.setMarker(false, in: p)
        }
        let (again, reparsed) = parseRTP(packet)
        #expect(again == .ok)
        #expect(reparsed.ssrc == SSRC(0xCAFE_F00D) && h.ssrc == reparsed.ssrc)
        #expect(reparsed.sequenceNumber == 7 && h.sequenceNumber == 7)
        #expect(reparsed.timestamp == 960 && h.timestamp == 960)
        #expect(reparsed.payloadType == 0x60 && h.payloadType == 0x60)
        #expect(!reparsed.marker && !h.marker)
        #expect(Array(packet[0..<12]) == hexBytes("9060 0007 000003C0 CAFEF00D"))
        // The rest of the packet is untouched.
        #expect(Array(packet[12...]) == hexBytes("BEDE0001 10AA0000") + payload)
        // Marker and payload type share a byte: each mutator keeps the other.
        packet.withUnsafeMutableBytes { raw in
            h.setMarker(true, in: raw.baseAddress!)
            h.setPayloadType(0xFF, in: raw.baseAddress!)
        }
        #expect(packet[1] == 0xFF)
        #expect(h.payloadType == 0x7F && h.marker)
    }
}

@Suite struct RTPHeaderExtensionTests {
    /// RFC 8285 §4.2's figure: elements of 1 and 2 bytes, two padding bytes, one of 4.
    @Test func oneByteExampleFromRFC8285() {
        let packet =
            hexBytes("9000 0001 00000010 AAAAAAAA BEDE0003") + hexBytes("1011 21AABB 0000 33 01020304") + [0xFF]
        let (verdict, h) = parseRTP(packet)
        #expect(verdict == .ok)
        #expect(h.extensionProfile == 0xBEDE)
        #expect(h.extensionOffset == 16 && h.extensionLength == 12)
        #expect(h.payloadOffset == 28 && h.payloadLength == 1)
        let (elements, malformed) = rtpExtensions(packet, h)
        #expect(!malformed)
        #expect(elements.map(\.id) == [1, 2, 3])
        #expect(elements.map(\.data) == [[0x11], [0xAA, 0xBB], [1, 2, 3, 4]])
        packet.withUnsafeBytes { raw in
            let found = h.headerExtension(id: 3, in: raw.baseAddress!)
            #expect(found == RTPHeaderExtensionElement(id: 3, offset: 24, length: 4))
            #expect(h.headerExtension(id: 9, in: raw.baseAddress!) == nil)
            #expect(h.extensions(in: raw.baseAddress!).form == .oneByte)
        }
    }

    /// RFC 8285 §4.3's figure: an empty element, one of 1 byte, a padding byte, one of 4.
    @Test func twoByteExampleFromRFC8285() {
        for profile in ["1000", "100F"] {
            let packet =
                hexBytes("9000 0001 00000010 AAAAAAAA \(profile)0003") + hexBytes("0500 0601 11 00 0704 01020304")
            let (verdict, h) = parseRTP(packet)
            #expect(verdict == .ok)
            #expect(h.payloadLength == 0)
            let (elements, malformed) = rtpExtensions(packet, h)
            #expect(!malformed)
            #expect(elements.map(\.id) == [5, 6, 7])
            #expect(elements.map(\.data) == [[], [0x11], [1, 2, 3, 4]])
            packet.withUnsafeBytes { #expect(h.extensions(in: $0.baseAddress!).form == .twoByte) }
        }
    }

    @Test func twoByteElementsCarryLongDataAndHighIDs() {
        let data = [UInt8](repeating: 0x5A, count: 255)
        var ext = [200, 255] + data + [17, 1, 0xEE]
        while ext.count % 4 != 0 { ext.append(0) }
        let packet = hexBytes("9000 0001 00000010 AAAAAAAA 1000") + [0, UInt8(ext.count / 4)] + ext
        let (verdict, h) = parseRTP(packet)
        #expect(verdict == .ok)
        let (elements, malformed) = rtpExtensions(packet, h)
        #expect(!malformed)
        #expect(elements.map(\.id) == [200, 17])
        #expect(elements[0].data == data && elements[1].data == [0xEE])
    }

    @Test func idFifteenStopsTheWalk() {
        let packet = hexBytes("9000 0001 00000010 AAAAAAAA BEDE0002 1011 F3 2122 000000")
        let (verdict, h) = parseRTP(packet)
        #expect(verdict == .ok)
        let (elements, malformed) = rtpExtensions(packet, h)
        #expect(elements.map(\.id) == [1])
        #expect(!malformed)
    }

    @Test func malformedElementsEndTheWalkWithAFlag() {
        // One-byte: an element of 4 bytes with 2 left.
        var packet = hexBytes("9000 0001 00000010 AAAAAAAA BEDE0001 1011 3301")
        var (elements, malformed) = rtpExtensions(packet, parseRTP(packet).1)
        #expect(elements.map(\.id) == [1] && malformed)
        // One-byte: ID 0 with a length is neither padding nor an element.
        packet = hexBytes("9000 0001 00000010 AAAAAAAA BEDE0001 0111 1011")
        (elements, malformed) = rtpExtensions(packet, parseRTP(packet).1)
        #expect(elements.isEmpty && malformed)
        // Two-byte: a length past the end, and an ID with no length byte.
        packet = hexBytes("9000 0001 00000010 AAAAAAAA 10000001 0102 AA 09")
        (elements, malformed) = rtpExtensions(packet, parseRTP(packet).1)
        #expect(elements.map(\.id) == [1] && elements[0].data == [0xAA, 0x09] && !malformed)
        packet = hexBytes("9000 0001 00000010 AAAAAAAA 10000001 0101 AA 09")
        (elements, malformed) = rtpExtensions(packet, parseRTP(packet).1)
        #expect(elements.map(\.id) == [1] && malformed)
        packet = hexBytes("9000 0001 00000010 AAAAAAAA 10000001 0103 AA 09")
        (elements, malformed) = rtpExtensions(packet, parseRTP(packet).1)
        #expect(elements.isEmpty && malformed)
        // A profile that is neither form is not ours to read.
        packet = hexBytes("9000 0001 00000010 AAAAAAAA ABCD0001 10111011")
        (elements, malformed) = rtpExtensions(packet, parseRTP(packet).1)
        #expect(elements.isEmpty && !malformed)
    }

    /// An Opus packet as Chromium 156 sends it with the extmaps of its offer (fixture
    /// chromium-156/offer.sdp): 1 ssrc-audio-level, 3 transport-wide-cc, 4 sdes:mid.
    @Test func chromiumStyleAudioPacket() {
        let opus: [UInt8] = [0x78, 0x0B, 0xE4, 0xC1, 0x36, 0xEC, 0xC5, 0x80]
        let packet =
            hexBytes(
                """
                90EF 1234 0001E240 5D4C3B2A
                BEDE0002 10AA 310005 4030 00
                """) + opus
        let (verdict, h) = parseRTP(packet)
        #expect(verdict == .ok)
        #expect(h.marker && h.payloadType == 111 && h.sequenceNumber == 0x1234 && h.timestamp == 123_456)
        #expect(h.ssrc == SSRC(0x5D4C_3B2A))
        #expect(Array(packet[h.payloadOffset..<(h.payloadOffset + h.payloadLength)]) == opus)
        packet.withUnsafeBytes { raw in
            let p = raw.baseAddress!
            let level = h.headerExtension(id: 1, in: p).flatMap { RTPAudioLevel.load(from: p, $0) }
            #expect(level?.voiceActivity == true)
            #expect(level?.level == 42)
            let twcc = h.headerExtension(id: 3, in: p)!
            #expect(twcc.length == 2 && p.loadBE16(at: twcc.offset) == 5)
            let mid = h.headerExtension(id: 4, in: p)!
            let midBytes = UnsafeRawBufferPointer(start: p + mid.offset, count: mid.length)
            #expect(String(decoding: midBytes, as: UTF8.self) == "0")
        }
    }

    @Test func writerBuildsWhatTheParserReads() {
        var packet = [UInt8](repeating: 0xEE, count: 64)
        let sixteen: [UInt8] = Array(1...16)
        var payloadOffset = 0
        packet.withUnsafeMutableBytes { raw in
            let p = raw.baseAddress!
            _ = RTPHeader.write(
                to: p, capacity: raw.count, payloadType: 111, marker: false, sequenceNumber: 9, timestamp: 960,
                ssrc: SSRC(42))
            var writer = RTPOneByteExtensionWriter(p, capacity: raw.count, at: 12)!
            #expect(writer.end == 16)
            let levelFits = writer.appendAudioLevel(id: 1, voiceActivity: true, level: 200)
            #expect(levelFits)
            #expect(writer.end == 20)
            #expect(Array("0".utf8).withUnsafeBytes { writer.append(id: 4, value: $0) })
            #expect(writer.end == 20)
            #expect(sixteen.withUnsafeBytes { writer.append(id: 14, value: $0) })
            #expect(writer.end == 40)
            // IDs 0 and 15, and lengths 0 and 17, are not one-byte elements.
            let idZero = writer.appendAudioLevel(id: 0, voiceActivity: false, level: 1)
            let idFifteen = writer.appendAudioLevel(id: 15, voiceActivity: false, level: 1)
            #expect(!idZero && !idFifteen)
            #expect(!([UInt8]()).withUnsafeBytes { writer.append(id: 2, value: $0) })
            #expect(!([UInt8](repeating: 1, count: 17)).withUnsafeBytes { writer.append(id: 2, value: $0) })
            payloadOffset = writer.end
        }
        packet.replaceSubrange(
            payloadOffset..., with: [0xF8, 0xFF, 0xFE] + [UInt8](repeating: 0x11, count: 64 - payloadOffset - 3))
        let (verdict, h) = parseRTP(packet)
        #expect(verdict == .ok)
        #expect(h.hasExtension && h.extensionProfile == 0xBEDE && h.extensionLength == 24)
        #expect(h.payloadOffset == payloadOffset)
        let (elements, malformed) = rtpExtensions(packet, h)
        #expect(!malformed)
        #expect(elements.map(\.id) == [1, 4, 14])
        // Level 200 is clamped to 127 (silence).
        #expect(elements[0].data == [0xFF])
        #expect(elements[1].data == Array("0".utf8))
        #expect(elements[2].data == sixteen)
    }

    @Test func writerRespectsCapacity() {
        var packet = [UInt8](repeating: 0, count: 20)
        packet.withUnsafeMutableBytes { raw in
            let p = raw.baseAddress!
            _ = RTPHeader.write(
                to: p, capacity: raw.count, payloadType: 0, marker: false, sequenceNumber: 0, timestamp: 0,
                ssrc: SSRC(1))
            #expect(RTPOneByteExtensionWriter(p, capacity: 15, at: 12) == nil)
            var writer = RTPOneByteExtensionWriter(p, capacity: raw.count, at: 12)!
            let levelFits = writer.appendAudioLevel(id: 1, voiceActivity: false, level: 3)
            #expect(levelFits)
            // 3 bytes of 4 used; a 2-byte element would need a second word.
            #expect(!([UInt8](repeating: 9, count: 2)).withUnsafeBytes { writer.append(id: 2, value: $0) })
            #expect(writer.end == 20)
            #expect(([UInt8](repeating: 9, count: 1)).withUnsafeBytes { writer.append(id: 2, value: $0) })
            #expect(writer.end == 20)
        }
        let (verdict, h) = parseRTP(packet)
        #expect(verdict == .ok && h.payloadLength == 0)
        #expect(rtpExtensions(packet, h).elements.map(\.id) == [1, 2])
    }
}

/// Seeded truncations and bit flips of valid RTP packets: each must be a clean rejection
/// or a parse whose offsets, and every extension element, stay inside the packet.
@Suite struct RTPMutationTests {
    @Test func hundredThousandMutatedPackets() {
        let payload: [UInt8] = (0..<40).map { UInt8(truncatingIfNeeded: $0 &* 29) }
        let seeds: [[UInt8]] = [
            hexBytes("80EF FFFE DEADBEEF 12345678") + payload,
            hexBytes("8200 0001 00000010 AAAAAAAA 11111111 22222222") + payload,
            hexBytes("90EF 1234 0001E240 5D4C3B2A BEDE0002 10AA 310005 4030 00") + payload,
            hexBytes("9000 0001 00000010 AAAAAAAA BEDE0003 1011 21AABB 0000 33 01020304") + payload,
            hexBytes("9000 0001 00000010 AAAAAAAA 10000003 0500 0601 11 00 0704 01020304") + payload,
            hexBytes("B100 0001 00000010 AAAAAAAA 33333333 BEDE0001 10AA0000") + payload + [0, 0, 0, 0, 0, 0, 0, 8],
        ]
        var rng = SeededRandom(seed: 0x5EED_0572)
        var verdicts: [RTPVerdict: Int] = [:]
        for i in 0..<100_000 {
            var packet = seeds[i % seeds.count]
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                // Bias toward the header and extension, where the parser makes decisions.
                let limit = Int.random(in: 0..<4, using: &rng) == 0 ? packet.count : min(packet.count, 36)
                packet[Int.random(in: 0..<limit, using: &rng)] ^= UInt8(1) << UInt8.random(in: 0..<8, using: &rng)
            }
            if Int.random(in: 0..<3, using: &rng) == 0 {
                packet.removeLast(Int.random(in: 0...packet.count, using: &rng))
            }
            // Exactly sized, so a read past the end lands outside the allocation.
            let raw = UnsafeMutableRawBufferPointer.allocate(byteCount: max(packet.count, 1), alignment: 1)
            defer { raw.deallocate() }
            raw.copyBytes(from: packet)
            let p = UnsafeRawPointer(raw.baseAddress!)
            var h = RTPHeader()
            let verdict = RTPHeader.parse(p, length: packet.count, into: &h)
            verdicts[verdict, default: 0] += 1
            guard verdict == .ok else { continue }
            #expect(h.csrcOffset == 12 && h.csrcOffset + 4 * h.csrcCount <= h.extensionOffset)
            #expect(h.extensionOffset + h.extensionLength == h.payloadOffset)
            #expect(h.payloadOffset + h.payloadLength + h.paddingLength == packet.count)
            #expect(h.payloadLength >= 0 && h.paddingLength >= 0 && h.length == packet.count)
            for e in h.extensions(in: p) {
                #expect(e.offset >= h.extensionOffset && e.offset + e.length <= h.payloadOffset)
            }
            if h.csrcCount > 0 { _ = h.csrc(h.csrcCount - 1, in: p) }
            h.rewrite(ssrc: SSRC(1), sequenceNumber: 2, timestamp: 3, in: raw.baseAddress!)
        }
        // Mutants are both accepted (so the views get walked) and refused, in numbers.
        #expect(verdicts[.ok, default: 0] > 10_000 && verdicts[.ok, default: 0] < 90_000)
        #expect(verdicts.values.reduce(0, +) == 100_000)
        // Every verdict was reached, so the mutations exercised every check.
        #expect(Set(verdicts.keys) == Set(RTPVerdict.allCases))
    }
}
