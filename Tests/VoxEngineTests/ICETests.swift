import CVoxAllocCounter
import Testing
import VoxEngine
import VoxMedia
import VoxTestKit
import VoxWire

/// The workers' ICE is VoxMedia's ICE-lite agent, one per slot (DESIGN §2a): a session
/// moves only when the agent says so, and a session whose client stops checking ends.
/// Each test here is a behaviour the worker's own STUN code did not have.
@Suite struct WorkerICETests {
    let second: UInt64 = 1_000_000_000

    func check(_ h: Harness, _ call: Call, from port: UInt16? = nil, useCandidate: Bool, id: UInt8 = 0, queue: Int = 0) {
        var from = call
        if let port { from.client.port = UDPPort(port) }
        h.port.deliver(from.checkFrame(useCandidate: useCandidate, id: id), queue: queue)
        h.run()
    }

    func flow(_ call: Call, port: UInt16? = nil) -> FlowKey {
        FlowKey(
            remoteAddress: call.client.address, remotePort: port.map { UDPPort($0) } ?? call.client.port,
            localAddress: mediaAddress, localPort: mediaPort)
    }

    /// Before nomination the client probes its pairs: a check from another 5-tuple is
    /// answered but does not take the session there.
    @Test func aCheckOnAnotherPairBeforeNominationIsAnsweredButDoesNotMove() throws {
        let h = try Harness()
        var rng = SeededRandom(seed: 21)
        let call = try Call.start(h, profile: .aes128CmHmacSha1_80, index: 3, bindFlow: false, rng: &rng)
        h.run()
        check(h, call, useCandidate: false)
        #expect(h.workers[0].worker.slot(forClient: flow(call)) == call.slot)
        check(h, call, from: 40_999, useCandidate: false, id: 1)
        #expect(h.transmitted().count == 2)  // both answered
        #expect(h.workers[0].worker.slot(forClient: flow(call)) == call.slot)
        #expect(h.workers[0].worker.slot(forClient: flow(call, port: 40_999)) == nil)
        // Media from the probed pair is not the session's.
        var moved = call
        moved.client.port = UDPPort(40_999)
        h.port.deliver(moved.srtpFrame(seq: 1, payload: [1]), queue: 0)
        h.run()
        #expect(h.workers[0].worker.counters[.unknownFlow] == 1)
        #expect(h.workers[0].worker.counters[.toBackend] == 0)
    }

    /// After nomination the client checks only the selected pair: a valid check from a new
    /// 5-tuple is a NAT rebinding, and the session follows it.
    @Test func afterNominationANewFiveTupleMovesTheSession() throws {
        let h = try Harness()
        var rng = SeededRandom(seed: 22)
        let call = try Call.start(h, profile: .aes128CmHmacSha1_80, index: 4, bindFlow: false, rng: &rng)
        h.run()
        check(h, call, useCandidate: true)
        check(h, call, from: 41_111, useCandidate: false, id: 1)
        #expect(h.transmitted().count == 2)
        #expect(h.workers[0].worker.slot(forClient: flow(call)) == nil)
        #expect(h.workers[0].worker.slot(forClient: flow(call, port: 41_111)) == call.slot)
        var moved = call
        moved.client.port = UDPPort(41_111)
        h.port.deliver(moved.srtpFrame(seq: 1, payload: [1]), queue: 0)
        h.run()
        #expect(h.workers[0].worker.counters[.toBackend] == 1)
    }

    /// USERNAME must be "<our ufrag>:<the client's>": the client's half is checked too.
    @Test func aCheckNamingAnotherClientUfragIsRefused() throws {
        let h = try Harness()
        var rng = SeededRandom(seed: 23)
        let call = try Call.start(h, profile: .aeadAes128Gcm, index: 5, bindFlow: false, rng: &rng)
        h.run()
        h.port.deliver(call.checkFrame(remoteUfrag: "someoneelse"), queue: 0)
        h.run()
        #expect(h.transmitted().isEmpty)
        #expect(h.workers[0].worker.counters[.unknownSession] == 1)
        #expect(h.workers[0].worker.slot(forClient: flow(call)) == nil)
    }

    /// A session waiting for its client ends at the connect deadline; its slot comes back.
    @Test func noCheckByTheConnectDeadlineEndsTheSession() throws {
        let h = try Harness(sessions: 4)
        var rng = SeededRandom(seed: 24)
        let call = try Call.start(h, profile: .aes128CmHmacSha1_80, index: 6, bindFlow: false, rng: &rng)
        h.run()
        let created = h.now
        #expect(h.workers[0].worker.nextDeadline() == nil)  // 10 s away: beyond the wheel's revolution
        h.now = created + 9 * second
        h.run()
        #expect(h.workers[0].worker.withSession(Int(call.slot)) { $0.active })
        #expect(h.workers[0].worker.nextDeadline() == created + 10 * second)  // the poll sleeps until then
        h.now = created + 10 * second
        h.run()
        #expect(!h.workers[0].worker.withSession(Int(call.slot)) { $0.active })
        #expect(h.workers[0].worker.counters.sessionsEnded(.connectTimeout) == 1)
        var released: [Int32] = []
        h.control.onRelease = { released.append($0) }
        h.control.reclaim()
        #expect(released == [call.slot])
        #expect(h.control.freeCount == 4)
        #expect(h.store.owner(of: Int(call.slot)) == -1)
        // A late check finds nothing.
        check(h, call, useCandidate: true)
        #expect(h.transmitted().isEmpty)
        #expect(h.workers[0].worker.counters[.unknownSession] == 1)
    }

