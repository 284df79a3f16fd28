import Foundation
import Glibc
import Synchronization
import VoxControl

/// What backend-sim tells the engine's registry about itself (docs/backend-protocol.md,
/// "Load reports"): who it is (`backend.upsert`) and how loaded it is (`backend.report`).
struct BackendSimReporting: Sendable {
    /// The engine's control socket.
    var controlPath: String
    /// The backend's id in the engine's registry.
    var backendID: String
    /// Send `backend.upsert` at start (and again when a report comes back `unknown`).
    var register = false
    /// What the upsert says: where the edge reaches this backend, its key, region and models.
    var address = ""
    var port: UInt16 = 0
    var keyBase64: String?
    var region = "local"
    var models: [String] = []
    var model = BackendSimLoadModel()
    var reportNs: UInt64 = 500_000_000
    /// Stop reporting this long after start (a dead load reporter); nil: never.
    var stopAfterNs: UInt64?
}

/// The sim's load, from the sessions it has open: each live session keeps `workPerSession`
/// requests queued on average, each served in `serviceTimeMs × slow`.
struct BackendSimLoadModel: Sendable, Equatable {
    var capacity = 100
    var workPerSession = 0.1
    var serviceTimeMs = 40.0
    var slow = 1.0

    struct Report: Equatable {
        var sessions: Int
        var capacity: Int
        var queueDepth: Int
        var serviceTimeMs: Double
    }

    /// The report for `sessions` live sessions: queue depth round(sessions × work per session).
    func report(sessions: Int) -> Report {
        Report(
            sessions: sessions,
            capacity: capacity,
            queueDepth: Int((Double(sessions) * workPerSession).rounded()),
            serviceTimeMs: serviceTimeMs * slow
        )
    }
}

/// The number of sessions the sim has open: written by its loop, read by the reporter.
final class BackendSimLiveSessions: Sendable {
    let count = Atomic<Int>(0)
}

/// Sends backend-sim's registration and load reports to the engine's control socket, on a
/// thread of its own so that a slow, missing or hostile engine never holds up a datagram:
/// every `reportNs` it reads the live session count, builds a report from the load model and
/// sends it on its connection, connecting (again) first if it has none. A refusal, a failure
/// to connect, a closed connection or a reply that does not come within the timeout is
/// logged (once per kind in a row) and tried again at the next interval.
final class BackendSimReporter: @unchecked Sendable {  // used by its own thread only, after start()
    let reporting: BackendSimReporting
    let live: BackendSimLiveSessions
    private var connection: ControlConnection?
    private var registered = false
    /// The last problem logged, so a dead engine gives one line, not one per interval.
    private var lastProblem: String?
    private var lastLogged: BackendSimLoadModel.Report?

    init(reporting: BackendSimReporting, live: BackendSimLiveSessions) {
        self.reporting = reporting
        self.live = live
        registered = !reporting.register
    }

    func start() {
        Thread.detachNewThread { self.run() }
    }

    /// How long a request may wait for its reply before the connection is given up.
    var timeoutNs: UInt64 { min(max(reporting.reportNs, 1_000_000_000), 5_000_000_000) }

    private func run() {
        let started = BackendSim.now()
        var next = started
        while true {
            let now = BackendSim.now()
            if let stop = reporting.stopAfterNs, now >= started + stop {
                connection = nil
                BackendSimLog.emit(
                    "reporting_stopped",
                    ["backend": reporting.backendID, "after_ms": Int(stop / 1_000_000)]
                )
                return
            }
            if now < next {
                var wait = next - now
                if let stop = reporting.stopAfterNs { wait = min(wait, started + stop - now) }
                usleep(useconds_t(min(wait / 1_000, 1_000_000)))
                continue
            }
            tick()
            // The next interval after now: a stall skips reports, never sends them in a burst.
            let after = BackendSim.now()
            next += reporting.reportNs
            if next <= after { next = after + reporting.reportNs - (after - next) % reporting.reportNs }
        }
    }

