import CVoxAllocCounter
import Testing
import VoxEngine
import VoxMedia
import VoxRouting
import VoxTestKit
import VoxWire

/// The backend protocol on a worker (docs/backend-protocol.md), over the in-memory port with
/// an injected clock: the test plays the backend with VoxMedia's own backend-side state and
/// the client with libsrtp2, and checks what leaves the worker, byte for byte where it matters.
@Suite struct BackendProtocolTests {
    static let keyBytes = Array("backend-shared-key-0123456789abcdef".utf8)
    static var key: HMACSHA1Key { keyBytes.withUnsafeBytes { HMACSHA1Key(key: $0) } }
    static let ms: UInt64 = 1_000_000

    /// Backend 0 speaks the protocol, backend 1 does not.
    static func harness(sessions: Int = 8) throws -> Harness {
        var keyed = backendList
        keyed[0].key = key
        return try Harness(sessions: sessions, backends: keyed)
    }

    /// The backend's side of one session: learns the session from the start it receives.
    struct FakeBackend {
        var channel: BackendChannelState? = nil
        var index = 0

        /// Frames the edge sent this backend, split into control messages (parsed with the key)
        /// and RTP.
        mutating func take(_ frames: [[UInt8]]) -> (messages: [BackendMessage], rtp: [[UInt8]], verdicts: [BackendVerdict]) {
            var messages: [BackendMessage] = []
            var rtp: [[UInt8]] = []
            var verdicts: [BackendVerdict] = []
            let me = backendList[index]
            for f in frames {
                guard let (p, payload) = parseFrame(f), p.destination == me.address, p.destinationPort == me.port else {
                    continue
                }
                guard payload.first == BackendMessage.magic else {
                    rtp.append(payload)
                    continue
                }
                var m = BackendMessage()
                let parsed = payload.withUnsafeBytes { BackendMessage.parse($0, key: BackendProtocolTests.key, into: &m) }
                guard parsed == .ok else {
                    verdicts.append(parsed)
                    continue
                }
                if case .start = m.body { channel = BackendChannelState(sessionID: m.sessionID, local: .backend) }
                if case .migratedIn = m.body { channel = BackendChannelState(sessionID: m.sessionID, local: .backend) }
                let accepted = channel?.accept(m) ?? .wrongSession
                verdicts.append(accepted)
                if accepted == .ok { messages.append(m) }
            }
            return (messages, rtp, verdicts)
        }

        /// A control message from this backend to `call`'s backend leg.
        mutating func frame(_ body: BackendMessage.Body, for call: Call, now: UInt64, key: HMACSHA1Key = BackendProtocolTests.key)
            -> [UInt8]
        {
            var bytes = [UInt8](repeating: 0, count: BackendMessage.maximumLength)
            let n = bytes.withUnsafeMutableBytes { channel!.send(body, now: now, key: key, into: $0) }!
            return BackendProtocolTests.fromBackend(index, to: call, Array(bytes[0..<n]))
        }
    }

    static func fromBackend(_ index: Int, to call: Call, _ payload: [UInt8]) -> [UInt8] {
        let b = backendList[index]
        return Endpoint(mac: b.mac, address: b.address, port: b.port).frame(
            to: backendLegAddress, call.backendLegPort, mac: edgeMAC, payload: payload)
    }

    /// RTP packets the client received (unprotected), in order.
    static func clientReceived(_ frames: [[UInt8]], _ call: Call) -> [[UInt8]] {
        frames.compactMap { f -> [UInt8]? in
            guard let (p, payload) = parseFrame(f), p.destination == call.client.address,
                p.destinationPort == call.client.port
            else { return nil }
            return call.receive(payload)
        }
    }

