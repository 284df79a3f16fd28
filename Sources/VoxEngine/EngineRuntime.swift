import CVoxLinux
import Foundation
import Logging
import Synchronization
import VoxIO
import VoxMedia
import VoxRouting
import VoxWire
import VoxXDP

/// The data plane of `voxedge run`: session store, workers on their own threads (pinned
/// when cores are given), each on its AF_XDP queue or its kernel sockets, and the control
/// side's handle on them.
public final class EngineRuntime: @unchecked Sendable {
    public let configuration: EngineConfiguration
    public let store: SessionStore
    /// The backend registry and the table of it workers read (the control thread's).
    public let routes: RouteTable
    /// Where workers find the current backend table.
    public var backends: BackendDirectory { routes.directory }
    public let links: [WorkerLinks]
    public let control: SessionControl
    /// The handshake thread: DTLS for WebRTC sessions, with this run's certificate.
    public let handshakes: HandshakeService
    public private(set) var counters: [WorkerCounters] = []
    /// The port the engine runs on once started: `xdp` or `socket`.
    public private(set) var io = "socket"
    /// Set when running on AF_XDP: the program, its attachment, the sockets.
    public private(set) var xdp: XDPDataPlane?
    /// Set when running on kernel sockets: each worker's queue (its drop counters).
    var socketQueues: [SocketQueue] = []
    let stopping = Atomic<Bool>(false)
    /// Set when the engine starts draining (SIGTERM): `/readyz` answers 503 from then on.
    public let draining = Atomic<Bool>(false)
    /// A drain asked for over the control socket (`edge.drain`): its deadline on the
    /// monotonic clock, or 0. `edge.undrain` sets it back to 0 (and `draining` to false);
    /// `voxedge run`'s main loop carries the drain out.
    public let commandedDrainDeadline = Atomic<UInt64>(0)
    /// Set once a signal has started the drain that ends in the process stopping: from then
    /// on nothing takes it back.
    public let signalled = Atomic<Bool>(false)
    var threads: [Thread] = []
    let finished = DispatchGroup()
    let logger: Logger

    public init(configuration c: EngineConfiguration, logger: Logger) throws {
        let problems = c.problems()
        guard problems.isEmpty else {
            throw EngineError(code: "config.invalid", message: problems.joined(separator: "; "))
        }
        configuration = c
        self.logger = logger
        store = try SessionStore(
            capacity: c.maxSessions, pacing: PacingConfiguration(depth: c.pacingDepth, slotBytes: c.pacingSlotBytes))
        routes = RouteTable(registry: try c.makeRegistry(), workers: c.workers)
        links = WorkerLinks.make(workers: c.workers, sessions: c.maxSessions, commandCapacity: max(1024, c.maxSessions))
        control = SessionControl(store: store, links: links)
        // A certificate per run, as browsers make one per peer connection: the answer carries
        // its fingerprint, so nothing about it needs to persist.
        handshakes = HandshakeService(context: try DTLSServerContext(certificate: try DTLSCertificate()), links: links)
        control.beforeReclaim = { [unowned self] in self.logWorkerEvents() }
    }

    /// Opens the port (AF_XDP, or kernel sockets), then starts the workers. Throws before
    /// any worker starts if the port cannot be opened; with `io: auto` a failure to open
    /// AF_XDP falls back to kernel sockets, saying why.
    public func start() throws {
        let c = configuration
        reserveBackendPorts()
        var runners: [WorkerRunner] = []
        switch c.io {
        case .socket:
            runners = try startSockets()
        case .xdp:
            runners = try startXDP()
        case .auto:
            do {
                runners = try startXDP()
            } catch {
                logger.warning(
                    "AF_XDP unavailable, falling back to kernel UDP sockets",
                    metadata: ["reason": "\(error)", "io": "auto"]
                )
                xdp?.close()
                xdp = nil
                routes.forgetNextHops()
                counters = []
                runners = try startSockets()
            }
        }
        handshakes.start(logger: logger)
        for (w, runner) in runners.enumerated() {
            counters[w].beat(MonotonicClock.now())
            finished.enter()
            let thread = Thread { [self] in
                runner.run(isStopping: { self.stopping.load(ordering: .acquiring) }, logger: logger, id: w)
                finished.leave()
            }
            thread.name = "voxedge-worker-\(w)"
            threads.append(thread)
            thread.start()
        }
        var metadata: Logger.Metadata = [
            "workers": "\(c.workers)", "media": "\(c.mediaAddress):\(c.mediaPort)", "io": "\(io)",
        ]
        metadata["backend_address"] = .stringConvertible(c.backendLegAddress)
        metadata["backend_ports"] = .string("\(c.backendPorts.lowerBound)-\(c.backendPorts.upperBound)")
        if let xdp {
            metadata["interface"] = "\(xdp.interface)"
            metadata["xdp_mode"] = "\(xdp.mode)"
            metadata["zerocopy"] = "\(xdp.sockets.isZeroCopy)"
            metadata["hugepages"] = "\(xdp.sockets.region.usesHugePages)"
            metadata["idle"] = "\(c.xdp.idle.rawValue)"
        }
        logger.info("engine started", metadata: metadata)
    }

