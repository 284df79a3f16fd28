import Foundation
import Synchronization
import Testing
import VoxEngine
import VoxMedia
import VoxTestKit
import VoxWire

extension Call {
    /// A WebRTC-style session: held by the control side until a worker claims it with
    /// the client's first valid check (DESIGN §2a); no client 5-tuple is given.
    static func hold(
        _ h: Harness, until deadline: UInt64, profile: SRTPProfile = .aes128CmHmacSha1_80, index: Int,
        rng: inout SeededRandom
    ) throws -> Call {
        try make(
            profile: profile, clientPort: UInt16(20000 + index % 10000), password: "hold\(index)abcdefghijklmnopqrst",
            ufragRandom: "H\(index)q", edgeSSRC: 0xE100_0000 + UInt32(index), clientSSRC: 0xC100_0000 + UInt32(index),
            rng: &rng, place: { try h.control.hold(until: deadline, $0) }
        ) { c, _ in c.backend = 0 }
    }
}

/// A session's life before it has an owner (docs/architecture.md): held by the control
/// side, claimed by the worker whose queue receives its first valid check, reaped at its
/// connect deadline if nobody claims it; claim and reap race by compare-and-swap.
@Suite struct OwnershipTests {
    let second: UInt64 = 1_000_000_000

    @Test func theWorkerThatReceivesTheFirstValidCheckClaimsTheSession() throws {
        let h = try Harness(workers: 2, sessions: 8)
        var rng = SeededRandom(seed: 31)
        let call = try Call.hold(h, until: h.now + 10 * second, index: 1, rng: &rng)
        #expect(SessionStore.isHeld(h.store.owner(of: Int(call.slot))))
        #expect(h.control.isUnclaimed(call.slot))
        // A forged check claims nothing, and is counted as the bad check it is.
        h.port.deliver(call.checkFrame(password: "not the password at all"), queue: 1)
        h.run()
        #expect(SessionStore.isHeld(h.store.owner(of: Int(call.slot))))
        #expect(h.workers[1].worker.counters[.stunRejected] == 1)
        #expect(h.workers[1].worker.counters[.unknownSession] == 0)
        #expect(h.transmitted(queue: 1).isEmpty)
        // The first valid check arrives on queue 1: worker 1 owns the session from now on.
        h.port.deliver(call.checkFrame(id: 1), queue: 1)
        h.run()
        #expect(h.store.owner(of: Int(call.slot)) == 1)
        #expect(!h.control.isUnclaimed(call.slot))
        #expect(h.workers[1].worker.counters.sessionsClaimed == 1)
        #expect(h.workers[0].worker.counters.sessionsClaimed == 0)
        #expect(h.transmitted(queue: 1).count == 1)
        // Its media flows there; a check arriving on the other queue is handed to the owner.
        h.port.deliver(call.srtpFrame(seq: 1, payload: [1, 2, 3]), queue: 1)
        h.port.deliver(call.checkFrame(id: 2), queue: 0)
        h.run()
        #expect(h.workers[1].worker.counters[.toBackend] == 1)
        #expect(h.workers[0].worker.counters[.handedOff] == 1)
        #expect(h.transmitted(queue: 1).count == 2)
        // The deadline passes: a claimed session is not reaped.
        #expect(h.control.reapUnclaimed(now: h.now + 11 * second).isEmpty)
        #expect(h.store.owner(of: Int(call.slot)) == 1)
        #expect(h.control.freeCount == 7)
    }

    @Test func anUnclaimedSessionIsReapedAtItsConnectDeadline() throws {
        let h = try Harness(sessions: 8)
        var rng = SeededRandom(seed: 32)
        let deadline = h.now + 10 * second
        let call = try Call.hold(h, until: deadline, index: 2, rng: &rng)
        var released: [Int32] = []
        h.control.onRelease = { released.append($0) }
        #expect(h.control.freeCount == 7)
        #expect(h.control.reapUnclaimed(now: deadline - 1).isEmpty)
        #expect(h.control.expiredUnclaimed.load(ordering: .relaxed) == 0)
        #expect(h.control.reapUnclaimed(now: deadline) == [call.slot])
        #expect(h.control.expiredUnclaimed.load(ordering: .relaxed) == 1)
        #expect(released == [call.slot])
        #expect(h.store.owner(of: Int(call.slot)) == SessionStore.free)
        #expect(h.control.freeCount == 8)
        // Its client's check, too late, finds nothing to claim.
        h.port.deliver(call.checkFrame(), queue: 0)
        h.run()
        #expect(h.transmitted().isEmpty)
        #expect(h.workers[0].worker.counters[.unknownSession] == 1)
        #expect(h.workers[0].worker.counters.sessionsClaimed == 0)
    }