    static func start(
        _ h: Harness, model: String = "gpt-voice", subject: String = "user-7", backend: Int32 = 0, ice: Bool = true
    )
        throws -> Call
    {
        var rng = SeededRandom(seed: 16)
        return try Call.make(
            profile: .aes128CmHmacSha1_80, clientPort: 30_016, password: "pwd16abcdefghijklmnopqrst", ufragRandom: "R16x9",
            edgeSSRC: 0xE000_0016, clientSSRC: 0xC000_0016, rng: &rng, place: { try h.control.create(on: 0, $0) }
        ) { c, client in
            c.backend = backend
            c.firstSequence = 500
            c.firstTimestamp = 123_456
            c.flow = FlowKey(
                remoteAddress: client.address, remotePort: client.port, localAddress: mediaAddress, localPort: mediaPort)
            c.clientMAC = clientMAC
            c.sessionID = 0x0000_0003_0000_0042
            c.backendStream = BackendStreamDescription(
                ssrc: 0xC000_0016, clockRate: 48_000, payloadType: 111, channels: 2, codecName: "opus", model: model,
                subject: subject)!
            if !ice {
                c.ufrag = IceUfrag()
                c.icePassword = IcePassword()
            }
        }
    }

    // MARK: - start, end, keepalive

    @Test func aKeyedBackendIsToldTheSessionsStartAndEndWithItsMetadataAndReason() throws {
        let h = try Self.harness()
        let call = try Self.start(h)
        h.run()
        var backend = FakeBackend()
        let first = backend.take(h.transmitted())
        #expect(first.verdicts == [.ok])
        guard case .start(let d)? = first.messages.first?.body else {
            Issue.record("no start: \(first.messages)")
            return
        }
        #expect(first.messages[0].sessionID == 0x0000_0003_0000_0042)
        #expect(first.messages[0].sequence == 1)
        #expect(d.modelString == "gpt-voice" && d.subjectString == "user-7")
        #expect(d.codecNameString == "opus" && d.clockRate == 48_000 && d.payloadType == 111 && d.ssrc == 0xC000_0016)
        // It came from the session's own backend-leg port.
        let frames = h.transmitted()
        #expect(frames.isEmpty)
        var command = WorkerCommand(kind: .drop, slot: call.slot)
        command.endReason = .clientLeft
        try h.control.send(command)
        h.run()
        let last = backend.take(h.transmitted())
        #expect(last.messages.map(\.body) == [.end(.clientLeft)])
        #expect(last.messages.first?.sequence == 2)
    }

    @Test(arguments: [
        (WorkerCommand.EndReason.none, BackendEndReason.dropped), (.drained, .drained),
        (.handshakeFailed, .handshakeFailed), (.closedByClient, .closedByClient),
    ])
    func eachDropReasonReachesTheBackend(reason: WorkerCommand.EndReason, told: BackendEndReason) throws {
        let h = try Self.harness()
        let call = try Self.start(h)
        h.run()
        var backend = FakeBackend()
        _ = backend.take(h.transmitted())
        try h.control.drop(call.slot, reason: reason)
        h.run()
        #expect(backend.take(h.transmitted()).messages.map(\.body) == [.end(told)])
    }

    @Test func theStartLeavesFromTheSessionsBackendLegPort() throws {
        let h = try Self.harness()
        let call = try Self.start(h)
        h.run()
        let frames = h.transmitted()
        #expect(frames.count == 1)
        let (p, _) = try #require(parseFrame(frames[0]))
        #expect(p.source == backendLegAddress && p.sourcePort == call.backendLegPort)
        #expect(p.destination == backendList[0].address && p.destinationPort == backendList[0].port)
    }

