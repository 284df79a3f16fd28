import COpenSSL
import Foundation
import Testing
import VoxMedia
import VoxTestKit
import VoxWire

@Suite struct STUNVectorTests {
    func parsed(_ bytes: [UInt8]) -> (STUNVerdict, STUNMessage) {
        var m = STUNMessage()
        let v = bytes.withUnsafeBytes { STUNMessage.parse($0.baseAddress!, length: $0.count, into: &m) }
        return (v, m)
    }

    @Test func rfc5769SampleRequest() {
        let bytes = hexBytes(RFC5769.sampleRequest)
        let (verdict, m) = parsed(bytes)
        #expect(verdict == .ok)
        #expect(m.type == STUN.bindingRequest && m.isRequest && m.method == 1)
        #expect(m.priority == RFC5769.sampleRequestPriority)
        #expect(m.iceControlled == RFC5769.sampleRequestTiebreaker)
        #expect(m.iceControlling == nil && !m.useCandidate)
        bytes.withUnsafeBytes { p in
            #expect(String(decoding: m.username(p.baseAddress!)!, as: UTF8.self) == RFC5769.sampleRequestUsername)
            #expect(m.fingerprintMatches(p.baseAddress!))
            #expect(p.baseAddress!.loadBE32(at: m.fingerprintOffset + 4) == RFC5769.sampleRequestFingerprint)
            let auth = STUNAuthenticator(password: RFC5769.sampleRequestPassword)
            #expect(auth.verifyIntegrity(p.baseAddress!, m))
            #expect(!STUNAuthenticator(password: "wrong").verifyIntegrity(p.baseAddress!, m))
        }
    }

    @Test(arguments: [
        (RFC5769.ipv4Response, RFC5769.ipv4MappedAddress, RFC5769.ipv4MappedPort),
        (RFC5769.ipv6Response, RFC5769.ipv6MappedAddress, RFC5769.ipv6MappedPort),
    ])
    func rfc5769Responses(hex: String, address: String, port: UInt16) {
        let bytes = hexBytes(hex)
        let (verdict, m) = parsed(bytes)
        #expect(verdict == .ok)
        #expect(m.isSuccessResponse)
        bytes.withUnsafeBytes { p in
            let mapped = m.xorMappedAddress(p.baseAddress!)
            #expect(mapped?.address == IPAddress(address))
            #expect(mapped?.port == UDPPort(port))
            #expect(m.fingerprintMatches(p.baseAddress!))
            #expect(STUNAuthenticator(password: RFC5769.ipv4ResponsePassword).verifyIntegrity(p.baseAddress!, m))
        }
    }

    @Test func rfc5769LongTermCredentials() {
        // Long-term credentials key the HMAC with MD5(username:realm:password) (RFC 8489 §9.2.2).
        let bytes = hexBytes(RFC5769.longTermRequest)
        let (verdict, m) = parsed(bytes)
        #expect(verdict == .ok)
        #expect(m.fingerprintOffset < 0)
        let input = Array("\(RFC5769.longTermUsername):\(RFC5769.longTermRealm):\(RFC5769.longTermPassword)".utf8)
        var key = [UInt8](repeating: 0, count: 16)
        _ = input.withUnsafeBytes { i in key.withUnsafeMutableBufferPointer { MD5(i.baseAddress!.assumingMemoryBound(to: UInt8.self), i.count, $0.baseAddress) } }
        #expect(key == hexBytes(RFC5769.longTermKey))
        bytes.withUnsafeBytes { p in
            let auth = key.withUnsafeBytes { STUNAuthenticator(password: $0) }
            #expect(auth.verifyIntegrity(p.baseAddress!, m))
        }
    }