    /// Consent (RFC 7675): every valid check renews it; 30 s of silence ends the session,
    /// its flow leaves the index and the slot is released.
    @Test func consentExpiryEndsTheSession() throws {
        let h = try Harness(sessions: 4)
        var rng = SeededRandom(seed: 25)
        let call = try Call.start(h, profile: .aes128CmHmacSha1_80, index: 7, bindFlow: false, rng: &rng)
        h.run()
        let start = h.now
        check(h, call, useCandidate: true)
        // Checks every 5 s keep it for a minute.
        for i in 1...12 {
            h.now = start + UInt64(i) * 5 * second
            check(h, call, useCandidate: false, id: UInt8(i))
        }
        #expect(h.transmitted().count == 13)
        #expect(h.workers[0].worker.withSession(Int(call.slot)) { $0.active })
        let lastCheck = h.now
        h.now = lastCheck + 30 * second - 1
        h.run()
        #expect(h.workers[0].worker.withSession(Int(call.slot)) { $0.active })
        h.now = lastCheck + 30 * second
        h.run()
        #expect(!h.workers[0].worker.withSession(Int(call.slot)) { $0.active })
        #expect(h.workers[0].worker.counters.sessionsEnded(.consentExpired) == 1)
        #expect(h.workers[0].worker.slot(forClient: flow(call)) == nil)
        h.control.reclaim()
        #expect(h.control.freeCount == 4)
    }

    /// A session created with its client's 5-tuple (static keys) is not waiting for a
    /// check: it has no connect deadline, though its ufrag still answers checks.
    @Test func aSessionWithAGivenClientHasNoConnectDeadline() throws {
        let h = try Harness()
        var rng = SeededRandom(seed: 26)
        let call = try Call.start(h, profile: .aes128CmHmacSha1_80, index: 8, bindFlow: true, rng: &rng)
        h.run()
        h.now += 3600 * second
        h.run()
        #expect(h.workers[0].worker.withSession(Int(call.slot)) { $0.active })
        #expect(h.workers[0].worker.counters.sessionsEnded(.connectTimeout) == 0)
        check(h, call, useCandidate: true)
        #expect(h.transmitted().count == 1)
    }
}

extension WorkerICETests {
    /// Once its client has checked, a session with a given client keeps consent like any
    /// other: silence for 30 s ends it.
    @Test func aGivenClientThatStartsCheckingMustKeepConsent() throws {
        let h = try Harness()
        var rng = SeededRandom(seed: 27)
        let call = try Call.start(h, profile: .aes128CmHmacSha1_80, index: 9, bindFlow: true, rng: &rng)
        h.run()
        check(h, call, useCandidate: true)
        #expect(h.workers[0].worker.nextDeadline() == nil)  // 30 s away
        h.now += 30 * second
        h.run()
        #expect(!h.workers[0].worker.withSession(Int(call.slot)) { $0.active })
        #expect(h.workers[0].worker.counters.sessionsEnded(.consentExpired) == 1)
    }
}

extension WorkerICETests {
    /// Checks, nominations, rebinding, consent renewals and ICE timeouts on the worker
    /// allocate nothing (counted around the worker's bursts, as the churn test does).
    @Test func iceOnTheWorkerAllocatesNothing() throws {
        let sessions = 64
        let h = try Harness(sessions: sessions + 1)
        var rng = SeededRandom(seed: 28)
        // Warm-up: ending a session touches lazily initialised runtime metadata once.
        let warmUp = try Call.start(h, profile: .aes128CmHmacSha1_80, index: 99, bindFlow: false, rng: &rng)
        h.run()
        try h.control.drop(warmUp.slot)
        h.run()
        var calls: [Call] = []
        for i in 0..<sessions {
            calls.append(try Call.start(h, profile: .aes128CmHmacSha1_80, index: 100 + i, bindFlow: false, rng: &rng))
        }
        h.run()
        // Warm-up: one check through the worker before counting.
        check(h, calls[0], useCandidate: true)
        var allocations: UInt64 = 0
        func burst() {
            let before = vox_thread_alloc_count()
            while h.workers[0].worker.runOnce(now: h.now) > 0 {}
            allocations += vox_thread_alloc_count() - before
        }
        let start = h.now
        vox_callgrind_toggle_collect()  // a marker for a debugger hunting an allocation
        for round in 0..<5 {
            h.now = start + UInt64(round) * 5 * second
            for (i, call) in calls.enumerated() {
                var from = call
                if round == 3 { from.client.port = UDPPort(call.client.port.rawValue &+ 1000) }  // every client rebinds
                h.port.deliver(from.checkFrame(useCandidate: round == 0, id: UInt8(round)), queue: 0)
                if i % 16 == 15 { burst() }
            }
            burst()
            _ = h.transmitted()
        }
        h.now += 60 * second
        burst()
        #expect(allocations == 0)
        #expect(h.workers[0].worker.counters[.answered] == UInt64(sessions * 5 + 1))
        #expect(h.workers[0].worker.counters.sessionsEnded(.consentExpired) == UInt64(sessions))
    }
}
