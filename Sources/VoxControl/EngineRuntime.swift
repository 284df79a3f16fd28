import CVoxLinux
import Foundation
import Logging
import Synchronization
import VoxEngine
import VoxIO
import VoxWire

/// What `voxedge run` is told: addresses, ports, workers and their cores, capacity, backends.
public struct EngineConfiguration: Codable, Sendable, Equatable {
    public struct BackendEntry: Codable, Sendable, Equatable {
        public var address: String
        public var port: UInt16
        /// The next hop's MAC; unused by the socket port (the kernel routes).
        public var mac: String?
        public init(address: String, port: UInt16, mac: String? = nil) {
            self.address = address
            self.port = port
            self.mac = mac
        }
    }

    public var mediaAddress: String = "127.0.0.1"
    public var mediaPort: UInt16 = 40000
    /// The edge's address toward backends, and the first of its reserved ports (one per session).
    public var backendAddress: String = "127.0.0.1"
    public var backendPortBase: UInt16 = 41000
    public var workers: Int = 1
    /// Core of each worker (by index); unpinned when absent.
    public var cores: [Int]? = nil
    public var maxSessions: Int = 1024
    public var backends: [BackendEntry] = []
    public var controlSocket: String = "/run/voxedge/control.sock"
    /// Prometheus `/metrics`, `/healthz`, `/readyz` (port 0: off).
    public var metricsAddress: String = "127.0.0.1"
    public var metricsPort: UInt16 = 9464
    public var logLevel: String = "info"
    public var io: String = "socket"

    public init() {}

    enum CodingKeys: String, CodingKey {
        case mediaAddress = "media_address", mediaPort = "media_port", backendAddress = "backend_address"
        case backendPortBase = "backend_port_base", workers, cores, maxSessions = "max_sessions", backends
        case controlSocket = "control_socket", logLevel = "log_level", io
        case metricsAddress = "metrics_address", metricsPort = "metrics_port"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = EngineConfiguration()
        mediaAddress = try c.decodeIfPresent(String.self, forKey: .mediaAddress) ?? d.mediaAddress
        mediaPort = try c.decodeIfPresent(UInt16.self, forKey: .mediaPort) ?? d.mediaPort
        backendAddress = try c.decodeIfPresent(String.self, forKey: .backendAddress) ?? d.backendAddress
        backendPortBase = try c.decodeIfPresent(UInt16.self, forKey: .backendPortBase) ?? d.backendPortBase
        workers = try c.decodeIfPresent(Int.self, forKey: .workers) ?? d.workers
        cores = try c.decodeIfPresent([Int].self, forKey: .cores)
        maxSessions = try c.decodeIfPresent(Int.self, forKey: .maxSessions) ?? d.maxSessions
        backends = try c.decodeIfPresent([BackendEntry].self, forKey: .backends) ?? d.backends
        controlSocket = try c.decodeIfPresent(String.self, forKey: .controlSocket) ?? d.controlSocket
        logLevel = try c.decodeIfPresent(String.self, forKey: .logLevel) ?? d.logLevel
        io = try c.decodeIfPresent(String.self, forKey: .io) ?? d.io
        metricsAddress = try c.decodeIfPresent(String.self, forKey: .metricsAddress) ?? d.metricsAddress
        metricsPort = try c.decodeIfPresent(UInt16.self, forKey: .metricsPort) ?? d.metricsPort
    }

    /// Every problem with this configuration, as sentences; empty when it can run.
    public func problems() -> [String] {
        var out: [String] = []
        if IPAddress(mediaAddress) == nil { out.append("media_address '\(mediaAddress)' is not an IP address") }
        if IPAddress(backendAddress) == nil { out.append("backend_address '\(backendAddress)' is not an IP address") }
        if workers < 1 || workers > 64 { out.append("workers must be 1...64") }
        if maxSessions < 1 { out.append("max_sessions must be at least 1") }
        if Int(backendPortBase) + maxSessions > 65536 { out.append("backend_port_base + max_sessions passes port 65535") }
        if let cores, cores.count != workers { out.append("cores lists \(cores.count) cores for \(workers) workers") }
        for (i, b) in backends.enumerated() {
            if IPAddress(b.address) == nil { out.append("backends[\(i)].address '\(b.address)' is not an IP address") }
            if let mac = b.mac, MACAddress(mac) == nil { out.append("backends[\(i)].mac '\(mac)' is not a MAC address") }
        }
        if io != "socket" { out.append("io '\(io)': this build has the socket port (xdp arrives with the AF_XDP port)") }
        return out
    }
}