    /// Keeps the kernel from handing the backend-leg ports to other sockets: those that lie in
    /// its ephemeral range go in `net.ipv4.ip_local_reserved_ports` (CAP_NET_ADMIN), and stay
    /// there after the engine exits; a reservation already there is never touched.
    func reserveBackendPorts() {
        let ports = configuration.backendPorts
        func text(_ r: ClosedRange<Int>) -> Logger.MetadataValue { .string(EphemeralPorts.format([r])) }
        do {
            switch try EphemeralPorts.reserve(ports) {
            case .outside(let ephemeral):
                logger.info(
                    "backend-leg ports lie outside the kernel's ephemeral range: nothing to reserve",
                    metadata: ["ports": text(ports), "ephemeral": text(ephemeral)])
            case .alreadyReserved(let reserved, let ephemeral):
                logger.info(
                    "backend-leg ports in the kernel's ephemeral range are reserved already",
                    metadata: ["ports": text(ports), "reserved": text(reserved), "ephemeral": text(ephemeral)])
            case .reserved(let reserved, let ephemeral, let list):
                logger.info(
                    "reserved the backend-leg ports that lie in the kernel's ephemeral range; they stay reserved after exit",
                    metadata: [
                        "ports": text(ports), "reserved": text(reserved), "ephemeral": text(ephemeral),
                        "net.ipv4.ip_local_reserved_ports": .string(list),
                    ])
            }
        } catch {
            logger.warning(
                "could not reserve the backend-leg ports in the kernel's ephemeral range: it may hand them to other sockets",
                metadata: ["ports": text(ports), "error": "\(error)"])
        }
    }

    func startSockets() throws -> [WorkerRunner] {
        let c = configuration
        let media = c.mediaAddress
        let backendAddress = c.backendLegAddress
        // Every backend leg binds this address: one the host does not hold would fail each
        // session.create; say so once, now.
        do {
            close(try SocketQueue.bind(backendAddress, UDPPort(0), reusePort: false))
        } catch {
            guard error.errno == EADDRNOTAVAIL else { throw error }
            throw EngineError(
                code: "config.backend_address",
                message: "\(c.backendAddressName) is not an address of this host: the backend legs cannot be bound to it")
        }
        let port = InMemoryPort(queues: c.workers, frameCount: 4096 * c.workers, ringSize: 1024)
        var runners: [WorkerRunner] = []
        for w in 0..<c.workers {
            let sockets = try SocketQueue(
                port: port,
                queue: w,
                mediaAddress: media,
                mediaPort: UDPPort(c.mediaPort),
                backendAddress: backendAddress,
                backendPortBase: c.backendPortBase,
                backendPortCount: c.maxSessions,
                receiveBuffer: c.socketReceiveBuffer
            )
            var worker = Worker(
                configuration: workerConfiguration(w, edgeMAC: .zero),
                rings: port.rings(queue: w),
                umem: port.umem,
                frameSize: port.frameSize,
                frames: port.initialFrames(queue: w),
                store: store,
                backends: backends,
                links: links[w]
            )
            worker.portBinding = .socket(sockets)
            sockets.wake(on: worker.doorbellFD)
            socketQueues.append(sockets)
            counters.append(worker.counters)
            runners.append(SocketWorkerRunner(worker: worker, sockets: sockets, port: port, core: c.cores?[w]))
        }
        io = "socket"
        return runners
    }

    func startXDP() throws -> [WorkerRunner] {
        let c = configuration
        let plane = try XDPDataPlane(configuration: c, logger: logger)
        try routes.resolveNextHops(interfaceIndex: plane.ifindex, logger: logger)
        var runners: [WorkerRunner] = []
        let idle = c.xdp.idle
        for w in 0..<c.workers {
            if idle == .preferBusyPoll { try plane.sockets.preferBusyPoll(queue: w) }
            var worker = Worker(
                configuration: workerConfiguration(w, edgeMAC: plane.edgeMAC),
                rings: plane.sockets.rings(queue: w),
                umem: plane.sockets.umemBase,
                frameSize: plane.sockets.frameSize,
                frames: plane.sockets.initialFrames(queue: w),
                store: store,
                backends: backends,
                links: links[w]
            )
            worker.portBinding = .xdp(try plane.admission(worker: w))
            counters.append(worker.counters)
            runners.append(
                XDPWorkerRunner(
                    worker: worker,
                    driver: XSKQueueDriver(set: plane.sockets, queue: w),
                    sockets: plane.sockets,
                    idle: idle,
                    core: c.cores?[w]
                )
            )
        }
        xdp = plane
        io = "xdp"
        return runners
    }

