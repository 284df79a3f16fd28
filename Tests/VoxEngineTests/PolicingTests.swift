import Testing
import VoxEngine
import VoxMedia
import VoxTestKit
import VoxWire

/// Per-session policing of what clients send (issue 21, item 2), on injected time: a client
/// sending ten times its rate has its excess dropped before unprotect and counted, while a
/// neighbour on the same worker at its rate loses nothing.
@Suite struct PolicingTests {
    static let ms: UInt64 = 1_000_000

    /// What reached the backends, by the client SSRC the edge forwarded (RTP passes through).
    static func forwarded(_ frames: [[UInt8]]) -> [UInt32: Int] {
        var out: [UInt32: Int] = [:]
        for f in frames {
            guard let (p, payload) = parseFrame(f), p.destinationPort == UDPPort(5004), payload.count >= 12 else { continue }
            out[be32(payload, 8), default: 0] += 1
        }
        return out
    }

    @Test func aClientAtTenTimesItsRateIsHeldToItAndItsNeighbourLosesNothing() throws {
        // 50 packets a second (a 20 ms call) with a burst of 10.
        let h = try Harness(sessions: 8, policing: (rate: 50, burst: 10))
        var rng = SeededRandom(seed: 21)
        let flood = try Call.start(h, profile: .aes128CmHmacSha1_80, index: 1, rng: &rng)
        let calm = try Call.start(h, profile: .aes128CmHmacSha1_80, index: 2, rng: &rng)
        h.run()
        _ = h.transmitted()
        var counts: [UInt32: Int] = [:]
        // One second: the flood every 2 ms (500 packets), the neighbour every 20 ms (50).
        for tick in 0..<500 {
            h.now += 2 * Self.ms
            #expect(h.port.deliver(flood.srtpFrame(seq: UInt16(tick), payload: [1, 2, 3]), queue: 0))
            if tick % 10 == 0 {
                #expect(h.port.deliver(calm.srtpFrame(seq: UInt16(tick / 10), payload: [4, 5, 6]), queue: 0))
            }
            h.run()
            for (ssrc, n) in Self.forwarded(h.transmitted()) { counts[ssrc, default: 0] += n }
        }
        let policed = h.workers[0].worker.counters[.policed]
        // The burst of 10 at once, then one per 20 ms of the second that followed.
        let floodForwarded = counts[flood.clientSSRC] ?? 0
        #expect((59...61).contains(floodForwarded), "\(floodForwarded) forwarded")
        #expect(Int(policed) == 500 - floodForwarded)
        #expect(counts[calm.clientSSRC] == 50)
        #expect(h.workers[0].worker.counters[.srtpAuthentication] == 0)
    }

    @Test func aCallAtItsRateIsNeverPolicedAndPolicingOffPolicesNothing() throws {
        for policing in [(rate: 50, burst: 10), nil] as [(rate: Int, burst: Int)?] {
            let h = try Harness(sessions: 8, policing: policing)
            var rng = SeededRandom(seed: 22)
            let call = try Call.start(h, profile: .aes128CmHmacSha1_80, index: 3, rng: &rng)
            h.run()
            _ = h.transmitted()
            // 20 ms apart for 3 s, with a 180 ms stall and its 10 packets at once (a jitter
            // burst: the burst allowance).
            var seq: UInt16 = 0
            var sent = 0
            for step in 0..<150 {
                h.now += 20 * Self.ms
                if (60..<69).contains(step) { continue }
                let count = step == 69 ? 10 : 1
                for _ in 0..<count {
                    #expect(h.port.deliver(call.srtpFrame(seq: seq, payload: [7]), queue: 0))
                    seq &+= 1
                    sent += 1
                }
                h.run()
            }
            #expect(Self.forwarded(h.transmitted())[call.clientSSRC] == sent)
            #expect(h.workers[0].worker.counters[.policed] == 0)
        }
    }
}
