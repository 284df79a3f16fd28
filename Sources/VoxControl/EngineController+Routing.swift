import Foundation
import VoxEngine
import VoxIO
import VoxRouting
import VoxWire

/// The backend registry's commands (issue 18; docs/routing.md): `backend.upsert`,
/// `backend.report`, `backend.remove`, `backend.list`, `backend.drain`/`undrain`,
/// `route.explain`, and placement of new sessions.
extension EngineController {
    var routes: RouteTable { runtime.routes }

    func handleRouting(_ request: ControlRequest) throws(ControlError) -> ControlReply? {
        switch request.command {
        case "backend.upsert": return try upsertBackend(request)
        case "backend.report": return try reportLoad(request)
        case "backend.remove": return try removeBackend(request)
        case "backend.list": return .ok(["backends": routes.registry.all.map { describe(backend: $0) }])
        case "backend.drain": return try drainBackend(request, true)
        case "backend.undrain": return try drainBackend(request, false)
        case "route.explain": return try explain(request)
        default: return nil
        }
    }

    /// `backend.upsert {"backend": {...}}`: adds a backend or changes one (by `id`). Every
    /// field but `id`, `address` and `port` is optional; an update keeps what it does not name.
    func upsertBackend(_ r: ControlRequest) throws(ControlError) -> ControlReply {
        guard let object = r.arguments["backend"] as? [String: Any] else {
            throw ControlError(code: "bad_argument", message: "'backend' must be an object with id, address and port")
        }
        let b = ControlRequest(id: r.id, command: r.command, arguments: object)
        let known: Set<String> = ["id", "address", "port", "key", "region", "models", "media", "capacity", "draining"]
        if let unknown = object.keys.sorted().first(where: { !known.contains($0) }) {
            throw ControlError(
                code: "bad_argument",
                message: "unknown backend field '\(unknown.prefix(40))'; known: \(known.sorted().joined(separator: ", "))")
        }
        let id = try b.string("id")
        let addressText = try b.string("address")
        guard let address = IPAddress(addressText) else {
            throw ControlError(code: "bad_argument", message: "'address' \(ControlRequest.show(addressText)) is not an IP address")
        }
        let port = try b.integer("port", in: UInt16(1)...UInt16.max)
        if let reason = runtime.configuration.peerProblem(address, port) {
            throw ControlError(code: "bad_argument", message: "backend \(address):\(port) refused: \(reason)")
        }
        let old = routes.registry[id: id]?.spec
        var key = old?.key
        if let text = try b.optionalString("key") {
            guard let bytes = Data(base64Encoded: text), bytes.count >= 16, bytes.count <= 4096 else {
                throw ControlError(code: "bad_argument", message: "'key' must be base64 of 16...4096 bytes")
            }
            key = [UInt8](bytes)
        }
        var models = old?.models ?? []
        if let list = object["models"] {
            guard let texts = list as? [String], texts.count <= 256 else {
                throw ControlError(code: "bad_argument", message: "'models' must be an array of at most 256 strings")
            }
            models = []
            for text in texts {
                guard let m = ModelName(text) else {
                    throw ControlError(
                        code: "bad_argument", message: "model '\(text.prefix(80))' is not `name` or `name@version`")
                }
                models.append(m)
            }
        }
        var media = old?.media ?? .opus
        if let text = try b.optionalString("media") {
            guard let m = BackendSpec.Media(rawValue: text) else {
                throw ControlError(
                    code: "bad_argument",
                    message: "media '\(text.prefix(40))' is not one of \(BackendSpec.Media.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            media = m
        }
        let region = try b.optionalString("region") ?? old?.region ?? ""
        guard region.utf8.count <= 64 else { throw ControlError(code: "bad_argument", message: "'region' is over 64 bytes") }
        let capacity = try b.optionalInteger("capacity", in: 1...BackendSpec.maximumCapacity)
            ?? old?.capacity ?? BackendSpec.maximumCapacity
        var draining: Bool? = nil
        if let v = object["draining"] {
            guard let n = v as? NSNumber, String(cString: n.objCType) == "c" else {
                throw ControlError(code: "bad_argument", message: "'draining' must be true or false")
            }
            draining = n.boolValue
        }
        let spec = BackendSpec(
            id: id, address: address, port: UDPPort(port), key: key, region: region, models: models, media: media,
            capacity: capacity)
        let result: BackendRegistry.UpsertResult
        do {
            result = try routes.upsert(spec, draining: draining, now: MonotonicClock.now())
        } catch {
            throw ControlError(code: error.code, message: error.message)
        }
        let added: Bool
        switch result {
        case .added: added = true
        case .updated: added = false
        }
        let entry = routes.registry[id: id]!
        server?.publish(added ? "backend.added" : "backend.updated", describe(backend: entry))
        return .ok(["backend": describe(backend: entry), "created": added])
    }

    /// `backend.report {"reports": [{backend, sessions, queue_depth, service_time_ms, capacity?}, …]}`:
    /// load reports, hundreds in a line. All are checked before any is applied; a report for an id
    /// this edge does not hold is listed in `unknown`, not an error (a fleet's scheduler reports
    /// every backend to every edge).
    func reportLoad(_ r: ControlRequest) throws(ControlError) -> ControlReply {
        guard let list = r.arguments["reports"] as? [Any] else {
            throw ControlError(code: "bad_argument", message: "'reports' must be an array of load reports")
        }
        var loads: [(String, BackendLoad)] = []
        loads.reserveCapacity(list.count)
        for (i, item) in list.enumerated() {
            guard let object = item as? [String: Any] else {
                throw ControlError(code: "bad_argument", message: "reports[\(i)] must be an object")
            }
            let one = ControlRequest(id: r.id, command: r.command, arguments: object)
            do {
                let id = try one.string("backend")
                let sessions = try one.integer("sessions", in: 0...100_000_000)
                let queue = try one.integer("queue_depth", in: 0...100_000_000)
                let service = try one.milliseconds("service_time_ms")
                let capacity = try one.optionalInteger("capacity", in: 1...BackendSpec.maximumCapacity)
                loads.append((id, BackendLoad(sessions: sessions, queueDepth: queue, serviceTimeMs: service, capacity: capacity)))
            } catch {
                throw ControlError(code: error.code, message: "reports[\(i)]: \(error.message)")
            }
        }
        let now = MonotonicClock.now()
        var unknown: [String] = []
        for (id, load) in loads where !routes.registry.report(id, load, now: now) {
            if unknown.count < 100 { unknown.append(String(id.prefix(80))) }
        }
        reportsApplied &+= loads.count - unknown.count
        return .ok(["updated": loads.count - unknown.count, "unknown": unknown])
    }

    func removeBackend(_ r: ControlRequest) throws(ControlError) -> ControlReply {
        let id = try r.string("backend")
        do {
            let gone = try routes.remove(id)
            server?.publish("backend.removed", ["backend": gone.spec.id])
            return .ok(["removed": gone.spec.id])
        } catch {
            throw ControlError(code: error.code, message: error.message)
        }
    }

    /// `backend.drain` / `backend.undrain {"backend": id}`: no new session on it (its own go
    /// on), or new sessions again.
    func drainBackend(_ r: ControlRequest, _ draining: Bool) throws(ControlError) -> ControlReply {
        let id = try r.string("backend")
        guard let entry = routes.registry[id: id] else {
            throw ControlError(code: "unknown_backend", message: "no backend '\(id.prefix(80))'")
        }
        let was = entry.draining
        routes.setDraining(entry.index, draining)
        if was != draining { server?.publish(draining ? "backend.draining" : "backend.undrained", ["backend": id]) }
        return .ok(["backend": describe(backend: routes.registry[entry.index]!), "was_draining": was])
    }

    /// `route.explain {"model": M}`: where a call asking for M would go now, with every
    /// candidate's inputs and score and why it was or was not chosen. Nothing is counted.
    func explain(_ r: ControlRequest) throws(ControlError) -> ControlReply {
        let model = try placementModel(try r.optionalString("model"))
        var rng = SystemRandomNumberGenerator()
        let d = routes.registry.place(model: model, now: MonotonicClock.now(), using: &rng, explain: true, commit: false)
        let p = routes.registry.policy
        var fields: [String: Any] = [
            "model": model.map { "\($0)" } ?? NSNull(),
            "chosen": d.chosen.flatMap { routes.registry[$0]?.spec.id } ?? NSNull(),
            "choices": p.choices,
            "candidates": d.candidates.map { c -> [String: Any] in
                var out: [String: Any] = [
                    "backend": c.id, "index": Int(c.index), "eligible": c.exclusion == nil,
                    "rtt_ms": EngineController.round(c.rttMs), "rtt_measured": c.rttMeasured, "queue": c.queue,
                    "service_time_ms": EngineController.round(c.serviceTimeMs), "sessions": c.sessions,
                    "capacity": c.capacity, "queue_wait_ms": EngineController.round(c.queueWaitMs),
                    "load_penalty_ms": EngineController.round(c.loadPenaltyMs),
                    "stale_penalty_ms": EngineController.round(c.stalePenaltyMs),
                    "score_ms": EngineController.round(c.score),
                    "report_age_ms": c.reportAgeMs.map { EngineController.round($0) as Any } ?? NSNull(),
                    "in_draw_set": c.inDrawSet, "drawn": c.drawn, "chosen": c.chosen,
                ]
                out["why"] = EngineController.why(c, choices: p.choices)
                return out
            },
        ]
        if let failure = d.failure { fields["failure"] = failure }
        return .ok(fields)
    }

    static func why(_ c: Candidate, choices: Int) -> String {
        switch c.exclusion {
        case .down?: return "down: takes no session"
        case .draining?: return "draining: takes no new session"
        case .model?: return "does not serve the model"
        case .full?: return "full: \(c.sessions) of \(c.capacity) sessions"
        case nil:
            if c.chosen { return "chosen: the better of the two drawn" }
            if c.drawn { return "drawn, but the other drawn scored better" }
            if c.inDrawSet { return "among the best \(choices), not drawn this time" }
            return "eligible, outside the best \(choices)"
        }
    }

    static func round(_ v: Double) -> Double { (v * 1000).rounded() / 1000 }

    /// The model a new session asks for: its own, else the configured default; bad text is
    /// `bad_argument`.
    func placementModel(_ requested: String?) throws(ControlError) -> ModelName? {
        do {
            return try routes.registry.model(for: requested)
        } catch {
            throw ControlError(code: error.code, message: error.message)
        }
    }

    /// The backend for a new session: the one `session.create` named (by id, or by index), or
    /// placement's choice for `model` (nothing counted yet: `placed(on:)` does that once the
    /// session exists). `no_backend` when none can take it.
    func chooseBackend(named: Any?, model: ModelName?) throws(ControlError) -> Int32 {
        if let named, !(named is NSNull) {
            let index = try namedBackend(named)
            let entry = routes.registry[index]!
            if let down = entry.down {
                throw ControlError(code: "no_backend", message: "backend \(entry.spec.id) is down (\(down))")
            }
            if entry.draining {
                throw ControlError(code: "no_backend", message: "backend \(entry.spec.id) is draining: it takes no new session")
            }
            placements["named", default: 0] += 1
            return index
        }
        var rng = SystemRandomNumberGenerator()
        let d = routes.registry.place(model: model, now: MonotonicClock.now(), using: &rng, commit: false)
        guard let chosen = d.chosen else {
            placements["no_backend", default: 0] += 1
            throw ControlError(code: "no_backend", message: d.failure ?? "no backend can take the call")
        }
        placements["placed", default: 0] += 1
        return chosen
    }

    /// The backend `session.create`'s `backend` names: an id, or an index.
    func namedBackend(_ named: Any) throws(ControlError) -> Int32 {
        if let id = named as? String {
            guard let i = routes.registry.index(of: id) else {
                throw ControlError(code: "unknown_backend", message: "no backend '\(id.prefix(80))'")
            }
            return i
        }
        guard let i = ControlRequest.exactInteger(named, as: Int32.self), routes.registry[i] != nil else {
            let highest = routes.registry.entries.count - 1
            let indices = highest >= 0 ? "an index in 0...\(highest)" : "an index (none is registered)"
            throw ControlError(
                code: "bad_argument",
                message: "'backend' must be a backend's id or \(indices) naming one, not \(ControlRequest.show(named))")
        }
        return i
    }

    /// The control thread's periodic work for routing: once a second, backend RTTs and the
    /// registry's metrics. True when that second came.
    @discardableResult
    public func routingTick(now: UInt64) -> Bool {
        guard now &- lastRTTMeasurement >= 1_000_000_000 else { return false }
        lastRTTMeasurement = now
        measureBackendRTTs()
        return true
    }

    /// What `EngineMetrics.publishRouting` exports.
    public func publishRouting(to metrics: EngineMetrics) {
        let now = MonotonicClock.now()
        let rows = routes.registry.all.map { e in
            EngineMetrics.RoutingRow(
                id: e.spec.id, sessions: e.sessions,
                scoreMs: routes.registry.candidate(e, model: routes.registry.policy.defaultModel, now: now).score,
                reportAgeSeconds: e.reportedAt.map { Double(now &- $0) / 1e9 }, rttMs: e.rttMs)
        }
        metrics.publishRouting(rows, placements: placements, reports: reportsApplied)
    }

    /// A session now exists on `index`: counted there (assumed load, and this edge's sessions).
    func placed(on index: Int32) {
        routes.registry.sessionStarted(on: index)
    }

    /// Every second: each backend's RTT as the backend protocol's keepalives of its sessions
    /// measured it (the smallest this second: queueing only adds).
    func measureBackendRTTs() {
        var best: [Int32: UInt64] = [:]
        for record in sessions.values {
            let rtt = runtime.store.backendState(slot: Int(record.slot)).rtt
            guard rtt > 0 else { continue }
            let index = Int32(record.backend)
            best[index] = min(best[index] ?? .max, rtt)
        }
        for (index, rtt) in best { routes.registry.measured(index, rttMs: Double(rtt) / 1e6) }
    }

    func describe(backend e: RegisteredBackend) -> [String: Any] {
        let now = MonotonicClock.now()
        var out: [String: Any] = [
            "id": e.spec.id, "index": Int(e.index),
            "address": EngineController.format(e.spec.address, e.spec.port), "region": e.spec.region,
            "models": e.spec.models.map(\.description), "media": e.spec.media.rawValue, "capacity": e.spec.capacity,
            "state": "\(e.state)", "sessions_here": e.sessions, "assumed": e.assumed, "keyed": e.spec.key != nil,
            "rtt_ms": e.rttMs.map { EngineController.round($0) as Any } ?? NSNull(),
        ]
        if let down = e.down { out["down_reason"] = down }
        if let load = e.load, let at = e.reportedAt {
            out["report"] = [
                "sessions": load.sessions, "queue_depth": load.queueDepth,
                "service_time_ms": EngineController.round(load.serviceTimeMs),
                "age_ms": EngineController.round(Double(now &- at) / 1e6),
            ] as [String: Any]
        } else {
            out["report"] = NSNull()
        }
        out["score_ms"] = EngineController.round(routes.registry.candidate(e, model: nil, now: now).score)
        return out
    }
}

extension ControlRequest {
    /// A duration in milliseconds: a finite JSON number in 0...3,600,000 (fractions allowed).
    func milliseconds(_ key: String) throws(ControlError) -> Double {
        guard let v = arguments[key], let n = v as? NSNumber, String(cString: n.objCType) != "c",
            n.doubleValue.isFinite, (0...3_600_000).contains(n.doubleValue)
        else {
            throw ControlError(
                code: "bad_argument",
                message: "'\(key)' must be a number of milliseconds in 0...3600000, not \(arguments[key].map(ControlRequest.show) ?? "missing")")
        }
        return n.doubleValue
    }
}