    @Test func droppingAHeldSessionReapsItAndDroppingAClaimedOneEndsIt() throws {
        let h = try Harness(sessions: 8)
        var rng = SeededRandom(seed: 33)
        let held = try Call.hold(h, until: .max, index: 3, rng: &rng)
        try h.control.drop(held.slot)
        #expect(h.store.owner(of: Int(held.slot)) == SessionStore.free)
        #expect(h.control.freeCount == 8)
        let claimed = try Call.hold(h, until: .max, index: 4, rng: &rng)
        h.port.deliver(claimed.checkFrame(), queue: 0)
        h.run()
        #expect(h.store.owner(of: Int(claimed.slot)) == 0)
        try h.control.drop(claimed.slot)
        h.run()
        h.control.reclaim()
        #expect(h.store.owner(of: Int(claimed.slot)) == SessionStore.free)
        #expect(h.control.freeCount == 8)
    }

    /// The control thread reaps while the worker, on its own thread, claims with a valid
    /// check: in every round exactly one of them wins, and the loser leaves no trace.
    @Test func claimAndReapRaceAndExactlyOneWins() throws {
        let h = try Harness(sessions: 4)
        var rng = SeededRandom(seed: 34)
        nonisolated(unsafe) let box = h.workers[0]
        let rounds = 2_000
        var claims = 0
        var reaps = 0
        for round in 0..<rounds {
            let call = try Call.hold(h, until: 0, index: round, rng: &rng)
            h.port.deliver(call.checkFrame(), queue: 0)
            let claimedBefore = box.worker.counters.sessionsClaimed
            let go = Atomic<Int>(0)
            let done = DispatchSemaphore(value: 0)
            let now = h.now
            let worker = Thread {
                go.add(1, ordering: .acquiringAndReleasing)
                while go.load(ordering: .acquiring) < 2 {}
                while box.worker.runOnce(now: now) > 0 {}
                done.signal()
            }
            worker.start()
            go.add(1, ordering: .acquiringAndReleasing)
            while go.load(ordering: .acquiring) < 2 {}
            let reaped = h.control.reapUnclaimed(now: .max)
            done.wait()
            let claimed = box.worker.counters.sessionsClaimed - claimedBefore
            let answered = h.transmitted().count
            if reaped == [call.slot] {
                reaps += 1
                #expect(claimed == 0)
                #expect(answered == 0)
                #expect(h.store.owner(of: Int(call.slot)) == SessionStore.free)
                #expect(!box.worker.withSession(Int(call.slot)) { $0.active })
            } else {
                claims += 1
                #expect(reaped.isEmpty)
                #expect(claimed == 1)
                #expect(answered == 1)
                #expect(h.store.owner(of: Int(call.slot)) == 0)
                #expect(box.worker.withSession(Int(call.slot)) { $0.active })
                try h.control.drop(call.slot)
                h.run()
            }
            h.control.reclaim()
            #expect(h.control.freeCount == 4)
        }
        #expect(claims + reaps == rounds)
        print("claim/reap race: \(claims) claimed by the worker, \(reaps) reaped by the control thread")
    }
}

extension OwnershipTests {
    /// A client bound by a check (not by the control side) reaches the control thread's
    /// flow directory, so its packets on another queue find the owner; a NAT rebinding
    /// moves the entry; the session's end removes it.
    @Test func aClientBoundByACheckIsInTheDirectoryAndItsStraysReachTheOwner() throws {
        let h = try Harness(workers: 2, sessions: 8)
        var rng = SeededRandom(seed: 35)
        var call = try Call.hold(h, until: .max, index: 5, rng: &rng)
        func flow(_ c: Call) -> FlowKey {
            FlowKey(remoteAddress: c.client.address, remotePort: c.client.port, localAddress: mediaAddress, localPort: mediaPort)
        }
        let first = flow(call)
        h.port.deliver(call.checkFrame(), queue: 0)
        h.run()
        #expect(h.store.owner(of: Int(call.slot)) == 0)
        h.control.reclaim()
        #expect(h.control.slot(ofClient: first) == call.slot)
        h.run()
        // Its SRTP arrives on queue 1: worker 1 finds the owner in the directory.
        h.port.deliver(call.srtpFrame(seq: 1, payload: [1]), queue: 1)
        h.run()
        #expect(h.workers[1].worker.counters[.handedOff] == 1)
        #expect(h.workers[1].worker.counters[.unknownFlow] == 0)
        #expect(h.workers[0].worker.counters[.toBackend] == 1)
        // The client's NAT rebinds it (the check nominated): the directory follows.
        call.client.port = UDPPort(call.client.port.rawValue &+ 1000)
        h.port.deliver(call.checkFrame(id: 1), queue: 1)
        h.run()
        h.control.reclaim()
        #expect(h.control.slot(ofClient: first) == nil)
        #expect(h.control.slot(ofClient: flow(call)) == call.slot)
        h.run()
        h.port.deliver(call.srtpFrame(seq: 2, payload: [2]), queue: 1)
        h.run()
        #expect(h.workers[0].worker.counters[.toBackend] == 2)
        // Its end takes it out of the directory.
        try h.control.drop(call.slot)
        h.run()
        h.control.reclaim()
        #expect(h.control.slot(ofClient: flow(call)) == nil)
    }
}
