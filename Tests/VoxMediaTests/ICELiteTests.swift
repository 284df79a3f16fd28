import Foundation
import Testing
import VoxMedia
import VoxTestKit
import VoxWire

let second: UInt64 = 1_000_000_000

func flow(_ remote: String, _ port: UInt16) -> FlowKey {
    FlowKey(
        remoteAddress: IPAddress(remote)!, remotePort: UDPPort(port), localAddress: IPAddress("198.18.0.1")!,
        localPort: UDPPort(40000))
}

/// A connectivity check as a controlling client writes it.
func makeCheck(
    username: String, password: String, useCandidate: Bool = false, id: UInt8 = 1, fingerprint: Bool = true
) -> [UInt8] {
    var buffer = [UInt8](repeating: 0, count: 200)
    let length = buffer.withUnsafeMutableBytes { b -> Int in
        let tid = [UInt8](repeating: id, count: 12)
        return tid.withUnsafeBytes { t in
            var w = STUNWriter(b.baseAddress!, capacity: b.count, type: STUN.bindingRequest, transactionID: t)!
            var user = Array(username.utf8)
            _ = user.withUnsafeMutableBytes {
                w.append(type: STUN.Attribute.username, value: UnsafeRawBufferPointer($0))
            }
            _ = w.appendUInt32(type: STUN.Attribute.priority, 0x6E00_1EFF)
            _ = w.appendUInt64(type: STUN.Attribute.iceControlling, 0x1234)
            if useCandidate { _ = w.reserve(type: STUN.Attribute.useCandidate, valueLength: 0) }
            let auth = STUNAuthenticator(password: password)
            if fingerprint {
                _ = auth.sign(&w)
            } else if let mi = w.reserveMessageIntegrity() {
                auth.computeIntegrity(w.base, integrityOffset: mi - 4, into: w.base + mi)
            }
            return w.length
        }
    }
    return Array(buffer[0..<length])
}

extension ICELiteAgent {
    /// Handles a copy of `message` with room for the answer; returns the result and the answer.
    mutating func check(_ message: [UInt8], now: UInt64, from f: FlowKey) -> (ICECheckResult, [UInt8]) {
        var buffer = message + [UInt8](repeating: 0, count: 128)
        let r = buffer.withUnsafeMutableBytes {
            handle(now: now, $0.baseAddress!, length: message.count, capacity: $0.count, from: f)
        }
        return (r, Array(buffer[0..<r.responseLength]))
    }
}

@Suite struct ICELiteCaptureTests {
    /// Every check each real client sent is verified and answered with the answer.sdp
    /// credentials; the first claims the session, USE-CANDIDATE nominates it.
    @Test(arguments: ["chromium-156", "aiortc-1.16", "gstreamer-1.22"])
    func realChecksAreAnswered(client: String) throws {
        let dir = fixturesDirectory.appendingPathComponent("webrtc/\(client)")
        let local = ICECredentials(
            ufrag: try sdpAttribute("ice-ufrag", in: dir.appendingPathComponent("answer.sdp")),
            password: try sdpAttribute("ice-pwd", in: dir.appendingPathComponent("answer.sdp")))
        let offer = try WebRTCOffer(String(contentsOf: dir.appendingPathComponent("offer.sdp"), encoding: .utf8))
        var agent = try #require(ICELiteAgent(local: local, remoteUfrag: offer.remoteUfrag, now: 0))
        var now: UInt64 = 0
        var answered = 0
        var events: ICEEvents = []
        for d in try pcapUDPPayloads(dir.appendingPathComponent("ice-dtls.pcap")) {
            guard let first = d.payload.first, first < 4 else { continue }
            now += 20_000_000
            let (r, response) = agent.check(d.payload, now: now, from: flow("198.18.0.2", d.sourcePort))
            var m = STUNMessage()
            _ = d.payload.withUnsafeBytes { STUNMessage.parse($0.baseAddress!, length: $0.count, into: &m) }
            guard m.type == STUN.bindingRequest else {
                #expect(r.verdict == .notBindingRequest)
                continue
            }
            #expect(r.verdict == .answered)
            if answered == 0 { #expect(r.events.contains(.connected)) }
            events.formUnion(r.events)
            answered += 1
            // The answer is a signed success response to this transaction, mapped to the client.
            var a = STUNMessage()
            #expect(response.withUnsafeBytes { STUNMessage.parse($0.baseAddress!, length: $0.count, into: &a) } == .ok)
            #expect(a.type == STUN.bindingSuccess && response[8..<20] == d.payload[8..<20])
            response.withUnsafeBytes { p in
                #expect(STUNAuthenticator(password: local.password).verifyIntegrity(p.baseAddress!, a))
                #expect(a.fingerprintMatches(p.baseAddress!))
                #expect(a.xorMappedAddress(p.baseAddress!)?.port == UDPPort(d.sourcePort))
            }
        }
        #expect(answered > 0)
        #expect(events.contains(.connected) && events.contains(.nominated))
        #expect(agent.isNominated && agent.selected?.remoteAddress == IPAddress("198.18.0.2"))
        // The same checks under another session's password are forgeries.
        var stranger = try #require(ICELiteAgent(
            local: ICECredentials(ufrag: local.ufrag, password: "0123456789012345678901"),
            remoteUfrag: offer.remoteUfrag, now: 0))
        for d in try pcapUDPPayloads(dir.appendingPathComponent("ice-dtls.pcap")) where d.payload.first == 0 {
            let (r, _) = stranger.check(d.payload, now: 1, from: flow("198.18.0.2", d.sourcePort))
            #expect(r.verdict == .badIntegrity || r.verdict == .notBindingRequest)
        }
    }
}

