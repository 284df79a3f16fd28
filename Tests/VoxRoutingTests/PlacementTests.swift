import Testing
import VoxRouting
import VoxTestKit
import VoxWire

/// Scoring, eligibility and placement with an injected clock and random source.
@Suite struct PlacementTests {
    static let ms: UInt64 = 1_000_000

    static func spec(_ id: String, _ last: UInt32, models: [String] = [], capacity: Int = 100) -> BackendSpec {
        BackendSpec(
            id: id, address: IPAddress(ipv4: 0xC612_0200 + last), port: UDPPort(5004),
            models: models.map { ModelName($0)! }, capacity: capacity)
    }

    static func registry(_ specs: [BackendSpec], policy: RoutingPolicy = RoutingPolicy()) -> BackendRegistry {
        var r = BackendRegistry(capacity: 16, policy: policy)
        for s in specs { try! r.upsert(s, now: nil) }
        return r
    }

    @Test func modelNamesAndWhatServesThem() {
        #expect(ModelName("whisper")?.version == nil)
        #expect(ModelName("whisper@3")?.version == "3")
        #expect(ModelName("org/model-x@2024.1")?.name == "org/model-x")
        for bad in ["", "@3", "m@", "m@1@2", "has space", "tab\tin", String(repeating: "m", count: 257)] {
            #expect(ModelName(bad) == nil, "'\(bad)' parsed")
        }
        let loaded = ModelName("whisper@3")!
        #expect(loaded.serves(ModelName("whisper")!))
        #expect(loaded.serves(ModelName("whisper@3")!))
        #expect(!loaded.serves(ModelName("whisper@2")!))
        #expect(!loaded.serves(ModelName("tts")!))
        #expect(!ModelName("whisper")!.serves(ModelName("whisper@3")!))
    }

    @Test func theScoreIsRTTPlusQueueWaitPlusLoadAndStalePenalties() {
        var p = RoutingPolicy()
        p.loadPenaltyMs = 100
        p.stalePenaltyMs = 250
        p.freshMs = 2000
        p.staleMs = 10000
        var r = Self.registry([Self.spec("a", 1, capacity: 50)], policy: p)
        r.measured(0, rttMs: 3)
        r.report("a", BackendLoad(sessions: 10, queueDepth: 4, serviceTimeMs: 40), now: 0)
        // Fresh: 3 + 4 × 40 (the queue) + 40 (its own request) + 100 × 10/50 = 223.
        let fresh = r.candidate(r[0]!, model: nil, now: 1_000 * Self.ms)
        #expect(fresh.score == 223)
        #expect(fresh.queueWaitMs == 160 && fresh.loadPenaltyMs == 20 && fresh.stalePenaltyMs == 0)
        // Half-way from fresh to stale: half the stale penalty.
        #expect(r.candidate(r[0]!, model: nil, now: 6_000 * Self.ms).stalePenaltyMs == 125)
        // Wholly stale, and past it: all of it, never more.
        #expect(r.candidate(r[0]!, model: nil, now: 10_000 * Self.ms).stalePenaltyMs == 250)
        #expect(r.candidate(r[0]!, model: nil, now: 99_000 * Self.ms).stalePenaltyMs == 250)
        // Never reported: wholly stale, the default service time, this edge's own sessions.
        var unreported = Self.registry([Self.spec("b", 2)], policy: p)
        let c = unreported.candidate(unreported[0]!, model: nil, now: 0)
        #expect(c.stalePenaltyMs == 250 && c.serviceTimeMs == p.defaultServiceTimeMs && c.rttMs == p.defaultRTTMs)
        #expect(!c.rttMeasured && c.reportAgeMs == nil)
        unreported.sessionStarted(on: 0)
        #expect(unreported.candidate(unreported[0]!, model: nil, now: 0).sessions == 1)
    }

    @Test func placementCountsAtOnceAndAReportResetsTheAssumedLoad() {
        var p = RoutingPolicy()
        p.choices = 1
        var r = Self.registry([Self.spec("a", 1), Self.spec("b", 2)], policy: p)
        var rng = SeededRandom(seed: 1)
        for b in ["a", "b"] { r.report(b, BackendLoad(sessions: 0, queueDepth: 0, serviceTimeMs: 40), now: 0) }
        // Equal backends: the tie goes to the lower index, then the assumed load alternates.
        let picks = (0..<6).map { _ in r.place(model: nil, now: 0, using: &rng).chosen! }
        #expect(picks == [0, 1, 0, 1, 0, 1])
        #expect(r[0]!.assumed == 3 && r[0]!.sessions == 3)
        r.report("a", BackendLoad(sessions: 3, queueDepth: 0, serviceTimeMs: 40), now: 100 * Self.ms)
        #expect(r[0]!.assumed == 0 && r[0]!.sessions == 3)
        r.sessionEnded(on: 0)
        #expect(r[0]!.sessions == 2)
    }

