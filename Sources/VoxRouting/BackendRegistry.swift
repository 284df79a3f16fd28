import VoxMedia
import VoxWire

/// What describes a backend, from the configuration's `backends` or `backend.upsert`.
public struct BackendSpec: Sendable, Equatable {
    /// The backend's name, unique on this edge (`[A-Za-z0-9._:-]`, 1...64 bytes).
    public var id: String
    public var address: IPAddress
    public var port: UDPPort
    /// The backend protocol's shared key (docs/backend-protocol.md), or nil for plain RTP.
    public var key: [UInt8]?
    public var region: String
    /// What it has loaded; empty: it serves a call whatever model it asks for.
    public var models: [ModelName]
    /// What it takes and sends. Opus pass-through only until the audio issue adds L16.
    public var media: Media
    /// How many sessions it takes at most (its load reports may change it); by default
    /// `maximumCapacity`, which is unbounded in practice.
    public var capacity: Int

    public enum Media: String, Sendable, CaseIterable { case opus }

    public init(
        id: String, address: IPAddress, port: UDPPort, key: [UInt8]? = nil, region: String = "",
        models: [ModelName] = [], media: Media = .opus, capacity: Int = BackendSpec.maximumCapacity
    ) {
        self.id = id
        self.address = address
        self.port = port
        self.key = key
        self.region = region
        self.models = models
        self.media = media
        self.capacity = capacity
    }

    public static let maximumIDLength = 64
    public static let maximumCapacity = 1_000_000

    /// Whether `id` may name a backend: what logs, metrics labels and `route.explain` can
    /// show as it is.
    public static func isValidID(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= maximumIDLength
            && id.utf8.allSatisfy { c in
                (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x2E
                    || c == 0x5F || c == 0x3A || c == 0x2D
            }
    }
}

/// A load report for one backend (`backend.report`): what the backend, or the scheduler in
/// front of it, says of itself.
public struct BackendLoad: Sendable, Equatable {
    /// Sessions it carries now, from every edge.
    public var sessions: Int
    /// Requests waiting for the model.
    public var queueDepth: Int
    /// How long one request takes to serve, in milliseconds.
    public var serviceTimeMs: Double
    /// Its capacity now, when the report says (a backend that scaled).
    public var capacity: Int?

    public init(sessions: Int, queueDepth: Int, serviceTimeMs: Double, capacity: Int? = nil) {
        self.sessions = sessions
        self.queueDepth = queueDepth
        self.serviceTimeMs = serviceTimeMs
        self.capacity = capacity
    }
}

/// One backend as the registry keeps it.
public struct RegisteredBackend: Sendable {
    public internal(set) var spec: BackendSpec
    /// Its place in the published table: what a session's slot holds. Stable while it lives.
    public let index: Int32
    /// Draining: takes no new session; its own sessions go on.
    public internal(set) var draining: Bool = false
    /// Why it is down (nil while it is up): its next hop is unusable, its keepalives stopped.
    public internal(set) var down: String? = nil
    public internal(set) var load: BackendLoad? = nil
    /// When the last report came (monotonic ns).
    public internal(set) var reportedAt: UInt64? = nil
    /// Sessions this edge placed on it since its last report (assumed load).
    public internal(set) var assumed: Int = 0
    /// The last RTT measured from this edge (the backend protocol's keepalives).
    public internal(set) var rttMs: Double? = nil
    /// When it joined a running registry (monotonic ns), for its ramp-up; nil for the
    /// configuration's initial set.
    public internal(set) var addedAt: UInt64?
    /// Sessions this edge has on it now.
    public internal(set) var sessions: Int = 0

    /// The state workers see in the published table.
    public var state: Backend.State { down != nil ? .down : draining ? .draining : .active }
}

/// Why a backend was not a candidate for a call.
public enum Exclusion: String, Sendable {
    case down, draining, model, full
}

/// One backend's part in a placement: its inputs, its score and what became of it — what
/// `route.explain` shows.
public struct Candidate: Sendable {
    public var index: Int32
    public var id: String
    public var exclusion: Exclusion?
    public var rttMs: Double
    public var rttMeasured: Bool
    /// Reported queue depth + assumed load (weighted).
    public var queue: Double
    public var serviceTimeMs: Double
    /// Reported sessions + assumed, against the capacity in effect (ramped).
    public var sessions: Int
    public var capacity: Int
    /// Milliseconds since its last report; nil if it never reported.
    public var reportAgeMs: Double?
    public var queueWaitMs: Double
    public var loadPenaltyMs: Double
    public var stalePenaltyMs: Double
    public var score: Double
    /// Among the best `choices` the two were drawn from.
    public var inDrawSet: Bool = false
    public var drawn: Bool = false
    public var chosen: Bool = false
}

/// The outcome of placing a call: the backend, or why there is none, and every candidate.
public struct PlacementDecision: Sendable {
    public var chosen: Int32?
    /// Why no backend was chosen (nil when one was): a sentence for the 503 and the error.
    public var failure: String?
    public var model: ModelName?
    /// Every backend, eligible ones first by score, then the excluded by index. Filled only
    /// when asked for (`explain`), empty otherwise: placing must not cost a sort of them all.
    public var candidates: [Candidate]
}

/// The live backend registry (DESIGN §3), on the control thread only: every backend this edge
/// may send calls to, its liveness, its load as last reported plus what this edge placed since,
/// and placement of new calls. Its table of `Backend`s by index is what workers read, published
/// by `RouteTable`. Indices are stable: a backend keeps its index while it lives, and a removed
/// one's index is taken again only by a later backend (never while a session is on it: a
/// backend carrying sessions cannot be removed).
public struct BackendRegistry: Sendable {
    public internal(set) var entries: [RegisteredBackend?] = []
    var byID: [String: Int32] = [:]
    public let capacity: Int
    public var policy: RoutingPolicy

