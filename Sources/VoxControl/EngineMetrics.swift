import CoreMetrics
import Glibc
import Prometheus
import Synchronization
import VoxSignaling
import VoxEngine
import VoxIO
import VoxMedia
import VoxRouting
import VoxWire
import VoxXDP

/// The engine's metrics, through swift-metrics, exported by swift-prometheus: every counter
/// and gauge `voxedge ctl stats` shows.
///
/// The workers' counters stay plain single-writer blocks (the hot path calls no metrics API);
/// a scrape reads them and advances the matching swift-metrics counters by what changed since
/// the last scrape, so scraping costs the data plane nothing. The control thread's own state
/// (sessions, backends and their next hops) is published by the control thread itself
/// (`publish`), and the control socket counts its requests as they happen. One instance per
/// engine, on a registry of its own (no global bootstrap: tests run many engines in one process).
public final class EngineMetrics: @unchecked Sendable {
    public let registry = PrometheusCollectorRegistry()
    let factory: PrometheusMetricsFactory
    let runtime: EngineRuntime

    let requests: CoreMetrics.Counter
    let errors: CoreMetrics.Counter
    let clients: CoreMetrics.Gauge
    let subscribers: CoreMetrics.Gauge
    let eventsLost: CoreMetrics.Counter
    let capacity: CoreMetrics.Gauge
    let sessions: CoreMetrics.Gauge

    /// Counters advanced at scrape time, with the value each had then.
    struct Tracked {
        var counters: [String: (counter: CoreMetrics.Counter, last: UInt64)] = [:]
        var seconds: [String: (counter: FloatingPointCounter, last: UInt64)] = [:]
        var gauges: [String: CoreMetrics.Gauge] = [:]
        var closed: [String: CoreMetrics.Counter] = [:]
        /// The backend info series now exported, by backend index.
        var backends: [Int: (labels: [(String, String)], gauge: CoreMetrics.Gauge)] = [:]
        /// The backends whose routing series are exported, and the series' keys.
        var routed: [String: [String]] = [:]
    }
    let tracked = Mutex(Tracked())
    /// The public signaling listener, once it runs: its request outcomes and open connections.
    public let signaling = Mutex<SignalingServer?>(nil)

    public init(runtime: EngineRuntime) {
        self.runtime = runtime
        factory = PrometheusMetricsFactory(registry: registry)
        requests = CoreMetrics.Counter(label: "voxedge_control_requests_total", factory: factory)
        errors = CoreMetrics.Counter(label: "voxedge_control_errors_total", factory: factory)
        clients = CoreMetrics.Gauge(label: "voxedge_control_clients", factory: factory)
        subscribers = CoreMetrics.Gauge(label: "voxedge_control_subscribers", factory: factory)
        eventsLost = CoreMetrics.Counter(label: "voxedge_control_events_lost_total", factory: factory)
        capacity = CoreMetrics.Gauge(label: "voxedge_session_capacity", factory: factory)
        sessions = CoreMetrics.Gauge(label: "voxedge_sessions", factory: factory)
        capacity.record(runtime.store.capacity)
        sessions.record(0)
        clients.record(0)
    }

    // MARK: The control socket (control thread)

    func controlRequest(failed: Bool) {
        requests.increment()
        if failed { errors.increment() }
    }

    func controlClients(_ n: Int) { clients.record(n) }
    func controlSubscribers(_ n: Int) { subscribers.record(n) }
    func controlEventsLost() { eventsLost.increment() }

    func controlClosed(reason: String) {
        let counter = tracked.withLock { t in
            if let c = t.closed[reason] { return c }
            let c = CoreMetrics.Counter(label: "voxedge_control_closed_total", dimensions: [("reason", reason)], factory: factory)
            t.closed[reason] = c
            return c
        }
        counter.increment()
    }

    // MARK: The control thread's state

    /// Sessions and backends (index, address, next-hop MAC, state) as the control thread
    /// sees them; called on the control thread, every tick and before replies go out.
    public func publish(sessions live: Int, byState: [String: Int] = [:], backends table: BackendTable) {
        sessions.record(live)
        tracked.withLock { t in
            for (state, count) in byState {
                gauge(&t, "voxedge_sessions_by_state", [("state", state)]).record(count)
            }
            for i in 0..<table.count {
                let b = table[i]
                let address = b.address.isIPv4 ? "\(b.address):\(b.port)" : "[\(b.address)]:\(b.port)"
                let labels = [("backend", "\(i)"), ("address", address), ("next_hop", "\(b.mac)"), ("state", "\(b.state)")]
                if let now = t.backends[i], now.labels.elementsEqual(labels, by: { $0 == $1 }) { continue }
                t.backends[i]?.gauge.destroy()
                let gauge = CoreMetrics.Gauge(label: "voxedge_backend_info", dimensions: labels, factory: factory)
                gauge.record(1)
                t.backends[i] = (labels, gauge)
            }
        }
    }