    /// One interval: connect if needed, register if needed, report.
    func tick() {
        guard let connection = connect() else { return }
        if !registered {
            guard let reply = call(connection, "backend.upsert", upsert()) else { return }
            guard reply["ok"] as? Bool == true else { return refused(reply, "backend.upsert") }
            registered = true
            BackendSimLog.emit(
                "registered",
                [
                    "backend": reporting.backendID, "address": reporting.address, "port": Int(reporting.port),
                    "region": reporting.region, "models": reporting.models, "capacity": reporting.model.capacity,
                    "key": reporting.keyBase64 != nil,
                ]
            )
        }
        let report = reporting.model.report(sessions: live.count.load(ordering: .relaxed))
        let request: [String: Any] = [
            "cmd": "backend.report",
            "reports": [
                [
                    "backend": reporting.backendID, "sessions": report.sessions, "capacity": report.capacity,
                    "queue_depth": report.queueDepth, "service_time_ms": report.serviceTimeMs,
                ] as [String: Any]
            ],
        ]
        guard let reply = call(connection, "backend.report", request) else { return }
        guard reply["ok"] as? Bool == true else { return refused(reply, "backend.report") }
        if let unknown = reply["unknown"] as? [Any], unknown.contains(where: { $0 as? String == reporting.backendID }) {
            // The engine does not know us (restarted, or removed us): register again next time.
            problem(
                "unknown_backend",
                "backend.report",
                "the engine does not know backend '\(reporting.backendID)'"
                    + (reporting.register ? "; registering again" : "; give --register")
            )
            registered = !reporting.register
            return
        }
        if lastProblem != nil {
            lastProblem = nil
            BackendSimLog.emit("reporting", ["backend": reporting.backendID, "control": reporting.controlPath])
        }
        if report != lastLogged {
            lastLogged = report
            BackendSimLog.emit(
                "report",
                [
                    "backend": reporting.backendID, "sessions": report.sessions, "capacity": report.capacity,
                    "queue_depth": report.queueDepth, "service_time_ms": report.serviceTimeMs,
                ]
            )
        }
    }

    func upsert() -> [String: Any] {
        var backend: [String: Any] = [
            "id": reporting.backendID, "address": reporting.address, "port": Int(reporting.port),
            "region": reporting.region, "models": reporting.models, "media": "opus",
            "capacity": reporting.model.capacity,
        ]
        if let key = reporting.keyBase64 { backend["key"] = key }
        return ["cmd": "backend.upsert", "backend": backend]
    }

    /// The open connection, or a new one; nil (logged) if the engine cannot be reached.
    private func connect() -> ControlConnection? {
        if let connection { return connection }
        do {
            let c = try ControlConnection(path: reporting.controlPath)
            var timeout = timeval(tv_sec: Int(timeoutNs / 1_000_000_000), tv_usec: Int(timeoutNs % 1_000_000_000 / 1_000))
            setsockopt(c.fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(c.fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            connection = c
            BackendSimLog.emit("control_connected", ["backend": reporting.backendID, "control": reporting.controlPath])
            return c
        } catch {
            problem("unreachable", "connect", "\(error)")
            return nil
        }
    }

    /// One request and its reply; nil (logged, the connection dropped) if either fails.
    private func call(_ connection: ControlConnection, _ what: String, _ request: [String: Any]) -> [String: Any]? {
        do {
            return try connection.call(request)
        } catch {
            self.connection = nil  // closed, timed out, or out of step: a new one next interval
            problem("connection_lost", what, "\(error)")
            return nil
        }
    }

    private func refused(_ reply: [String: Any], _ what: String) {
        let error = reply["error"] as? [String: Any]
        problem(
            error?["code"] as? String ?? "refused",
            what,
            error?["message"] as? String ?? "the engine said ok:false without an error"
        )
    }

    /// Logs a `control_error` unless it is the same as the last one.
    private func problem(_ code: String, _ request: String, _ message: String) {
        let key = "\(code) \(request) \(message)"
        guard key != lastProblem else { return }
        lastProblem = key
        BackendSimLog.emit(
            "control_error",
            [
                "backend": reporting.backendID, "control": reporting.controlPath, "request": request, "code": code,
                "message": message,
            ]
        )
    }
}