    public init(capacity: Int = 1024, policy: RoutingPolicy = RoutingPolicy()) {
        self.capacity = capacity
        self.policy = policy
    }

    public var count: Int { byID.count }
    public func index(of id: String) -> Int32? { byID[id] }
    public subscript(_ index: Int32) -> RegisteredBackend? {
        index >= 0 && Int(index) < entries.count ? entries[Int(index)] : nil
    }
    public subscript(id id: String) -> RegisteredBackend? { byID[id].flatMap { self[$0] } }

    /// Every backend, by index.
    public var all: [RegisteredBackend] { entries.compactMap { $0 } }

    public enum UpsertResult: Sendable, Equatable { case added(Int32), updated(Int32) }

    /// Adds `spec`, or updates the backend of that id. A backend's address, port and key are
    /// its sessions' backend leg: they change only while it carries none. `now` is nil for the
    /// configuration's initial set (no ramp-up); a backend added later ramps up from `now`.
    @discardableResult
    public mutating func upsert(_ spec: BackendSpec, draining: Bool? = nil, now: UInt64?) throws(RoutingError)
        -> UpsertResult
    {
        guard BackendSpec.isValidID(spec.id) else {
            throw RoutingError(
                code: "bad_argument",
                message: "backend id '\(spec.id.prefix(80))' must be 1...\(BackendSpec.maximumIDLength) bytes of A-Z a-z 0-9 . _ : -")
        }
        guard (1...BackendSpec.maximumCapacity).contains(spec.capacity) else {
            throw RoutingError(code: "bad_argument", message: "capacity \(spec.capacity) is not 1...\(BackendSpec.maximumCapacity)")
        }
        if let index = byID[spec.id], var entry = entries[Int(index)] {
            let moved = entry.spec.address != spec.address || entry.spec.port != spec.port || entry.spec.key != spec.key
            if moved && entry.sessions > 0 {
                throw RoutingError(
                    code: "backend_in_use",
                    message: "backend \(spec.id) carries \(entry.sessions) session(s): its address, port and key "
                        + "change only while it carries none (drain it first)")
            }
            if let other = byEndpoint(spec.address, spec.port), other != index {
                throw RoutingError(
                    code: "backend_exists",
                    message: "\(spec.address):\(spec.port) is backend \(entries[Int(other)]!.spec.id)'s")
            }
            entry.spec = spec
            if let draining { entry.draining = draining }
            entries[Int(index)] = entry
            return .updated(index)
        }
        if let other = byEndpoint(spec.address, spec.port) {
            throw RoutingError(
                code: "backend_exists", message: "\(spec.address):\(spec.port) is backend \(entries[Int(other)]!.spec.id)'s")
        }
        let free = entries.firstIndex { $0 == nil }
        guard free != nil || entries.count < capacity else {
            throw RoutingError(code: "full", message: "the registry holds its \(capacity) backends (max_backends)")
        }
        let index = Int32(free ?? entries.count)
        var entry = RegisteredBackend(spec: spec, index: index, addedAt: now)
        entry.draining = draining ?? false
        if let free { entries[free] = entry } else { entries.append(entry) }
        byID[spec.id] = index
        return .added(index)
    }

    func byEndpoint(_ address: IPAddress, _ port: UDPPort) -> Int32? {
        entries.first { $0?.spec.address == address && $0?.spec.port == port }??.index
    }

