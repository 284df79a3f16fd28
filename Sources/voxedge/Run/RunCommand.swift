import ArgumentParser
import CVoxLinux
import Foundation
import Logging
import Synchronization
import VoxControl
import VoxEngine
import VoxWire
import Yams

/// SIGINT/SIGTERM received so far: the first drains, the second stops at once.
enum Shutdown {
    static let signals = Atomic<Int>(0)
    /// SIGHUPs not yet acted on: each re-reads the signaling listener's certificate and keys.
    static let reloads = Atomic<Int>(0)
}

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the engine: workers on AF_XDP queues or kernel UDP sockets, the control socket. SIGTERM (or SIGINT) drains: no new sessions, live calls go on until they end or drain_timeout_seconds pass; a second one stops at once.",
        discussion: """
            Configuration comes from --config (YAML, or JSON, which YAML reads too) and then \
            the flags, which win. Keys: media_address, media_port, backend_address, \
            backend_port_base, workers, cores, max_sessions, backends (list of {address, \
            port}), control_socket, control_allowed_uids, control_allowed_gids, \
            control_max_clients, control_idle_timeout_seconds, health_stall_seconds, \
            metrics_address, metrics_port, drain_timeout_seconds, log_level, io, interface, \
            socket_receive_buffer, xdp (frame_count, frame_size, \
            ring_size, headroom, huge_pages, bind_mode, idle, attach, object, stun_rate, \
            stun_burst), signaling (the public HTTPS listener: address, port, tls_certificate_file, \
            tls_key_file, plain_http, audience, token_*; see docs/signaling.md). See docs/operations.md.
            """
    )

    /// Where every flag's default in `--help` comes from: the configuration's own defaults.
    static let defaults = EngineConfiguration()

    @Option(help: "A YAML (or JSON) configuration file (default: none; flags only).") var config: String?
    @Option(help: "Client-facing media address (default \(defaults.mediaAddress)).") var mediaAddress: IPAddress?
    @Option(help: "Client-facing media UDP port (default \(defaults.mediaPort)).") var mediaPort: UInt16?
    @Option(
        help: """
            The edge's address toward backends (default: the media address, which is on the AF_XDP \
            interface; with --io xdp it must be an address of that interface).
            """)
    var backendAddress: IPAddress?
    @Option(
        help: """
            First port of the backend-leg range, one port per session slot (default \(defaults.backendPortBase): \
            \(defaults.backendPorts.lowerBound)-\(defaults.backendPorts.upperBound) with the default max-sessions, \
            below the kernel's ephemeral range).
            """)
    var backendPortBase: UInt16?
    @Option(help: "Worker threads (default \(defaults.workers)).") var workers: Int?
    @Option(help: "Cores to pin the workers to, comma-separated, one per worker (default: unpinned).") var cores: String?
    @Option(help: "Session slots, allocated at start-up (default \(defaults.maxSessions)).") var maxSessions: Int?
    @Option(help: "Packets a second each client may send before its excess is dropped; 0: off (default \(defaults.clientRateLimitPPS)).")
    var clientRateLimit: Int?
    @Option(help: "A backend as ip:port (repeat for more; index = order; default: none).") var backend: [String] = []
    @Option(help: "The control socket's path (default \(defaults.controlSocket)).") var controlSocket: String?
    @Option(help: "trace, debug, info, notice, warning, error or critical (default \(defaults.logLevel)).")
    var logLevel: Logger.Level?
    @Option(
        help: """
            Packet I/O: xdp (AF_XDP), socket (kernel UDP sockets), or auto (AF_XDP, else sockets, saying why; \
            default \(defaults.io.rawValue)).
            """)
    var io: IOMode?
    @Option(help: "The interface AF_XDP binds to (default: the one holding the media address).") var interface: String?
    @Option(help: "AF_XDP idle strategy: poll, busy-poll or prefer-busy-poll (default \(defaults.xdp.idle.rawValue)).")
    var xdpIdle: IdleStrategy?
    @Option(
        help:
            "Prometheus /metrics and health checks, as address:port (port 0: off; default \(defaults.metricsAddress):\(defaults.metricsPort))."
    )
    var metrics: String?
    @Option(
        help: "Seconds live calls may go on after SIGTERM before the engine stops anyway (default \(defaults.drainTimeoutSeconds)).")
    var drainTimeout: Int?

    func resolvedConfiguration() throws -> EngineConfiguration {
        var c = EngineConfiguration()
        if let config {
            c = try Self.load(config)
        }
        if let mediaAddress { c.mediaAddress = mediaAddress }
        if let mediaPort { c.mediaPort = mediaPort }
        if let backendAddress { c.backendAddress = backendAddress }
        if let backendPortBase { c.backendPortBase = backendPortBase }
        if let workers { c.workers = workers }
        if let cores {
            c.cores = try cores.split(separator: ",").map {
                guard let core = Int($0.trimmingCharacters(in: .whitespaces)) else { throw ValidationError("--cores: '\($0)' is not a number") }
                return core
            }
        }
        if let maxSessions { c.maxSessions = maxSessions }
        if let clientRateLimit { c.clientRateLimitPPS = clientRateLimit }
        if !backend.isEmpty {
            c.backends = try backend.map {
                guard let (address, port) = EngineController.parseEndpoint($0) else {
                    throw ValidationError("--backend: '\($0)' is not ip:port")
                }
                return .init(address: address, port: port.rawValue)
            }
        }
        if let controlSocket { c.controlSocket = controlSocket }
        if let logLevel { c.logLevel = logLevel }
        if let io { c.io = io }
        if let interface { c.interface = interface }
        if let xdpIdle { c.xdp.idle = xdpIdle }
        if let drainTimeout { c.drainTimeoutSeconds = drainTimeout }
        if let metrics {
            guard let colon = metrics.lastIndex(of: ":"), let port = UInt16(metrics[metrics.index(after: colon)...]) else {
                throw ValidationError("--metrics: '\(metrics)' is not address:port")
            }
            let host = metrics[..<colon].trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
            guard let address = IPAddress(host) else { throw ValidationError("--metrics: '\(host)' is not an IP address") }
            c.metricsAddress = address
            c.metricsPort = port
        }
        let problems = c.problems() + c.signalingProblems
        guard problems.isEmpty else { throw ValidationError(problems.joined(separator: "\n")) }
        return c
    }

    /// Reads a configuration file. What is wrong with it — a file that cannot be read, YAML
    /// that does not parse, an unknown key, a value of the wrong type or not among those
    /// accepted — is one `ValidationError` naming the file and the key, so the process exits
    /// 64 (EX_USAGE) as it does for a bad flag.
    static func load(_ path: String) throws -> EngineConfiguration {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ValidationError("\(path): cannot be read (\(error.localizedDescription))")
        }
        do {
            return try YAMLDecoder().decode(EngineConfiguration.self, from: text)
        } catch let error as DecodingError {
            throw ValidationError("\(path): \(Self.describe(error))")
        } catch {
            throw ValidationError("\(path): not YAML: \(error)")
        }
    }

    /// `key.path: what is wrong`, from a decoding error.
    static func describe(_ error: DecodingError) -> String {
        /// `xdp.idle: `, `backends[0].address: `, or nothing for the whole file.
        func path(_ keys: [any CodingKey]) -> String {
            let text = keys.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
            guard !text.isEmpty else { return "" }
            return (text.hasPrefix(".") ? String(text.dropFirst()) : text) + ": "
        }
        switch error {
        case .dataCorrupted(let context):
            return "\(path(context.codingPath))\(context.debugDescription)"
        case .typeMismatch(let type, let context):
            return "\(path(context.codingPath))expected \(Self.kind(type)) (\(context.debugDescription))"
        case .valueNotFound(let type, let context):
            return "\(path(context.codingPath))expected \(Self.kind(type)), found nothing"
        case .keyNotFound(let key, let context):
            return "\(path(context.codingPath + [key]))missing"
        @unknown default:
            return "\(error)"
        }
    }

    static func kind(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: "a string"
        case is Bool.Type: "true or false"
        case is Double.Type, is Float.Type: "a number"
        case is Int.Type, is UInt16.Type, is UInt32.Type, is Int32.Type, is UInt64.Type: "an integer in range"
        default: "\(type)"
        }
    }

    func run() throws {
        vox_unblock_all_signals()  // a parent that blocks signals must not take SIGTERM/SIGCHLD from us
        // Before anything starts: a signal during start-up drains an engine with no calls.
        signal(SIGINT) { _ in Shutdown.signals.add(1, ordering: .releasing) }
        signal(SIGTERM) { _ in Shutdown.signals.add(1, ordering: .releasing) }
        signal(SIGPIPE, SIG_IGN)
        signal(SIGHUP) { _ in Shutdown.reloads.add(1, ordering: .releasing) }
        let c = try resolvedConfiguration()
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        var logger = Logger(label: "voxedge")
        logger.logLevel = c.logLevel
        try FileManager.default.createDirectory(
            atPath: (c.controlSocket as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let runtime: EngineRuntime
        do {
            runtime = try EngineRuntime(configuration: c, logger: logger)
            try runtime.start()
        } catch let error as EngineError where error.code.hasPrefix("config.") {
            // A configuration this host cannot run (known only once a key file or the interface
            // is read): a usage error, exit 64, as the problems found before start-up are.
            throw ValidationError(error.message)
        }
        // The control thread: the control socket's event loop, which also runs the runtime's
        // periodic work; metrics and health on a listener of their own.
        let plane = ControlPlane(runtime: runtime, logger: logger)
        do {
            try plane.start()
        } catch {
            runtime.stop()
            throw error
        }
        if c.metricsPort != 0 {
            logger.info("metrics ready", metadata: ["url": "http://\(c.metricsAddress):\(plane.http.port)/metrics"])
        }
        logger.info("control socket ready", metadata: ["path": "\(c.controlSocket)"])
        var commanded: ControlPlane.DrainOutcome? = nil
        while Shutdown.signals.load(ordering: .acquiring) == 0 {
            usleep(20_000)
            // `edge.drain` over the control socket: the same drain, taken back by `edge.undrain`.
            if runtime.commandedDrainDeadline.load(ordering: .acquiring) != 0 {
                logger.info("draining (edge.drain)")
                let outcome = plane.carryOutCommandedDrain { Shutdown.signals.load(ordering: .acquiring) > 0 }
                if outcome == .undrained {
                    logger.info("undrained (edge.undrain): taking sessions again")
                    continue
                }
                if outcome != .interrupted {
                    commanded = outcome
                    break
                }
            }
            if Shutdown.reloads.exchange(0, ordering: .acquiringAndReleasing) > 0 {
                do {
                    try plane.reloadSignaling()
                    logger.info("SIGHUP: signaling certificate and token keys reloaded")
                } catch {
                    logger.error("SIGHUP: reload failed; the old keys stay", metadata: ["error": "\(error.message)"])
                }
            }
        }
        // Drain: no new sessions, /readyz 503, live calls go on until they end or the
        // deadline; a second signal stops at once. A commanded drain that finished skips it.
        let outcome: ControlPlane.DrainOutcome
        if let commanded {
            outcome = commanded
        } else {
            logger.info("draining", metadata: ["deadline_seconds": "\(c.drainTimeoutSeconds)"])
            outcome = plane.drain(deadline: .seconds(c.drainTimeoutSeconds)) {
                Shutdown.signals.load(ordering: .acquiring) >= 2
            }
        }
        if outcome != .empty {
            let ended = plane.endRemainingSessions()
            if ended > 0 { logger.info("drain ended the calls still up", metadata: ["sessions": "\(ended)", "drain": "\(outcome.rawValue)"]) }
        }
        logger.info("stopping", metadata: ["drain": "\(outcome.rawValue)"])
        plane.stop()
        runtime.stop()
    }
}

extension IOMode: ExpressibleByArgument {}
extension IdleStrategy: ExpressibleByArgument {}
extension Logger.Level: @retroactive ExpressibleByArgument {}

extension IPAddress: ExpressibleByArgument {
    public init?(argument: String) { self.init(argument) }
}
