import COpenSSL
import CVoxAllocCounter
import Testing
import VoxMedia
import VoxTestKit
import VoxWire

/// The backend protocol's codec and per-session state (docs/backend-protocol.md), tested from
/// the outside: bytes built by hand and MACs by OpenSSL's one-shot HMAC as the oracle.
@Suite struct BackendMessageTests {
    static let keyBytes: [UInt8] = Array("backend-shared-key-0123456789abcdef".utf8)
    let key = BackendMessageTests.keyBytes.withUnsafeBytes { HMACSHA1Key(key: $0) }
    let otherKey = Array("another-backend's-key".utf8).withUnsafeBytes { HMACSHA1Key(key: $0) }

    static func stream(model: String = "gpt-voice-1", subject: String = "user-42", codec: String = "opus")
        -> BackendStreamDescription
    {
        BackendStreamDescription(
            ssrc: 0xDEAD_BEEF, clockRate: 48_000, payloadType: 111, channels: 2, codecName: codec, model: model,
            subject: subject)!
    }

    static let bodies: [BackendMessage.Body] = [
        .start(stream()), .end(.clientLeft), .end(BackendEndReason(rawValue: 0xFFFF)), .flush, .keepalive,
        .keepaliveAck(echo: 0x0102_0304_0506_0708), .migratedAway, .migratedIn(stream(model: "", subject: "")),
    ]

    /// Who may send a body's type (flush only the backend; start and migrations only the edge).
    static func sender(of body: BackendMessage.Body) -> BackendPeer { body.type == .flush ? .backend : .edge }

    func encode(_ m: BackendMessage, key: HMACSHA1Key? = nil) -> [UInt8] {
        var out = [UInt8](repeating: 0xEE, count: BackendMessage.maximumLength)
        let n = out.withUnsafeMutableBytes { m.encode(key: key ?? self.key, into: $0) }!
        #expect(n == m.encodedLength)
        return Array(out[0..<n])
    }