    /// Forgets backend `id`. Refused while it carries sessions: drain it, and remove it once
    /// they ended.
    @discardableResult
    public mutating func remove(_ id: String) throws(RoutingError) -> RegisteredBackend {
        guard let index = byID[id], let entry = entries[Int(index)] else {
            throw RoutingError(code: "unknown_backend", message: "no backend '\(id.prefix(80))'")
        }
        guard entry.sessions == 0 else {
            throw RoutingError(
                code: "backend_in_use",
                message: "backend \(id) carries \(entry.sessions) session(s): drain it (no new sessions) and remove "
                    + "it once they ended")
        }
        entries[Int(index)] = nil
        byID[id] = nil
        while let last = entries.last, last == nil { entries.removeLast() }
        return entry
    }

    /// A load report: replaces the last one, and the assumed load with it (the report counts
    /// what it counts; sessions placed after it was taken are counted again from zero).
    /// False if no backend has that id (a fleet's scheduler may report backends this edge does
    /// not use).
    @discardableResult
    public mutating func report(_ id: String, _ load: BackendLoad, now: UInt64) -> Bool {
        guard let index = byID[id], var entry = entries[Int(index)] else { return false }
        entry.load = load
        if let c = load.capacity { entry.spec.capacity = c }
        entry.reportedAt = now
        entry.assumed = 0
        entries[Int(index)] = entry
        return true
    }

    public mutating func setDraining(_ index: Int32, _ draining: Bool) {
        entries[Int(index)]?.draining = draining
    }

    /// Liveness: `reason` is why it is down, nil when it is up again.
    public mutating func setDown(_ index: Int32, _ reason: String?) {
        entries[Int(index)]?.down = reason
    }

    public mutating func measured(_ index: Int32, rttMs: Double) {
        entries[Int(index)]?.rttMs = rttMs
    }

    /// A session of this edge's went to `index` (placed, or named by `session.create`).
    public mutating func sessionStarted(on index: Int32) {
        guard entries.indices.contains(Int(index)), entries[Int(index)] != nil else { return }
        entries[Int(index)]!.sessions += 1
        entries[Int(index)]!.assumed += 1
    }

    public mutating func sessionEnded(on index: Int32) {
        guard entries.indices.contains(Int(index)), let e = entries[Int(index)], e.sessions > 0 else { return }
        entries[Int(index)]!.sessions -= 1
    }

    /// Scores backend `e` for a call asking for `model` at `now`.
    public func candidate(_ e: RegisteredBackend, model: ModelName?, now: UInt64) -> Candidate {
        let p = policy
        var capacity = e.spec.capacity
        if let added = e.addedAt, p.rampMs > 0 {
            let age = Double(now &- added) / 1e6
            if age < Double(p.rampMs) {
                let share = p.rampFloor + (1 - p.rampFloor) * max(0, age) / Double(p.rampMs)
                capacity = max(1, Int((Double(capacity) * share).rounded(.down)))
            }
        }
        // A backend's own report counts every edge's sessions; before its first, what this
        // edge has there is all that is known.
        let sessions = (e.load?.sessions ?? e.sessions - e.assumed) + e.assumed
        // Weighted: this edge's placements stand for every edge's since the report.
        let weighted = Double(e.assumed) * p.assumedWeight
        let queue = Double(e.load?.queueDepth ?? 0) + weighted
        let loaded = Double(e.load?.sessions ?? e.sessions - e.assumed) + weighted
        let service = e.load?.serviceTimeMs ?? p.defaultServiceTimeMs
        let rtt = e.rttMs ?? p.defaultRTTMs
        let ageMs = e.reportedAt.map { Double(now &- $0) / 1e6 }
        // Never reported counts as wholly stale, from the start: a backend whose load nobody
        // reports is placed on by RTT and this edge's own count alone, behind fresh ones.
        let staleness = ageMs.map { min(1, max(0, ($0 - Double(p.freshMs)) / Double(p.staleMs - p.freshMs))) } ?? 1
        let utilisation = loaded / Double(capacity)
        var c = Candidate(
            index: e.index, id: e.spec.id, exclusion: nil, rttMs: rtt, rttMeasured: e.rttMs != nil, queue: queue,
            serviceTimeMs: service, sessions: sessions, capacity: capacity, reportAgeMs: ageMs,
            queueWaitMs: queue * service, loadPenaltyMs: p.loadPenaltyMs * min(utilisation, 1),
            stalePenaltyMs: p.stalePenaltyMs * staleness, score: 0)
        // The call's own request is served after the queue: a slow backend scores worse even idle.
        c.score = rtt + c.queueWaitMs + service + c.loadPenaltyMs + c.stalePenaltyMs
        if e.down != nil {
            c.exclusion = .down
        } else if e.draining {
            c.exclusion = .draining
        } else if let model, !e.spec.models.isEmpty, !e.spec.models.contains(where: { $0.serves(model) }) {
            c.exclusion = .model
        } else if sessions >= capacity {
            c.exclusion = .full
        }
        return c
    }

