import Glibc
import Logging
import NIOCore
import Synchronization
import VoxEngine
import VoxIO
import VoxSignaling
import Foundation

/// The engine's control plane, put together: the control thread (the control socket's event
/// loop, which also runs the runtime's periodic work), the commands over the engine, its
/// metrics, and the private metrics and health listener. `voxedge run` and the tests build
/// the same thing from this.
public final class ControlPlane: @unchecked Sendable {
    public let runtime: EngineRuntime
    public let controller: EngineController
    public let server: ControlServer
    public let metrics: EngineMetrics
    public let http: MetricsServer
    /// The public signaling listener, when the configuration has a `signaling:` section.
    public private(set) var signaling: SignalingListener?
    let logger: Logger

    /// Periodic work of the control thread (slots released, old tables, next hops).
    public static let tickInterval = TimeAmount.milliseconds(10)
    /// Live sessions as the control thread last counted them (every tick and reply), for
    /// threads that may not read the controller: the drain waits on it.
    let liveSessions = Atomic<Int>(0)

    public init(runtime: EngineRuntime, logger: Logger, limits: ControlLimits? = nil, peers: PeerPolicy? = nil) {
        let c = runtime.configuration
        self.runtime = runtime
        self.logger = logger
        controller = EngineController(runtime: runtime)
        controller.logger = logger
        metrics = EngineMetrics(runtime: runtime)
        let controller = controller
        server = ControlServer(
            path: c.controlSocket, limits: limits ?? c.controlLimits, peers: peers ?? c.peerPolicy,
            logger: logger, metrics: metrics
        ) { controller.handle($0) }
        controller.server = server
        http = MetricsServer(
            runtime: runtime, metrics: metrics, stallLimit: .milliseconds(Int64(c.healthStallSeconds * 1000)), logger: logger)
    }

    /// Starts the control socket and the periodic work on the control thread, then the
    /// metrics listener (unless its port is 0). Start it once the runtime runs.
    public func start() throws(ControlError) {
        let runtime = runtime
        let controller = controller
        let metrics = metrics
        let publish = { [weak self] in
            self?.liveSessions.store(controller.sessionCount, ordering: .releasing)
            metrics.publish(sessions: controller.sessionCount, byState: controller.sessionsByState(), backends: runtime.backends.table)
        }
        server.beforeReplies = {
            runtime.control.publishFlows()
            publish()
        }
        try server.start()
        server.every(ControlPlane.tickInterval) {
            runtime.tick()
            if controller.routingTick(now: MonotonicClock.now()) { controller.publishRouting(to: metrics) }
            publish()
        }
        let c = runtime.configuration
        if c.metricsPort != 0 {
            try http.start(address: "\(c.metricsAddress)", port: c.metricsPort)
        }
        if let section = c.signaling {
            let listener = try SignalingListener(
                configuration: SignalingConfiguration(section),
                engine: EngineSignaling(controller: controller, server: server, runtime: runtime), logger: logger)
            signaling = listener
            metrics.signaling.withLock { $0 = listener.server }
            let fingerprint = listener.server.certificateFingerprint
            let controller = controller
            server.onControlThread {
                controller.signalingInfo = ["url": listener.url, "fingerprint": fingerprint ?? NSNull()]
                controller.signalingServer = listener.server
                controller.reloadSignaling = {
                    do throws(ControlError) {
                        try listener.reload()
                        return .ok(["reloaded": true])
                    } catch {
                        return .failure(error.code, error.message)
                    }
                }
            }
            var metadata: Logger.Metadata = ["url": "\(listener.url)"]
            if let fingerprint { metadata["certificate_sha256"] = "\(fingerprint)" }
            logger.info("signaling ready", metadata: metadata)
        }
    }

    /// Re-reads the signaling listener's certificate and token keys (SIGHUP).
    public func reloadSignaling() throws(ControlError) {
        guard let signaling else { throw ControlError(code: "signaling", message: "no signaling listener is configured") }
        try signaling.reload()
    }