    @Test func keepalivesGoEverySecondAreAnsweredAndGiveTheRTT() throws {
        let h = try Self.harness()
        let call = try Self.start(h)
        h.run()
        var backend = FakeBackend()
        _ = backend.take(h.transmitted())
        let t0 = h.now
        // Nothing before the second is up; the keepalive at it.
        h.now = t0 + 999 * Self.ms
        h.run()
        #expect(backend.take(h.transmitted()).messages.isEmpty)
        h.now = t0 + 1_000 * Self.ms
        h.run()
        let sent = backend.take(h.transmitted()).messages
        #expect(sent.map(\.body) == [.keepalive])
        #expect(sent.first?.timestamp == h.now)
        // The backend acks 7 ms later: the RTT is 7 ms.
        let echo = try #require(sent.first?.timestamp)
        h.now += 7 * Self.ms
        #expect(h.port.deliver(backend.frame(.keepaliveAck(echo: echo), for: call, now: 1), queue: 0))
        h.run()
        #expect(h.workers[0].worker.withSession(Int(call.slot)) { $0.backendRTT } == 7 * Self.ms)
        // The backend's own keepalive is answered with its timestamp echoed.
        #expect(h.port.deliver(backend.frame(.keepalive, for: call, now: 0xABCDEF), queue: 0))
        h.run()
        #expect(backend.take(h.transmitted()).messages.map(\.body) == [.keepaliveAck(echo: 0xABCDEF)])
        #expect(h.workers[0].worker.counters.backendMessages(.ok) == 2)
    }

    /// A static session made with keys and no ICE credentials (`session.create` as `voxedge
    /// demo --static-keys` sends it) has no ICE agent that could fail: its keepalive timer
    /// must not end it (it did, at the first keepalive, as a connect timeout).
    @Test func aSessionWithoutICELivesOnThroughItsKeepalives() throws {
        let h = try Self.harness()
        let call = try Self.start(h, ice: false)
        h.run()
        var backend = FakeBackend()
        #expect(backend.take(h.transmitted()).messages.map(\.body.type) == [.start])
        let t0 = h.now
        for second in UInt64(1)...3 {
            h.now = t0 + second * 1_000 * Self.ms
            h.run()
            #expect(backend.take(h.transmitted()).messages.map(\.body) == [.keepalive], "second \(second)")
        }
        #expect(h.workers[0].worker.withSession(Int(call.slot)) { $0.active } == true)
        #expect(h.workers[0].worker.counters.sessionsEnded(.connectTimeout) == 0)
    }

    @Test func aBackendThatEndsTheSessionEndsItAndIsNotAnswered() throws {
        let h = try Self.harness()
        let call = try Self.start(h)
        h.run()
        var backend = FakeBackend()
        _ = backend.take(h.transmitted())
        #expect(h.port.deliver(backend.frame(.end(.backendFinished), for: call, now: 1), queue: 0))
        h.run()
        #expect(h.transmitted().isEmpty)
        #expect(!h.workers[0].worker.withSession(Int(call.slot)) { $0.active })
        #expect(h.workers[0].worker.counters.sessionsEnded(.backendEnded) == 1)
        let event = try #require(h.links[0].events.pop())
        #expect(event.kind == .backendEnded && event.reason == BackendEndReason.backendFinished.rawValue)
    }

    // MARK: - pacing and flush

    /// The backend sends `count` 20 ms packets at once, timestamps from `ts`, payloads
    /// tagged with their index.
    static func burst(_ h: Harness, _ call: Call, count: Int, seq: UInt16 = 1, ts: UInt32 = 10_000, tag: UInt8 = 0) {
        for i in 0..<count {
            let frame = call.backendFrame(
                from: 0, ssrc: 0xB0B0, seq: seq &+ UInt16(i), timestamp: ts &+ UInt32(i) * 960,
                payload: [tag, UInt8(i), 0xAA, 0xBB])
            #expect(h.port.deliver(frame, queue: 0))
        }
    }