    @Test func rfc5769RequestIsAnsweredInPlace() {
        var buffer = hexBytes(RFC5769.sampleRequest) + [UInt8](repeating: 0xEE, count: 64)
        let length = hexBytes(RFC5769.sampleRequest).count
        let auth = STUNAuthenticator(password: RFC5769.sampleRequestPassword)
        let remote = IPAddress("192.0.2.1")!
        var request = STUNMessage()
        var responseLength = 0
        let verdict = buffer.withUnsafeMutableBytes {
            auth.answerBindingRequest(
                $0.baseAddress!, length: length, capacity: $0.count, remote: remote, remotePort: UDPPort(32853),
                request: &request, responseLength: &responseLength)
        }
        #expect(verdict == .answered)
        #expect(request.priority == RFC5769.sampleRequestPriority)
        let response = Array(buffer[0..<responseLength])
        let (v, m) = parsed(response)
        #expect(v == .ok && m.type == STUN.bindingSuccess)
        #expect(response[8..<20] == hexBytes(RFC5769.sampleRequestTransactionID)[...])
        response.withUnsafeBytes { p in
            #expect(m.xorMappedAddress(p.baseAddress!)?.address == remote)
            #expect(m.xorMappedAddress(p.baseAddress!)?.port == UDPPort(32853))
            #expect(m.fingerprintMatches(p.baseAddress!))
            #expect(auth.verifyIntegrity(p.baseAddress!, m))
        }
        // The RFC's own IPv4 response carries the same mapped address; ours omits SOFTWARE,
        // so compare the XOR-MAPPED-ADDRESS attribute bytes.
        let rfc = hexBytes(RFC5769.ipv4Response)
        #expect(response[20..<32] == rfc[(rfc.count - 8 - 24 - 12)..<(rfc.count - 8 - 24)])
    }

    @Test func badRequestsAreToldApart() {
        let auth = STUNAuthenticator(password: RFC5769.sampleRequestPassword)
        func answer(_ bytes: [UInt8]) -> STUNCheckVerdict {
            var b = bytes + [UInt8](repeating: 0, count: 64)
            var m = STUNMessage()
            var n = 0
            return b.withUnsafeMutableBytes {
                auth.answerBindingRequest(
                    $0.baseAddress!, length: bytes.count, capacity: $0.count, remote: IPAddress(ipv4: 1),
                    remotePort: UDPPort(1), request: &m, responseLength: &n)
            }
        }
        let good = hexBytes(RFC5769.sampleRequest)
        var badMI = good
        badMI[good.count - 8 - 5] ^= 1
        #expect(answer(badMI) == .badFingerprint)  // FINGERPRINT covers MESSAGE-INTEGRITY
        var badFP = good
        badFP[good.count - 1] ^= 1
        #expect(answer(badFP) == .badFingerprint)
        #expect(answer(hexBytes(RFC5769.ipv4Response)) == .notBindingRequest)
        #expect(answer(Array(good[0..<19])) == .malformed)
        #expect(answer(hexBytes(RFC5769.longTermRequest)) == .missingAttributes)
        // Wrong password, right fingerprint.
        let other = STUNAuthenticator(password: "not-the-password")
        var b = good + [UInt8](repeating: 0, count: 64)
        var m = STUNMessage()
        var n = 0
        let v = b.withUnsafeMutableBytes {
            other.answerBindingRequest(
                $0.baseAddress!, length: good.count, capacity: $0.count, remote: IPAddress(ipv4: 1),
                remotePort: UDPPort(1), request: &m, responseLength: &n)
        }
        #expect(v == .badIntegrity)
        // No room for the answer.
        var small = good
        let v2 = small.withUnsafeMutableBytes {
            auth.answerBindingRequest(
                $0.baseAddress!, length: good.count, capacity: 40, remote: IPAddress(ipv4: 1),
                remotePort: UDPPort(1), request: &m, responseLength: &n)
        }
        #expect(v2 == .noRoom)
    }

