import CVoxAllocCounter
import Testing
import VoxEngine
import VoxMedia
import VoxSRTPReference
import VoxTestKit
import VoxWire

/// A WebRTC call through the wired path, in one process on one injected clock: the
/// client's check claims its held session on a worker, its DTLS goes from that worker to
/// the handshake thread (`HandshakeService.runOnce`), the server's flights leave through
/// the worker's TX, the exported keys arrive on the worker by command, and SRTP flows both
/// ways. OpenSSL's own DTLS client and libsrtp2 play the client.
final class WebRTCCall {
    let h: Harness
    let handshakes: HandshakeService
    var call: Call
    let client: OpenSSLDTLSClient
    let queue: Int
    var session: UInt64 = 0
    var sender: LibSRTPSession?
    var receiver: LibSRTPSession?
    static let second: UInt64 = 1_000_000_000

    /// Holds a session (keys from its handshake, connect deadline 10 s) and expects its
    /// handshake with the client certificate's fingerprint (or `fingerprints`).
    init(
        _ h: Harness, _ handshakes: HandshakeService, index: Int, queue: Int = 0, profiles: [SRTPProfile] = [.aeadAes128Gcm],
        fingerprints: [CertificateFingerprint]? = nil, rng: inout SeededRandom
    ) throws {
        self.h = h
        self.handshakes = handshakes
        self.queue = queue
        client = try OpenSSLDTLSClient(profiles: profiles)
        final class Box { var id: UInt64 = 0 }
        let box = Box()
        let deadline = h.now + 10 * WebRTCCall.second
        call = try Call.make(
            profile: .aes128CmHmacSha1_80, clientPort: UInt16(41000 + index), password: "webrtc\(index)abcdefghijklmnop",
            ufragRandom: "W\(index)z", edgeSSRC: 0xE200_0000 + UInt32(index), clientSSRC: 0xC200_0000 + UInt32(index),
            rng: &rng, place: { try h.control.hold(until: deadline, $0) }
        ) { c, _ in
            c.backend = 0
            c.keysFromHandshake = true
            c.connectDeadline = deadline
            c.clientKey = KeyMaterial()
            c.edgeKey = KeyMaterial()
            box.id = c.sessionID
        }
        session = box.id
        handshakes.expect(
            slot: call.slot, session: session, fingerprints: fingerprints ?? [client.certificate.fingerprint],
            offeredAt: h.now)
    }

    func dtlsFrame(_ datagram: [UInt8]) -> [UInt8] {
        call.client.frame(to: mediaAddress, mediaPort, mac: edgeMAC, payload: datagram)
    }

    /// Delivers datagrams from the client, runs the workers and the handshake thread until
    /// quiet; returns the DTLS datagrams the edge sent the client.
    @discardableResult
    func send(_ datagrams: [[UInt8]]) -> [[UInt8]] {
        for d in datagrams { h.port.deliver(dtlsFrame(d), queue: queue) }
        return pump()
    }

    /// Runs workers and handshake thread until neither has work; the DTLS payloads sent.
    func pump() -> [[UInt8]] {
        var out: [[UInt8]] = []
        for _ in 0..<4 {
            h.run()
            handshakes.runOnce(now: h.now)
            h.run()
            for f in h.transmitted(queue: queue) {
                guard let (parsed, payload) = parseFrame(f) else { continue }
                #expect(parsed.destination == call.client.address && parsed.destinationPort == call.client.port)
                #expect(parsed.source == mediaAddress && parsed.sourcePort == mediaPort)
                if let first = payload.first, (20...63).contains(first) { out.append(payload) }
            }
        }
        return out
    }

    /// The check that claims the session, answered.
    func check(id: UInt8 = 0) {
        h.port.deliver(call.checkFrame(id: id), queue: queue)
        h.run()
        #expect(h.transmitted(queue: queue).count == 1)
    }

