import COpenSSL
import Foundation
import Testing
import VoxMedia
import VoxSRTPReference
import VoxTestKit
import VoxWire

/// One certificate and context for the whole suite, as the engine has one per process.
let dtlsCertificate = try! DTLSCertificate()
let dtlsContext = try! DTLSServerContext(certificate: dtlsCertificate)

/// The two peers in one process, time moved by hand. Datagrams in flight can be dropped
/// or rewritten by `network`.
struct DTLSPair: ~Copyable {
    var server: DTLSServer
    let client: OpenSSLDTLSClient
    var now: UInt64 = 0
    var lastOutput = DTLSOutput()

    init(
        context: DTLSServerContext = dtlsContext, profiles: [SRTPProfile] = SRTPProfile.allCases, clientMTU: Int = 1200,
        fingerprints: [CertificateFingerprint]? = nil
    ) throws {
        let client = try OpenSSLDTLSClient(profiles: profiles, mtu: clientMTU)
        let server = try DTLSServer(
            context: context, remoteFingerprints: fingerprints ?? [client.certificate.fingerprint], now: 0)
        self.client = client
        self.server = server
    }

    /// Delivers client datagrams to the server and the server's answers back until both
    /// are quiet. `dropToClient` is asked about every server datagram.
    mutating func exchange(_ fromClient: [[UInt8]], dropToClient: (Int, [UInt8]) -> Bool = { _, _ in false }) {
        var toServer = fromClient
        var sent = 0
        for _ in 0..<20 where !toServer.isEmpty {
            var toClient: [[UInt8]] = []
            for d in toServer {
                lastOutput = d.withUnsafeBytes { server.handle(now: now, datagram: $0) }
                toClient += lastOutput.datagrams
            }
            toServer = []
            for d in toClient {
                defer { sent += 1 }
                if dropToClient(sent, d) { continue }
                toServer += client.receive(d)
            }
        }
    }
}

/// A plaintext RTP packet with room for a tag.
func rtpPacket(ssrc: UInt32, seq: UInt16) -> [UInt8] {
    var p: [UInt8] = [0x80, 111, UInt8(seq >> 8), UInt8(seq & 0xFF), 0, 0, 0x03, 0xC0]
    p += [UInt8(ssrc >> 24), UInt8(ssrc >> 16 & 0xFF), UInt8(ssrc >> 8 & 0xFF), UInt8(ssrc & 0xFF)]
    return p + (0..<160).map { UInt8(truncatingIfNeeded: $0 &* 13) }
}

