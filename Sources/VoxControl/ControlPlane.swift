import Logging
import NIOCore
import VoxEngine

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

    /// Periodic work of the control thread (slots released, old tables, next hops).
    public static let tickInterval = TimeAmount.milliseconds(10)

    public init(runtime: EngineRuntime, logger: Logger, limits: ControlLimits? = nil, peers: PeerPolicy? = nil) {
        let c = runtime.configuration
        self.runtime = runtime
        controller = EngineController(runtime: runtime)
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
        let publish = {
            metrics.publish(sessions: controller.sessionCount, backends: runtime.backends.table)
        }
        server.beforeReplies = {
            runtime.control.publishFlows()
            publish()
        }
        try server.start()
        server.every(ControlPlane.tickInterval) {
            runtime.tick()
            publish()
        }
        let c = runtime.configuration
        if c.metricsPort != 0 {
            try http.start(address: c.metricsAddress, port: c.metricsPort)
        }
    }

    /// From now on `/readyz` answers 503.
    public func beginDraining() {
        runtime.draining.store(true, ordering: .releasing)
    }

    /// Closes the control socket and the metrics listener.
    public func stop() {
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