    /// One backend's routing figures, as the control thread publishes them each second.
    public struct RoutingRow: Sendable {
        public var id: String
        public var sessions: Int
        public var scoreMs: Double
        public var reportAgeSeconds: Double?
        public var rttMs: Double?
    }

    /// The registry's figures (called on the control thread once a second): sessions, score
    /// (for the default model), report age and RTT per backend, placements by outcome, load
    /// reports applied. A removed backend's series go with it.
    public func publishRouting(_ rows: [RoutingRow], placements: [String: Int], reports: Int) {
        tracked.withLock { t in
            var seen = Set<String>()
            for row in rows {
                seen.insert(row.id)
                let labels = [("backend", row.id)]
                var keys: [String] = []
                func set(_ name: String, _ value: Double) {
                    gauge(&t, name, labels).record(value)
                    keys.append(EngineMetrics.key(name, labels))
                }
                set("voxedge_backend_sessions", Double(row.sessions))
                set("voxedge_backend_score_milliseconds", row.scoreMs)
                if let age = row.reportAgeSeconds { set("voxedge_backend_report_age_seconds", age) }
                if let rtt = row.rttMs { set("voxedge_backend_rtt_milliseconds", rtt) }
                t.routed[row.id] = keys
            }
            for (id, keys) in t.routed where !seen.contains(id) {
                for key in keys { t.gauges.removeValue(forKey: key)?.destroy() }
                t.routed[id] = nil
            }
            for (outcome, n) in placements {
                advance(&t, "voxedge_placements_total", [("outcome", outcome)], to: UInt64(n))
            }
            advance(&t, "voxedge_backend_reports_total", [], to: UInt64(reports))
        }
    }

    // MARK: Scrape

    /// The Prometheus text exposition (format 0.0.4), the workers' counters read now.
    public func exposition() -> [UInt8] {
        let now = MonotonicClock.now()
        tracked.withLock { t in
            for (w, c) in runtime.counters.enumerated() {
                let worker = ("worker", "\(w)")
                for v in PacketVerdict.allCases {
                    advance(&t, "voxedge_packets_total", [worker, ("verdict", "\(v)")], to: c[v])
                }
                for d in DropReason.allCases {
                    advance(&t, "voxedge_drops_total", [worker, ("reason", "\(d)")], to: c[d])
                }
                advance(&t, "voxedge_received_packets_total", [worker], to: c.received)
                advance(&t, "voxedge_handed_in_packets_total", [worker], to: c.handedIn)
                advance(&t, "voxedge_bursts_total", [worker], to: c.bursts)
                advance(&t, "voxedge_sessions_claimed_total", [worker], to: c.sessionsClaimed)
                for reason in SessionEndReason.allCases {
                    advance(&t, "voxedge_sessions_ended_total", [worker, ("reason", "\(reason)")], to: c.sessionsEnded(reason))
                }
                for v in BackendVerdict.allCases where v != .notControl {
                    advance(&t, "voxedge_backend_messages_total", [worker, ("verdict", "\(v)")], to: c.backendMessages(v))
                }
                for counter in BackendCounter.allCases {
                    advance(&t, "voxedge_backend_protocol_total", [worker, ("event", counter.name)], to: c[counter])
                }
                advanceSeconds(&t, "voxedge_worker_busy_seconds_total", [worker], nanoseconds: c.busyNanoseconds)
                advanceSeconds(&t, "voxedge_worker_idle_seconds_total", [worker], nanoseconds: c.idleNanoseconds)
                let beat = c.heartbeat
                gauge(&t, "voxedge_worker_heartbeat_age_seconds", [worker]).record(beat == 0 || beat > now ? 0 : Double(now - beat) / 1e9)
            }
            for w in 0..<runtime.counters.count {
                guard let s = runtime.socketPortStatistics(worker: w) else { continue }
                for (reason, value) in s.labelled {
                    advance(&t, "voxedge_socket_drops_total", [("worker", "\(w)"), ("reason", reason)], to: value)
                }
            }
            if let xdp = runtime.xdp {
                for w in 0..<runtime.counters.count {
                    let k = runtime.xskStatistics(worker: w)
                    for (reason, value) in [
                        ("rx_dropped", k.rxDropped), ("rx_ring_full", k.rxRingFull), ("rx_fill_ring_empty", k.rxFillRingEmpty),
                        ("rx_invalid_descriptors", k.rxInvalidDescriptors), ("tx_invalid_descriptors", k.txInvalidDescriptors),
                    ] {
                        advance(&t, "voxedge_xsk_kernel_drops_total", [("worker", "\(w)"), ("reason", reason)], to: value)
                    }
                }
                if let counters = xdp.programCounters() {
                    for counter in XDPCounter.allCases {
                        advance(
                            &t, "voxedge_xdp_packets_total", [("interface", xdp.interface), ("counter", "\(counter)")],
                            to: counters[counter])
                    }
                }
            }
            // Held sessions no check claimed, freed by the control thread at their deadline.
            advance(
                &t, "voxedge_sessions_ended_total", [("worker", "none"), ("reason", "\(SessionEndReason.connectTimeout)")],
                to: runtime.control.expiredUnclaimed.load(ordering: .relaxed))
            if let server = signaling.withLock({ $0 }) {
                for (outcome, count) in server.service.statistics.snapshot {
                    advance(&t, "voxedge_signaling_requests_total", [("outcome", outcome)], to: UInt64(count))
                }
                gauge(&t, "voxedge_signaling_connections", []).record(server.openConnections)
            }
            let h = runtime.handshakes.snapshot
            advance(&t, "voxedge_handshakes_total", [("result", "started")], to: h.started)
            advance(&t, "voxedge_handshakes_total", [("result", "succeeded")], to: h.succeeded)
            for code in DTLSError.Code.allCases {
                advance(&t, "voxedge_handshakes_failed_total", [("reason", code.rawValue)], to: h.failed[code.rawValue] ?? 0)
            }
            advance(&t, "voxedge_handshakes_closed_by_client_total", [], to: h.closedByClient)
            advance(&t, "voxedge_handshake_unexpected_datagrams_total", [], to: h.unexpected)
            advance(&t, "voxedge_handshake_flights_dropped_total", [], to: h.flightsDropped + h.commandsDropped)
            advanceSeconds(&t, "voxedge_handshake_cpu_seconds_total", [], nanoseconds: h.cpuNanoseconds)
        }
        var out: [UInt8] = []
        out.reserveCapacity(16 * 1024)
        registry.emit(into: &out)
        let h = runtime.handshakes.snapshot
        EngineMetrics.histogram(
            "voxedge_session_setup_seconds", help: "Offer answered to SRTP keys installed (ICE and DTLS)", h.setup, into: &out)
        EngineMetrics.histogram(
            "voxedge_dtls_handshake_seconds", help: "A client's first DTLS datagram to its keys", h.handshake, into: &out)
        return out
    }