    /// The whole handshake; true when both sides are connected.
    func handshake(first: [[UInt8]]? = nil) -> Bool {
        var toClient = send(first ?? client.start())
        for _ in 0..<6 where !client.isConnected {
            var replies: [[UInt8]] = []
            for d in toClient { replies += client.receive(d) }
            toClient = send(replies)
        }
        for d in toClient { _ = client.receive(d) }
        guard client.isConnected, let keys = client.exportedKeys() else { return false }
        sender = LibSRTPSession(profile: keys.profile, masterKey: keys.clientKey, masterSalt: keys.clientSalt, direction: .outbound)
        receiver = LibSRTPSession(profile: keys.profile, masterKey: keys.serverKey, masterSalt: keys.serverSalt, direction: .inbound)
        return true
    }

    func srtpFrame(seq: UInt16, payload: [UInt8]) -> [UInt8] {
        var p = rtpPacket(ssrc: call.clientSSRC, seq: seq, timestamp: UInt32(seq) &* 960, payload: payload)
            + [UInt8](repeating: 0, count: 32)
        var n = p.count - 32
        precondition(p.withUnsafeMutableBytes { sender!.protect($0.baseAddress!, length: &n) } == 0)
        return call.client.frame(to: mediaAddress, mediaPort, mac: edgeMAC, payload: Array(p[0..<n]))
    }

    /// Audio both ways: client → backend, backend → client (decrypted with the client's keys).
    func mediaFlows(seq: UInt16) -> Bool {
        let w = h.workers[queue].worker.counters
        let before = (w[.toBackend], w[.toClient])
        h.port.deliver(srtpFrame(seq: seq, payload: [7, 7, seq.low]), queue: queue)
        h.run()
        let toBackend = h.transmitted(queue: queue).compactMap(parseFrame).filter { $0.0.destination == backendList[0].address }
        guard toBackend.count == 1, toBackend[0].1.suffix(3) == [7, 7, seq.low] else { return false }
        h.port.deliver(call.backendFrame(from: 0, ssrc: 99, seq: seq, timestamp: UInt32(seq) * 960, payload: [9, seq.low]), queue: queue)
        h.run()
        let toClient = h.transmitted(queue: queue).compactMap(parseFrame).filter { $0.0.destination == call.client.address }
        guard toClient.count == 1 else { return false }
        var b = toClient[0].1
        var n = b.count
        guard b.withUnsafeMutableBytes({ receiver!.unprotect($0.baseAddress!, length: &n) }) == 0 else { return false }
        return Array(b[2..<n].suffix(2)) == [9, seq.low] && w[.toBackend] == before.0 + 1
            && w[.toClient] == before.1 + 1
    }

    var slot: Int { Int(call.slot) }
}

extension UInt16 { var low: UInt8 { UInt8(truncatingIfNeeded: self) } }

@Suite struct HandshakePathTests {
    let second: UInt64 = 1_000_000_000

    func makeService(_ h: Harness) throws -> HandshakeService {
        HandshakeService(context: try DTLSServerContext(certificate: try DTLSCertificate()), links: h.links)
    }

