import Testing
import VoxTestKit
import VoxWire

@Suite struct FrameParsingTests {
    let payload: [UInt8] = (0..<182).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 0x80) }

    @Test(arguments: [(false, nil), (true, nil), (false, 100), (true, 4094)] as [(Bool, UInt16?)])
    func builtFramesParseBack(ipv6: Bool, vlan: UInt16?) {
        let (frame, built) = makeFrame(payload: payload, ipv6: ipv6, vlan: vlan)
        let (verdict, parsed) = parse(frame)
        #expect(verdict == .ok)
        #expect(parsed.vlanID == vlan)
        #expect(parsed.isIPv6 == ipv6)
        #expect(parsed.l3Offset == (vlan == nil ? 14 : 18))
        #expect(parsed.payloadOffset == built.payloadOffset)
        #expect(parsed.payloadLength == payload.count)
        #expect(parsed.sourcePort == UDPPort(10000))
        #expect(parsed.destinationPort == UDPPort(40000))
        #expect(parsed.source == IPAddress(ipv6 ? "2001:db8::2" : "198.18.0.2"))
        #expect(parsed.destination == IPAddress(ipv6 ? "2001:db8::1" : "198.18.0.1"))
        #expect(Array(frame[parsed.payloadOffset...]) == payload)
        frame.withUnsafeBytes { #expect(UDPChecksum.verify($0.baseAddress!, parsed)) }
        #expect(parsed.flowKey.remotePort == UDPPort(10000))
    }

    @Test func udpChecksumCatchesACorruptedByte() {
        var (frame, parsed) = makeFrame(payload: payload)
        frame[parsed.payloadOffset + 17] ^= 0x01
        frame.withUnsafeBytes { #expect(!UDPChecksum.verify($0.baseAddress!, parsed)) }
        parsed = parse(frame).1
        // A zero checksum means "none" over IPv4 only.
        frame[parsed.l4Offset + 6] = 0
        frame[parsed.l4Offset + 7] = 0
        frame.withUnsafeBytes { #expect(UDPChecksum.verify($0.baseAddress!, parsed)) }
    }

    @Test func ipv4HeaderChecksumIsVerified() {
        var (frame, _) = makeFrame(payload: payload)
        frame[14 + 8] = 63  // TTL changed without fixing the checksum
        #expect(parse(frame).0 == .malformedIP)
    }

    @Test func ipv4OptionsAreSkipped() {
        let (plain, _) = makeFrame(payload: payload)
        // Insert 4 bytes of options (NOP NOP NOP EOL) after the 20-byte header.
        var frame = Array(plain[0..<34]) + [1, 1, 1, 0] + Array(plain[34...])
        frame[14] = 0x46
        let total = 24 + 8 + payload.count
        frame[16] = UInt8(total >> 8)
        frame[17] = UInt8(total & 0xFF)
        frame[24] = 0
        frame[25] = 0
        let c = frame.withUnsafeBytes { InternetChecksum.compute($0.baseAddress! + 14, count: 24) }
        frame[24] = UInt8(c >> 8)
        frame[25] = UInt8(c & 0xFF)
        let (verdict, parsed) = parse(frame)
        #expect(verdict == .ok)
        #expect(parsed.l4Offset == 14 + 24)
        #expect(Array(frame[parsed.payloadOffset...]) == payload)
        frame.withUnsafeBytes { #expect(UDPChecksum.verify($0.baseAddress!, parsed)) }
    }

    @Test func ipv6ExtensionHeadersAreSkippedAndFragmentsRefused() {
        let (plain, _) = makeFrame(payload: payload, ipv6: true)
        // A hop-by-hop header of 8 bytes (next header UDP, PadN) before UDP.
        var frame = Array(plain[0..<54]) + [17, 0, 1, 4, 0, 0, 0, 0] + Array(plain[54...])
        frame[20] = 0  // next header: hop-by-hop
        let pl = 8 + 8 + payload.count
        frame[18] = UInt8(pl >> 8)
        frame[19] = UInt8(pl & 0xFF)
        let (verdict, parsed) = parse(frame)
        #expect(verdict == .ok)
        #expect(parsed.l4Offset == 14 + 40 + 8)
        #expect(Array(frame[parsed.payloadOffset...]) == payload)
        frame.withUnsafeBytes { #expect(UDPChecksum.verify($0.baseAddress!, parsed)) }
        frame[14 + 40] = IPProtocol.ipv6Fragment
        frame[20] = IPProtocol.ipv6Fragment
        #expect(parse(frame).0 == .fragment)
    }

    @Test func fragmentsNonUDPAndNonIPAreTold() {
        var (frame, _) = makeFrame(payload: payload)
        var tcp = frame
        tcp[14 + 9] = IPProtocol.tcp
        fixIPv4Checksum(&tcp)
        #expect(parse(tcp).0 == .notUDP)
        frame[14 + 6] = 0x20  // more fragments
        fixIPv4Checksum(&frame)
        #expect(parse(frame).0 == .fragment)
        var arp = frame
        arp[12] = 0x08
        arp[13] = 0x06
        #expect(parse(arp).0 == .notIP)
    }

    @Test func everyTruncationIsRejected() {
        for (ipv6, vlan) in [(false, nil), (true, nil), (false, 7)] as [(Bool, UInt16?)] {
            let (frame, _) = makeFrame(payload: payload, ipv6: ipv6, vlan: vlan)
            for n in 0..<frame.count {
                #expect(parse(Array(frame[0..<n])).0 != .ok, "length \(n)")
            }
        }
    }

    @Test func udpLengthMustFitTheIPPacket() {
        var (frame, parsed) = makeFrame(payload: payload)
        frame[parsed.l4Offset + 4] = 0xFF
        #expect(parse(frame).0 == .malformedUDP)
        frame[parsed.l4Offset + 4] = 0
        frame[parsed.l4Offset + 5] = 7
        #expect(parse(frame).0 == .malformedUDP)
    }

    @Test func replyTurnsTheFrameAround() {
        for ipv6 in [false, true] {
            let (plain, _) = makeFrame(payload: payload, ipv6: ipv6, vlan: 42)
            var frame = plain
            var parsed = parse(frame).1
            frame.withUnsafeMutableBytes { FrameBuilder.reply($0.baseAddress!, &parsed, payloadLength: 64) }
            let (verdict, again) = parse(Array(frame[0..<(parsed.payloadOffset + 64)]))
            #expect(verdict == .ok)
            #expect(again.vlanID == 42)
            #expect(again.source == IPAddress(ipv6 ? "2001:db8::1" : "198.18.0.1"))
            #expect(again.destinationPort == UDPPort(10000))
            #expect(again.payloadLength == 64)
            frame.withUnsafeBytes {
                #expect(MACAddress.load(from: $0.baseAddress!, at: 0) == clientMAC)
                #expect(UDPChecksum.verify($0.baseAddress!, again))
            }
        }
    }
}

func fixIPv4Checksum(_ frame: inout [UInt8]) {
    frame[24] = 0
    frame[25] = 0
    let c = frame.withUnsafeBytes { InternetChecksum.compute($0.baseAddress! + 14, count: 20) }
    frame[24] = UInt8(c >> 8)
    frame[25] = UInt8(c & 0xFF)
}

@Suite struct ChecksumTests {
    @Test func rfc1071Example() {
        // RFC 1071 §3: the sum of 0001 f203 f4f5 f6f7 is ddf2 (checksum 220d).
        let bytes: [UInt8] = [0x00, 0x01, 0xF2, 0x03, 0xF4, 0xF5, 0xF6, 0xF7]
        #expect(bytes.withUnsafeBytes { InternetChecksum.compute($0.baseAddress!, count: 8) } == 0x220D)
        // Odd length: the last byte is the high half of a word.
        #expect([UInt8(0x01)].withUnsafeBytes { InternetChecksum.compute($0.baseAddress!, count: 1) } == 0xFEFF)
    }

    @Test func fastSumMatchesTheTextbookOne() {
        var rng = SeededRandom(seed: 1071)
        for length in 0..<300 {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
            var reference: UInt32 = 0
            var i = 0
            while i + 1 < length {
                reference += UInt32(bytes[i]) << 8 | UInt32(bytes[i + 1])
                i += 2
            }
            if length % 2 == 1 { reference += UInt32(bytes[length - 1]) << 8 }
            while reference >> 16 != 0 { reference = (reference & 0xFFFF) + (reference >> 16) }
            let expected = ~UInt16(reference)
            let got = bytes.withUnsafeBytes { InternetChecksum.compute($0.baseAddress ?? UnsafeRawPointer(bitPattern: 8)!, count: length) }
            #expect(got == expected || (got ^ expected) == 0xFFFF && got % 0xFFFF == 0, "length \(length)")
        }
    }

    @Test func incrementalUpdateMatchesRecomputation() {
        var rng = SeededRandom(seed: 1624)
        for _ in 0..<10_000 {
            var words = (0..<10).map { _ in UInt16.random(in: 0...0xFFFF, using: &rng) }
            let before = checksum(words)
            let i = Int.random(in: 0..<10, using: &rng)
            let old = words[i]
            words[i] = UInt16.random(in: 0...0xFFFF, using: &rng)
            let updated = InternetChecksum.update(before, old: old, new: words[i])
            // One's complement has two zeros: compare folded values.
            #expect(updated == checksum(words) || (updated ^ checksum(words)) == 0xFFFF && updated % 0xFFFF == 0)
            let j = Int.random(in: 0..<5, using: &rng) * 2
            let old32 = UInt32(words[j]) << 16 | UInt32(words[j + 1])
            let new32 = UInt32.random(in: 0...UInt32.max, using: &rng)
            let c0 = checksum(words)
            words[j] = UInt16(new32 >> 16)
            words[j + 1] = UInt16(new32 & 0xFFFF)
            let u32 = InternetChecksum.update(c0, old: old32, new: new32)
            #expect(u32 == checksum(words) || (u32 ^ checksum(words)) == 0xFFFF && u32 % 0xFFFF == 0)
        }
    }

    func checksum(_ words: [UInt16]) -> UInt16 {
        let bytes = words.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] }
        return bytes.withUnsafeBytes { InternetChecksum.compute($0.baseAddress!, count: $0.count) }
    }
}

@Suite struct DemuxAndAddressTests {
    @Test func rfc7983Ranges() {
        let expected: [(UInt8, UInt8, PayloadClass)] = [
            (0, 1, .stun), (3, 0, .stun), (4, 0, .other), (16, 0, .zrtp), (19, 0, .zrtp), (20, 0, .dtls),
            (22, 0xFE, .dtls), (63, 0, .dtls), (64, 0, .turnChannel), (79, 0, .turnChannel), (80, 0, .other),
            (127, 0, .other), (128, 111, .rtp), (0x80, 0xEF, .rtp), (0x81, 200, .rtcp), (0x80, 192, .rtcp),
            (0x80, 223, .rtcp), (0x80, 224, .rtp), (191, 0, .rtp), (192, 0, .other), (255, 0, .other),
        ]
        for (first, second, cls) in expected {
            #expect(PayloadClass.classify(first: first, second: second) == cls, "\(first) \(second)")
        }
        #expect([UInt8]().withUnsafeBytes { PayloadClass.classify($0.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!, length: 0) } == .other)
    }

    @Test func addressesRoundTrip() {
        for text in ["198.18.0.1", "0.0.0.0", "255.255.255.255", "2001:db8::1", "::", "::1", "fe80::1:2:3:4",
            "2001:db8:1234:5678:11:2233:4455:6677"]
        {
            #expect(IPAddress(text)?.description == text)
        }
        for bad in ["1.2.3", "1.2.3.256", "1..2.3", "2001:db8::1::2", "12345::", "g::1", ""] {
            #expect(IPAddress(bad) == nil, "\(bad)")
        }
        #expect(IPAddress("::ffff:198.18.0.1") == nil)  // dotted tail not accepted; write it as IPv4
        #expect(IPAddress("198.18.0.1")!.isIPv4)
        #expect(!IPAddress("2001:db8::1")!.isIPv4)
        #expect(MACAddress("02:00:00:00:00:01") == serverMAC)
        #expect(serverMAC.description == "02:00:00:00:00:01")
        #expect(MACAddress("02:00:00:00:00") == nil)
    }
}
