import CVoxAllocCounter
import Testing
import VoxMedia
import VoxTestKit

/// The pacing queue on an injected clock (ns): what leaves, and when.
@Suite struct PacingQueueTests {
    static let ms: UInt64 = 1_000_000
    /// An arbitrary start, far from 0, so nothing depends on the clock's origin.
    static let t0: UInt64 = 7_000_000_000

    struct Sent: Equatable, CustomStringConvertible {
        var time: UInt64
        var timestamp: UInt32
        var tag: UInt8
        var description: String { "(\((time - PacingQueueTests.t0) / PacingQueueTests.ms) ms ts \(timestamp) #\(tag))" }
    }

    /// A payload whose bytes name packet `tag`.
    static func payload(_ tag: UInt8, length: Int = 120) -> [UInt8] { [UInt8](repeating: tag, count: length) }

    /// Offers a packet; a `sendNow` is recorded as sent at `now`.
    static func offer(
        _ q: inout PacingQueue, tag: UInt8, timestamp: UInt32, now: UInt64, length: Int = 120, sent: inout [Sent]
    ) -> PacingDecision {
        let decision = payload(tag, length: length).withUnsafeBytes { q.offer($0, rtpTimestamp: timestamp, now: now) }
        if decision == .sendNow { sent.append(Sent(time: now, timestamp: timestamp, tag: tag)) }
        return decision
    }

    /// Runs the timer: at each deadline up to `end`, releases what is due, checking nothing is
    /// released before its time and every payload is intact.
    static func drive(_ q: inout PacingQueue, until end: UInt64, sent: inout [Sent]) {
        while let deadline = q.nextDeadline, deadline <= end {
            let early = q.due(now: deadline &- 1)
            #expect(early == nil, "released before its deadline")
            while let p = q.due(now: deadline) {
                let tag = p.payload.first ?? 0
                #expect(p.payload.allSatisfy { $0 == tag } && p.due <= deadline)
                sent.append(Sent(time: deadline, timestamp: p.rtpTimestamp, tag: tag))
            }
        }
    }

    @Test func aThreeSecondBurstLeavesAtExactlyOnePacketPer20ms() {
        var q = PacingQueue(PacingConfiguration(depth: 200))
        var sent: [Sent] = []
        for k in 0..<150 {
            let d = Self.offer(&q, tag: UInt8(k), timestamp: 1000 + UInt32(k) * 960, now: Self.t0, sent: &sent)
            #expect(d == (k == 0 ? .sendNow : .queued))
        }
        #expect(q.count == 149)
        Self.drive(&q, until: .max, sent: &sent)
        #expect(sent == (0..<150).map { Sent(time: Self.t0 + UInt64($0) * 20 * Self.ms, timestamp: 1000 + UInt32($0) * 960, tag: UInt8($0)) })
        #expect(q.isEmpty && q.nextDeadline == nil && q.droppedOldest == 0 && q.spurts == 1)
    }