@Suite struct DTLSHandshakeTests {
    /// OpenSSL's own client, offering one profile at a time: the handshake finishes, both
    /// sides export the same keys, and SRTP protected with the client's keys (by libsrtp2 and
    /// by our SRTPContext) unprotects with the keys our server exported, both ways.
    @Test(arguments: SRTPProfile.allCases)
    func opensslClientNegotiatesEachProfile(profile: SRTPProfile) throws {
        var pair = try DTLSPair(profiles: [profile])
        pair.exchange(pair.client.start())
        #expect(pair.client.isConnected && pair.server.state == .connected)
        #expect(pair.client.serverFingerprint == dtlsContext.fingerprint.sdpValue)
        let serverKeys = pair.server.keys
        let ours = try #require(serverKeys)
        let theirs = try #require(pair.client.exportedKeys())
        #expect(ours.profile == profile && theirs == ours)
        #expect(ours.clientKey.count == profile.masterKeyLength && ours.serverSalt.count == profile.masterSaltLength)
        #expect(ours.clientKey != ours.serverKey)

        // Client → server: libsrtp2 and our SRTPContext protect with the client's keys.
        let libClient = try #require(
            LibSRTPSession(
                profile: profile, masterKey: theirs.clientKey, masterSalt: theirs.clientSalt, direction: .outbound))
        var clientSide = try SRTPContext(profile: profile, masterKey: theirs.clientKey, masterSalt: theirs.clientSalt)
        var serverIn = try SRTPContext(profile: profile, masterKey: ours.clientKey, masterSalt: ours.clientSalt)
        for seq in UInt16(1)...4 {
            let plain = rtpPacket(ssrc: 0xC11E_0001, seq: seq)
            var b = plain + [UInt8](repeating: 0, count: 32)
            var n = plain.count
            if seq % 2 == 1 {
                #expect(b.withUnsafeMutableBytes { libClient.protect($0.baseAddress!, length: &n) } == 0)
            } else {
                #expect(
                    b.withUnsafeMutableBytes { clientSide.protectRTP($0.baseAddress!, length: &n, capacity: $0.count) }
                        == .ok)
            }
            #expect(b.withUnsafeMutableBytes { serverIn.unprotectRTP($0.baseAddress!, length: &n) } == .ok)
            #expect(Array(b[0..<n]) == plain)
        }
        // Server → client with the server's keys; the client's libsrtp2 unprotects.
        var serverOut = try SRTPContext(profile: profile, masterKey: ours.serverKey, masterSalt: ours.serverSalt)
        let libIn = try #require(
            LibSRTPSession(
                profile: profile, masterKey: theirs.serverKey, masterSalt: theirs.serverSalt, direction: .inbound))
        let plain = rtpPacket(ssrc: 0x5E44_0001, seq: 9)
        var b = plain + [UInt8](repeating: 0, count: 32)
        var n = plain.count
        #expect(
            b.withUnsafeMutableBytes { serverOut.protectRTP($0.baseAddress!, length: &n, capacity: $0.count) } == .ok)
        #expect(b.withUnsafeMutableBytes { libIn.unprotect($0.baseAddress!, length: &n) } == 0)
        #expect(Array(b[0..<n]) == plain)
        // A packet under the wrong direction's key does not verify.
        var wrong = try SRTPContext(profile: profile, masterKey: ours.serverKey, masterSalt: ours.serverSalt)
        var c = rtpPacket(ssrc: 0xC11E_0002, seq: 1) + [UInt8](repeating: 0, count: 32)
        var m = 172
        _ = c.withUnsafeMutableBytes { clientSide.protectRTP($0.baseAddress!, length: &m, capacity: $0.count) }
        #expect(c.withUnsafeMutableBytes { wrong.unprotectRTP($0.baseAddress!, length: &m) } == .authenticationFailed)
    }

    @Test func serverPreferenceDecides() throws {
        // Chromium's order: SHA1_80 first. Our default prefers AEAD_AES_128_GCM.
        var pair = try DTLSPair(profiles: [.aes128CmHmacSha1_80, .aeadAes256Gcm, .aeadAes128Gcm])
        pair.exchange(pair.client.start())
        #expect(pair.server.keys?.profile == .aeadAes128Gcm && pair.client.selectedProfile == .aeadAes128Gcm)
        // A context that prefers AEAD_AES_256_GCM gets it from aiortc's list.
        let context = try DTLSServerContext(
            certificate: dtlsCertificate, configuration: .init(profiles: [.aeadAes256Gcm, .aes128CmHmacSha1_80]))
        var other = try DTLSPair(context: context, profiles: [.aeadAes128Gcm, .aes128CmHmacSha1_80, .aeadAes256Gcm])
        other.exchange(other.client.start())
        #expect(other.server.keys?.profile == .aeadAes256Gcm)
        // No profile in common: the handshake fails, typed.
        var none = try DTLSPair(context: context, profiles: [.aes128CmHmacSha1_32])
        none.exchange(none.client.start())
        #expect(none.server.keys == nil && none.client.selectedProfile == nil)
        if case .failed(let e) = none.server.state {
            #expect(e.code == .noSRTP)
        } else {
            Issue.record("state \(none.server.state)")
        }
        // OpenSSL goes on without use_srtp; we close the session instead of using it.
        #expect(none.client.receivedCloseNotify)
    }

    @Test func wrongFingerprintFails() throws {
        let stranger = try DTLSCertificate(commonName: "someone else")
        var pair = try DTLSPair(fingerprints: [stranger.fingerprint])
        pair.exchange(pair.client.start())
        #expect(
            pair.server.state
                == .failed(DTLSError(.fingerprintMismatch, "the client certificate matches no offered fingerprint")))
        #expect(pair.server.keys == nil && !pair.client.isConnected)
        #expect(pair.server.deadline == nil)
    }

    @Test func anyOfferedFingerprintAlgorithmMatches() throws {
        let client = try OpenSSLDTLSClient(profiles: SRTPProfile.allCases)
        // The offer lists a stranger's sha-256 and the client's real certificate as sha-512.
        let pem = client.certificate.certificatePEM
        let b = BIO_new(BIO_s_mem())!
        var bytes = Array(pem.utf8)
        _ = bytes.withUnsafeMutableBytes { BIO_write(b, $0.baseAddress, Int32($0.count)) }
        let x509 = PEM_read_bio_X509(b, nil, nil, nil)!
        var digest = [UInt8](repeating: 0, count: 64)
        var n: UInt32 = 0
        _ = digest.withUnsafeMutableBufferPointer { X509_digest(x509, EVP_sha512(), $0.baseAddress, &n) }
        X509_free(x509)
        BIO_free(b)
        let sha512 = CertificateFingerprint(algorithm: .sha512, digest: digest)
        var server = try DTLSServer(
            context: dtlsContext, remoteFingerprints: [try DTLSCertificate().fingerprint, sha512], now: 0)
        var toServer = client.start()
        for _ in 0..<10 where !toServer.isEmpty {
            let replies = toServer.flatMap { d in d.withUnsafeBytes { server.handle(now: 0, datagram: $0).datagrams } }
            toServer = replies.flatMap { client.receive($0) }
        }
        #expect(server.state == .connected && client.isConnected)
    }

    /// Our first flight is lost: nothing happens until its timer, then it is resent with
    /// fresh record numbers (the client's replay window takes it) and the handshake finishes.
    @Test func lostServerFlightIsRetransmittedOnTheTimer() throws {
        var pair = try DTLSPair()
        pair.exchange(pair.client.start(), dropToClient: { _, _ in true })
        #expect(pair.server.state == .handshaking)
        let first = pair.server.deadline
        #expect(first == second)  // initial retransmission timeout, 1 s after the flight
        pair.now = second - 1
        #expect(pair.server.handleTimeout(now: pair.now).datagrams.isEmpty)
        pair.now = second
        let resent = pair.server.handleTimeout(now: pair.now)
        #expect(!resent.datagrams.isEmpty && resent.deadline == 3 * second)  // doubled
        #expect(pair.server.retransmissions == 1)
        pair.exchange(resent.datagrams.flatMap { pair.client.receive($0) })
        #expect(pair.client.isConnected && pair.server.state == .connected)
        #expect(pair.server.deadline == nil)
    }

    /// A client that retransmits its hello (Chromium when we are slow) gets our flight again
    /// at once, and a duplicate of our flight does not confuse it.
    @Test func repeatedClientHelloGetsTheFlightAgain() throws {
        var pair = try DTLSPair()
        let hello = pair.client.start()
        var toClient: [[UInt8]] = []
        for _ in 0..<2 {
            for d in hello { toClient += d.withUnsafeBytes { pair.server.handle(now: 0, datagram: $0).datagrams } }
        }
        #expect(pair.server.retransmissions == 1 && toClient.count >= 2)
        // The two copies differ only in record sequence numbers.
        #expect(toClient[0].count == toClient[toClient.count / 2].count)
        pair.exchange(toClient.flatMap { pair.client.receive($0) })
        #expect(pair.client.isConnected && pair.server.state == .connected)
    }

    /// Our last flight (CCS + Finished) is lost after we are connected: the client repeats
    /// its flight, and we answer it again (OpenSSL resends our buffered flight; our record
    /// numbering stays fresh), so the client finishes with the same keys.
    @Test func repeatedClientFinalFlightGetsOursAgain() throws {
        var pair = try DTLSPair()
        let flight2 = pair.client.start().flatMap { d in
            d.withUnsafeBytes { pair.server.handle(now: 0, datagram: $0).datagrams }
        }
        // The short timer only from the flight that is to be lost: set before the hello, it
        // expired while a loaded machine built our flight, and the client resent its hello.
        pair.client.useShortRetransmitTimer()
        let flight3 = flight2.flatMap { pair.client.receive($0) }
        let lost = flight3.flatMap { d in d.withUnsafeBytes { pair.server.handle(now: 1, datagram: $0).datagrams } }
        #expect(pair.server.state == .connected && !lost.isEmpty && !pair.client.isConnected)
        // The OpenSSL client has only the real clock: wait out its 20 ms timer.
        var again: [[UInt8]] = []
        for _ in 0..<50 where again.isEmpty {
            usleep(30_000)
            again = pair.client.retransmit()
        }
        #expect(!again.isEmpty)
        let resent = again.flatMap { d in d.withUnsafeBytes { pair.server.handle(now: 2, datagram: $0).datagrams } }
        #expect(!resent.isEmpty && pair.server.state == .connected)
        for d in resent { _ = pair.client.receive(d) }
        #expect(pair.client.isConnected && pair.client.exportedKeys() == pair.server.keys)
    }

    /// GStreamer's OpenSSL with a 256-byte MTU: the hello and the second flight in small
    /// datagrams, each its own call.
    @Test func smallRecordsLikeGStreamer() throws {
        var pair = try DTLSPair(profiles: [.aes128CmHmacSha1_80], clientMTU: 256 + 28)
        pair.client.recordPerDatagram = true
        var fromClient = pair.client.start()
        #expect(fromClient.allSatisfy { $0.count <= 256 })
        var clientDatagrams = fromClient.count
        for _ in 0..<10 where !fromClient.isEmpty {
            let replies = fromClient.flatMap { d in
                d.withUnsafeBytes { pair.server.handle(now: 0, datagram: $0).datagrams }
            }
            fromClient = replies.flatMap { pair.client.receive($0) }
            clientDatagrams += fromClient.count
            #expect(fromClient.allSatisfy { $0.count <= 256 })
        }
        #expect(clientDatagrams >= 5)
        #expect(pair.server.state == .connected && pair.server.keys?.profile == .aes128CmHmacSha1_80)
    }

    /// The hello cut into two fragments in two datagrams, larger one first (Chromium: 1200 + 263).
    @Test func helloSplitAcrossDatagramsLikeChromium() throws {
        var pair = try DTLSPair()
        let hello = pair.client.start()
        #expect(hello.count == 1)
        let parts = pair.client.split(hello[0], at: 1200.0 / 1413.0)
        #expect(parts.count == 2 && parts[0].count > parts[1].count)
        let first = parts[0].withUnsafeBytes { pair.server.handle(now: 0, datagram: $0) }
        #expect(first.datagrams.isEmpty && pair.server.state == .handshaking)
        pair.exchange([parts[1]])
        #expect(pair.client.isConnected && pair.server.state == .connected)
    }

    /// A client that sends its hello and then nothing: our flight is resent at 1, 3 and 7 s
    /// and the handshake fails at its 10 s deadline.
    @Test func silentClientTimesOut() throws {
        var pair = try DTLSPair()
        pair.exchange(pair.client.start(), dropToClient: { _, _ in true })
        var resends = 0
        var failure: DTLSError?
        while let deadline = pair.server.deadline {
            pair.now = deadline
            let out = pair.server.handleTimeout(now: pair.now)
            if !out.datagrams.isEmpty { resends += 1 }
            failure = out.failure ?? failure
        }
        #expect(resends == 3 && pair.now == 10 * second)
        #expect(failure?.code == .timeout && pair.server.state == .failed(failure!))
        // Late datagrams are ignored.
        #expect(
            pair.client.start().flatMap { d in
                d.withUnsafeBytes { pair.server.handle(now: pair.now, datagram: $0).datagrams }
            }.isEmpty)
    }

    @Test func closeNotifyBothWays() throws {
        var pair = try DTLSPair()
        pair.exchange(pair.client.start())
        #expect(pair.server.state == .connected)
        let bye = pair.server.close()
        #expect(!bye.datagrams.isEmpty && pair.server.state == .closed)
        for d in bye.datagrams { _ = pair.client.receive(d) }
        #expect(pair.client.receivedCloseNotify)

        var other = try DTLSPair()
        other.exchange(other.client.start())
        let fromClient = other.client.close()
        let out = fromClient.map { d in d.withUnsafeBytes { other.server.handle(now: 1, datagram: $0) } }
        #expect(out.contains { $0.closed } && other.server.state == .closed)
    }

    @Test func certificateRoundTripsThroughPEM() throws {
        let loaded = try DTLSCertificate(
            privateKeyPEM: dtlsCertificate.privateKeyPEM, certificatePEM: dtlsCertificate.certificatePEM)
        #expect(loaded.fingerprint == dtlsCertificate.fingerprint)
        #expect(loaded.fingerprint.algorithm == .sha256 && loaded.fingerprint.digest.count == 32)
        let other = try DTLSCertificate()
        #expect(other.fingerprint != dtlsCertificate.fingerprint)
        #expect(throws: DTLSError.self) {
            try DTLSCertificate(privateKeyPEM: other.privateKeyPEM, certificatePEM: dtlsCertificate.certificatePEM)
        }
        #expect(throws: DTLSError.self) { try DTLSCertificate(privateKeyPEM: "junk", certificatePEM: "junk") }
    }
}