    /// The model a call asking for `requested` gets: that one, or the policy's default.
    public func model(for requested: String?) throws(RoutingError) -> ModelName? {
        guard let requested, !requested.isEmpty else { return policy.defaultModel }
        guard let model = ModelName(requested) else {
            throw RoutingError(
                code: "bad_argument",
                message: "model '\(requested.prefix(80))' is not `name` or `name@version` (at most \(ModelName.maximumLength) bytes, no spaces)")
        }
        return model
    }

    /// Chooses a backend for a new call asking for `model` (DESIGN §3): of the eligible
    /// backends (up, not draining, serving the model, with room), the best `choices` by
    /// score; two of them drawn at random; the better of the two. The choice counts at once
    /// as assumed load. With `explain`, the decision lists every candidate; without, it lists
    /// none and the choice costs one pass over the backends plus a sort of `choices`.
    public mutating func place(
        model: ModelName?, now: UInt64, using rng: inout some RandomNumberGenerator, explain: Bool = false,
        commit: Bool = true
    ) -> PlacementDecision {
        let k = policy.choices
        var best: [Candidate] = []
        best.reserveCapacity(k + 1)
        var all: [Candidate] = []
        var excluded: [Exclusion: Int] = [:]
        for case let e? in entries {
            let c = candidate(e, model: model, now: now)
            if explain { all.append(c) }
            if let why = c.exclusion {
                excluded[why, default: 0] += 1
                continue
            }
            // Keep the best k, ordered by score then index (deterministic ties).
            if best.count == k, let last = best.last, !Self.before(c, last) { continue }
            let at = best.firstIndex { Self.before(c, $0) } ?? best.count
            best.insert(c, at: at)
            if best.count > k { best.removeLast() }
        }
        var decision = PlacementDecision(chosen: nil, failure: nil, model: model, candidates: [])
        if best.isEmpty {
            decision.failure = failure(model: model, excluded: excluded)
        } else {
            var pick = 0
            var drawn: [Int] = [0]
            if best.count > 1 {
                let a = Int.random(in: 0..<best.count, using: &rng)
                var b = Int.random(in: 0..<(best.count - 1), using: &rng)
                if b >= a { b += 1 }
                drawn = [a, b]
                pick = Self.before(best[a], best[b]) ? a : b
            }
            let chosen = best[pick].index
            decision.chosen = chosen
            if explain {
                let drawSet = Set(best.map(\.index))
                let drawnSet = Set(drawn.map { best[$0].index })
                for i in all.indices {
                    all[i].inDrawSet = drawSet.contains(all[i].index)
                    all[i].drawn = drawnSet.contains(all[i].index)
                    all[i].chosen = all[i].index == chosen
                }
            }
            if commit { sessionStarted(on: chosen) }
        }
        if explain {
            decision.candidates = all.sorted { a, b in
                switch (a.exclusion, b.exclusion) {
                case (nil, nil): return Self.before(a, b)
                case (nil, _): return true
                case (_, nil): return false
                default: return a.index < b.index
                }
            }
        }
        return decision
    }

    static func before(_ a: Candidate, _ b: Candidate) -> Bool {
        a.score < b.score || (a.score == b.score && a.index < b.index)
    }

    /// The sentence for a call no backend can take.
    func failure(model: ModelName?, excluded: [Exclusion: Int]) -> String {
        guard count > 0 else { return "no backends are registered" }
        let serving = count - (excluded[.model] ?? 0)
        let asked = model.map { "model \($0)" } ?? "any model"
        guard serving > 0 else { return "no backend serves \(asked)" }
        var parts: [String] = []
        for why in [Exclusion.down, .draining, .full] {
            if let n = excluded[why] { parts.append("\(n) \(why.rawValue)") }
        }
        return "none of the \(serving) backend(s) serving \(asked) can take a call: " + parts.joined(separator: ", ")
    }

    /// The table workers read: index → address, port, MAC, state, key. `mac` gives each
    /// address's next-hop MAC, or nil when it has no usable one (then the entry is down).
    public func table(mac: (IPAddress) -> MACAddress?) -> BackendTable {
        var out: [Backend] = []
        out.reserveCapacity(entries.count)
        for slot in entries {
            guard let e = slot else {
                out.append(Backend(address: .loopbackV4, port: UDPPort(0), mac: .zero, state: .down))
                continue
            }
            var b = Backend(address: e.spec.address, port: e.spec.port, mac: .zero, state: e.state)
            if let hop = mac(e.spec.address) { b.mac = hop } else { b.state = .down }
            if let key = e.spec.key { b.key = key.withUnsafeBytes { HMACSHA1Key(key: $0) } }
            out.append(b)
        }
        return BackendTable(out)
    }
}

/// A registry request that cannot be done: a stable code and a sentence.
public struct RoutingError: Error, Sendable, Equatable {
    public var code: String
    public var message: String
    public init(code: String, message: String) {
        self.code = code
        self.message = message
    }
}