    @Test func audioSentAheadLeavesAtExactlyOnePacketPer20Milliseconds() throws {
        let h = try Self.harness()
        let call = try Self.start(h)
        h.run()
        _ = h.transmitted()
        Self.burst(h, call, count: 10)
        h.run()
        // The first is on time and goes at once; nine wait.
        var got = Self.clientReceived(h.transmitted(), call)
        #expect(got.map { $0[13] } == [0])
        #expect(h.workers[0].worker.withSession(Int(call.slot)) { $0.pacingQueued } == 9)
        let t0 = h.now
        for k in 1..<10 {
            h.now = t0 + UInt64(k) * 20 * Self.ms - 1
            h.run()
            #expect(h.transmitted().isEmpty, "packet \(k) left before its time")
            h.now = t0 + UInt64(k) * 20 * Self.ms
            h.run()
            got = Self.clientReceived(h.transmitted(), call)
            #expect(got.map { $0[13] } == [UInt8(k)], "at \(k * 20) ms")
        }
        // On the client leg: the edge's SSRC, sequence numbers on from 500, timestamps 960 apart.
        let counters = h.workers[0].worker.counters
        #expect(counters[.paced] == 9 && counters[.pacedSent] == 9 && counters[.toClient] == 1)
    }

    @Test func pacedPacketsContinueTheClientLegStream() throws {
        let h = try Self.harness()
        let call = try Self.start(h)
        h.run()
        _ = h.transmitted()
        Self.burst(h, call, count: 3)
        h.run()
        var all = Self.clientReceived(h.transmitted(), call)
        for _ in 1...2 {
            h.now += 20 * Self.ms
            h.run()
            all += Self.clientReceived(h.transmitted(), call)
        }
        #expect(all.count == 3)
        #expect(all.map { be32($0, 8) } == [0xE000_0016, 0xE000_0016, 0xE000_0016])
        #expect(all.map { be16($0, 2) } == [500, 501, 502])
        #expect(all.map { be32($0, 4) &- be32(all[0], 4) } == [0, 960, 1920])
        #expect(all.allSatisfy { $0[1] & 0x7F == 111 })
    }

    @Test func aFullQueueDropsItsOldestAndCountsThem() throws {
        var keyed = backendList
        keyed[0].key = Self.key
        let h = try Harness(sessions: 8, backends: keyed, pacing: PacingConfiguration(depth: 4, slotBytes: 64))
        let call = try Self.start(h)
        h.run()
        _ = h.transmitted()
        Self.burst(h, call, count: 8)  // 1 at once, 7 offered to a queue of 4
        h.run()
        _ = h.transmitted()
        #expect(h.workers[0].worker.counters[.pacingOverflow] == 3)
        // What is left is the newest four, in order.
        var left: [UInt8] = []
        for _ in 0..<10 {
            h.now += 20 * Self.ms
            h.run()
            left += Self.clientReceived(h.transmitted(), call).map { $0[13] }
        }
        #expect(left == [4, 5, 6, 7])
    }

    @Test func aPayloadLargerThanASlotIsDroppedAndCounted() throws {
        var keyed = backendList
        keyed[0].key = Self.key
        let h = try Harness(sessions: 8, backends: keyed, pacing: PacingConfiguration(depth: 4, slotBytes: 64))
        let call = try Self.start(h)
        h.run()
        _ = h.transmitted()
        Self.burst(h, call, count: 1)
        let big = call.backendFrame(
            from: 0, ssrc: 0xB0B0, seq: 2, timestamp: 10_000 + 960, payload: [UInt8](repeating: 7, count: 65))
        #expect(h.port.deliver(big, queue: 0))
        h.run()
        #expect(h.workers[0].worker.counters[.pacingTooLarge] == 1)
    }