    /// From now on `/readyz` answers 503 and `session.create` is refused with `draining`;
    /// live sessions go on.
    public func beginDraining() {
        runtime.draining.store(true, ordering: .releasing)
    }

    /// Why `drain` returned.
    public enum DrainOutcome: String, Sendable {
        /// The last session ended.
        case empty
        /// The deadline passed with sessions still live.
        case deadline
        /// Told to stop at once (a second SIGTERM), or, for a commanded drain, a signal came.
        case interrupted
        /// A commanded drain taken back (`edge.undrain`).
        case undrained
    }

    /// Carries out a drain asked for over the control socket (`edge.drain`): returns when its
    /// last session ends (`.empty`), at its deadline (which `edge.drain` may move), when
    /// `edge.undrain` takes it back, or when `interrupted()` (a signal: its own drain follows).
    /// Blocks the calling thread, checking every 20 ms.
    public func carryOutCommandedDrain(interrupted: () -> Bool) -> DrainOutcome {
        waitForDrain(interrupted: interrupted) { runtime.commandedDrainDeadline.load(ordering: .acquiring) }
    }

    /// The one drain wait: every 20 ms, `interrupted`, then the deadline `deadline()` gives
    /// (0: taken back), then the live sessions, then the clock.
    func waitForDrain(interrupted: () -> Bool, deadline: () -> UInt64) -> DrainOutcome {
        while true {
            if interrupted() { return .interrupted }
            let end = deadline()
            if end == 0 { return .undrained }
            if liveSessions.load(ordering: .acquiring) == 0 { return .empty }
            if MonotonicClock.now() >= end { return .deadline }
            usleep(20_000)
        }
    }

    /// Ends the sessions still live (a drain's deadline), on the control thread; how many.
    public func endRemainingSessions() -> Int {
        let ended = Mutex(0)
        let done = DispatchSemaphore(value: 0)
        let controller = controller
        server.onControlThread {
            ended.withLock { $0 = controller.endAll() }
            done.signal()
        }
        _ = done.wait(timeout: .now() + 2)
        return ended.withLock { $0 }
    }

    /// Drains (SIGTERM): takes no new sessions, keeps the live ones until they have all ended,
    /// `deadline` has passed or `interrupted()` says stop, checking every 20 ms. Blocks the
    /// calling thread, never the control thread, which goes on serving requests. Stop the
    /// plane and the runtime afterwards.
    public func drain(deadline: Duration, interrupted: () -> Bool) -> DrainOutcome {
        runtime.signalled.store(true, ordering: .releasing)
        beginDraining()
        let (seconds, attoseconds) = deadline.components
        let end = MonotonicClock.now() &+ UInt64(max(0, seconds)) &* 1_000_000_000 &+ UInt64(max(0, attoseconds) / 1_000_000_000)
        // A signal's drain cannot be taken back: its deadline is never 0.
        return waitForDrain(interrupted: interrupted) { max(end, 1) }
    }

    /// Closes the signaling listener, the control socket and the metrics listener.
    public func stop() {
        signaling?.stop()
        signaling = nil
        server.stop()
        http.stop()
    }
}

extension EngineConfiguration {
    /// The control socket's limits as configured.
    public var controlLimits: ControlLimits {
        var l = ControlLimits()
        l.maxClients = controlMaxClients
        l.idleTimeout = .seconds(Int64(controlIdleTimeoutSeconds))
        return l
    }

    /// The peers allowed on the control socket, or nil for the default (the engine's uid and
    /// the socket's group).
    public var peerPolicy: PeerPolicy? {
        guard controlAllowedUIDs != nil || controlAllowedGIDs != nil else { return nil }
        return PeerPolicy(uids: Set(controlAllowedUIDs ?? []), gids: Set(controlAllowedGIDs ?? []))
    }
}
