import Testing
import VoxMedia
import VoxTestKit
import VoxWire

/// Feeds `sequences` with 20 ms Opus timestamps (960 per packet at 48 kHz) arriving with a
/// constant transit; returns how many were valid.
@discardableResult
func feed(_ stats: inout RTPReceiveStatistics, _ sequences: some Sequence<UInt16>) -> Int {
    var valid = 0
    for seq in sequences {
        let timestamp = UInt32(seq) &* 960
        if stats.update(sequenceNumber: seq, timestamp: timestamp, arrival: timestamp &+ 5000) { valid += 1 }
    }
    return valid
}

/// RFC 3550 A.8's integer jitter, written out again here as the test's oracle.
struct ReferenceJitter {
    var scaled: UInt32 = 0
    var transit: UInt32? = nil
    mutating func add(timestamp: UInt32, arrival: UInt32) {
        let t = arrival &- timestamp
        if let previous = transit {
            var d = Int64(Int32(bitPattern: t &- previous))
            if d < 0 { d = -d }
            scaled = UInt32(truncatingIfNeeded: Int64(scaled) + d - Int64((scaled + 8) >> 4))
        }
        transit = t
    }
}

@Suite struct RTPReceiveStatisticsTests {
    @Test func inOrderStreamAfterProbation() {
        var stats = RTPReceiveStatistics()
        #expect(!stats.isStarted && !stats.isValid)
        // MIN_SEQUENTIAL = 2: the first packet is probation, the second makes the source valid.
        let first = stats.update(sequenceNumber: 1000, timestamp: 0, arrival: 0)
        #expect(!first)
        #expect(stats.isStarted && !stats.isValid && stats.probation == 1)
        let second = stats.update(sequenceNumber: 1001, timestamp: 960, arrival: 960)
        #expect(second)
        #expect(stats.isValid)
        #expect(feed(&stats, 1002...1099) == 98)
        #expect(stats.baseSequence == 1001)
        #expect(stats.received == 99)
        #expect(stats.expected == 99)
        #expect(stats.cumulativeLost == 0)
        #expect(stats.extendedHighestSequence == 1099)
        #expect(stats.takeFractionLost() == 0)
        #expect(stats.jitter == 0)
    }

    @Test func lossAndFractionLostPerInterval() {
        var stats = RTPReceiveStatistics()
        // Lose every seq ending in 5 after the first two.
        feed(&stats, (1000...1199).filter { $0 < 1002 || $0 % 10 != 5 })
        let expected: Int64 = 1199 - 1001 + 1
        let received = Int64((1001...1199).filter { $0 < 1002 || $0 % 10 != 5 }.count)
        #expect(stats.expected == expected)
        #expect(Int64(stats.received) == received)
        #expect(stats.cumulativeLost == expected - received)
        #expect(stats.takeFractionLost() == UInt8(((expected - received) << 8) / expected))
        // The next interval counts only its own packets: 3 of 100 lost.
        feed(&stats, (1200...1299).filter { ![1210, 1250, 1251].contains($0) })
        #expect(stats.takeFractionLost() == UInt8((3 << 8) / 100))
        #expect(stats.cumulativeLost == expected - received + 3)
        // Nothing new since: no packets expected, fraction 0.
        #expect(stats.takeFractionLost() == 0)
    }

    @Test func reorderedPacketsAreNotLoss() {
        var stats = RTPReceiveStatistics()
        #expect(feed(&stats, [1, 2, 3, 5, 4, 6, 7]) == 6)
        #expect(stats.maxSequence == 7)
        #expect(stats.received == 6 && stats.expected == 6 && stats.cumulativeLost == 0)
        // A packet 99 behind is still "misordered" and counted...
        feed(&stats, 8...200)
        #expect(feed(&stats, [101]) == 1)
        #expect(stats.maxSequence == 200)
        // ...while one MAX_MISORDER back looks like a jump and is held as a possible restart.
        #expect(feed(&stats, [100]) == 0)
        #expect(stats.maxSequence == 200)
    }

    @Test func duplicatesMakeLossNegative() {
        var stats = RTPReceiveStatistics()
        #expect(feed(&stats, [1, 2, 3, 3, 3, 4]) == 5)
        #expect(stats.expected == 3)
        #expect(stats.cumulativeLost == -2)
        #expect(stats.takeFractionLost() == 0)
        let block = stats.makeReportBlock(ssrc: SSRC(7), now: 0)
        #expect(block.cumulativeLost == -2 && block.fractionLost == 0)
    }