    @Test func theTwoAreDrawnFromTheBestFewAndTheBetterWins() {
        var p = RoutingPolicy()
        p.choices = 3
        p.loadPenaltyMs = 0
        var r = Self.registry((1...6).map { Self.spec("b\($0)", UInt32($0)) }, policy: p)
        // Queue depths 0...5: b1 best, b6 worst.
        for i in 0..<6 { r.report("b\(i + 1)", BackendLoad(sessions: 0, queueDepth: i, serviceTimeMs: 10), now: 0) }
        var rng = SeededRandom(seed: 7)
        var counts = [Int](repeating: 0, count: 6)
        for _ in 0..<3000 {
            var copy = r
            let d = copy.place(model: nil, now: 0, using: &rng)
            counts[Int(d.chosen!)] += 1
        }
        // Only the best 3 are drawn; of two drawn the better wins, so the best is chosen 2/3 of
        // the time (it wins whenever drawn), the second 1/3, the third never.
        #expect(counts[3...].allSatisfy { $0 == 0 })
        #expect(counts[2] == 0)
        #expect(counts[0] > 1800 && counts[0] < 2200)
        #expect(counts[1] > 800 && counts[1] < 1200)
        // The explanation says which were in the draw set, which were drawn, which won.
        var copy = r
        let d = copy.place(model: nil, now: 0, using: &rng, explain: true)
        #expect(d.candidates.count == 6)
        #expect(d.candidates.map(\.id) == ["b1", "b2", "b3", "b4", "b5", "b6"])
        #expect(d.candidates.filter(\.inDrawSet).map(\.id) == ["b1", "b2", "b3"])
        #expect(d.candidates.filter(\.drawn).count == 2)
        #expect(d.candidates.filter(\.chosen).map(\.index) == [d.chosen!])
    }

    @Test func onlyBackendsThatAreUpUndrainedServeTheModelAndHaveRoomAreCandidates() {
        var r = Self.registry([
            Self.spec("down", 1, models: ["m"]), Self.spec("draining", 2, models: ["m"]),
            Self.spec("other", 3, models: ["tts"]), Self.spec("full", 4, models: ["m@2"], capacity: 2),
            Self.spec("ok", 5, models: ["m@1"]), Self.spec("any", 6),
        ])
        r.setDown(0, "keepalives stopped")
        r.setDraining(1, true)
        r.report("full", BackendLoad(sessions: 2, queueDepth: 0, serviceTimeMs: 1), now: 0)
        var rng = SeededRandom(seed: 3)
        let d = r.place(model: ModelName("m"), now: 0, using: &rng, explain: true)
        let why = Dictionary(uniqueKeysWithValues: d.candidates.map { ($0.id, $0.exclusion) })
        #expect(why["down"] == .down && why["draining"] == .draining && why["other"] == .model && why["full"] == .full)
        #expect(why["ok"]! == nil && why["any"]! == nil)
        // A version asked for: only that version (or a backend that declares no models).
        var v2 = r
        let versioned = v2.place(model: ModelName("m@1"), now: 0, using: &rng, explain: true)
        #expect(versioned.candidates.first { $0.id == "full" }?.exclusion == .model)
        // Nothing eligible: a reason, no choice, nothing counted.
        var none = Self.registry([Self.spec("x", 1, models: ["tts"])])
        let failed = none.place(model: ModelName("m"), now: 0, using: &rng)
        #expect(failed.chosen == nil && failed.failure == "no backend serves model m")
        #expect(none[0]!.assumed == 0)
        none.setDraining(0, true)
        let drained = none.place(model: nil, now: 0, using: &rng)
        #expect(drained.failure == "none of the 1 backend(s) serving any model can take a call: 1 draining")
        var empty = BackendRegistry()
        let nothing = empty.place(model: nil, now: 0, using: &rng)
        #expect(nothing.failure == "no backends are registered")
    }