    func workerConfiguration(_ w: Int, edgeMAC: MACAddress) -> WorkerConfiguration {
        let c = configuration
        var worker = WorkerConfiguration(
            id: w,
            mediaAddress: c.mediaAddress,
            mediaPort: UDPPort(c.mediaPort),
            backendAddress: c.backendLegAddress,
            backendPortBase: c.backendPortBase,
            edgeMAC: edgeMAC
        )
        worker.policing(rate: c.clientRateLimitPPS, burst: c.clientRateBurst)
        return worker
    }

    /// The control thread's periodic work (every few tens of milliseconds): slots released
    /// by workers, held sessions past their connect deadline, backend tables no worker
    /// holds, next-hop changes.
    public func tick() {
        control.reclaim()  // the workers' events first (`beforeReclaim`), then released slots
        control.reapUnclaimed(now: MonotonicClock.now())
        backends.reclaim()
        routes.tick()
    }

    /// Told of every event a worker reports (on the control thread, each tick): `subscribe`.
    public var onWorkerEvent: ((_ worker: Int, WorkerEvent) -> Void)? = nil

    /// Logs what the workers reported about their sessions since the last tick, and passes
    /// it on to `onWorkerEvent`.
    func logWorkerEvents() {
        for (w, link) in links.enumerated() {
            while let event = link.events.pop() {
                onWorkerEvent?(w, event)
                switch event.kind {
                case .ended:
                    break  // the control request or the worker's counters say it already
                case .flush:
                    logger.info(
                        "backend flush",
                        metadata: [
                            "session": "\(event.sessionID)", "slot": "\(event.slot)", "worker": "\(w)",
                            "last_sequence_sent": "\(event.sequence)", "packets_dropped": "\(event.count)",
                        ])
                case .backendEnded:
                    logger.info(
                        "backend ended the session",
                        metadata: [
                            "session": "\(event.sessionID)", "slot": "\(event.slot)", "worker": "\(w)",
                            "reason": "\(BackendEndReason(rawValue: event.reason))",
                        ])
                }
            }
        }
    }

    /// The kernel's AF_XDP drop counters of worker `w`'s socket (zeros on the socket port).
    public func xskStatistics(worker w: Int) -> XSKStatistics {
        guard let xdp, w < xdp.sockets.queueCount else { return XSKStatistics() }
        return xdp.sockets.statistics(queue: w)
    }

    /// What worker `w`'s kernel sockets dropped below its pipeline (nil on AF_XDP).
    public func socketPortStatistics(worker w: Int) -> SocketPortStatistics? {
        w < socketQueues.count ? socketQueues[w].statistics : nil
    }

    /// Stops the workers after their current burst (each sends what it has first), waits,
    /// then detaches the XDP program and closes the sockets.
    public func stop() {
        stopping.store(true, ordering: .releasing)
        for link in links { link.doorbell.ringAlways() }
        finished.wait()
        handshakes.stop()
        xdp?.close()
        logger.info("engine stopped")
    }
}

/// One worker's loop on its thread. It owns the worker and its port's per-queue state.
class WorkerRunner: @unchecked Sendable {
    let core: Int?

    init(core: Int?) { self.core = core }

    func run(isStopping: () -> Bool, logger: Logger, id: Int) {
        if let core, vox_pin_current_thread(Int32(core)) != 0 {
            logger.warning("could not pin worker to core", metadata: ["worker": "\(id)", "core": "\(core)"])
        }
        loop(isStopping: isStopping)
    }

    func loop(isStopping: () -> Bool) {}
}

/// Kernel sockets: read them (sleeping in epoll up to 10 ms when idle, woken by the doorbell
/// too), run a burst, send.
final class SocketWorkerRunner: WorkerRunner, @unchecked Sendable {
    var worker: Worker
    let sockets: SocketQueue
    let port: InMemoryPort

    init(worker: consuming Worker, sockets: SocketQueue, port: InMemoryPort, core: Int?) {
        self.worker = worker
        self.sockets = sockets
        self.port = port
        super.init(core: core)
    }

    /// How often the worker reads the kernel's drop counts of its sockets.
    static let dropSampleNanoseconds: UInt64 = 100_000_000

