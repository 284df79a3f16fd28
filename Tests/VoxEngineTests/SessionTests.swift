import CVoxAllocCounter
import Testing
import VoxEngine
import VoxMedia
import VoxRouting
import VoxTestKit
import VoxWire

@Suite struct SessionBehaviourTests {
    /// A backend change mid-stream: the client leg's sequence numbers and timestamps run on
    /// without a jump back, and libsrtp2 accepts every packet after it.
    @Test(arguments: [SRTPProfile.aes128CmHmacSha1_80, .aeadAes128Gcm])
    func backendChangeKeepsTheClientLegMonotonic(profile: SRTPProfile) throws {
        let h = try Harness()
        var rng = SeededRandom(seed: 77)
        let call = try Call.start(h, profile: profile, index: 3, backend: 0, rng: &rng)
        h.run()
        var seqs: [UInt16] = []
        var stamps: [UInt32] = []
        func pump(backend: Int, ssrc: UInt32, seq: UInt16, ts: UInt32) {
            h.port.deliver(call.backendFrame(from: backend, ssrc: ssrc, seq: seq, timestamp: ts, payload: [1, 2, 3, 4]), queue: 0)
            h.run()
            for frame in h.transmitted() {
                guard let (_, srtp) = parseFrame(frame), let rtp = call.receive(srtp) else {
                    Issue.record("client refused a packet")
                    continue
                }
                #expect(be32(rtp, 8) == call.edgeSSRC)
                seqs.append(be16(rtp, 2))
                stamps.append(be32(rtp, 4))
            }
        }
        for i in 0..<50 { pump(backend: 0, ssrc: 0xAAAA, seq: UInt16(9_000 + i), ts: 5_000_000 + UInt32(i) * 960) }
        var change = WorkerCommand(kind: .changeBackend, slot: call.slot)
        change.backend = 1
        try h.control.send(change)
        h.run()
        // The old backend is no longer accepted for this session.
        h.port.deliver(call.backendFrame(from: 0, ssrc: 0xAAAA, seq: 9_050, timestamp: 0, payload: [9]), queue: 0)
        h.run()
        #expect(h.transmitted().isEmpty)
        #expect(h.workers[0].worker.counters[.wrongSource] == 1)
        // The new backend's own numbering starts low; the client sees the edge's, going on.
        for i in 0..<50 { pump(backend: 1, ssrc: 0xBBBB, seq: UInt16(3 + i), ts: 17 + UInt32(i) * 960) }
        #expect(seqs.count == 100)
        for i in 1..<seqs.count {
            #expect(seqs[i] == seqs[i - 1] &+ 1, "sequence step at \(i)")
            #expect(Int32(bitPattern: stamps[i] &- stamps[i - 1]) > 0, "timestamp step at \(i)")
        }
        #expect(stamps[50] == stamps[49] &+ 960)
    }

    /// ICE-lite over the pipeline: a session created without a client address learns it
    /// from a valid check, answers in place, and then accepts the client's SRTP.
    @Test func stunCheckBindsTheClientAndIsAnswered() throws {
        let h = try Harness()
        var rng = SeededRandom(seed: 5)
        let call = try Call.start(h, profile: .aeadAes128Gcm, index: 1, bindFlow: false, rng: &rng)
        h.run()
        // SRTP before any check: unknown flow.
        h.port.deliver(call.srtpFrame(seq: 1, payload: [1]), queue: 0)
        h.run()
        #expect(h.workers[0].worker.counters[.unknownFlow] == 1)
        let check = stunCheck(call, password: call.password)
        h.port.deliver(call.client.frame(to: mediaAddress, mediaPort, mac: edgeMAC, payload: check), queue: 0)
        h.run()
        let answers = h.transmitted()
        #expect(answers.count == 1)
        if let answer = answers.first, let (parsed, payload) = parseFrame(answer) {
            #expect(parsed.destination == call.client.address && parsed.destinationPort == call.client.port)
            var m = STUNMessage()
            #expect(payload.withUnsafeBytes { STUNMessage.parse($0.baseAddress!, length: $0.count, into: &m) } == .ok)
            #expect(m.type == STUN.bindingSuccess)
            let auth = STUNAuthenticator(password: call.password)
            payload.withUnsafeBytes {
                #expect(auth.verifyIntegrity($0.baseAddress!, m))
                #expect(m.xorMappedAddress($0.baseAddress!)?.port == call.client.port)
            }
        }
        // A check with the wrong password is refused.
        h.port.deliver(call.client.frame(to: mediaAddress, mediaPort, mac: edgeMAC, payload: stunCheck(call, password: "nope")), queue: 0)
        h.run()
        #expect(h.transmitted().isEmpty)
        #expect(h.workers[0].worker.counters[.stunRejected] == 1)
        // Now the client's SRTP flows.
        h.port.deliver(call.srtpFrame(seq: 2, payload: [7, 7, 7]), queue: 0)
        h.run()
        #expect(h.transmitted().count == 1)
        #expect(h.workers[0].worker.counters[.toBackend] == 1)
    }