    /// A histogram in the text exposition format (cumulative buckets).
    static func histogram(_ name: String, help: String, _ h: LatencyHistogram, into out: inout [UInt8]) {
        var text = "# HELP \(name) \(help)\n# TYPE \(name) histogram\n"
        var cumulative: UInt64 = 0
        for (i, bound) in LatencyHistogram.bounds.enumerated() {
            cumulative += h.counts[i]
            text += "\(name)_bucket{le=\"\(bound)\"} \(cumulative)\n"
        }
        text += "\(name)_bucket{le=\"+Inf\"} \(h.count)\n\(name)_sum \(h.sum)\n\(name)_count \(h.count)\n"
        out += Array(text.utf8)
    }

    static func key(_ name: String, _ labels: [(String, String)]) -> String {
        labels.reduce(name) { $0 + "|" + $1.0 + "=" + $1.1 }
    }

    func advance(_ t: inout Tracked, _ name: String, _ labels: [(String, String)], to value: UInt64) {
        let key = EngineMetrics.key(name, labels)
        var entry = t.counters[key] ?? (CoreMetrics.Counter(label: name, dimensions: labels, factory: factory), 0)
        if value > entry.last {
            entry.counter.increment(by: Int64(clamping: value - entry.last))
            entry.last = value
        }
        t.counters[key] = entry
    }

    func advanceSeconds(_ t: inout Tracked, _ name: String, _ labels: [(String, String)], nanoseconds value: UInt64) {
        let key = EngineMetrics.key(name, labels)
        var entry = t.seconds[key] ?? (FloatingPointCounter(label: name, dimensions: labels, factory: factory), 0)
        if value > entry.last {
            entry.counter.increment(by: Double(value - entry.last) / 1e9)
            entry.last = value
        }
        t.seconds[key] = entry
    }

    func gauge(_ t: inout Tracked, _ name: String, _ labels: [(String, String)]) -> CoreMetrics.Gauge {
        let key = EngineMetrics.key(name, labels)
        if let g = t.gauges[key] { return g }
        let g = CoreMetrics.Gauge(label: name, dimensions: labels, factory: factory)
        t.gauges[key] = g
        return g
    }

    // MARK: Health

    /// Workers whose loop has not come round for longer than `limit` nanoseconds (a worker
    /// loop beats every iteration, idle wake-ups included, and sleeps at most 1 s), with how
    /// long it has been.
    public func stalledWorkers(limit: UInt64) -> [(worker: Int, nanoseconds: UInt64)] {
        let now = MonotonicClock.now()
        return runtime.counters.enumerated().compactMap { w, c in
            let beat = c.heartbeat
            guard beat != 0, now > beat, now - beat > limit else { return nil }
            return (w, now - beat)
        }
    }
}