@Suite struct ICELiteClockTests {
    let local = ICECredentials(ufrag: "vx000001abcdefgh", password: "pppppppppppppppppppppppp")
    var user: String { local.ufrag + ":cli1" }

    @Test func noCheckByTheConnectDeadlineFails() throws {
        var agent = try #require(ICELiteAgent(local: local, remoteUfrag: "cli1", now: 5 * second))
        #expect(agent.deadline == 15 * second)
        #expect(agent.poll(now: 15 * second - 1) == nil && agent.state == .waiting)
        #expect(agent.poll(now: 15 * second) == .connectTimeout)
        #expect(agent.state == .failed(.connectTimeout))
        #expect(agent.poll(now: 16 * second) == nil)
        // A valid check after the deadline is not answered.
        let (r, _) = agent.check(
            makeCheck(username: user, password: local.password), now: 16 * second, from: flow("10.0.0.1", 5000))
        #expect(r.verdict == .closed)
    }

    @Test func validChecksKeepConsentAndSilenceExpiresIt() throws {
        var agent = try #require(ICELiteAgent(local: local, remoteUfrag: "cli1", now: 0))
        let a = flow("10.0.0.1", 5000)
        let (r1, _) = agent.check(
            makeCheck(username: user, password: local.password, useCandidate: true), now: 2 * second, from: a)
        #expect(r1.verdict == .answered && r1.events == [.connected, .nominated])
        #expect(agent.deadline == 32 * second)
        // Consent checks every 5 s keep it alive well past the first 30 s.
        var now = 2 * second
        for i in 0..<10 {
            now += 5 * second
            let (r, _) = agent.check(
                makeCheck(username: user, password: local.password, id: UInt8(i + 2)), now: now, from: a)
            #expect(r.verdict == .answered && r.events.isEmpty)
        }
        #expect(agent.poll(now: now + 30 * second - 1) == nil)
        // Invalid checks do not renew it.
        let (bad, _) = agent.check(
            makeCheck(username: user, password: "wrong-password-wrong-pw"), now: now + second, from: a)
        #expect(bad.verdict == .badIntegrity)
        #expect(agent.poll(now: now + 30 * second) == .consentExpired)
        #expect(agent.state == .failed(.consentExpired))
    }

    @Test func aNewFiveTupleAfterNominationIsARebinding() throws {
        var agent = try #require(ICELiteAgent(local: local, remoteUfrag: "cli1", now: 0))
        let a = flow("10.0.0.1", 5000)
        let b = flow("10.0.0.1", 6001)
        let c = flow("192.0.2.9", 7000)
        // Before nomination, a check from another pair is answered but does not move the session.
        #expect(
            agent.check(makeCheck(username: user, password: local.password), now: 1, from: a).0.events == [.connected])
        let probe = agent.check(makeCheck(username: user, password: local.password, id: 2), now: 2, from: c).0
        #expect(probe.verdict == .answered && probe.events.isEmpty && agent.selected == a)
        // USE-CANDIDATE on another pair nominates that one.
        let nominate = agent.check(
            makeCheck(username: user, password: local.password, useCandidate: true, id: 3), now: 3, from: b
        ).0
        #expect(nominate.events == [.nominated, .pathChanged] && agent.selected == b)
        // After nomination any valid check from a new 5-tuple is a NAT rebinding.
        let moved = agent.check(makeCheck(username: user, password: local.password, id: 4), now: 4, from: a).0
        #expect(moved.events == [.pathChanged] && agent.selected == a)
        // Invalid checks from elsewhere move nothing.
        let forged = agent.check(makeCheck(username: user, password: "forged-forged-forged-fo", id: 5), now: 5, from: c)
            .0
        #expect(forged.verdict == .badIntegrity && agent.selected == a)
    }

    @Test func badChecksAreToldApart() throws {
        var agent = try #require(ICELiteAgent(local: local, remoteUfrag: "cli1", now: 0))
        let a = flow("2001:db8::1", 5000)
        #expect(
            agent.check(makeCheck(username: local.ufrag + ":other", password: local.password), now: 1, from: a).0
                .verdict == .badUsername)
        #expect(
            agent.check(makeCheck(username: "vx000002zzzzzzzz:cli1", password: local.password), now: 1, from: a).0
                .verdict == .badUsername)
        #expect(
            agent.check(makeCheck(username: user, password: local.password, fingerprint: false), now: 1, from: a).0
                .verdict == .missingAttributes)
        var flipped = makeCheck(username: user, password: local.password)
        flipped[flipped.count - 1] ^= 1
        #expect(agent.check(flipped, now: 1, from: a).0.verdict == .badFingerprint)
        #expect(agent.check([0, 1, 0, 0], now: 1, from: a).0.verdict == .malformed)
        #expect(agent.state == .waiting)
        // IPv6 clients are answered too.
        let (ok, response) = agent.check(makeCheck(username: user, password: local.password), now: 1, from: a)
        #expect(ok.verdict == .answered)
        var m = STUNMessage()
        _ = response.withUnsafeBytes { STUNMessage.parse($0.baseAddress!, length: $0.count, into: &m) }
        #expect(response.withUnsafeBytes { m.xorMappedAddress($0.baseAddress!)?.address } == IPAddress("2001:db8::1"))
    }
}