    /// Frames reaching a worker that does not own their session are handed over (the UMEM
    /// is shared: only the descriptor moves) and forwarded by the owner.
    @Test func wrongWorkerHandsOff() throws {
        let h = try Harness(workers: 2)
        var rng = SeededRandom(seed: 9)
        let call = try Call.start(h, on: 0, profile: .aes128CmHmacSha1_80, index: 2, bindFlow: false, rng: &rng)
        h.run()
        // The check arrives on queue 1 (as after a NAT rebinding hashed elsewhere).
        h.port.deliver(call.client.frame(to: mediaAddress, mediaPort, mac: edgeMAC, payload: stunCheck(call, password: call.password)), queue: 1)
        h.run()
        #expect(h.transmitted(queue: 0).count == 1)  // answered by the owner, on its queue
        #expect(h.transmitted(queue: 1).isEmpty)
        // Backend audio arriving on queue 1 reaches the client through worker 0.
        for i in 0..<10 {
            h.port.deliver(call.backendFrame(from: 0, ssrc: 1, seq: UInt16(i), timestamp: UInt32(i) * 960, payload: [UInt8(i)]), queue: 1)
        }
        h.run()
        let out = h.transmitted(queue: 0)
        #expect(out.count == 10)
        for frame in out {
            guard let (_, srtp) = parseFrame(frame) else { continue }
            #expect(call.receive(srtp) != nil)
        }
        #expect(h.workers[1].worker.counters[.handedOff] == 11)
        #expect(h.workers[0].worker.counters.handedIn == 11)
        #expect(h.workers[0].worker.counters[.toClient] == 10)
    }

    /// The client's loss and jitter are kept per session as RFC 3550 counts them.
    @Test func clientLossAndJitterAreCounted() throws {
        let h = try Harness()
        var rng = SeededRandom(seed: 12)
        let call = try Call.start(h, profile: .aeadAes128Gcm, index: 6, rng: &rng)
        h.run()
        for seq in UInt16(1)...40 {
            h.now += 20_000_000  // 20 ms apart, as the 960-tick timestamps say: no jitter
            if seq == 12 || seq == 15 { continue }  // lost on the way
            h.port.deliver(call.srtpFrame(seq: seq, payload: [1, 2]), queue: 0)
            h.run()
        }
        h.workers[0].worker.withSession(Int(call.slot)) { s in
            #expect(s.clientStats.cumulativeLost == 2)
            #expect(s.clientStats.extendedHighestSequence == 40)
            #expect(s.clientStats.jitter == 0)
        }
    }

    /// A full hand-off ring drops (counted) instead of blocking the worker or losing track of
    /// the frame: the frame goes back to the pool.
    @Test func fullHandoffRingDropsAndCounts() throws {
        let h = try Harness(workers: 2)
        var rng = SeededRandom(seed: 21)
        let call = try Call.start(h, on: 0, profile: .aes128CmHmacSha1_80, index: 4, rng: &rng)
        h.run()
        // 1,100 backend frames on queue 1 while worker 0 does not run: the ring holds 1,024.
        var delivered = 0
        for i in 0..<1100 {
            if h.port.deliver(call.backendFrame(from: 0, ssrc: 1, seq: UInt16(i), timestamp: 0, payload: [1]), queue: 1) {
                delivered += 1
            }
            if i % 64 == 63 { _ = h.workers[1].worker.runOnce(now: h.now) }
        }
        _ = h.workers[1].worker.runOnce(now: h.now)
        let w1 = h.workers[1].worker.counters
        #expect(w1[.handedOff] + w1[.handoffFull] == UInt64(delivered))
        #expect(w1[.handoffFull] > 0)
        h.run()
        #expect(h.workers[0].worker.counters[.toClient] == w1[.handedOff])
        // The frames went home: every frame of worker 1's share is back in its pool or fill ring.
        _ = h.transmitted(queue: 0)
        h.run()
        let share = h.port.frameCount / 2
        #expect(h.workers[1].worker.freeFrameCount + Int(h.port.fillLevel(queue: 1)) == share)
        #expect(h.workers[0].worker.freeFrameCount + Int(h.port.fillLevel(queue: 0)) == share)
    }