    @Test func writerBuildsErrorResponsesAndRequests() {
        var buffer = [UInt8](repeating: 0, count: 256)
        let id: [UInt8] = Array(1...12)
        let auth = STUNAuthenticator(password: "pass")
        let length = buffer.withUnsafeMutableBytes { b -> Int in
            id.withUnsafeBytes { idBytes in
                var w = STUNWriter(b.baseAddress!, capacity: b.count, type: STUN.bindingError, transactionID: idBytes)!
                let wroteError = w.appendErrorCode(487, reason: "Role Conflict")
                let wrotePriority = w.appendUInt32(type: STUN.Attribute.priority, 0x1234)
                let signed = auth.sign(&w)
                #expect(wroteError && wrotePriority && signed)
                return w.length
            }
        }
        let (v, m) = parsed(Array(buffer[0..<length]))
        #expect(v == .ok && m.isErrorResponse)
        buffer.withUnsafeBytes { p in
            #expect(m.errorCode(p.baseAddress!)?.code == 487)
            #expect(m.errorCode(p.baseAddress!)?.reason == "Role Conflict")
            #expect(m.fingerprintMatches(p.baseAddress!))
            #expect(auth.verifyIntegrity(p.baseAddress!, m))
        }
        // Full buffers refuse attributes instead of overrunning.
        buffer.withUnsafeMutableBytes { b in
            var w = STUNWriter(b.baseAddress!, capacity: 28, type: STUN.bindingRequest)!
            let first = w.appendUInt32(type: STUN.Attribute.priority, 1)
            let second = w.appendUInt32(type: STUN.Attribute.priority, 1)
            #expect(first && !second)
            #expect(w.length == 28)
        }
    }

    @Test func structuralRulesAreEnforced() {
        let good = hexBytes(RFC5769.sampleRequest)
        var cookie = good
        cookie[4] ^= 1
        #expect(parsed(cookie).0 == .notSTUN)
        var topBits = good
        topBits[0] |= 0x80
        #expect(parsed(topBits).0 == .notSTUN)
        #expect(parsed(good + [0, 0, 0, 0]).0 == .badLength)
        // An attribute after FINGERPRINT.
        var after = good + [0x80, 0x22, 0, 0]
        after[3] += 4
        #expect(parsed(after).0 == .badAttribute)
        // An attribute running past the end.
        var overrun = good
        overrun[20 + 2] = 0x40
        #expect(parsed(overrun).0 == .badAttribute)
    }
}

/// The STUN of real clients (Chromium 156, aiortc 1.16, GStreamer 1.22) captured against an
/// ICE-lite server: every message parses, and every MESSAGE-INTEGRITY verifies with the
/// server's `a=ice-pwd` (requests and responses are both signed with the answerer's password).
@Suite struct STUNCaptureTests {
    @Test(arguments: ["chromium-156", "aiortc-1.16", "gstreamer-1.22"])
    func everyCapturedMessageVerifies(client: String) throws {
        let dir = fixturesDirectory.appendingPathComponent("webrtc").appendingPathComponent(client)
        let password = try sdpAttribute("ice-pwd", in: dir.appendingPathComponent("answer.sdp"))
        let ufrag = try sdpAttribute("ice-ufrag", in: dir.appendingPathComponent("answer.sdp"))
        let auth = STUNAuthenticator(password: password)
        var stunCount = 0
        var requests = 0
        for datagram in try pcapUDPPayloads(dir.appendingPathComponent("ice-dtls.pcap")) {
            guard datagram.payload.withUnsafeBytes({ PayloadClass.classify($0.baseAddress!, length: $0.count) }) == .stun
            else { continue }
            stunCount += 1
            var m = STUNMessage()
            let v = datagram.payload.withUnsafeBytes { STUNMessage.parse($0.baseAddress!, length: $0.count, into: &m) }
            #expect(v == .ok)
            datagram.payload.withUnsafeBytes { p in
                #expect(m.fingerprintMatches(p.baseAddress!))
                // Checks and their answers are signed; keepalive indications are not.
                #expect(m.isIndication || auth.verifyIntegrity(p.baseAddress!, m))
                if m.isRequest {
                    requests += 1
                    // The client's USERNAME is "<our ufrag>:<its ufrag>".
                    let user = String(decoding: m.username(p.baseAddress!)!, as: UTF8.self)
                    #expect(user.hasPrefix(ufrag + ":"))
                    #expect(m.priority != nil && m.iceControlling != nil)
                }
            }
            // Requests are answered in place and the answer verifies.
            if m.isRequest {
                var buffer = datagram.payload + [UInt8](repeating: 0, count: 64)
                var request = STUNMessage()
                var n = 0
                let verdict = buffer.withUnsafeMutableBytes {
                    auth.answerBindingRequest(
                        $0.baseAddress!, length: datagram.payload.count, capacity: $0.count,
                        remote: IPAddress("198.18.0.2")!, remotePort: UDPPort(datagram.sourcePort),
                        request: &request, responseLength: &n)
                }
                #expect(verdict == .answered)
            }
        }
        #expect(stunCount > 0 && requests > 0)
    }
}

