import Testing
import VoxEngine
import VoxMedia
import VoxTestKit
import VoxWire

/// Static-key sessions multiplexed by SSRC on one client 5-tuple (issue 14, defect 4): SIP
/// trunks and relays send many streams from one address:port, each its own SSRC and key.
/// The worker finds each packet's session by (5-tuple, SSRC), read before unprotect; an SSRC
/// none of them claims is dropped and counted; the 5-tuple stays while any of them lives.
@Suite struct SharedFlowTests {
    static let trunkPort: UInt16 = 5060

    /// The trunk's 5-tuple as the edge sees it.
    static var trunk: FlowKey {
        FlowKey(
            remoteAddress: IPAddress("198.18.0.2")!, remotePort: UDPPort(trunkPort), localAddress: mediaAddress,
            localPort: mediaPort)
    }

    /// Session `index` on the trunk, naming client SSRC `0xC000_0000 + index`, its own keys.
    static func start(_ h: Harness, index: Int, ssrc: UInt32? = nil, rng: inout SeededRandom) throws -> Call {
        let clientSSRC = ssrc ?? 0xC000_0000 + UInt32(index)
        return try Call.make(
            profile: .aes128CmHmacSha1_80, clientPort: trunkPort, password: "pwd\(index)abcdefghijklmnopqrst",
            ufragRandom: "R\(index)x9", edgeSSRC: 0xE000_0000 + UInt32(index), clientSSRC: clientSSRC, rng: &rng,
            place: { try h.control.create(on: 0, $0) }
        ) { c, client in
            c.backend = 0
            c.flow = FlowKey(
                remoteAddress: client.address, remotePort: client.port, localAddress: mediaAddress, localPort: mediaPort)
            c.clientMAC = clientMAC
            c.clientSSRC = clientSSRC
        }
    }

    /// The payload each packet carries: its session and sequence number.
    static func payload(_ index: Int, _ seq: UInt16) -> [UInt8] {
        [UInt8(index >> 8), UInt8(index & 0xFF), UInt8(seq >> 8), UInt8(seq & 0xFF), 0x5A]
    }

    /// Which session each frame the edge sent to a backend came from: its backend-leg port
    /// names the slot, its payload the session and sequence it carried.
    static func forwarded(_ h: Harness) -> [(slot: Int, payload: [UInt8])] {
        h.transmitted().compactMap { frame in
            guard let (parsed, rtp) = parseFrame(frame), parsed.destination == backendList[0].address, rtp.count >= 12
            else { return nil }
            return (Int(parsed.sourcePort.rawValue - backendPortBase), Array(rtp[12...]))
        }
    }

    /// 1,000 sessions on one 5-tuple, interleaved as a trunk sends them: each packet is
    /// unprotected with its own session's key and leaves on its own session's backend leg.
    @Test func aThousandSessionsOnOneFiveTupleEachForwardWithTheirOwnKeys() throws {
        let h = try Harness(sessions: 1024, frames: 4096)
        var rng = SeededRandom(seed: 1000)
        var calls: [Call] = []
        for i in 0..<1000 { calls.append(try Self.start(h, index: i, rng: &rng)) }
        h.run()
        #expect(h.workers[0].worker.slot(forClient: Self.trunk) == calls[0].slot)
        var order = Array(0..<1000)
        var seen = 0
        for seq in UInt16(1)...2 {
            order.shuffle(using: &rng)
            for batch in stride(from: 0, to: order.count, by: 100) {
                for i in order[batch..<(batch + 100)] {
                    #expect(h.port.deliver(calls[i].srtpFrame(seq: seq, payload: Self.payload(i, seq)), queue: 0))
                }
                h.run()
                for (slot, payload) in Self.forwarded(h) {
                    let i = Int(payload[0]) << 8 | Int(payload[1])
                    #expect(i < calls.count && Int(calls[i].slot) == slot, "session \(i)'s audio left on slot \(slot)")
                    #expect(payload == Self.payload(i, seq))
                    seen += 1
                }
            }
        }
        let c = h.workers[0].worker.counters
        #expect(seen == 2000 && c[.toBackend] == 2000)
        #expect(c[.dropped] == 0)
        for call in calls {
            #expect(h.store.packetCounts(slot: Int(call.slot)).fromClient == 2)
            #expect(h.workers[0].worker.slot(forClient: Self.trunk, ssrc: call.clientSSRC) == call.slot)
            // RTCP feedback naming the client's SSRC finds its session too.
            #expect(h.workers[0].worker.slot(forClientSSRC: call.clientSSRC) == call.slot)
        }
    }