    @Test func sequenceWrapCountsCycles() {
        var stats = RTPReceiveStatistics()
        let sequences = (0..<30).map { UInt16(truncatingIfNeeded: 65520 + $0) }
        feed(&stats, sequences)
        #expect(stats.cycles == 65536)
        #expect(stats.maxSequence == 13)
        #expect(stats.extendedHighestSequence == 65536 + 13)
        #expect(stats.baseSequence == 65521)
        #expect(stats.expected == 29 && stats.received == 29 && stats.cumulativeLost == 0)
        // A second wrap, with loss across it.
        feed(&stats, (0..<65536).map { UInt16(truncatingIfNeeded: 14 + $0) }.filter { $0 % 1000 != 0 })
        #expect(stats.cycles == 2 * 65536)
        #expect(stats.extendedHighestSequence == 2 * 65536 + 13)
        #expect(stats.cumulativeLost == 66)  // 0, 1000, ..., 65000
    }

    @Test func probationRestartsOnAGapAndSpansTheWrap() {
        var stats = RTPReceiveStatistics()
        #expect(feed(&stats, [10, 20]) == 0)
        #expect(stats.probation == 1)
        #expect(feed(&stats, [21]) == 1)
        #expect(stats.baseSequence == 21 && stats.received == 1)
        // RFC 3550 A.1 compares `max_seq + 1` in int, so 65535 → 0 would restart probation
        // there; the intent, and this type, count it as in sequence.
        var wrapping = RTPReceiveStatistics()
        #expect(feed(&wrapping, [65535, 0]) == 1)
        #expect(wrapping.isValid && wrapping.baseSequence == 0 && wrapping.cycles == 0)
    }

    @Test func aBigJumpIsARestartOnlyWhenTheNextPacketFollowsIt() {
        var stats = RTPReceiveStatistics()
        feed(&stats, 100...199)
        #expect(stats.received == 99)
        // A lone far jump is held back and changes nothing.
        #expect(feed(&stats, [40000]) == 0)
        #expect(stats.received == 99 && stats.maxSequence == 199)
        #expect(feed(&stats, 200...209) == 10)
        #expect(stats.received == 109 && stats.cumulativeLost == 0)
        // A jump followed by its successor: the sender restarted; count from there.
        #expect(feed(&stats, [50000, 50001, 50002]) == 2)
        #expect(stats.baseSequence == 50001 && stats.maxSequence == 50002)
        #expect(stats.received == 2 && stats.cycles == 0 && stats.cumulativeLost == 0)
        // A forward gap under MAX_DROPOUT is loss, not a jump.
        #expect(feed(&stats, [50002 + 2999]) == 1)
        #expect(stats.cumulativeLost == 2998)
    }

    @Test func constantTransitMeansNoJitter() {
        var stats = RTPReceiveStatistics()
        // Arrival on a clock near its wrap, far from the timestamps: only differences count.
        for i in 0..<500 {
            let timestamp = UInt32(truncatingIfNeeded: 0xFFFF_0000 + i * 960)
            _ = stats.update(sequenceNumber: UInt16(i), timestamp: timestamp, arrival: timestamp &+ 0x8000_1234)
        }
        #expect(stats.jitter == 0 && stats.scaledJitter == 0)
    }

    @Test func alternatingTransitConvergesTowardItsStep() {
        let x: UInt32 = 320
        var stats = RTPReceiveStatistics()
        var reference = ReferenceJitter()
        var floating = 0.0
        for i in 0..<400 {
            let timestamp = UInt32(i) * 960
            // Transit alternates between T and T + X: every |D| is X.
            let arrival = timestamp + 7000 + (i % 2 == 0 ? 0 : x)
            let valid = stats.update(sequenceNumber: UInt16(i), timestamp: timestamp, arrival: arrival)
            // The first packet is on probation and does not count; the second sets the transit.
            #expect(valid == (i > 0))
            if valid {
                if reference.transit != nil { floating += (Double(x) - floating) / 16 }
                reference.add(timestamp: timestamp, arrival: arrival)
            }
            #expect(stats.scaledJitter == reference.scaled)
        }
        // The integer form's fixed point: (J·16 + 8) >> 4 == X, so J is X or X − 1.
        #expect(stats.jitter == x || stats.jitter == x - 1)
        #expect(abs(Double(stats.jitter) - floating) <= 1.5)
        // After the first step J = X/16, as J += (|D| − J)/16 from 0 gives.
        var two = RTPReceiveStatistics()
        _ = two.update(sequenceNumber: 0, timestamp: 0, arrival: 0)
        _ = two.update(sequenceNumber: 1, timestamp: 960, arrival: 960)
        _ = two.update(sequenceNumber: 2, timestamp: 1920, arrival: 1920 + x)
        #expect(two.scaledJitter == x && two.jitter == x / 16)
    }