    @Test func aBackendAddedLaterRampsUpItsCapacity() {
        var p = RoutingPolicy()
        p.rampMs = 10_000
        p.rampFloor = 0.1
        var r = Self.registry([], policy: p)
        try! r.upsert(Self.spec("new", 1, capacity: 200), now: 1_000 * Self.ms)
        #expect(r.candidate(r[0]!, model: nil, now: 1_000 * Self.ms).capacity == 20)
        #expect(r.candidate(r[0]!, model: nil, now: 6_000 * Self.ms).capacity == 110)
        #expect(r.candidate(r[0]!, model: nil, now: 11_000 * Self.ms).capacity == 200)
        // The configuration's initial set (added with no time) takes its whole capacity at once.
        try! r.upsert(Self.spec("initial", 2, capacity: 200), now: nil)
        #expect(r.candidate(r[1]!, model: nil, now: 0).capacity == 200)
        // While ramping, it fills only to the ramped capacity.
        var rng = SeededRandom(seed: 9)
        var only = Self.registry([], policy: p)
        try! only.upsert(Self.spec("new", 1, capacity: 50), now: 0)
        let placed = (0..<10).compactMap { _ in only.place(model: nil, now: 0, using: &rng).chosen }
        #expect(placed.count == 5)
    }

    @Test func upsertAndRemoveKeepIndicesAndRefuseWhatWouldBreakLiveSessions() throws {
        var r = Self.registry([Self.spec("a", 1), Self.spec("b", 2), Self.spec("c", 3)])
        #expect(r.index(of: "b") == 1)
        // An update keeps its index; a new id on a taken address:port is refused.
        #expect(try r.upsert(Self.spec("b", 2, models: ["m"]), now: 0) == .updated(1))
        #expect(throws: RoutingError.self) { try r.upsert(Self.spec("d", 2), now: 0) }
        // Moving a backend that carries sessions would strand them: refused, and so is removing it.
        r.sessionStarted(on: 1)
        #expect(throws: RoutingError(code: "backend_in_use", message: "backend b carries 1 session(s): its address, port and key change only while it carries none (drain it first)")) {
            try r.upsert(Self.spec("b", 9), now: 0)
        }
        #expect(throws: RoutingError.self) { try r.remove("b") }
        r.sessionEnded(on: 1)
        try r.remove("b")
        #expect(r.index(of: "b") == nil && r.count == 2)
        #expect(throws: RoutingError.self) { try r.remove("b") }
        // The freed index is taken by the next backend; the others keep theirs.
        #expect(try r.upsert(Self.spec("d", 4), now: 0) == .added(1))
        #expect(r.index(of: "c") == 2)
        // Ids, capacities and the registry's own capacity are checked.
        for bad in ["", "has space", String(repeating: "x", count: 65), "é"] {
            #expect(throws: RoutingError.self) { try r.upsert(Self.spec(bad, 10), now: 0) }
        }
        for capacity in [0, -1, Int.min, BackendSpec.maximumCapacity + 1] {
            #expect(throws: RoutingError.self) { try r.upsert(Self.spec("e", 11, capacity: capacity), now: 0) }
        }
        var small = BackendRegistry(capacity: 1)
        try small.upsert(Self.spec("a", 1), now: nil)
        #expect(throws: RoutingError.self) { try small.upsert(Self.spec("b", 2), now: nil) }
        // A report for an id the registry does not hold changes nothing.
        let reported = r.report("nobody", BackendLoad(sessions: 1, queueDepth: 1, serviceTimeMs: 1), now: 0)
        #expect(!reported)
    }

    @Test func thePublishedTableKeepsIndicesAndMarksGapsAndUnreachableBackendsDown() throws {
        var r = Self.registry([Self.spec("a", 1), Self.spec("b", 2), Self.spec("c", 3)])
        try r.remove("b")
        r.setDraining(2, true)
        let reachable = IPAddress(ipv4: 0xC612_0201)
        let table = r.table(mac: { $0 == reachable ? MACAddress(2, 0, 0, 0, 0, 1) : nil })
        #expect(table.count == 3)
        #expect(table[0].state == .active && table[0].mac == MACAddress(2, 0, 0, 0, 0, 1))
        #expect(table[1].state == .down)
        #expect(table[2].state == .down)  // no next hop beats draining
        #expect(table.usable(1) == nil && table.usable(0) != nil)
    }
}