    /// A packet whose SSRC no session on the 5-tuple claims is dropped before any key is
    /// tried, and counted `unknownSSRC`; SRTCP is found by its sender SSRC the same way; a
    /// packet naming one session's SSRC under another's key fails that session's check.
    @Test func anSSRCNoSessionClaimsIsDroppedAndCounted() throws {
        let h = try Harness()
        var rng = SeededRandom(seed: 4)
        let calls = try (0..<3).map { try Self.start(h, index: $0, rng: &rng) }
        h.run()
        // SSRC 0xC0000009: on the trunk, claimed by none.
        let stranger = try Self.start(try Harness(), index: 9, rng: &rng)
        h.port.deliver(stranger.srtpFrame(seq: 1, payload: [1]), queue: 0)
        // Session 1's SSRC in the clear, session 0's key: found, refused by session 1's key.
        var forged = calls[0].srtpFrame(seq: 1, payload: [2])
        let ssrcAt = forged.count - (12 + 1 + 10) + 8  // RTP header, payload, 80-bit tag
        forged.replaceSubrange(ssrcAt..<ssrcAt + 4, with: [0xC0, 0, 0, 1])
        h.port.deliver(forged, queue: 0)
        // Too short to name an SSRC.
        h.port.deliver(calls[0].client.frame(to: mediaAddress, mediaPort, mac: edgeMAC, payload: [0x80, 0, 0, 1]), queue: 0)
        // SRTCP: a receiver report from session 2 (found), and one from the stranger (not).
        for (sender, call) in [(calls[2].clientSSRC, calls[2]), (stranger.clientSSRC, stranger)] {
            var rtcp: [UInt8] = [0x80, 201, 0, 1, UInt8(sender >> 24), UInt8(sender >> 16 & 0xFF), UInt8(sender >> 8 & 0xFF),
                UInt8(sender & 0xFF)] + [UInt8](repeating: 0, count: 40)
            var n = 8
            try #require(rtcp.withUnsafeMutableBytes { call.clientSender.protectRTCP($0.baseAddress!, length: &n) } == 0)
            h.port.deliver(calls[0].client.frame(to: mediaAddress, mediaPort, mac: edgeMAC, payload: Array(rtcp[0..<n])), queue: 0)
        }
        h.run()
        #expect(Self.forwarded(h).isEmpty)
        let c = h.workers[0].worker.counters
        #expect(c[.unknownSSRC] == 2, "the stranger's RTP and RTCP")
        #expect(c[.srtpAuthentication] == 1 && c[.malformedRTP] == 1 && c[.consumed] == 1)
        #expect(c[.unknownFlow] == 0)
        // The sessions are untouched: each still forwards.
        for (i, call) in calls.enumerated() { h.port.deliver(call.srtpFrame(seq: 2, payload: Self.payload(i, 2)), queue: 0) }
        h.run()
        #expect(Self.forwarded(h).map(\.slot).sorted() == calls.map { Int($0.slot) }.sorted())
    }

