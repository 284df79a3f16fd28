import Synchronization

/// A token bucket per source address: `burst` requests at once, refilled at `rate` per second.
/// The table is bounded: past `maxSources` addresses, buckets that have refilled (which say
/// nothing an empty entry would not) are forgotten first, then the oldest half.
public final class RateLimiter: Sendable {
    struct Bucket {
        var tokens: Double
        var updated: ContinuousClock.Instant
    }

    let rate: Double
    let burst: Double
    let maxSources: Int
    private let buckets = Mutex<[String: Bucket]>([:])

    public init(rate: Double, burst: Int, maxSources: Int = 100_000) {
        precondition(rate > 0 && burst >= 1 && maxSources >= 1)
        self.rate = rate
        self.burst = Double(burst)
        self.maxSources = maxSources
    }

    /// Takes one token for `source`: nil when the request may go on, else the whole seconds
    /// until a token is there (the `Retry-After`, at least 1).
    public func take(_ source: String, now: ContinuousClock.Instant = .now) -> Int? {
        buckets.withLock { table in
            var bucket = table[source] ?? Bucket(tokens: burst, updated: now)
            let elapsed = now - bucket.updated
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            bucket.tokens = min(burst, bucket.tokens + max(0, seconds) * rate)
            bucket.updated = now
            guard bucket.tokens >= 1 else {
                table[source] = bucket
                return max(1, Int(((1 - bucket.tokens) / rate).rounded(.up)))
            }
            bucket.tokens -= 1
            if table[source] == nil && table.count >= maxSources { prune(&table, now: now) }
            table[source] = bucket
            return nil
        }
    }

    /// Sources tracked now (for tests and metrics).
    public var trackedSources: Int { buckets.withLock { $0.count } }

    private func prune(_ table: inout [String: Bucket], now: ContinuousClock.Instant) {
        let refill = Duration.seconds(burst / rate)
        table = table.filter { now - $0.value.updated < refill }
        guard table.count >= maxSources else { return }
        let oldest = table.sorted { $0.value.updated < $1.value.updated }.prefix(table.count / 2 + 1)
        for (key, _) in oldest { table[key] = nil }
    }
}