@Suite struct DTLSCaptureTests {
    /// Chromium 156's real first flight (a 1413-byte hello offering DTLS 1.3, in 1200 + 263
    /// bytes, then retransmitted) is accepted and answered with DTLS 1.2: a ServerHello of
    /// version 0xFEFD in 0xFEFD records. The handshake cannot finish offline.
    @Test func chromiumFirstFlightIsAnsweredWithDTLS12() throws {
        let dir = fixturesDirectory.appendingPathComponent("webrtc/chromium-156")
        let offer = try WebRTCOffer(String(contentsOf: dir.appendingPathComponent("offer.sdp"), encoding: .utf8))
        let datagrams = try pcapUDPPayloads(dir.appendingPathComponent("ice-dtls.pcap"))
        let clientPort = datagrams.first { $0.payload.first == 0 }!.sourcePort
        let hello = datagrams.filter { d in
            d.sourcePort == clientPort
                && d.payload.withUnsafeBytes { b in
                    DTLSRecord.split(b).map {
                        $0.allSatisfy { DTLSRecord.handshakeFragment(b, record: $0)?.type == DTLSRecord.clientHello }
                    } ?? false
                }
        }.map(\.payload)
        #expect(hello.count >= 3 && hello[0].count == 1200 && hello[1].count == 263)
        var server = try DTLSServer(context: dtlsContext, remoteFingerprints: offer.fingerprints, now: 0)
        let first = hello[0].withUnsafeBytes { server.handle(now: 0, datagram: $0) }
        #expect(first.datagrams.isEmpty)
        let answer = hello[1].withUnsafeBytes { server.handle(now: 1_000_000, datagram: $0) }
        #expect(server.state == .handshaking && !answer.datagrams.isEmpty)
        let flight = answer.datagrams.flatMap { $0 }
        flight.withUnsafeBytes { b in
            let records = DTLSRecord.split(b) ?? []
            #expect(!records.isEmpty)
            #expect(records.allSatisfy { DTLSRecord.version(b, record: $0) == DTLSRecord.version12 })
            // ServerHello: handshake type 2, then server_version at body offset 12.
            let r = records[0]
            #expect(DTLSRecord.handshakeFragment(b, record: r)?.type == 2)
            let body = r.lowerBound + DTLSRecord.headerLength
            #expect(UInt16(b[body + 12]) << 8 | UInt16(b[body + 13]) == DTLSRecord.version12)
        }
        // Chromium's retransmitted hello gets the flight again, at once.
        let again = hello[2].withUnsafeBytes { server.handle(now: 2_000_000, datagram: $0) }
        #expect(!again.datagrams.isEmpty && server.retransmissions == 1)
    }
}

