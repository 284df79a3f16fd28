import Dispatch
import HTTPTypes
import Hummingbird
import Logging
import ServiceLifecycle
import NIOCore
import NIOPosix
import Synchronization
import VoxEngine

/// The private metrics and health listener (plain HTTP, `metrics_address:metrics_port`),
/// served by Hummingbird on an event loop of its own, apart from the control thread and its
/// clients, so no control client can hold it up:
///
/// - `GET /metrics`: Prometheus text (`EngineMetrics`)
/// - `GET /healthz`: 200 while every worker's loop keeps coming round; 503 naming a worker
///   whose heartbeat is older than `stallLimit` (it is stuck). Answers until the process exits.
/// - `GET /readyz`: 200, or 503 once the engine drains (`EngineRuntime.draining`).
public final class MetricsServer: @unchecked Sendable {
    let runtime: EngineRuntime
    let metrics: EngineMetrics
    /// How long a worker may go without a heartbeat before /healthz fails.
    public let stallLimit: Duration
    let logger: Logger
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    lazy var executor = LoopTaskExecutor(loop: group.next())
    let bound = Atomic<Int>(-1)
    let failure = Mutex<String?>(nil)
    /// The listening channel, closed by `stop`.
    let listening = Mutex<(any Channel)?>(nil)
    var task: Task<Void, Never>?
    var services: ServiceGroup?
    let finished = DispatchSemaphore(value: 0)

    /// The port it listens on (the one picked when asked for port 0).
    public var port: UInt16 { UInt16(clamping: max(0, bound.load(ordering: .acquiring))) }

    public init(runtime: EngineRuntime, metrics: EngineMetrics, stallLimit: Duration = .seconds(5), logger: Logger? = nil) {
        self.runtime = runtime
        self.metrics = metrics
        self.stallLimit = stallLimit
        var l = logger ?? Logger(label: "voxedge.http")
        // Hummingbird logs every request at debug, its start at info, and its cancellation at
        // exit as an error; failures to bind reach the caller as errors of `start`.
        l.logLevel = .critical
        self.logger = l
    }

    deinit {
        group.shutdownGracefully { _ in }
    }

    /// Listens on `address:port` (port 0 picks one; `port` then says which) and serves until `stop`.
    public func start(address: String, port requested: UInt16) throws(ControlError) {
        let router = Router()
        let metrics = metrics
        let runtime = runtime
        let limit = UInt64(stallLimit.components.seconds) * 1_000_000_000 + UInt64(stallLimit.components.attoseconds / 1_000_000_000)
        router.get("metrics") { _, _ -> Response in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: ResponseBody(byteBuffer: ByteBuffer(bytes: metrics.exposition())))
        }
        router.get("healthz") { _, _ -> Response in
            let stalled = metrics.stalledWorkers(limit: limit)
            guard stalled.isEmpty else {
                let text = stalled.map { "worker \($0.worker): no progress for \(Double($0.nanoseconds / 1_000_000) / 1000) s\n" }.joined()
                return MetricsServer.text(.serviceUnavailable, text)
            }
            return MetricsServer.text(.ok, "ok\n")
        }
        router.get("readyz") { _, _ -> Response in
            runtime.draining.load(ordering: .acquiring)
                ? MetricsServer.text(.serviceUnavailable, "draining\n") : MetricsServer.text(.ok, "ready\n")
        }
        let started = DispatchSemaphore(value: 0)
        let app = Application(
            router: router,
            configuration: ApplicationConfiguration(address: .hostname(address, port: Int(requested)), serverName: nil),
            onServerRunning: { [self] channel in
                bound.store(channel.localAddress?.port ?? 0, ordering: .releasing)
                listening.withLock { $0 = channel }
                started.signal()
            },
            eventLoopGroupProvider: .shared(group),
            logger: logger
        )
        let services = ServiceGroup(services: [app], logger: logger)
        self.services = services
        // On the listener's own thread, not Swift's shared pool: a caller that blocks a pool
        // thread (as `start` does, waiting for the bind) cannot hold the listener up.
        task = Task(executorPreference: executor) { [self] in
            do {
                try await services.run()
            } catch {
                failure.withLock { $0 = "\(error)" }
            }
            started.signal()
            finished.signal()
        }
        started.wait()
        if let reason = failure.withLock({ $0 }) {
            task = nil
            throw ControlError(code: "metrics.bind", message: "\(address):\(requested): \(reason)")
        }
    }

    /// Stops listening and waits until the server is down.
    public func stop() {
        guard task != nil, services != nil else { return }
        defer {
            task = nil
            services = nil
        }
        // Cancelling the server's task closes the listener and its connections (a graceful
        // shutdown would wait for scrapers' keep-alive connections).
        task?.cancel()
        if let channel = listening.withLock({ $0 }) { try? channel.close().wait() }
        // Down once the server's task ends; should it linger, its loop is left to the process's exit.
        if finished.wait(timeout: .now() + 2) == .success { try? group.syncShutdownGracefully() }
    }

    static func text(_ status: HTTPResponse.Status, _ body: String) -> Response {
        Response(
            status: status, headers: [.contentType: "text/plain; charset=utf-8"],
            body: ResponseBody(byteBuffer: ByteBuffer(string: body)))
    }
}

/// Runs Swift tasks on one NIO event loop's thread: the metrics listener's tasks stay on
/// its own thread.
final class LoopTaskExecutor: TaskExecutor, @unchecked Sendable {
    let loop: any EventLoop

    init(loop: any EventLoop) { self.loop = loop }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = asUnownedTaskExecutor()
        loop.execute { job.runSynchronously(on: executor) }
    }
}