    func parse(_ bytes: [UInt8], key: HMACSHA1Key? = nil) -> (BackendVerdict, BackendMessage) {
        var m = BackendMessage()
        // Exactly sized, so a read past the end lands outside the allocation.
        let raw = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 1)
        defer { raw.deallocate() }
        raw.copyBytes(from: bytes)
        let v = BackendMessage.parse(UnsafeRawBufferPointer(rebasing: raw[0..<bytes.count]), key: key ?? self.key, into: &m)
        return (v, m)
    }

    /// The first 16 bytes of HMAC-SHA1 by OpenSSL's one-shot call.
    static func oracleMAC(_ signed: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 20)
        var length: UInt32 = 0
        _ = keyBytes.withUnsafeBytes { k in
            signed.withUnsafeBytes { d in
                HMAC(EVP_sha1(), k.baseAddress, Int32(k.count), d.baseAddress?.assumingMemoryBound(to: UInt8.self), d.count, &out, &length)
            }
        }
        return Array(out[0..<16])
    }

    /// Appends a correct MAC to hand-built bytes.
    static func signed(_ bytes: [UInt8]) -> [UInt8] { bytes + oracleMAC(bytes) }

    static func header(type: UInt8, flags: UInt8 = 0, bodyLength: Int, session: UInt64, sequence: UInt64, timestamp: UInt64)
        -> [UInt8]
    {
        var h: [UInt8] = [0x0B, 1, type, flags, UInt8(bodyLength >> 8), UInt8(bodyLength & 0xFF), 0, 0]
        for v in [session, sequence, timestamp] { h += (0..<8).map { UInt8(truncatingIfNeeded: v >> (56 - 8 * $0)) } }
        return h
    }

    // MARK: layout

    @Test func aKeepaliveIsTheDocumentedBytesWithOpenSSLsMAC() {
        let m = BackendMessage(sender: .edge, sessionID: 7, sequence: 3, timestamp: 0x1122_3344_5566_7788, body: .keepalive)
        let expected = Self.signed(Self.header(type: 4, bodyLength: 0, session: 7, sequence: 3, timestamp: 0x1122_3344_5566_7788))
        #expect(encode(m) == expected)
        #expect(expected.count == 48)
    }

    @Test func aStartIsTheDocumentedBytes() {
        let d = Self.stream(model: "m", subject: "sub")
        let m = BackendMessage(sender: .edge, sessionID: 1, sequence: 1, timestamp: 5, body: .start(d))
        let body: [UInt8] =
            [0xDE, 0xAD, 0xBE, 0xEF, 0, 0, 0xBB, 0x80, 111, 2, 4, 0, 0, 1, 0, 3] + Array("opus".utf8) + Array("m".utf8)
            + Array("sub".utf8)
        let expected = Self.signed(Self.header(type: 1, bodyLength: body.count, session: 1, sequence: 1, timestamp: 5) + body)
        #expect(encode(m) == expected)
    }

    @Test func aFlushFromTheBackendSetsTheSenderBitAndAnEndCarriesItsReason() {
        let flush = BackendMessage(sender: .backend, sessionID: 9, sequence: 2, timestamp: 0, body: .flush)
        #expect(encode(flush) == Self.signed(Self.header(type: 3, flags: 1, bodyLength: 0, session: 9, sequence: 2, timestamp: 0)))
        let end = BackendMessage(sender: .edge, sessionID: 9, sequence: 4, timestamp: 0, body: .end(.consentExpired))
        #expect(
            encode(end)
                == Self.signed(Self.header(type: 2, bodyLength: 4, session: 9, sequence: 4, timestamp: 0) + [0, 3, 0, 0]))
        let ack = BackendMessage(sender: .backend, sessionID: 9, sequence: 3, timestamp: 0, body: .keepaliveAck(echo: 0xAB))
        #expect(
            encode(ack)
                == Self.signed(Self.header(type: 5, flags: 1, bodyLength: 8, session: 9, sequence: 3, timestamp: 0)
                    + [0, 0, 0, 0, 0, 0, 0, 0xAB]))
    }

    /// The vectors in docs/backend-protocol.md, made with Python's hmac module (another
    /// implementation than ours and OpenSSL's): what a backend author checks against.
    @Test func theDocumentsVectors() {
        let flush = BackendMessage(sender: .backend, sessionID: 0x0102_0304_0506_0708, sequence: 2, timestamp: 1_000_000_000, body: .flush)
        let flushHex = "0b0103010000000001020304050607080000000000000002000000003b9aca005ed336922b25a3341b8932a0b75b34fe"
        #expect(encode(flush) == hexBytes(flushHex))
        #expect(parse(hexBytes(flushHex)) == (.ok, flush))
        let d = BackendStreamDescription(
            ssrc: 0x1122_3344, clockRate: 48_000, payloadType: 111, channels: 2, codecName: "opus", model: "model", subject: "sub")!
        let start = BackendMessage(sender: .edge, sessionID: 0x0102_0304_0506_0708, sequence: 1, timestamp: 5, body: .start(d))
        let startHex =
            "0b010100001c0000010203040506070800000000000000010000000000000005112233440000bb806f020400000500036f7075736d6f64656c7375626e5423e69a040c6986762b642296bf5c"
        #expect(encode(start) == hexBytes(startHex))
        #expect(parse(hexBytes(startHex)) == (.ok, start))
    }

    // MARK: round trips and limits

    @Test(arguments: bodies)
    func everyTypeRoundTrips(body: BackendMessage.Body) {
        let m = BackendMessage(sender: Self.sender(of: body), sessionID: 0x1234, sequence: 77, timestamp: 99, body: body)
        let (v, back) = parse(encode(m))
        #expect(v == .ok)
        #expect(back == m)
    }

    @Test func integerFieldsAtTheirLimitsRoundTrip() {
        for value in [UInt64(1), UInt64.max, UInt64(Int64.max) + 1] {
            let m = BackendMessage(sender: .backend, sessionID: value, sequence: value, timestamp: value, body: .keepaliveAck(echo: value))
            let (v, back) = parse(encode(m))
            #expect(v == .ok && back == m)
        }
        let ts0 = BackendMessage(sender: .edge, sessionID: 1, sequence: 1, timestamp: 0, body: .keepaliveAck(echo: 0))
        #expect(parse(encode(ts0)) == (.ok, ts0))
        for reason in [UInt16(0), 1, 10, 11, UInt16.max] {
            let m = BackendMessage(sender: .backend, sessionID: 1, sequence: 1, timestamp: 0, body: .end(BackendEndReason(rawValue: reason)))
            #expect(parse(encode(m)) == (.ok, m))
        }
        for (ssrc, rate, pt, ch) in [(UInt32(0), UInt32(1), UInt8(0), UInt8(1)), (.max, .max, 127, .max)] {
            let d = BackendStreamDescription(
                ssrc: ssrc, clockRate: rate, payloadType: pt, channels: ch, codecName: "L16", model: "x", subject: "y")!
            let m = BackendMessage(sender: .edge, sessionID: 1, sequence: 1, timestamp: 0, body: .migratedIn(d))
            let (v, back) = parse(encode(m))
            #expect(v == .ok && back == m)
            #expect(back.body == .migratedIn(d))
        }
        // What a description cannot hold is refused where it is made.
        #expect(BackendStreamDescription(ssrc: 1, clockRate: 0, payloadType: 0, channels: 1, codecName: "opus", model: "", subject: "") == nil)
        #expect(BackendStreamDescription(ssrc: 1, clockRate: 1, payloadType: 128, channels: 1, codecName: "opus", model: "", subject: "") == nil)
        #expect(BackendStreamDescription(ssrc: 1, clockRate: 1, payloadType: 0, channels: 0, codecName: "opus", model: "", subject: "") == nil)
        #expect(BackendStreamDescription(ssrc: 1, clockRate: 1, payloadType: 0, channels: 1, codecName: "", model: "", subject: "") == nil)
        #expect(
            BackendStreamDescription(
                ssrc: 1, clockRate: 1, payloadType: 0, channels: 1, codecName: String(repeating: "c", count: 33), model: "",
                subject: "") == nil)
        #expect(
            BackendStreamDescription(
                ssrc: 1, clockRate: 1, payloadType: 0, channels: 1, codecName: String(repeating: "c", count: 32), model: "",
                subject: "") != nil)
    }

    @Test(arguments: [0, 1, 255, 256, 257])
    func stringsAtTheirLimits(length: Int) {
        let text = String(repeating: "é", count: length / 2) + String(repeating: "a", count: length % 2)
        #expect(text.utf8.count == length)
        let asModel = BackendStreamDescription(ssrc: 1, clockRate: 48_000, payloadType: 111, channels: 2, codecName: "opus", model: text, subject: "s")
        let asSubject = BackendStreamDescription(ssrc: 1, clockRate: 48_000, payloadType: 111, channels: 2, codecName: "opus", model: "m", subject: text)
        guard length <= 256 else {
            #expect(asModel == nil && asSubject == nil)
            return
        }
        for d in [asModel!, asSubject!] {
            let m = BackendMessage(sender: .edge, sessionID: 5, sequence: 5, timestamp: 5, body: .start(d))
            let (v, back) = parse(encode(m))
            #expect(v == .ok)
            guard case .start(let got) = back.body else {
                Issue.record("not a start")
                continue
            }
            #expect(got.modelString == d.modelString && got.subjectString == d.subjectString && got.codecNameString == "opus")
        }
        #expect(asModel!.modelString == text && asSubject!.subjectString == text)
    }

    @Test func aStartWithA257ByteStringOnTheWireIsMalformed() {
        // Built by hand (the encoder cannot make one), with a valid MAC: the length rule, not the MAC, refuses it.
        let model = [UInt8](repeating: 0x61, count: 257)
        let body: [UInt8] = [0, 0, 0, 1, 0, 0, 0xBB, 0x80, 111, 1, 4, 0, 0x01, 0x01, 0, 0] + Array("opus".utf8) + model
        let bytes = Self.signed(Self.header(type: 1, bodyLength: body.count, session: 1, sequence: 1, timestamp: 0) + body)
        #expect(parse(bytes).0 == .malformed)
        // The same at 256 is fine.
        let ok: [UInt8] = [0, 0, 0, 1, 0, 0, 0xBB, 0x80, 111, 1, 4, 0, 0x01, 0x00, 0, 0] + Array("opus".utf8) + model.dropLast()
        #expect(parse(Self.signed(Self.header(type: 1, bodyLength: ok.count, session: 1, sequence: 1, timestamp: 0) + ok)).0 == .ok)
    }

    @Test func bodiesThatBreakTheirLayoutAreMalformedEvenWithAGoodMAC() {
        func refused(type: UInt8, flags: UInt8 = 0, body: [UInt8], session: UInt64 = 1, sequence: UInt64 = 1, reserved: UInt8 = 0)
            -> BackendVerdict
        {
            var h = Self.header(type: type, flags: flags, bodyLength: body.count, session: session, sequence: sequence, timestamp: 0)
            h[7] = reserved
            return parse(Self.signed(h + body)).0
        }
        let start: [UInt8] = [0, 0, 0, 1, 0, 0, 0xBB, 0x80, 111, 1, 4, 0, 0, 0, 0, 0] + Array("opus".utf8)
        #expect(refused(type: 1, body: start) == .ok)
        #expect(refused(type: 1, body: start + [0]) == .malformed)  // a trailing byte the lengths do not cover
        #expect(refused(type: 1, body: Array(start.dropLast())) == .malformed)
        var badPT = start
        badPT[8] = 128
        #expect(refused(type: 1, body: badPT) == .malformed)
        var noChannels = start
        noChannels[9] = 0
        #expect(refused(type: 1, body: noChannels) == .malformed)
        var noRate = start
        noRate[6] = 0
        noRate[7] = 0
        #expect(refused(type: 1, body: noRate) == .malformed)
        var reservedByte = start
        reservedByte[11] = 1
        #expect(refused(type: 1, body: reservedByte) == .malformed)
        var noCodec = Array(start.dropLast(4))
        noCodec[10] = 0
        #expect(refused(type: 1, body: noCodec) == .malformed)
        #expect(refused(type: 1, body: Array(start[0..<15])) == .malformed)
        #expect(refused(type: 2, body: [0, 1]) == .malformed)
        #expect(refused(type: 2, body: [0, 1, 0, 1]) == .malformed)
        #expect(refused(type: 2, body: [0, 1, 0, 0]) == .ok)
        #expect(refused(type: 3, flags: 1, body: [0]) == .malformed)
        #expect(refused(type: 4, body: [0]) == .malformed)
        #expect(refused(type: 5, body: [0, 0, 0, 0, 0, 0, 0]) == .malformed)
        #expect(refused(type: 6, body: [0, 0, 0, 0]) == .malformed)
        // Header rules: reserved bits and fields, session id and sequence 0, type from the wrong sender.
        #expect(refused(type: 4, flags: 2, body: []) == .malformed)
        #expect(refused(type: 4, flags: 0x80, body: []) == .malformed)
        #expect(refused(type: 4, body: [], reserved: 1) == .malformed)
        #expect(refused(type: 4, body: [], session: 0) == .malformed)
        #expect(refused(type: 4, body: [], sequence: 0) == .malformed)
        #expect(refused(type: 3, flags: 0, body: []) == .malformed)  // a flush from the edge
        #expect(refused(type: 1, flags: 1, body: start) == .malformed)  // a start from the backend
        #expect(refused(type: 6, flags: 1, body: []) == .malformed)
        #expect(refused(type: 7, flags: 1, body: start) == .malformed)
        #expect(refused(type: 4, flags: 1, body: []) == .ok)
        // Types this build does not know, authentic: counted apart.
        #expect(refused(type: 0, body: []) == .unknownType)
        #expect(refused(type: 8, body: []) == .unknownType)
        #expect(refused(type: 255, body: []) == .unknownType)
    }

    @Test func theVersionIsCheckedBeforeTheMAC() {
        var bytes = Self.signed(Self.header(type: 4, bodyLength: 0, session: 1, sequence: 1, timestamp: 0))
        bytes[1] = 2
        #expect(parse(bytes).0 == .unsupportedVersion)
        bytes[1] = 0
        #expect(parse(bytes).0 == .unsupportedVersion)
    }

    // MARK: hostile bytes

    @Test(arguments: bodies)
    func everyTruncationAndEveryExtensionIsRefused(body: BackendMessage.Body) {
        let bytes = encode(BackendMessage(sender: Self.sender(of: body), sessionID: 3, sequence: 3, timestamp: 3, body: body))
        for length in 0..<bytes.count {
            let (v, _) = parse(Array(bytes[0..<length]))
            #expect(v == (length == 0 ? .notControl : .malformed), "length \(length)")
        }
        #expect(parse(bytes + [0]).0 == .malformed)
        #expect(parse(bytes + [UInt8](repeating: 0, count: 16)).0 == .malformed)
    }

    @Test(arguments: bodies)
    func anyOneBitFlippedIsRefused(body: BackendMessage.Body) {
        let bytes = encode(BackendMessage(sender: Self.sender(of: body), sessionID: 3, sequence: 3, timestamp: 3, body: body))
        var results: [BackendVerdict: Int] = [:]
        for bit in 0..<(bytes.count * 8) {
            var flipped = bytes
            flipped[bit / 8] ^= UInt8(1 << (bit % 8))
            let (v, _) = parse(flipped)
            #expect(v != .ok, "bit \(bit)")
            results[v, default: 0] += 1
            // Past the framing bytes (magic, version, body length), a flip can only fail the MAC.
            if ![0, 1, 4, 5].contains(bit / 8) { #expect(v == .badMAC, "bit \(bit)") }
        }
        #expect(results[.badMAC, default: 0] >= (bytes.count - 4) * 8)
    }

    @Test func anotherKeyIsABadMACAndSoIsAMessageSignedByIt() {
        let m = BackendMessage(sender: .backend, sessionID: 3, sequence: 3, timestamp: 3, body: .flush)
        #expect(parse(encode(m), key: otherKey).0 == .badMAC)
        #expect(parse(encode(m, key: otherKey)).0 == .badMAC)
        // An empty key is a key like any other (HMAC pads it): it does not verify ours.
        let empty = [UInt8]().withUnsafeBytes { HMACSHA1Key(key: $0) }
        #expect(parse(encode(m), key: empty).0 == .badMAC)
    }

    @Test func rtpRtcpAndOtherDemultiplexedProtocolsAreNotControl() {
        // RFC 7983: every first byte of STUN, ZRTP, DTLS, TURN channels, RTP/RTCP, QUIC.
        for byte in UInt8.min...UInt8.max {
            #expect(BackendMessage.isControl(byte) == (byte == 0x0B), "first byte \(byte)")
        }
        // An RTP packet (Opus, PT 111) and an RTCP receiver report (PT 201), as a backend sends them.
        let rtp: [UInt8] = [0x80, 111, 0x12, 0x34, 0, 0, 0x03, 0xC0, 0xDE, 0xAD, 0xBE, 0xEF] + [UInt8](repeating: 0xFC, count: 60)
        let rtcp: [UInt8] = [0x81, 201, 0, 7, 0xDE, 0xAD, 0xBE, 0xEF] + [UInt8](repeating: 0, count: 24)
        let marked: [UInt8] = [0xBF, 0xFF] + [UInt8](repeating: 0, count: 46)
        for packet in [rtp, rtcp, marked] {
            #expect(!BackendMessage.isControl(packet[0]))
            #expect(parse(packet).0 == .notControl)
        }
        var state = BackendChannelState(sessionID: 1, local: .edge)
        var m = BackendMessage()
        #expect(rtp.withUnsafeBytes { state.receive($0, key: key, into: &m) } == .notControl)
        #expect(parse([]).0 == .notControl)
    }

    // MARK: the per-session state

    @Test func sequencesAreStampedFromOneAndOnlyNewerOnesAreAccepted() {
        var backend = BackendChannelState(sessionID: 42, local: .backend)
        var edge = BackendChannelState(sessionID: 42, local: .edge)
        var buffer = [UInt8](repeating: 0, count: BackendMessage.maximumLength)
        func send(_ body: BackendMessage.Body, now: UInt64 = 0) -> [UInt8] {
            let n = buffer.withUnsafeMutableBytes { backend.send(body, now: now, key: key, into: $0) }!
            return Array(buffer[0..<n])
        }
        func receive(_ bytes: [UInt8]) -> (BackendVerdict, BackendMessage) {
            var m = BackendMessage()
            let v = bytes.withUnsafeBytes { edge.receive($0, key: key, into: &m) }
            return (v, m)
        }
        let first = send(.keepalive, now: 10)
        let second = send(.flush)
        let third = send(.end(.backendFinished))
        #expect(backend.nextSendSequence == 4)
        #expect(edge.highestAcceptedSequence == 0)
        let (v1, m1) = receive(first)
        #expect(v1 == .ok && m1.sequence == 1 && m1.timestamp == 10 && m1.body == .keepalive)
        #expect(receive(first).0 == .replayed)  // the same again
        #expect(receive(third).0 == .ok)  // a gap is fine: loss
        #expect(receive(second).0 == .replayed)  // older than the highest accepted
        #expect(receive(third).0 == .replayed)
        #expect(edge.highestAcceptedSequence == 3)
        let (v4, m4) = receive(send(.keepaliveAck(echo: 10)))
        #expect(v4 == .ok && m4.sequence == 4 && m4.body == .keepaliveAck(echo: 10))
        // A refused message moves nothing: a forged high sequence with a bad MAC does not lock the channel.
        var forged = send(.flush)
        forged[23] = 0xFF  // sequence's low byte, now 0xFF, and the MAC no longer matches
        #expect(receive(forged).0 == .badMAC)
        #expect(edge.highestAcceptedSequence == 4)
        // A buffer too small takes no sequence.
        var small = [UInt8](repeating: 0, count: 47)
        #expect(small.withUnsafeMutableBytes { backend.send(.keepalive, now: 0, key: key, into: $0) } == nil)
        #expect(backend.nextSendSequence == 6)
        #expect(receive(send(.keepalive)).0 == .ok)
    }

    @Test func aMessageOfAnotherSessionOnThisFiveTupleIsRefused() {
        // A valid flush of session 7, captured and replayed onto session 8's 5-tuple.
        var seven = BackendChannelState(sessionID: 7, local: .backend)
        var eight = BackendChannelState(sessionID: 8, local: .edge)
        var buffer = [UInt8](repeating: 0, count: 64)
        let n = buffer.withUnsafeMutableBytes { seven.send(.flush, now: 0, key: key, into: $0) }!
        var m = BackendMessage()
        #expect(buffer[0..<n].withUnsafeBytes { eight.receive($0, key: key, into: &m) } == .wrongSession)
        #expect(eight.highestAcceptedSequence == 0)
        // With another backend's key it does not even authenticate.
        #expect(buffer[0..<n].withUnsafeBytes { eight.receive($0, key: otherKey, into: &m) } == .badMAC)
    }

    @Test func aReflectedMessageIsRefused() {
        // The edge's own end, sent back at it (same key both ways): the sender bit refuses it.
        var edge = BackendChannelState(sessionID: 5, local: .edge)
        var buffer = [UInt8](repeating: 0, count: 64)
        let n = buffer.withUnsafeMutableBytes { edge.send(.end(.clientLeft), now: 0, key: key, into: $0) }!
        var m = BackendMessage()
        #expect(buffer[0..<n].withUnsafeBytes { edge.receive($0, key: key, into: &m) } == .wrongDirection)
        #expect(edge.highestAcceptedSequence == 0)
        // The backend takes it.
        var backend = BackendChannelState(sessionID: 5, local: .backend)
        #expect(buffer[0..<n].withUnsafeBytes { backend.receive($0, key: key, into: &m) } == .ok)
        #expect(m.body == .end(.clientLeft))
    }

    @Test func reasonsHaveTheirDocumentedNames() {
        #expect(BackendEndReason.clientLeft.description == "client_left")
        #expect(BackendEndReason.noBackend.description == "no_backend")
        #expect(BackendEndReason.backendOverloaded.description == "backend_overloaded")
        #expect(BackendEndReason(rawValue: 0).description == "reason_0")
        #expect(BackendEndReason.dropped.description == "dropped")
        #expect(BackendEndReason(rawValue: 12).description == "reason_12")
        #expect(BackendVerdict.badMAC.description == "bad_mac")
    }

    // MARK: allocations

    @Test func encodeParseAndReceiveAllocateNothing() {
        var edge = BackendChannelState(sessionID: 11, local: .edge)
        var backend = BackendChannelState(sessionID: 11, local: .backend)
        let out = UnsafeMutableRawBufferPointer.allocate(byteCount: BackendMessage.maximumLength, alignment: 8)
        defer { out.deallocate() }
        let start = Self.stream(model: String(repeating: "m", count: 256), subject: String(repeating: "s", count: 256))
        var m = BackendMessage()
        var verdicts = 0
        // Explicit calls, no arrays of bodies: iterating one costs an allocation per element
        // in a debug build (the generic iterator), which is the test's, not the codec's.
        func toBackend(_ body: BackendMessage.Body, now: UInt64) {
            let n = edge.send(body, now: now, key: key, into: out)!
            verdicts += backend.receive(UnsafeRawBufferPointer(rebasing: out[0..<n]), key: key, into: &m) == .ok ? 1 : 0
        }
        func toEdge(_ body: BackendMessage.Body, now: UInt64) {
            let n = backend.send(body, now: now, key: key, into: out)!
            verdicts += edge.receive(UnsafeRawBufferPointer(rebasing: out[0..<n]), key: key, into: &m) == .ok ? 1 : 0
            // And refusals: a replay, a bit flipped.
            verdicts += edge.receive(UnsafeRawBufferPointer(rebasing: out[0..<n]), key: key, into: &m) == .replayed ? 1 : 0
            out[40] ^= 1
            verdicts += BackendMessage.parse(UnsafeRawBufferPointer(rebasing: out[0..<n]), key: key, into: &m) == .badMAC ? 1 : 0
        }
        func round(_ now: UInt64) {
            toBackend(.start(start), now: now)
            toBackend(.keepalive, now: now)
            toBackend(.end(.drained), now: now)
            toBackend(.migratedIn(start), now: now)
            toBackend(.migratedAway, now: now)
            toEdge(.flush, now: now)
            toEdge(.keepaliveAck(echo: now), now: now)
            toEdge(.keepalive, now: now)
        }
        round(0)  // warm-up: lazily initialised runtime metadata
        let before = vox_thread_alloc_count()
        for i in 1...1_000 { round(UInt64(i)) }
        let allocations = vox_thread_alloc_count() - before
        #expect(allocations == 0)
        #expect(verdicts == 1_001 * 14)
    }
}
