import Testing
import VoxTestKit
import VoxWire

/// Seeded truncations and bit flips of valid frames: each must be a clean rejection or
/// a parse whose offsets stay inside the frame. Never a crash or a trap.
@Suite struct FrameMutationTests {
    @Test func hundredThousandMutatedFrames() {
        let payload: [UInt8] = (0..<120).map { UInt8(truncatingIfNeeded: $0) }
        let seeds: [[UInt8]] = [
            makeFrame(payload: payload).0, makeFrame(payload: payload, ipv6: true).0,
            makeFrame(payload: payload, vlan: 3).0, makeFrame(payload: payload, ipv6: true, vlan: 9).0,
        ]
        var rng = SeededRandom(seed: 0x5EED_F4A3)
        var accepted = 0
        var rejected = 0
        for i in 0..<100_000 {
            var frame = seeds[i % seeds.count]
            let flips = Int.random(in: 1...4, using: &rng)
            for _ in 0..<flips {
                // Bias toward the headers, where the parser makes decisions.
                let limit = Int.random(in: 0..<4, using: &rng) == 0 ? frame.count : min(frame.count, 70)
                frame[Int.random(in: 0..<limit, using: &rng)] ^= UInt8(1) << UInt8.random(in: 0..<8, using: &rng)
            }
            if Bool.random(using: &rng) {
                frame.removeLast(Int.random(in: 0...frame.count, using: &rng))
            }
            let (verdict, parsed) = parse(frame)
            if verdict == .ok {
                accepted += 1
                #expect(parsed.payloadOffset >= parsed.l4Offset + 8)
                #expect(parsed.payloadOffset + parsed.payloadLength <= frame.count)
                frame.withUnsafeBytes { _ = UDPChecksum.verify($0.baseAddress!, parsed) }
            } else {
                rejected += 1
            }
        }
        #expect(accepted + rejected == 100_000)
        #expect(rejected > 0 && accepted > 0)
    }
}