/// The data plane of `voxedge run`: session store, workers on their own threads (pinned
/// when cores are given), each with its socket port, and the control side's handle on them.
public final class EngineRuntime: @unchecked Sendable {
    public let configuration: EngineConfiguration
    public let store: SessionStore
    public let backends: BackendTable
    public let links: [WorkerLinks]
    public let control: SessionControl
    public private(set) var counters: [WorkerCounters] = []
    let port: InMemoryPort
    let stopping = Atomic<Bool>(false)
    var threads: [Thread] = []
    let finished = DispatchGroup()
    let logger: Logger

    public init(configuration c: EngineConfiguration, logger: Logger) throws {
        let problems = c.problems()
        guard problems.isEmpty else { throw ControlError(code: "config.invalid", message: problems.joined(separator: "; ")) }
        configuration = c
        self.logger = logger
        store = try SessionStore(capacity: c.maxSessions)
        backends = BackendTable(c.backends.map {
            Backend(address: IPAddress($0.address)!, port: UDPPort($0.port), mac: $0.mac.flatMap(MACAddress.init) ?? .zero)
        })
        links = WorkerLinks.make(workers: c.workers, sessions: c.maxSessions, commandCapacity: max(1024, c.maxSessions))
        control = SessionControl(store: store, links: links)
        port = InMemoryPort(queues: c.workers, frameCount: 4096 * c.workers, ringSize: 1024)
    }

    /// Opens every worker's sockets, then starts the workers. Throws before any starts if a
    /// socket cannot be bound.
    public func start() throws {
        let c = configuration
        let media = IPAddress(c.mediaAddress)!
        let backendAddress = IPAddress(c.backendAddress)!
        var boxes: [WorkerRunner] = []
        for w in 0..<c.workers {
            let sockets = try SocketQueue(
                port: port, queue: w, mediaAddress: media, mediaPort: UDPPort(c.mediaPort), backendAddress: backendAddress,
                backendPortBase: c.backendPortBase, maxSessions: c.maxSessions)
            var worker = Worker(
                configuration: WorkerConfiguration(
                    id: w, mediaAddress: media, mediaPort: UDPPort(c.mediaPort), backendAddress: backendAddress,
                    backendPortBase: c.backendPortBase, edgeMAC: .zero),
                rings: port.rings(queue: w), umem: port.umem, frameSize: port.frameSize,
                frames: port.initialFrames(queue: w), store: store, backends: backends, links: links[w])
            worker.portHooks = sockets
            counters.append(worker.counters)
            boxes.append(WorkerRunner(worker: worker, sockets: sockets, core: c.cores?[w]))
        }
        for (w, runner) in boxes.enumerated() {
            finished.enter()
            let thread = Thread { [self] in
                runner.run(isStopping: { self.stopping.load(ordering: .acquiring) }, logger: logger, id: w)
                finished.leave()
            }
            thread.name = "voxedge-worker-\(w)"
            threads.append(thread)
            thread.start()
        }
        logger.info("engine started", metadata: ["workers": "\(c.workers)", "media": "\(c.mediaAddress):\(c.mediaPort)", "io": "socket"])
    }

    /// Stops the workers after their current burst (each sends what it has first) and waits.
    public func stop() {
        stopping.store(true, ordering: .releasing)
        finished.wait()
        logger.info("engine stopped")
    }
}

/// One worker's loop on its thread: read the sockets (sleeping up to 10 ms when idle), run a
/// burst, send. It owns the worker and its port.
final class WorkerRunner: @unchecked Sendable {
    var worker: Worker
    let sockets: SocketQueue
    let core: Int?

    init(worker: consuming Worker, sockets: SocketQueue, core: Int?) {
        self.worker = worker
        self.sockets = sockets
        self.core = core
    }

    func run(isStopping: () -> Bool, logger: Logger, id: Int) {
        if let core, vox_pin_current_thread(Int32(core)) != 0 {
            logger.warning("could not pin worker to core", metadata: ["worker": "\(id)", "core": "\(core)"])
        }
        let clock = ContinuousClock()
        let origin = clock.now
        var idle = true
        while !isStopping() {
            _ = sockets.receive(timeout: idle ? 10 : 0)
            let elapsed = (clock.now - origin).components
            let now = UInt64(elapsed.seconds) * 1_000_000_000 + UInt64(elapsed.attoseconds / 1_000_000_000)
            let handled = worker.runOnce(now: now)
            let sent = sockets.transmit()
            idle = handled == 0 && sent == 0
        }
        // Drain: what was received is handled and sent before the thread ends.
        _ = worker.runOnce(now: 0)
        sockets.transmit()
    }
}