    @Test func aFlushEmptiesTheQueueLogsTheLastSequenceAndTheNextAudioPlaysAtOnce() throws {
        let h = try Self.harness()
        let call = try Self.start(h)
        h.run()
        var backend = FakeBackend()
        _ = backend.take(h.transmitted())
        Self.burst(h, call, count: 50)  // one second, sent at once
        h.run()
        var before = Self.clientReceived(h.transmitted(), call)
        for _ in 0..<9 {
            h.now += 20 * Self.ms
            h.run()
            before += Self.clientReceived(h.transmitted(), call)
        }
        #expect(before.count == 10)
        let lastSent = be16(before.last!, 2)
        // Barge-in.
        #expect(h.port.deliver(backend.frame(.flush, for: call, now: 5), queue: 0))
        h.run()
        let event = try #require(h.links[0].events.pop())
        #expect(event.kind == .flush && event.sequence == lastSent && event.count == 40)
        #expect(event.sessionID == 0x0000_0003_0000_0042)
        #expect(h.workers[0].worker.withSession(Int(call.slot)) { $0.pacingQueued } == 0)
        #expect(h.workers[0].worker.withSession(Int(call.slot)) { $0.flushes } == 1)
        // Nothing queued before the flush ever leaves (keepalives to the backend go on).
        h.now += 2_000 * Self.ms
        h.run()
        #expect(Self.clientReceived(h.transmitted(), call).isEmpty)
        // The new answer: its first packet plays at once (its own timestamps, far from the old).
        Self.burst(h, call, count: 3, seq: 900, ts: 7_000_000, tag: 1)
        h.run()
        let after = Self.clientReceived(h.transmitted(), call)
        #expect(after.map { $0[12] } == [1])
        #expect(be16(after[0], 2) == lastSent &+ 1)
        // The client leg's timeline goes on from the last packet sent, 20 ms later.
        #expect(be32(after[0], 4) == be32(before.last!, 4) &+ 960)
        let counters = h.workers[0].worker.counters
        #expect(counters[.flushes] == 1 && counters[.flushedPackets] == 40)
    }

    @Test func aSpoofedReplayedOrMisdirectedFlushChangesNothing() throws {
        let h = try Self.harness()
        let call = try Self.start(h)
        h.run()
        var backend = FakeBackend()
        _ = backend.take(h.transmitted())
        Self.burst(h, call, count: 5)
        h.run()
        _ = h.transmitted()
        // A flush under another key (bad MAC), a replay of an accepted keepalive's sequence, a
        // flush from an address that is not the backend, and one for another session.
        let wrongKey = Array("another-key-of-thirty-five-bytes!!".utf8).withUnsafeBytes { HMACSHA1Key(key: $0) }
        #expect(h.port.deliver(backend.frame(.flush, for: call, now: 1, key: wrongKey), queue: 0))
        var replay = backend
        #expect(h.port.deliver(backend.frame(.keepalive, for: call, now: 2), queue: 0))
        h.run()
        _ = h.transmitted()
        #expect(h.port.deliver(replay.frame(.flush, for: call, now: 3), queue: 0))
        var stranger = FakeBackend(channel: backend.channel, index: 1)
        #expect(h.port.deliver(stranger.frame(.flush, for: call, now: 4), queue: 0))
        var other = FakeBackend(channel: BackendChannelState(sessionID: 99, local: .backend))
        #expect(h.port.deliver(other.frame(.flush, for: call, now: 5), queue: 0))
        // Junk after the magic byte, and a truncated message.
        #expect(h.port.deliver(Self.fromBackend(0, to: call, [0x0B, 1, 3, 1, 0, 0]), queue: 0))
        h.run()
        let counters = h.workers[0].worker.counters
        #expect(counters.backendMessages(.badMAC) == 1)
        #expect(counters.backendMessages(.replayed) == 1)
        #expect(counters.backendMessages(.wrongSession) == 1)
        #expect(counters.backendMessages(.malformed) == 1)
        #expect(counters[.wrongSource] == 1)
        #expect(counters[.backendControl] == 4)
        #expect(counters[.flushes] == 0)
        #expect(h.workers[0].worker.withSession(Int(call.slot)) { $0.pacingQueued } == 4)
        #expect(h.links[0].events.pop() == nil)
    }