    override func loop(isStopping: () -> Bool) {
        var idle = true
        var last = MonotonicClock.now()
        var sampled = last
        while !isStopping() {
            // Idle: sleep on the sockets and the doorbell (commands, handshake flights), at
            // most 10 ms; busy: just look.
            if idle && worker.prepareToSleep() {
                // At most 10 ms, and no later than the worker's next timer (paced audio is
                // due every 20 ms or less).
                var timeout: Int32 = 10
                if let deadline = worker.nextDeadline() {
                    let now = MonotonicClock.now()
                    timeout = deadline <= now ? 0 : Int32(min(10, (deadline - now + 999_999) / 1_000_000))
                }
                _ = sockets.receive(timeout: timeout)
                worker.wokeUp()
            } else {
                _ = sockets.receive(timeout: 0)
            }
            let now = MonotonicClock.now()
            let handled = worker.runOnce(now: now)
            let sent = sockets.transmit()
            idle = handled == 0 && sent == 0
            let end = MonotonicClock.now()
            worker.counters.addLoopTime(busy: idle ? 0 : end &- last, idle: idle ? end &- last : 0)
            worker.counters.beat(end)
            if end &- sampled >= SocketWorkerRunner.dropSampleNanoseconds {
                sockets.sampleKernelDrops()
                sampled = end
            }
            last = end
        }
        // Drain: what was received is handled and sent before the thread ends.
        _ = worker.runOnce(now: MonotonicClock.now())
        sockets.transmit()
        sockets.sampleKernelDrops()
        worker.park()
    }
}

/// AF_XDP: a burst, the TX kick, and — when the burst found nothing — the idle strategy:
/// poll() on the socket and the doorbell (need_wakeup), or spin.
final class XDPWorkerRunner: WorkerRunner, @unchecked Sendable {
    var worker: Worker
    var driver: XSKQueueDriver
    /// Kept alive while the worker drives its rings.
    let sockets: XSKSet
    let idle: IdleStrategy
    /// Longest sleep: the doorbell wakes the worker for commands and hand-offs, its timer
    /// wheel's next deadline sooner; the heartbeat needs a round a second regardless.
    static let maximumSleepMilliseconds: Int32 = 1000

    /// How long poll() may sleep at `now`: until the worker's next timer, at most a second.
    static func sleepMilliseconds(now: UInt64, deadline: UInt64?) -> Int32 {
        guard let deadline else { return maximumSleepMilliseconds }
        guard deadline > now else { return 0 }
        // Round up: waking a moment early would only sleep again.
        return Int32(min(UInt64(maximumSleepMilliseconds), (deadline - now + 999_999) / 1_000_000))
    }

    init(worker: consuming Worker, driver: XSKQueueDriver, sockets: XSKSet, idle: IdleStrategy, core: Int?) {
        self.worker = worker
        self.driver = driver
        self.sockets = sockets
        self.idle = idle
        super.init(core: core)
    }

    override func loop(isStopping: () -> Bool) {
        var fds = [
            pollfd(fd: driver.fd, events: Int16(POLLIN), revents: 0),
            pollfd(fd: worker.doorbellFD, events: Int16(POLLIN), revents: 0),
        ]
        var last = MonotonicClock.now()
        while !isStopping() {
            let handled = worker.runOnce(now: last)
            driver.kickTX()
            let end = MonotonicClock.now()
            if handled > 0 {
                worker.counters.addLoopTime(busy: end &- last, idle: 0)
                worker.counters.beat(end)
                // The kernel stops filling RX when the fill ring ran dry; say there is more.
                driver.wakeRX()
                last = end
                continue
            }
            switch idle {
            case .poll:
                // Frames the kernel has not taken yet (copy mode answered EAGAIN): kick again
                // rather than sleep on them.
                if driver.txPending == 0, worker.prepareToSleep() {
                    let timeout = XDPWorkerRunner.sleepMilliseconds(now: last, deadline: worker.nextDeadline())
                    _ = poll(&fds, 2, timeout)
                    worker.wokeUp()
                }
            case .busyPoll:
                driver.wakeRX()
            case .preferBusyPoll:
                // With SO_PREFER_BUSY_POLL the kernel runs the queue's NAPI inside this call.
                _ = recvfrom(driver.fd, nil, 0, Int32(MSG_DONTWAIT), nil, nil)
            }
            let woke = MonotonicClock.now()
            worker.counters.addLoopTime(busy: 0, idle: woke &- last)
            worker.counters.beat(woke)
            last = woke
        }
        _ = worker.runOnce(now: MonotonicClock.now())
        driver.kickTX()
        worker.park()
    }
}