    @Test func badInputIsCountedNeverForwarded() throws {
        let h = try Harness()
        var rng = SeededRandom(seed: 11)
        let call = try Call.start(h, profile: .aes128CmHmacSha1_80, index: 0, rng: &rng)
        h.run()
        var forged = call.srtpFrame(seq: 5, payload: [1, 2, 3])
        forged[forged.count - 1] ^= 1
        h.port.deliver(forged, queue: 0)
        let good = call.srtpFrame(seq: 6, payload: [1, 2, 3])
        h.port.deliver(good, queue: 0)
        h.port.deliver(good, queue: 0)  // replay
        h.port.deliver([0x01, 0x02, 0x03], queue: 0)  // runt
        h.port.deliver(Endpoint(mac: clientMAC, address: IPAddress("198.18.0.9")!, port: UDPPort(1)).frame(
            to: IPAddress("198.18.0.77")!, UDPPort(9), mac: edgeMAC, payload: [0x80, 0]), queue: 0)  // not ours
        h.port.deliver(call.client.frame(to: mediaAddress, mediaPort, mac: edgeMAC, payload: [0x42, 1, 2]), queue: 0)
        // A backend packet for a slot with no session.
        h.port.deliver(Endpoint(mac: backendMACs[0], address: backendList[0].address, port: backendList[0].port).frame(
            to: backendLegAddress, UDPPort(backendPortBase + 40), mac: edgeMAC, payload: rtpPacket(ssrc: 1, seq: 1, timestamp: 1, payload: [])), queue: 0)
        h.run()
        let c = h.workers[0].worker.counters
        #expect(h.transmitted().count == 1)
        #expect(c[.srtpAuthentication] == 1 && c[.srtpReplay] == 1 && c[.malformedFrame] == 1 && c[.notForUs] == 1)
        #expect(c[.unsupportedPayload] == 1 && c[.unknownSession] == 1)
        // Every frame came back to the pool: the fill ring refills completely.
        h.run()
        #expect(h.port.fillLevel(queue: 0) == 512)
    }

    /// Create and drop at capacity a million times: no slot leaks, no index entry lingers,
    /// and after start-up the worker — session table, commands, re-keying — allocates
    /// nothing (counted by the allocator linked into this test, around the worker's bursts;
    /// the control side is ordinary code).
    @Test func churnAtCapacityAllocatesNothing() throws {
        let sessions = 256
        let h = try Harness(sessions: sessions)
        var rng = SeededRandom(seed: 1)
        let key = randomKey(.aes128CmHmacSha1_80, &rng)
        let material = KeyMaterial(key: key.key, salt: key.salt)!
        let password = IcePassword("churnchurnchurnchurnchurn")!
        var live: [Int32] = []
        live.reserveCapacity(sessions)
        func create(_ i: Int) throws {
            let slot = try h.control.create(on: 0) { c in
                c.profile = .aes128CmHmacSha1_80
                c.clientKey = material
                c.edgeKey = material
                c.icePassword = password
                c.flow = FlowKey(
                    remoteAddress: IPAddress(ipv4: 0xC612_0000 | UInt32(i & 0xFFFF)), remotePort: UDPPort(UInt16(truncatingIfNeeded: i)),
                    localAddress: mediaAddress, localPort: mediaPort)
            }
            live.append(slot)
        }
        for i in 0..<sessions { try create(i) }
        #expect(throws: SessionControl.Failure.full) { try h.control.create(on: 0) { _ in } }
        h.run()
        // Warm-up: the first drop and re-key touch lazily initialised runtime metadata.
        try h.control.drop(live.removeFirst())
        h.run()
        try create(sessions)
        h.run()
        var allocations: UInt64 = 0
        func burst() {
            let before = vox_thread_alloc_count()
            _ = h.workers[0].worker.runOnce(now: h.now)
            allocations += vox_thread_alloc_count() - before
        }
        var i = sessions + 1
        let rounds = 1_000_000
        while i < sessions + 1 + rounds {
            // Drop a batch, let the worker apply it, create as many again.
            for _ in 0..<64 {
                let victim = live.removeFirst()
                try h.control.drop(victim)
            }
            burst()
            for _ in 0..<64 {
                try create(i)
                i += 1
            }
            burst()
        }
        #expect(allocations == 0)
        #expect(h.control.freeCount == 0)
        for slot in live { #expect(h.store.owner(of: Int(slot)) == 0) }
    }
}

/// A Binding request as a controlling ICE agent sends it: USERNAME "<our ufrag>:<its>",
/// PRIORITY, ICE-CONTROLLING, USE-CANDIDATE, MESSAGE-INTEGRITY, FINGERPRINT.
func stunCheck(_ call: Call, password: String, useCandidate: Bool = true, remoteUfrag: String = "cli9", id: UInt8 = 0)
    -> [UInt8]
{
    var buffer = [UInt8](repeating: 0, count: 200)
    let n = buffer.withUnsafeMutableBytes { b -> Int in
        var w = STUNWriter(b.baseAddress!, capacity: b.count, type: STUN.bindingRequest)!
        for i in 0..<12 { b[8 + i] = UInt8(i * 17) &+ id }
        let user = Array("\(call.ufrag.description):\(remoteUfrag)".utf8)
        _ = user.withUnsafeBytes { w.append(type: STUN.Attribute.username, value: $0) }
        _ = w.appendUInt32(type: STUN.Attribute.priority, 0x6E00_1EFF)
        _ = w.appendUInt64(type: STUN.Attribute.iceControlling, 0x1234_5678)
        if useCandidate { _ = w.reserve(type: STUN.Attribute.useCandidate, valueLength: 0) }
        _ = STUNAuthenticator(password: password).sign(&w)
        return w.length
    }
    return Array(buffer[0..<n])
}