    /// Dropping sessions one by one — the first (the one the 5-tuple's entry names) first —
    /// keeps the others forwarding on the 5-tuple; the last one's drop removes it.
    @Test func droppingOneKeepsTheOthersAndTheLastRemovesTheFiveTuple() throws {
        let h = try Harness()
        var rng = SeededRandom(seed: 7)
        var calls = try (0..<4).map { try Self.start(h, index: $0, rng: &rng) }
        // A session on its own 5-tuple beside them, unaffected by all of it.
        let alone = try Call.start(h, profile: .aeadAes128Gcm, index: 40, rng: &rng)
        h.run()
        var seq: UInt16 = 1
        func everyoneForwards() {
            seq += 1
            for (i, call) in calls.enumerated() { h.port.deliver(call.srtpFrame(seq: seq, payload: Self.payload(i, seq)), queue: 0) }
            h.port.deliver(alone.srtpFrame(seq: seq, payload: [9]), queue: 0)
            h.run()
            let slots = Self.forwarded(h).map(\.slot).sorted()
            #expect(slots == (calls.map { Int($0.slot) } + [Int(alone.slot)]).sorted(), "after \(seq)")
        }
        everyoneForwards()
        for victim in [0, 2, 0] {
            let gone = calls.remove(at: victim)
            try h.control.drop(gone.slot)
            h.run()
            #expect(h.workers[0].worker.slot(forClient: Self.trunk, ssrc: gone.clientSSRC) == nil)
            let named = h.workers[0].worker.slot(forClient: Self.trunk)
            #expect(named != nil && calls.contains { $0.slot == named }, "the entry names a live session")
            #expect(h.control.slots(ofClient: Self.trunk).sorted() == calls.map(\.slot).sorted())
            // The dropped session's SSRC is now one nobody claims.
            h.port.deliver(gone.srtpFrame(seq: 100, payload: [1]), queue: 0)
            everyoneForwards()
        }
        #expect(h.workers[0].worker.counters[.unknownSSRC] == 3)
        let last = calls.removeFirst()
        try h.control.drop(last.slot)
        h.run()
        #expect(h.workers[0].worker.slot(forClient: Self.trunk) == nil)
        #expect(h.control.slot(ofClient: Self.trunk) == nil)
        h.port.deliver(last.srtpFrame(seq: 100, payload: [1]), queue: 0)
        h.run()
        #expect(h.workers[0].worker.counters[.unknownFlow] == 1)
        everyoneForwards()
        // And the 5-tuple can be a trunk again.
        let again = try Self.start(h, index: 50, rng: &rng)
        h.run()
        h.port.deliver(again.srtpFrame(seq: 1, payload: [3]), queue: 0)
        h.run()
        #expect(Self.forwarded(h).map(\.slot) == [Int(again.slot)])
    }

    /// A session that names its SSRC, alone on its 5-tuple, takes only that SSRC; two trunks
    /// may use the same SSRCs (they are told apart by 5-tuple first).
    @Test func anSSRCIsClaimedPerFiveTuple() throws {
        let h = try Harness()
        var rng = SeededRandom(seed: 8)
        let a = try Self.start(h, index: 1, rng: &rng)
        let b = try Call.make(
            profile: .aes128CmHmacSha1_80, clientPort: 5070, password: "pwd2abcdefghijklmnopqrst", ufragRandom: "R2x9",
            edgeSSRC: 0xE000_0002, clientSSRC: a.clientSSRC, rng: &rng, place: { try h.control.create(on: 0, $0) }
        ) { c, client in
            c.backend = 0
            c.flow = FlowKey(
                remoteAddress: client.address, remotePort: client.port, localAddress: mediaAddress, localPort: mediaPort)
            c.clientMAC = clientMAC
            c.clientSSRC = a.clientSSRC
        }
        h.run()
        h.port.deliver(a.srtpFrame(seq: 1, payload: [1]), queue: 0)
        h.port.deliver(b.srtpFrame(seq: 1, payload: [2]), queue: 0)
        h.run()
        #expect(Self.forwarded(h).map(\.slot).sorted() == [Int(a.slot), Int(b.slot)].sorted())
        let other = try Self.start(try Harness(), index: 3, rng: &rng)
        h.port.deliver(other.srtpFrame(seq: 1, payload: [1]), queue: 0)
        h.run()
        #expect(h.workers[0].worker.counters[.unknownSSRC] == 1)
    }
}