    @Test(arguments: [10, 20, 40, 60])
    func framesOfAnyDurationArePacedByTheirTimestamps(frameMs: Int) {
        var q = PacingQueue(PacingConfiguration(depth: 400))
        var sent: [Sent] = []
        let ticks = UInt32(48 * frameMs)
        let count = 3000 / frameMs
        for k in 0..<count { _ = Self.offer(&q, tag: UInt8(truncatingIfNeeded: k), timestamp: UInt32(k) * ticks, now: Self.t0, sent: &sent) }
        Self.drive(&q, until: .max, sent: &sent)
        #expect(sent.count == count)
        for (k, s) in sent.enumerated() { #expect(s.time == Self.t0 + UInt64(k * frameMs) * Self.ms && s.timestamp == UInt32(k) * ticks) }
    }

    @Test func mixedFrameDurationsFollowTheTimestampsNotTheCount() {
        var q = PacingQueue(PacingConfiguration(depth: 50))
        var sent: [Sent] = []
        let durations = [20, 60, 10, 40, 20, 60, 60, 10]
        var ts: UInt32 = 0
        var expected: [UInt64] = []
        var at = 0
        for (k, d) in durations.enumerated() {
            _ = Self.offer(&q, tag: UInt8(k), timestamp: ts, now: Self.t0, sent: &sent)
            expected.append(Self.t0 + UInt64(at) * Self.ms)
            ts &+= UInt32(48 * d)
            at += d
        }
        Self.drive(&q, until: .max, sent: &sent)
        #expect(sent.map(\.time) == expected)
    }

    @Test func theTimestampWrapsAroundWithoutAHiccup() {
        var q = PacingQueue(PacingConfiguration(depth: 100))
        var sent: [Sent] = []
        let first = UInt32.max - 960 * 10 + 1
        for k in 0..<40 { _ = Self.offer(&q, tag: UInt8(k), timestamp: first &+ UInt32(k) * 960, now: Self.t0, sent: &sent) }
        Self.drive(&q, until: .max, sent: &sent)
        #expect(sent.map(\.time) == (0..<40).map { Self.t0 + UInt64($0) * 20 * Self.ms })
        #expect(sent[11].timestamp < sent[9].timestamp)  // it did wrap
        #expect(q.spurts == 1)
    }

    @Test func overflowDropsTheOldestAndCountsIt() {
        var q = PacingQueue(PacingConfiguration(depth: 100))
        var sent: [Sent] = []
        var drops = 0
        for k in 0..<150 {
            let d = Self.offer(&q, tag: UInt8(k), timestamp: UInt32(k) * 960, now: Self.t0, sent: &sent)
            if d == .droppedOldest { drops += 1 }
            #expect(d == (k == 0 ? .sendNow : k <= 100 ? .queued : .droppedOldest))
        }
        #expect(drops == 49 && q.droppedOldest == 49 && q.count == 100)
        Self.drive(&q, until: .max, sent: &sent)
        // Packet 0 went at once; 1 to 49 were dropped; 50 to 149 keep their own times.
        #expect(sent.map(\.tag) == [0] + (50..<150).map { UInt8($0) })
        #expect(sent.dropFirst().map(\.time) == (50..<150).map { Self.t0 + UInt64($0) * 20 * Self.ms })
    }

    @Test func aFlushMidQueueDropsTheRestAndWhatFollowsPlaysAtOnce() {
        var q = PacingQueue(PacingConfiguration(depth: 200))
        var sent: [Sent] = []
        for k in 0..<150 { _ = Self.offer(&q, tag: UInt8(k), timestamp: UInt32(k) * 960, now: Self.t0, sent: &sent) }
        let flushAt = Self.t0 + 1000 * Self.ms
        Self.drive(&q, until: flushAt, sent: &sent)
        #expect(sent.count == 51)  // 0 at once, 1 to 50 by 1 s
        let dropped = q.flush()
        let left = q.due(now: .max)
        #expect(dropped == 99 && left == nil)
        #expect(q.isEmpty && q.nextDeadline == nil)
        #expect(q.flushedPackets == 99 && q.flushes == 1)
        // The backend's next answer, sent ahead again, timestamps continuing past the old ones:
        // the first packet plays now, the rest every 20 ms from it.
        let resume = flushAt + 3 * Self.ms
        for k in 0..<20 {
            let d = Self.offer(&q, tag: UInt8(200 + k), timestamp: UInt32(150 + k) * 960, now: resume, sent: &sent)
            #expect(d == (k == 0 ? .sendNow : .queued))
        }
        Self.drive(&q, until: .max, sent: &sent)
        let after = sent.filter { $0.tag >= 200 }
        #expect(after.map(\.time) == (0..<20).map { resume + UInt64($0) * 20 * Self.ms })
        #expect(!sent.contains { (51..<150).contains(Int($0.tag)) })
        // A flush of an empty queue drops nothing.
        let none = q.flush()
        #expect(none == 0 && q.flushes == 2)
    }

    @Test func aBackendOnScheduleIsNeverHeldBeyondItsTime() {
        // Packets arriving about when they are due, with jitter: each leaves at its arrival or
        // its time, whichever is later, and never more than the jitter after its arrival.
        var q = PacingQueue(PacingConfiguration(depth: 100))
        var sent: [Sent] = []
        var rng = SeededRandom(seed: 16)
        var arrivals: [UInt64] = []
        for k in 0..<500 {
            let jitter = Int64(UInt64.random(in: 0...6_000_000, using: &rng)) - 1_000_000
            let arrival = UInt64(Int64(Self.t0) + Int64(k) * 20_000_000 + jitter)
            arrivals.append(arrival)
            Self.drive(&q, until: arrival, sent: &sent)
            _ = Self.offer(&q, tag: UInt8(truncatingIfNeeded: k), timestamp: UInt32(k) * 960, now: arrival, sent: &sent)
        }
        Self.drive(&q, until: .max, sent: &sent)
        #expect(sent.count == 500 && q.droppedOldest == 0)
        for (k, s) in sent.enumerated() {
            #expect(s.timestamp == UInt32(k) * 960)
            #expect(s.time >= arrivals[k] && s.time - arrivals[k] <= 6 * Self.ms)
        }
        #expect(q.spurts == 1)
    }

    @Test func aPauseWithoutAdvancingTimestampsStartsANewSpurt() {
        var q = PacingQueue(PacingConfiguration(depth: 100))
        var sent: [Sent] = []
        for k in 0..<10 { _ = Self.offer(&q, tag: UInt8(k), timestamp: UInt32(k) * 960, now: Self.t0, sent: &sent) }
        Self.drive(&q, until: .max, sent: &sent)
        // 5 s later the next answer arrives in a burst, timestamps continuing as if no time had
        // passed: without a new spurt it would all leave at once.
        let later = Self.t0 + 5000 * Self.ms
        for k in 10..<30 { _ = Self.offer(&q, tag: UInt8(k), timestamp: UInt32(k) * 960, now: later, sent: &sent) }
        Self.drive(&q, until: .max, sent: &sent)
        #expect(sent.dropFirst(10).map(\.time) == (0..<20).map { later + UInt64($0) * 20 * Self.ms })
        #expect(q.spurts == 2)
    }

    @Test func aTimestampJumpBehindQueuedAudioStartsRightAfterIt() {
        var q = PacingQueue(PacingConfiguration(depth: 100))
        var sent: [Sent] = []
        for k in 0..<10 { _ = Self.offer(&q, tag: UInt8(k), timestamp: 5000 + UInt32(k) * 960, now: Self.t0, sent: &sent) }
        // The next utterance, sent at once too, its timestamps 30 s on (or 30 s back): it plays
        // right after the queued one, not 30 s later, nor over it.
        for k in 10..<15 { _ = Self.offer(&q, tag: UInt8(k), timestamp: 5000 + 1_440_000 + UInt32(k) * 960, now: Self.t0, sent: &sent) }
        for k in 15..<20 { _ = Self.offer(&q, tag: UInt8(k), timestamp: 5000 &- 1_440_000 &+ UInt32(k) * 960, now: Self.t0, sent: &sent) }
        Self.drive(&q, until: .max, sent: &sent)
        #expect(sent.map(\.time) == (0..<20).map { Self.t0 + UInt64($0) * 20 * Self.ms })
        #expect(q.spurts == 3)
        // With nothing queued, a jump after a packet just sent still waits for it to finish.
        var r = PacingQueue(PacingConfiguration(depth: 10))
        var out: [Sent] = []
        let first = Self.offer(&r, tag: 1, timestamp: 0, now: Self.t0, sent: &out)
        let second = Self.offer(&r, tag: 2, timestamp: 480_000, now: Self.t0 + 1 * Self.ms, sent: &out)
        #expect(first == .sendNow && second == .queued)
        #expect(r.nextDeadline == Self.t0 + 20 * Self.ms)
    }

    @Test func aReorderedPacketLeavesInOfferOrderAndTheScheduleHolds() {
        var q = PacingQueue(PacingConfiguration(depth: 10))
        var sent: [Sent] = []
        for (tag, ts) in [(0, 0), (2, 1920), (1, 960), (3, 2880)] {
            _ = Self.offer(&q, tag: UInt8(tag), timestamp: UInt32(ts), now: Self.t0, sent: &sent)
        }
        Self.drive(&q, until: .max, sent: &sent)
        #expect(sent.map(\.tag) == [0, 2, 1, 3])
        #expect(sent.map(\.time) == [0, 40, 40, 60].map { Self.t0 + UInt64($0) * Self.ms })
    }

    @Test func payloadsLargerThanASlotAreRefusedOnlyWhenTheyWouldBeQueued() {
        var q = PacingQueue(PacingConfiguration(depth: 4, slotBytes: 200))
        var sent: [Sent] = []
        var decisions: [PacingDecision] = []
        decisions.append(Self.offer(&q, tag: 1, timestamp: 0, now: Self.t0, length: 1200, sent: &sent))
        decisions.append(Self.offer(&q, tag: 2, timestamp: 960, now: Self.t0, length: 200, sent: &sent))
        decisions.append(Self.offer(&q, tag: 3, timestamp: 1920, now: Self.t0, length: 201, sent: &sent))
        decisions.append(Self.offer(&q, tag: 4, timestamp: 2880, now: Self.t0, length: 0, sent: &sent))
        #expect(decisions == [.sendNow, .queued, .tooLarge, .queued])
        #expect(q.tooLarge == 1 && q.count == 2)
        Self.drive(&q, until: .max, sent: &sent)
        #expect(sent.map(\.tag) == [1, 2, 0])  // the empty payload reads back as tag 0
        #expect(sent.map(\.time) == [0, 20, 60].map { Self.t0 + UInt64($0) * Self.ms })
    }

    @Test func markerAndPayloadTypeAreCarried() {
        var q = PacingQueue(PacingConfiguration(depth: 4))
        let bytes: [UInt8] = [1, 2, 3]
        let decisions = bytes.withUnsafeBytes { p in
            [
                q.offer(p, rtpTimestamp: 0, marker: true, payloadType: 111, now: Self.t0),
                q.offer(p, rtpTimestamp: 960, marker: true, payloadType: 96, now: Self.t0),
                q.offer(p, rtpTimestamp: 1920, marker: false, payloadType: 111, now: Self.t0),
            ]
        }
        #expect(decisions == [.sendNow, .queued, .queued])
        let a = q.due(now: .max)!
        #expect(a.marker && a.payloadType == 96 && a.rtpTimestamp == 960 && Array(a.payload) == bytes && a.due == Self.t0 + 20 * Self.ms)
        let b = q.due(now: .max)!
        #expect(!b.marker && b.payloadType == 111)
    }

    @Test func resetForgetsEverythingAndTakesTheNextSessionsClockRate() {
        var q = PacingQueue(PacingConfiguration(depth: 4))
        var sent: [Sent] = []
        for k in 0..<8 { _ = Self.offer(&q, tag: UInt8(k), timestamp: UInt32(k) * 960, now: Self.t0, sent: &sent) }
        #expect(q.droppedOldest == 3 && q.count == 4)
        q.reset(clockRate: 16_000)
        #expect(q.isEmpty && q.droppedOldest == 0 && q.spurts == 0 && q.configuration.clockRate == 16_000)
        sent = []
        for k in 0..<4 { _ = Self.offer(&q, tag: UInt8(k), timestamp: 77 + UInt32(k) * 320, now: Self.t0, sent: &sent) }
        Self.drive(&q, until: .max, sent: &sent)
        #expect(sent.map(\.time) == (0..<4).map { Self.t0 + UInt64($0) * 20 * Self.ms })
    }

    @Test func memoryIsDepthTimesSlotPlusSixteen() {
        #expect(PacingConfiguration().memoryBytes == 151_600)
        #expect(PacingConfiguration(depth: 100, slotBytes: 512).memoryBytes == 52_800)
    }

    @Test func offerAndDueAllocateNothing() {
        var q = PacingQueue(PacingConfiguration(depth: 100))
        let payload = UnsafeMutableRawBufferPointer.allocate(byteCount: 1500, alignment: 8)
        defer { payload.deallocate() }
        payload.initializeMemory(as: UInt8.self, repeating: 0x5A)
        var now = Self.t0
        var ts: UInt32 = 0
        var released = 0
        var allocations: UInt64 = 0
        // Rounds of a 150-packet burst (overflowing), half released over 2 s of injected time,
        // the rest flushed. Round 0 warms up lazily initialised runtime metadata.
        for round in 0...200 {
            let before = vox_thread_alloc_count()
            for k in 0..<150 {
                _ = q.offer(UnsafeRawBufferPointer(rebasing: payload[0..<(80 + k * 9)]), rtpTimestamp: ts, now: now)
                ts &+= 960
            }
            let start = now
            while let d = q.nextDeadline, d < start + 2_000 * Self.ms {
                while q.due(now: d) != nil { released += 1 }
            }
            q.flush()
            now = start + 3_000 * Self.ms
            if round > 0 { allocations += vox_thread_alloc_count() - before }
        }
        #expect(allocations == 0)
        #expect(released == 201 * 50 && q.droppedOldest == 201 * 49 && q.flushedPackets == 201 * 50)
    }
}