@Suite struct STUNMutationTests {
    /// 100,000 seeded truncations and bit flips of valid STUN messages through the parser
    /// and the full check-and-answer: each a clean rejection or a valid result.
    @Test func hundredThousandMutatedMessages() throws {
        var seeds = [hexBytes(RFC5769.sampleRequest), hexBytes(RFC5769.ipv4Response), hexBytes(RFC5769.ipv6Response),
            hexBytes(RFC5769.longTermRequest)]
        for client in ["chromium-156", "aiortc-1.16", "gstreamer-1.22"] {
            let pcap = fixturesDirectory.appendingPathComponent("webrtc/\(client)/ice-dtls.pcap")
            seeds += try pcapUDPPayloads(pcap).map(\.payload).filter { $0.first.map { $0 < 4 } ?? false }.prefix(2)
        }
        let auth = STUNAuthenticator(password: RFC5769.sampleRequestPassword)
        var rng = SeededRandom(seed: 5769)
        var answered = 0
        for i in 0..<100_000 {
            let original = seeds[i % seeds.count]
            var message = original
            for _ in 0..<Int.random(in: 1...3, using: &rng) {
                message[Int.random(in: 0..<message.count, using: &rng)] ^= UInt8(1) << UInt8.random(in: 0..<8, using: &rng)
            }
            if Int.random(in: 0..<3, using: &rng) == 0 {
                message.removeLast(Int.random(in: 0...message.count, using: &rng))
            }
            var m = STUNMessage()
            let length = message.count
            let v = message.withUnsafeBytes { p in
                p.baseAddress.map { STUNMessage.parse($0, length: length, into: &m) } ?? .truncated
            }
            if v == .ok {
                #expect(m.length == length)
                #expect(m.usernameOffset < 0 || m.usernameOffset + m.usernameLength <= length)
                #expect(m.fingerprintOffset < 0 || m.fingerprintOffset + 8 == length)
                message.withUnsafeBytes { p in
                    _ = m.fingerprintMatches(p.baseAddress!)
                    _ = m.xorMappedAddress(p.baseAddress!)
                    _ = m.errorCode(p.baseAddress!)
                }
            }
            var buffer = message + [UInt8](repeating: 0, count: 80)
            var n = 0
            let verdict = buffer.withUnsafeMutableBytes {
                auth.answerBindingRequest(
                    $0.baseAddress!, length: length, capacity: $0.count, remote: IPAddress(ipv4: 7),
                    remotePort: UDPPort(7), request: &m, responseLength: &n)
            }
            // Two flips of one bit cancel out: only a message that really changed counts.
            if verdict == .answered && message != original { answered += 1 }
        }
        // A flip that survives both FINGERPRINT and MESSAGE-INTEGRITY would be a forgery.
        #expect(answered == 0)
    }
}