@Suite struct DTLSMutationTests {
    /// Seeded bit flips and truncations of Chromium's real hello datagrams, and of the
    /// record headers, into fresh servers: each is ignored, answered or a typed failure.
    @Test func twoThousandMutatedHellos() throws {
        let dir = fixturesDirectory.appendingPathComponent("webrtc/chromium-156")
        let datagrams = try pcapUDPPayloads(dir.appendingPathComponent("ice-dtls.pcap")).map(\.payload)
            .filter { ($0.first ?? 0) >= 20 && ($0.first ?? 0) <= 63 }
        #expect(datagrams.count >= 2)
        var rng = SeededRandom(seed: 0xD71)
        var outcomes: [String: Int] = [:]
        for i in 0..<2_000 {
            // Mutate one half of the hello (or both), then deliver both halves in order.
            var halves = [datagrams[0], datagrams[1]]
            for h in 0..<2 where i % 3 == h || i % 3 == 2 {
                for _ in 0..<Int.random(in: 1...4, using: &rng) {
                    // Half the flips land in the first record's header and handshake header.
                    let limit = Bool.random(using: &rng) ? min(halves[h].count, 25) : halves[h].count
                    halves[h][Int.random(in: 0..<limit, using: &rng)] ^=
                        UInt8(1) << UInt8.random(in: 0..<8, using: &rng)
                }
                if Int.random(in: 0..<4, using: &rng) == 0 {
                    halves[h].removeLast(Int.random(in: 0..<halves[h].count, using: &rng))
                }
            }
            var server = try DTLSServer(context: dtlsContext, remoteFingerprints: [dtlsCertificate.fingerprint], now: 0)
            var answered = false
            for d in halves {
                let out = d.withUnsafeBytes { server.handle(now: 0, datagram: $0) }
                answered = answered || !out.datagrams.isEmpty
                #expect(out.keys == nil)
            }
            let timeout = server.handleTimeout(now: 11 * second)
            #expect(timeout.keys == nil && timeout.failure?.code == .timeout || server.state != .handshaking)
            switch server.state {
            case .failed(let e): outcomes[answered ? "answered" : e.code.rawValue, default: 0] += 1
            default: outcomes["\(server.state)", default: 0] += 1
            }
        }
        #expect(outcomes.values.reduce(0, +) == 2_000)
        // Some mutations leave a hello OpenSSL answers, others one it refuses.
        #expect(outcomes["answered", default: 0] > 0 && outcomes["handshakeFailed", default: 0] > 0)
    }
}
