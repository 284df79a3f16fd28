import ArgumentParser
import CVoxLinux
import Foundation
import Logging
import Synchronization
import VoxControl
import Yams

/// Set by SIGINT/SIGTERM; the control loop polls it.
enum Shutdown {
    static let requested = Atomic<Bool>(false)
}

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the engine: workers on AF_XDP queues or kernel UDP sockets, the control socket, until SIGINT/SIGTERM.",
        discussion: """
            Configuration comes from --config (YAML, or JSON, which YAML reads too) and then \
            the flags, which win. Keys: media_address, media_port, backend_address, \
            backend_port_base, workers, cores, max_sessions, backends (list of {address, \
            port}), control_socket, log_level, io, interface, xdp (frame_count, frame_size, \
            ring_size, headroom, huge_pages, bind_mode, idle, attach, object, stun_rate, \
            stun_burst). See docs/operations.md.
            """
    )

    @Option(help: "A YAML (or JSON) configuration file.") var config: String?
    @Option(help: "Client-facing media address.") var mediaAddress: String?
    @Option(help: "Client-facing media UDP port.") var mediaPort: UInt16?
    @Option(help: "The edge's address toward backends.") var backendAddress: String?
    @Option(help: "First port of the reserved backend-leg range (one per session).") var backendPortBase: UInt16?
    @Option(help: "Worker threads.") var workers: Int?
    @Option(help: "Cores to pin the workers to, comma-separated (one per worker).") var cores: String?
    @Option(help: "Session slots, allocated at start-up.") var maxSessions: Int?
    @Option(help: "A backend as ip:port (repeat for more; index = order).") var backend: [String] = []
    @Option(help: "The control socket's path.") var controlSocket: String?
    @Option(help: "trace, debug, info, notice, warning, error or critical.") var logLevel: String?
    @Option(help: "Packet I/O: xdp (AF_XDP), socket (kernel UDP sockets), or auto (AF_XDP, else sockets).") var io: String?
    @Option(help: "The interface AF_XDP binds to (default: the one holding the media address).") var interface: String?
    @Option(help: "AF_XDP idle strategy: poll, busy-poll or prefer-busy-poll.") var xdpIdle: String?
    @Option(help: "Prometheus /metrics and health checks, as address:port (port 0: off).") var metrics: String?

    func resolvedConfiguration() throws -> EngineConfiguration {
        var c = EngineConfiguration()
        if let config {
            let text = try String(contentsOfFile: config, encoding: .utf8)
            c = try YAMLDecoder().decode(EngineConfiguration.self, from: text)
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
        if !backend.isEmpty {
            c.backends = try backend.map {
                guard let (address, port) = EngineController.parseEndpoint($0) else {
                    throw ValidationError("--backend: '\($0)' is not ip:port")
                }
                return .init(address: "\(address)", port: port.rawValue)
            }
        }
        if let controlSocket { c.controlSocket = controlSocket }
        if let logLevel { c.logLevel = logLevel }
        if let io { c.io = io }
        if let interface { c.interface = interface }
        if let xdpIdle { c.xdp.idle = xdpIdle }
        if let metrics {
            guard let colon = metrics.lastIndex(of: ":"), let port = UInt16(metrics[metrics.index(after: colon)...]) else {
                throw ValidationError("--metrics: '\(metrics)' is not address:port")
            }
            c.metricsAddress = String(metrics[..<colon])
            c.metricsPort = port
        }
        let problems = c.problems()
        guard problems.isEmpty else { throw ValidationError(problems.joined(separator: "\n")) }
        guard Logger.Level(rawValue: c.logLevel) != nil else { throw ValidationError("log_level '\(c.logLevel)' is not a level") }
        return c
    }

    func run() throws {
        vox_unblock_all_signals()  // a parent that blocks signals must not take SIGTERM/SIGCHLD from us
        let c = try resolvedConfiguration()
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        var logger = Logger(label: "voxedge")
        logger.logLevel = Logger.Level(rawValue: c.logLevel)!
        try FileManager.default.createDirectory(
            atPath: (c.controlSocket as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let runtime = try EngineRuntime(configuration: c, logger: logger)
        try runtime.start()
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
        signal(SIGINT) { _ in Shutdown.requested.store(true, ordering: .releasing) }
        signal(SIGTERM) { _ in Shutdown.requested.store(true, ordering: .releasing) }
        signal(SIGPIPE, SIG_IGN)
        logger.info("control socket ready", metadata: ["path": "\(c.controlSocket)"])
        while !Shutdown.requested.load(ordering: .acquiring) {
            usleep(20_000)
        }
        logger.info("shutting down: draining workers")
        plane.beginDraining()
        plane.stop()
        runtime.stop()
    }
}