    @Test func seededTransitMatchesTheFormula() {
        var rng = SeededRandom(seed: 0x7177_E12)
        var stats = RTPReceiveStatistics()
        var reference = ReferenceJitter()
        var floating = 0.0
        var previousTransit: Double? = nil
        for i in 0..<5000 {
            let timestamp = UInt32(i) &* 960
            let transit = 20_000 + UInt32.random(in: 0...2400, using: &rng)
            let arrival = timestamp &+ transit
            if stats.update(sequenceNumber: UInt16(i), timestamp: timestamp, arrival: arrival) {
                reference.add(timestamp: timestamp, arrival: arrival)
                if let previous = previousTransit { floating += (abs(Double(transit) - previous) - floating) / 16 }
                previousTransit = Double(transit)
            }
            #expect(stats.scaledJitter == reference.scaled)
        }
        #expect(abs(Double(stats.jitter) - floating) <= 1.5)
        // Uniform transit over [0, 2400]: E|D| = 800.
        #expect(abs(Double(stats.jitter) - 800) < 400)
    }

    @Test func reportBlockCarriesTheRFCFields() {
        var stats = RTPReceiveStatistics()
        feed(&stats, (1...500).filter { $0 % 50 != 25 })
        // Before any SR: LSR and DLSR are 0.
        var block = stats.makeReportBlock(ssrc: SSRC(0xABCD), now: 0x0002_0000)
        #expect(block.ssrc == SSRC(0xABCD))
        #expect(block.lastSR == 0 && block.delaySinceLastSR == 0)
        #expect(block.cumulativeLost == 10)
        #expect(block.fractionLost == UInt8((10 << 8) / 499))
        #expect(block.extendedHighestSequence == 500)
        #expect(block.jitter == 0)
        // An SR at 1.0 s (compact NTP), a report at 1.5 s.
        stats.senderReportReceived(ntpTimestamp: 0xE8A1_B2C3_4000_0000, at: 0x0001_0000)
        feed(&stats, 501...600)
        block = stats.makeReportBlock(ssrc: SSRC(0xABCD), now: 0x0001_8000)
        #expect(block.lastSR == 0xB2C3_4000)
        #expect(block.delaySinceLastSR == 0x8000)
        #expect(block.fractionLost == 0)
        #expect(block.extendedHighestSequence == 600)
        // Through the wire and back.
        var buffer = [UInt8](repeating: 0, count: 64)
        let parsed = buffer.withUnsafeMutableBytes { raw -> [RTCPReportBlock] in
            var writer = RTCPWriter(raw.baseAddress!, capacity: raw.count)
            guard writer.appendReceiverReport(ssrc: SSRC(1), reportBlocks: [block]) else { return [] }
            var compound = RTCPCompound(raw.baseAddress!, length: writer.length)
            guard let packet = compound.next(), case .receiverReport(let rr) = packet.kind else { return [] }
            return Array(rr.reportBlocks)
        }
        #expect(parsed == [block])
    }

    @Test func cumulativeLossIsClampedTo24Bits() {
        var stats = RTPReceiveStatistics()
        // Steps of 2999 (under MAX_DROPOUT) lose 2998 packets each: past 0x7FFFFF in ~2800 steps.
        var seq: UInt16 = 0
        feed(&stats, [0, 1])
        seq = 1
        for _ in 0..<3000 {
            seq &+= 2999
            feed(&stats, [seq])
        }
        #expect(stats.cumulativeLost == 3000 * 2998)
        #expect(stats.extendedHighestSequence == 1 + 3000 * 2999)
        #expect(stats.cycles == (1 + 3000 * 2999) / 65536 * 65536)
        let block = stats.makeReportBlock(ssrc: SSRC(1), now: 0)
        #expect(block.cumulativeLost == 0x7F_FFFF)
        #expect(block.fractionLost == UInt8((Int64(3000 * 2998) << 8) / Int64(3000 * 2999 + 1)))
    }
}