    @Test func aBackendWithoutAKeyIsForwardedAsItComesAndItsControlMessagesRefused() throws {
        let h = try Self.harness()
        let call = try Self.start(h, backend: 1)
        h.run()
        #expect(h.transmitted().isEmpty)  // no start: backend 1 has no key
        for i in 0..<5 {
            let frame = call.backendFrame(
                from: 1, ssrc: 0xB0B0, seq: UInt16(i), timestamp: UInt32(i) * 960, payload: [UInt8(i)])
            #expect(h.port.deliver(frame, queue: 0))
        }
        h.run()
        #expect(Self.clientReceived(h.transmitted(), call).count == 5)
        var backend = FakeBackend(channel: BackendChannelState(sessionID: 0x0000_0003_0000_0042, local: .backend), index: 1)
        #expect(h.port.deliver(backend.frame(.flush, for: call, now: 1), queue: 0))
        h.run()
        #expect(h.workers[0].worker.counters[.backendControl] == 1)
        h.now += 5_000 * Self.ms
        h.run()
        #expect(h.transmitted().isEmpty)  // no keepalives either
    }

    @Test func aMoveTellsTheOldBackendMigratedAwayAndTheNewOneMigratedIn() throws {
        var both = backendList
        both[0].key = Self.key
        both[1].key = Self.key
        let h = try Harness(sessions: 8, backends: both)
        let call = try Self.start(h)
        h.run()
        var a = FakeBackend()
        _ = a.take(h.transmitted())
        var command = WorkerCommand(kind: .changeBackend, slot: call.slot)
        command.backend = 1
        try h.control.send(command)
        h.run()
        let frames = h.transmitted()
        #expect(a.take(frames).messages.map(\.body) == [.migratedAway])
        var b = FakeBackend(index: 1)
        let toB = b.take(frames).messages
        guard case .migratedIn(let d)? = toB.first?.body else {
            Issue.record("no migrated-in: \(toB)")
            return
        }
        #expect(d.modelString == "gpt-voice" && toB[0].sequence == 1)
    }

    @Test func pacingAndControlAllocateNothing() throws {
        let h = try Self.harness()
        let call = try Self.start(h)
        h.run()
        var backend = FakeBackend()
        _ = backend.take(h.transmitted())
        // Warm-up round, then count.
        var allocations: UInt64 = 0
        for round in 0..<3 {
            let frames = (0..<20).map { i in
                call.backendFrame(
                    from: 0, ssrc: 0xB0B0, seq: UInt16(round * 20 + i), timestamp: UInt32(round * 20 + i) * 960 + 1,
                    payload: [UInt8](repeating: UInt8(i), count: 80))
            } + [backend.frame(.keepalive, for: call, now: 7), backend.frame(.flush, for: call, now: 8)]
            var delivered = frames.prefix(20).allSatisfy { h.port.deliver($0, queue: 0) }
            var before = vox_thread_alloc_count()
            while h.workers[0].worker.runOnce(now: h.now) > 0 {}
            for _ in 0..<10 {
                h.now += 20 * Self.ms
                _ = h.workers[0].worker.runOnce(now: h.now)
            }
            if round > 0 { allocations += vox_thread_alloc_count() - before }
            delivered = delivered && frames.suffix(2).allSatisfy { h.port.deliver($0, queue: 0) }
            before = vox_thread_alloc_count()
            while h.workers[0].worker.runOnce(now: h.now) > 0 {}
            h.now += 1_000 * Self.ms
            _ = h.workers[0].worker.runOnce(now: h.now)
            if round > 0 { allocations += vox_thread_alloc_count() - before }
            #expect(delivered)
            _ = h.transmitted()
            while h.links[0].events.pop() != nil {}
        }
        #expect(h.workers[0].worker.counters[.pacedSent] > 0 && h.workers[0].worker.counters[.flushes] == 3)
        #expect(allocations == 0)
    }
}