    @Test(arguments: [SRTPProfile.aeadAes128Gcm, .aes128CmHmacSha1_80, .aeadAes256Gcm])
    func checkThenDTLSThenMediaBothWays(profile: SRTPProfile) throws {
        let h = try Harness(workers: 2, sessions: 8)
        let service = try makeService(h)
        var rng = SeededRandom(seed: 61)
        let c = try WebRTCCall(h, service, index: 1, queue: 1, profiles: [profile], rng: &rng)
        // DTLS before ICE: the flow is nobody's yet.
        let hello = c.client.start()
        h.port.deliver(c.dtlsFrame(hello[0]), queue: 1)
        h.run()
        #expect(h.workers[1].worker.counters[.unknownFlow] == 1)
        c.check()
        #expect(h.store.owner(of: c.slot) == 1)
        #expect(!h.store.isKeyed(slot: c.slot))
        // Media before keys is refused, counted.
        h.port.deliver(c.call.srtpFrame(seq: 1, payload: [1]), queue: 1)
        h.run()
        #expect(h.workers[1].worker.counters[.notKeyed] == 1)
        try #require(c.handshake(first: hello))
        #expect(c.client.serverFingerprint == service.context.fingerprint.sdpValue)
        #expect(c.client.selectedProfile == profile)
        #expect(h.store.isKeyed(slot: c.slot))
        #expect(h.store.profile(slot: c.slot) == profile)
        for seq in UInt16(10)..<20 { #expect(c.mediaFlows(seq: seq)) }
        let stats = service.snapshot
        #expect(stats.started == 1 && stats.succeeded == 1 && stats.failedTotal == 0)
        #expect(stats.setup.count == 1 && stats.handshake.count == 1 && stats.cpuNanoseconds > 0)
        #expect(h.workers[1].worker.counters[.toHandshake] >= 2)
        #expect(h.workers[1].worker.counters[.fromHandshake] >= 2)
        #expect(h.workers[0].worker.counters[.toHandshake] == 0)
    }

    /// DTLS arriving on another worker's queue is handed to the owner, whose flights answer.
    @Test func dtlsOnAnotherQueueReachesTheOwner() throws {
        let h = try Harness(workers: 2, sessions: 8)
        let service = try makeService(h)
        var rng = SeededRandom(seed: 62)
        let c = try WebRTCCall(h, service, index: 2, queue: 0, rng: &rng)
        c.check()
        h.control.reclaim()  // the control thread learns the flow: its directory routes strays
        for d in c.client.start() { h.port.deliver(c.dtlsFrame(d), queue: 1) }
        let flight = c.pump()
        #expect(!flight.isEmpty)
        #expect(h.workers[1].worker.counters[.handedOff] >= 1)
        #expect(h.workers[0].worker.counters[.toHandshake] >= 1)
    }

    /// Our first flight is lost: the server's timer resends it; the client's repeated
    /// ClientHello also makes it resend at once. The handshake then finishes.
    @Test func lostAndRepeatedFlights() throws {
        let h = try Harness(sessions: 4)
        let service = try makeService(h)
        var rng = SeededRandom(seed: 63)
        let c = try WebRTCCall(h, service, index: 3, rng: &rng)
        c.check()
        let hello = c.client.start()
        #expect(!c.send(hello).isEmpty)  // lost on the way
        // The client repeats its hello: the flight comes again at once.
        let again = c.send(hello)
        #expect(!again.isEmpty)
        // Lost again; 1 s later the server's timer sends it a third time.
        h.now += 1_100_000_000
        let resent = c.pump()
        #expect(!resent.isEmpty)
        var replies: [[UInt8]] = []
        for d in resent { replies += c.client.receive(d) }
        for d in c.send(replies) { _ = c.client.receive(d) }
        #expect(c.client.isConnected)
        h.run()
        #expect(h.store.isKeyed(slot: c.slot))
    }

    /// A ClientHello and then silence: the session ends at its connect deadline (10 s after
    /// the offer) though its client keeps checking; its slot and its handshake are gone.
    @Test func helloThenSilenceEndsTheSessionAtTheDeadline() throws {
        let h = try Harness(sessions: 4)
        let service = try makeService(h)
        h.control.onRelease = { service.forget(slot: $0) }
        var rng = SeededRandom(seed: 64)
        let c = try WebRTCCall(h, service, index: 4, rng: &rng)
        c.check()
        _ = c.send(c.client.start())
        #expect(service.count == 1)
        for i in 0..<12 {
            h.now += second
            // The client keeps consent alive meanwhile: only the handshake's deadline ends it.
            h.port.deliver(c.call.checkFrame(id: UInt8(i + 1)), queue: 0)
            _ = c.pump()
        }
        #expect(h.workers[0].worker.counters.sessionsEnded(.connectTimeout) == 1)
        #expect(h.workers[0].worker.counters[.answered] == 1 + 9)
        h.control.reclaim()
        #expect(h.control.freeCount == 4)
        h.now += second
        service.runOnce(now: h.now)
        #expect(service.count == 0)
    }

    /// The DTLS handshake's own deadline (10 s from the client's first datagram) when it
    /// comes before the connect deadline: counted as a failed handshake.
    @Test func aHandshakeThatTimesOutEndsTheSession() throws {
        let h = try Harness(sessions: 4)
        let context = try DTLSServerContext(
            certificate: try DTLSCertificate(), configuration: .init(handshakeTimeout: 3_000_000_000))
        let service = HandshakeService(context: context, links: h.links)
        var rng = SeededRandom(seed: 71)
        let c = try WebRTCCall(h, service, index: 5, rng: &rng)
        c.check()
        _ = c.send(c.client.start())
        h.now += 4 * second
        _ = c.pump()
        #expect(service.snapshot.failed[DTLSError.Code.timeout.rawValue] == 1)
        #expect(h.workers[0].worker.counters.sessionsEnded(.handshakeFailed) == 1)
        h.control.reclaim()
        #expect(h.control.freeCount == 4)
    }

    /// ICE connects but no DTLS ever comes: the connect deadline ends the session.
    @Test func iceWithoutDTLSEndsAtTheConnectDeadline() throws {
        let h = try Harness(sessions: 4)
        let service = try makeService(h)
        var rng = SeededRandom(seed: 65)
        let c = try WebRTCCall(h, service, index: 5, rng: &rng)
        c.check()
        h.now += 9 * second
        c.check(id: 1)
        h.now += 1_100_000_000
        h.run()
        #expect(h.workers[0].worker.counters.sessionsEnded(.connectTimeout) == 1)
        h.control.reclaim()
        #expect(h.control.freeCount == 4)
    }

    /// A client whose certificate matches no offered fingerprint is refused; the session ends.
    @Test func wrongFingerprintEndsTheSession() throws {
        let h = try Harness(sessions: 4)
        let service = try makeService(h)
        var rng = SeededRandom(seed: 66)
        let other = try DTLSCertificate(commonName: "someone else")
        let c = try WebRTCCall(h, service, index: 6, fingerprints: [other.fingerprint], rng: &rng)
        c.check()
        #expect(!c.handshake())
        #expect(service.snapshot.failed[DTLSError.Code.fingerprintMismatch.rawValue] == 1)
        h.run()
        #expect(h.workers[0].worker.counters.sessionsEnded(.handshakeFailed) == 1)
        #expect(!h.store.isKeyed(slot: c.slot))
        h.control.reclaim()
        #expect(h.control.freeCount == 4)
    }

    /// close_notify from the client ends the session; later DTLS for it is unexpected.
    @Test func closeNotifyEndsTheSession() throws {
        let h = try Harness(sessions: 4)
        let service = try makeService(h)
        var rng = SeededRandom(seed: 67)
        let c = try WebRTCCall(h, service, index: 7, rng: &rng)
        c.check()
        #expect(c.handshake())
        #expect(c.mediaFlows(seq: 1))
        _ = c.send(c.client.close())
        #expect(h.workers[0].worker.counters.sessionsEnded(.closedByClient) == 1)
        h.control.reclaim()
        #expect(h.control.freeCount == 4)
        #expect(service.snapshot.closedByClient == 1)
    }

    /// DTLS to a static-key session (no handshake expected) never reaches the thread.
    @Test func dtlsToAStaticSessionIsDropped() throws {
        let h = try Harness(sessions: 4)
        let service = try makeService(h)
        var rng = SeededRandom(seed: 68)
        let call = try Call.start(h, profile: .aes128CmHmacSha1_80, index: 8, rng: &rng)
        h.run()
        let client = try OpenSSLDTLSClient(profiles: [.aes128CmHmacSha1_80])
        for d in client.start() { h.port.deliver(call.client.frame(to: mediaAddress, mediaPort, mac: edgeMAC, payload: d), queue: 0) }
        h.run()
        service.runOnce(now: h.now)
        #expect(h.workers[0].worker.counters[.unsupportedPayload] >= 1)
        #expect(service.snapshot.started == 0)
    }

    /// Consent is renewed by authenticated media too (libnice sends no checks after
    /// connecting): 70 s of media and no check keeps the call; 31 s of nothing ends it.
    @Test func mediaAloneKeepsConsent() throws {
        let h = try Harness(sessions: 4)
        let service = try makeService(h)
        var rng = SeededRandom(seed: 69)
        let c = try WebRTCCall(h, service, index: 9, rng: &rng)
        c.check()
        #expect(c.handshake())
        for i in 0..<70 {
            h.now += second
            #expect(c.mediaFlows(seq: UInt16(100 + i)))
        }
        #expect(h.workers[0].worker.counters.sessionsEnded(.consentExpired) == 0)
        h.now += 31 * second
        h.run()
        #expect(h.workers[0].worker.counters.sessionsEnded(.consentExpired) == 1)
    }

    /// The worker's side of the handshake path — queueing DTLS, sending flights, installing
    /// keys, media with consent — allocates nothing (counted around the worker's bursts).
    @Test func theWorkerSideAllocatesNothing() throws {
        let h = try Harness(sessions: 8)
        let service = try makeService(h)
        var rng = SeededRandom(seed: 70)
        // Warm-up: a whole call of each cipher family through every path first (a debug
        // build initialises some runtime metadata lazily, once).
        for (n, profile) in [SRTPProfile.aeadAes128Gcm, .aes128CmHmacSha1_80].enumerated() {
            let warm = try WebRTCCall(h, service, index: 20 + n, profiles: [profile], rng: &rng)
            warm.check()
            #expect(warm.handshake())
            #expect(warm.mediaFlows(seq: 1))
            _ = warm.send(warm.client.close())
        }
        var allocations: UInt64 = 0
        var phase = "check"
        func burst() {
            let before = vox_thread_alloc_count()
            while h.workers[0].worker.runOnce(now: h.now) > 0 {}
            let n = vox_thread_alloc_count() - before
            if n > 0 { print("ALLOC \(phase) \(n)") }
            allocations += n
        }
        for (n, profile) in [SRTPProfile.aeadAes128Gcm, .aes128CmHmacSha1_80, .aeadAes128Gcm].enumerated() {
            let c = try WebRTCCall(h, service, index: 11 + n, profiles: [profile], rng: &rng)
            phase = "check"
            h.port.deliver(c.call.checkFrame(), queue: 0)
            burst()
            _ = h.transmitted()
            var toClient: [[UInt8]] = []
            var fromClient = c.client.start()
            for _ in 0..<6 where !c.client.isConnected {
                for d in fromClient { h.port.deliver(c.dtlsFrame(d), queue: 0) }
                phase = "dtls-in"
                burst()
                service.runOnce(now: h.now)
                phase = "flight-out"
                burst()
                toClient = h.transmitted().compactMap(parseFrame).map(\.1)
                fromClient = toClient.flatMap { c.client.receive($0) }
            }
            #expect(c.client.isConnected)
            let keys = c.client.exportedKeys()!
            c.sender = LibSRTPSession(profile: keys.profile, masterKey: keys.clientKey, masterSalt: keys.clientSalt, direction: .outbound)
            phase = "media"
            for seq in UInt16(1)..<5 {
                h.port.deliver(c.srtpFrame(seq: seq, payload: [1, 2, 3]), queue: 0)
                burst()
            }
            _ = h.transmitted()
        }
        #expect(allocations == 0)
        #expect(h.workers[0].worker.counters[.toBackend] == 2 + 3 * 4)
    }
}
