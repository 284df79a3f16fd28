/// The placement formula's constants (the configuration's `routing` section; docs/routing.md
/// says why each default is what it is).
///
///     score (ms) = RTT + (queue + 1) × service time + load penalty × utilisation + stale penalty × staleness
///
/// where queue = the last reported queue depth + the sessions this edge placed there since
/// (assumed load), utilisation = (reported sessions + assumed) ÷ capacity, and staleness goes
/// from 0 at `freshMs` to 1 at `staleMs` after the last report.
public struct RoutingPolicy: Sendable, Equatable {
    /// How many of the best-scored eligible backends the two are drawn from (power of two
    /// choices). 1 always takes the best; 2 (the default) takes the better of the best two,
    /// which with weighted assumed load spreads every edge's calls evenly (docs/routing.md has
    /// the herding simulation's figures for 2, 4 and 8: a wider draw set spreads less evenly
    /// when every edge reads the same report).
    public var choices: Int = 2
    /// What one placement of this edge's counts for in the queue and the load until the next
    /// report. Every edge reading the same report places alike, so its own placement stands
    /// for the others' too: with 1, each edge corrects a reported imbalance by itself and
    /// together they overshoot onto the backend that looked best (the herding simulation:
    /// p99 busiest ÷ mean 2.4 with 16 edges); about the number of edges sharing the backends
    /// is right, more only spreads calls a little more evenly than the scores ask.
    public var assumedWeight: Double = 8
    /// A report younger than this carries no penalty.
    public var freshMs: Int = 2_000
    /// At this age (and beyond) a report's penalty is all of `stalePenaltyMs`.
    public var staleMs: Int = 10_000
    /// What a wholly stale report adds to a backend's score: it is less attractive, never
    /// excluded (a dead reporter must not stop every placement; only lost liveness does).
    public var stalePenaltyMs: Double = 250
    /// What a full backend's load adds (scaled by its utilisation), so that of two equally
    /// quick backends the emptier one wins, and a backend that reports no queue still fills
    /// in proportion to its capacity.
    public var loadPenaltyMs: Double = 100
    /// A backend added while the edge runs (`backend.upsert`) takes, over this long, from
    /// `rampFloor` of its capacity to all of it: every edge learns of it at once, and none
    /// should pile its next calls onto the one empty backend.
    public var rampMs: Int = 30_000
    public var rampFloor: Double = 0.1
    /// The service time assumed before a backend's first report.
    public var defaultServiceTimeMs: Double = 50
    /// The RTT assumed before a backend's first measured one.
    public var defaultRTTMs: Double = 5
    /// The model a call gets when its token or create names none; nil: any backend serves it.
    public var defaultModel: ModelName? = nil

    public init() {}

    /// Why the policy cannot be used (nil when it can): what the configuration check says.
    public var problem: String? {
        if !(1...64).contains(choices) { return "routing.choices \(choices) is not 1...64" }
        if freshMs < 0 || staleMs <= freshMs || staleMs > 86_400_000 {
            return "routing.fresh_ms \(freshMs) and stale_ms \(staleMs) need 0 <= fresh_ms < stale_ms <= 86400000"
        }
        for (name, v) in [
            ("stale_penalty_ms", stalePenaltyMs), ("load_penalty_ms", loadPenaltyMs),
            ("default_service_time_ms", defaultServiceTimeMs), ("default_rtt_ms", defaultRTTMs),
        ] where !(v.isFinite && v >= 0 && v <= 3_600_000) {
            return "routing.\(name) \(v) is not a number of milliseconds in 0...3600000"
        }
        if !(assumedWeight.isFinite && assumedWeight >= 0 && assumedWeight <= 10_000) {
            return "routing.assumed_weight \(assumedWeight) is not in 0...10000"
        }
        if rampMs < 0 || rampMs > 86_400_000 { return "routing.ramp_ms \(rampMs) is not 0...86400000" }
        if !(rampFloor.isFinite && rampFloor > 0 && rampFloor <= 1) {
            return "routing.ramp_floor \(rampFloor) is not in (0, 1]"
        }
        return nil
    }
}
