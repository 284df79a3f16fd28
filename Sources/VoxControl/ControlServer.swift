import Foundation
import Glibc
import Logging
import NIOCore
import NIOPosix

/// What one control client may cost the engine.
public struct ControlLimits: Sendable, Equatable {
    /// Longest request line, in bytes (a batched load report of 1,000 backends fits). A longer
    /// line gets a `line_too_long` error and is skipped; the connection stays usable.
    public var maxLine = 1 << 20
    /// Connections served at once; one more is told `busy` and closed.
    public var maxClients = 1024
    /// Reply bytes the engine holds for one client that does not read them; past this the
    /// client is closed (one reply larger than this still goes to a client that has read the rest).
    public var maxQueuedReplyBytes = 1 << 20
    /// A connection that sends no request for this long is told `idle_timeout` and closed
    /// (a subscriber, which waits for events, is not).
    public var idleTimeout: TimeAmount = .seconds(300)
    /// Event bytes the engine holds for one subscriber that does not read them; past this its
    /// events are dropped and counted, and it is told how many when it reads again.
    public var maxQueuedEventBytes = 256 * 1024

    public init() {}
}

/// Who may use the control socket: a peer whose uid or (primary) gid, as `SO_PEERCRED`
/// reports them, is listed.
public struct PeerPolicy: Sendable, Equatable {
    public var uids: Set<UInt32>
    public var gids: Set<UInt32>

    public init(uids: Set<UInt32>, gids: Set<UInt32>) {
        self.uids = uids
        self.gids = gids
    }

    public func allows(_ peer: PeerCredentials) -> Bool { uids.contains(peer.uid) || gids.contains(peer.gid) }
}

/// The peer of a Unix socket, as the kernel saw it at connect(2) (`SO_PEERCRED`). Laid out as
/// the kernel's `struct ucred` (pid, uid, gid; 12 bytes), which Glibc does not import without
/// _GNU_SOURCE, so `getsockopt` fills it directly.
public struct PeerCredentials: Sendable, Equatable {
    public var pid: Int32
    public var uid: UInt32
    public var gid: UInt32
}

/// The control socket (DESIGN §5) on swift-nio: a Unix stream socket (mode 0660), one JSON
/// object per line each way.
///
/// Its one event loop is the **control thread**: every connection lives on it, every request
/// is handled there in order per connection, and the runtime's periodic work runs there too
/// (`every`), so `EngineController` and `SessionControl` stay single-threaded. Fairness
/// between connections comes from the loop itself: each turn reads at most one 16 KiB chunk
/// from each readable connection, so a client streaming requests gets its turn and no more.
/// Each client is bounded: request lines (`maxLine`), replies held for it
/// (`maxQueuedReplyBytes`), idle time, and the number of clients; peers are checked against
/// `PeerPolicy` before anything they send is read.
public final class ControlServer: @unchecked Sendable {
    public let path: String
    public let limits: ControlLimits
    /// The peers allowed; when not configured, the engine's own uid and the socket's group.
    public private(set) var peers: PeerPolicy
    let configuredPeers: PeerPolicy?
    let group: MultiThreadedEventLoopGroup
    /// The control thread.
    public let loop: any EventLoop
    let handler: (ControlRequest) -> ControlReply
    let logger: Logger
    let metrics: EngineMetrics?
    var listener: (any Channel)?
    var tasks: [RepeatedTask] = []

    /// Runs after a batch of requests is handled and before their replies go out: what a
    /// reply promises must hold when the client reads it (a created session's flows are in
    /// the workers' directory), and one call covers a whole pipelined batch.
    public var beforeReplies: (() -> Void)?

    // Control-thread state.
    public private(set) var requests = 0
    public internal(set) var errors = 0
    public internal(set) var connectedClients = 0
    var connectionNumber: UInt64 = 0
    /// Clients told `busy` so far (logged once in a hundred: a crowd must not flood the log).
    var busyRefusals = 0

    public init(
        path: String, limits: ControlLimits = ControlLimits(), peers: PeerPolicy? = nil,
        logger: Logger = Logger(label: "voxedge.control"), metrics: EngineMetrics? = nil,
        handler: @escaping (ControlRequest) -> ControlReply
    ) {
        self.path = path
        self.limits = limits
        self.configuredPeers = peers
        self.peers = peers ?? PeerPolicy(uids: [geteuid()], gids: [getegid()])
        self.logger = logger
        self.metrics = metrics
        self.handler = handler
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        loop = group.next()
    }

    deinit {
        // The last reference may go on the loop itself (a connection's handler): no waiting here.
        group.shutdownGracefully { _ in }
    }

    /// Binds (replacing a stale socket file), sets mode 0660 and starts serving.
    public func start() throws(ControlError) {
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.maxMessagesPerRead, value: 16)
            // One read of at most 16 KiB per connection per turn of the loop: fairness.
            .childChannelOption(.maxMessagesPerRead, value: 1)
            .childChannelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 16 * 1024))
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([
                        IdleStateHandler(readTimeout: limits.idleTimeout),
                        ByteToMessageHandler(BoundedLineDecoder(maximum: limits.maxLine)),
                        ControlConnectionHandler(server: self),
                    ])
                }
            }
        let bound: any Channel
        do {
            bound = try bootstrap.bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true).wait()
        } catch {
            throw ControlError(code: "control.bind", message: "\(path): \(error)")
        }
        chmod(path, 0o660)
        var policy = peers
        if configuredPeers == nil {
            var s = stat()
            if stat(path, &s) == 0 { policy = PeerPolicy(uids: [geteuid()], gids: [s.st_gid]) }
        }
        let peersNow = policy
        try? loop.submit { self.peers = peersNow }.wait()
        listener = bound
        logger.info(
            "control socket listening",
            metadata: [
                "path": "\(path)", "allowed_uids": "\(peersNow.uids.sorted())", "allowed_gids": "\(peersNow.gids.sorted())",
                "max_clients": "\(limits.maxClients)", "max_line": "\(limits.maxLine)",
            ])
    }

    /// Runs `body` on the control thread every `interval` until `stop`.
    public func every(_ interval: TimeAmount, _ body: @escaping () -> Void) {
        let box = UnsafeTransfer(body)
        let task = loop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in box.value() }
        tasks.append(task)
    }

    /// Runs `body` on the control thread; the caller (a Swift concurrency task) is suspended,
    /// not blocked, meanwhile.
    public func perform<T: Sendable>(_ body: @escaping () -> T) async -> T {
        let box = UnsafeTransfer(body)
        return try! await loop.submit { UnsafeTransfer(box.value()) }.get().value
    }

    /// Runs `body` on the control thread and waits for it. (Escaping: the loop may still
    /// hold the task a moment after it ran.)
    public func onControlThread<T>(_ body: @escaping () -> T) -> T {
        if loop.inEventLoop { return body() }
        let box = UnsafeTransfer(body)
        return try! loop.submit { UnsafeTransfer(box.value()) }.wait().value
    }

    /// Closes the listener and every connection, stops the periodic work and the control
    /// thread. Not from the control thread itself.
    public func stop() {
        guard let listener else { return }
        self.listener = nil
        for task in tasks { task.cancel() }
        tasks = []
        try? listener.close().wait()
        try? loop.submit { self.closeAll() }.wait()
        unlink(path)
        try? group.syncShutdownGracefully()
    }

    var connections: [ObjectIdentifier: any Channel] = [:]
    func closeAll() {
        for c in connections.values { c.close(promise: nil) }
        connections = [:]
    }

    func nextConnection() -> UInt64 {
        connectionNumber += 1
        return connectionNumber
    }

    // MARK: Events (`subscribe`, DESIGN §5)

    /// The connections that subscribed (control thread).
    var subscribers: [ObjectIdentifier: ControlConnectionHandler] = [:]
    /// Events sent to subscribers, and events dropped for subscribers that did not read.
    public internal(set) var eventsPublished: UInt64 = 0
    public internal(set) var eventsLost: UInt64 = 0
    public var subscriberCount: Int { subscribers.count }

    /// The event kinds a subscriber may ask for (`events`: each event's name starts with one).
    public static let eventKinds = ["session", "backend", "edge"]

    /// Sends event `name` with `fields` to every subscriber that asked for its kind, as one
    /// JSON line `{"event":name,"time":unix seconds,…}`. On the control thread; costs nothing
    /// without subscribers. A subscriber that does not read loses events (counted), never
    /// holds the engine up.
    public func publish(_ name: String, _ fields: [String: Any]) {
        guard !subscribers.isEmpty else { return }
        var object = fields
        object["event"] = name
        object["time"] = (Date().timeIntervalSince1970 * 1000).rounded() / 1000
        guard var line = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else { return }
        line.append(0x0A)
        let bytes = [UInt8](line)
        let kind = name.split(separator: ".").first.map(String.init) ?? name
        for subscriber in subscribers.values { subscriber.deliver(kind: kind, bytes) }
        eventsPublished += 1
    }

    /// `subscribe` (optional `events`: the kinds wanted, default all): this connection gets
    /// every event from now on, beside its replies.
    func subscribe(_ request: ControlRequest, _ handler: ControlConnectionHandler) -> ControlReply {
        var kinds = Set(ControlServer.eventKinds)
        if let given = request.arguments["events"], !(given is NSNull) {
            guard let list = given as? [Any], !list.isEmpty, list.allSatisfy({ $0 is String }) else {
                return .failure("bad_argument", "'events' must be a non-empty list of event kinds (\(ControlServer.eventKinds.joined(separator: ", ")))")
            }
            kinds = Set(list.compactMap { $0 as? String })
            if let unknown = kinds.first(where: { !ControlServer.eventKinds.contains($0) }) {
                return .failure(
                    "bad_argument",
                    "'events': unknown kind '\(unknown)' (kinds: \(ControlServer.eventKinds.joined(separator: ", ")))")
            }
        }
        handler.subscribedKinds = kinds
        subscribers[ObjectIdentifier(handler)] = handler
        metrics?.controlSubscribers(subscribers.count)
        return .ok(["subscribed": kinds.sorted(), "queue_limit_bytes": limits.maxQueuedEventBytes])
    }

    func unsubscribe(_ handler: ControlConnectionHandler) {
        guard subscribers.removeValue(forKey: ObjectIdentifier(handler)) != nil else { return }
        metrics?.controlSubscribers(subscribers.count)
    }

    /// One request line: parse, handle, log, reply.
    func reply(to line: ByteBuffer, peer: PeerCredentials, connection: UInt64, handler: ControlConnectionHandler? = nil)
        -> [UInt8]?
    {
        requests += 1
        switch ControlWire.parse(line.readableBytesView) {
        case .blank:
            metrics?.controlRequest(failed: false)
            return nil
        case .invalid(let id, let reply):
            errors += 1
            metrics?.controlRequest(failed: true)
            logger.debug(
                "control request refused",
                metadata: ["conn": "\(connection)", "peer_uid": "\(peer.uid)", "error": "\(reply.error?.code ?? "")"])
            return ControlWire.encode(id: id, reply)
        case .request(let request):
            let reply: ControlReply
            if request.command == "subscribe", let handler {
                reply = subscribe(request, handler)
            } else {
                reply = self.handler(request)
            }
            let failed = reply.error != nil
            if failed { errors += 1 }
            metrics?.controlRequest(failed: failed)
            log(request, reply, peer: peer, connection: connection)
            let reveal = (request.command == "session.create" || request.command == "session.offer") && !failed
            return ControlWire.encode(id: request.id, reply, revealSecrets: reveal)
        }
    }

    static let readOnlyCommands: Set<String> = ["session.list", "session.show", "stats"]

    /// Who did what: changes at info, reads at debug; arguments and results redacted.
    func log(_ request: ControlRequest, _ reply: ControlReply, peer: PeerCredentials, connection: UInt64) {
        let level: Logger.Level = ControlServer.readOnlyCommands.contains(request.command) ? .debug : .info
        guard logger.logLevel <= level else { return }
        var metadata: Logger.Metadata = [
            "conn": "\(connection)", "peer_pid": "\(peer.pid)", "peer_uid": "\(peer.uid)", "peer_gid": "\(peer.gid)",
            "cmd": "\(request.command)", "request_id": "\(ControlServer.render(request.id))",
            "arguments": "\(ControlServer.render(ControlWire.redacted(request.arguments)))",
        ]
        if let e = reply.error {
            metadata["result"] = "\(e.code)"
        } else {
            metadata["result"] = "ok"
            if let session = reply.fields["session"] as? [String: Any], let id = session["id"] {
                metadata["session"] = "\(id)"
            }
        }
        logger.log(level: level, "control request", metadata: metadata)
    }

    static func render(_ value: Any) -> String {
        if value is NSNull { return "null" }
        if JSONSerialization.isValidJSONObject(value),
            let data = try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys])
        {
            return String(decoding: data, as: UTF8.self)
        }
        return "\(value)"
    }
}

/// Carries a value the compiler cannot prove `Sendable` to the control thread, where alone it
/// is used.
struct UnsafeTransfer<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

/// One client connection, on the control thread.
final class ControlConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ControlLine
    typealias OutboundOut = ByteBuffer

    enum State { case starting, serving, closing }
    let server: ControlServer
    var state = State.starting
    var peer = PeerCredentials(pid: 0, uid: UInt32.max, gid: UInt32.max)
    var number: UInt64 = 0
    /// Reply bytes written and not yet taken by the kernel.
    var queued = 0
    /// Replies written since the last flush.
    var unflushed = 0
    /// Set by `subscribe`: the event kinds this connection gets.
    var subscribedKinds: Set<String>? = nil
    /// Events dropped since this subscriber last had room, told to it before the next one.
    var lostEvents: UInt64 = 0
    var context: ChannelHandlerContext? = nil

    init(server: ControlServer) { self.server = server }

    var limits: ControlLimits { server.limits }

    func channelActive(context: ChannelHandlerContext) {
        self.context = context
        number = server.nextConnection()
        server.connectedClients += 1
        server.connections[ObjectIdentifier(context.channel)] = context.channel
        server.metrics?.controlClients(server.connectedClients)
        defer { context.fireChannelActive() }
        guard server.connectedClients <= limits.maxClients else {
            server.busyRefusals += 1
            if server.busyRefusals % 100 == 1 {
                server.logger.notice(
                    "control client refused: too many clients",
                    metadata: ["conn": "\(number)", "limit": "\(limits.maxClients)", "refused_so_far": "\(server.busyRefusals)"])
            }
            return close(
                context, reason: "busy", notice: ControlWire.notice("busy", "the engine serves \(limits.maxClients) control clients at once; try again"))
        }
        guard let provider = context.channel as? any SocketOptionProvider else {
            return close(context, reason: "forbidden", notice: ControlWire.notice("forbidden", "peer credentials unavailable"))
        }
        // SO_PEERCRED (asm-generic/socket.h): not imported by Glibc without _GNU_SOURCE.
        let soPeerCred: CInt = 17
        assert(MemoryLayout<PeerCredentials>.size == 12)
        let credentials: EventLoopFuture<PeerCredentials> = provider.unsafeGetSocketOption(level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(soPeerCred))
        credentials.assumeIsolated().whenComplete { result in
            guard case .success(let c) = result else {
                return self.close(context, reason: "forbidden", notice: ControlWire.notice("forbidden", "peer credentials unavailable"))
            }
            self.peer = c
            guard self.server.peers.allows(self.peer) else {
                self.server.logger.warning(
                    "control client refused: peer not allowed",
                    metadata: ["conn": "\(self.number)", "peer_pid": "\(c.pid)", "peer_uid": "\(c.uid)", "peer_gid": "\(c.gid)"])
                return self.close(
                    context, reason: "forbidden",
                    notice: ControlWire.notice("forbidden", "uid \(c.uid) gid \(c.gid) may not use this control socket"))
            }
            self.state = .serving
            self.server.logger.debug(
                "control client connected",
                metadata: ["conn": "\(self.number)", "peer_pid": "\(c.pid)", "peer_uid": "\(c.uid)", "peer_gid": "\(c.gid)"])
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        server.unsubscribe(self)
        self.context = nil
        server.connectedClients -= 1
        server.connections[ObjectIdentifier(context.channel)] = nil
        server.metrics?.controlClients(server.connectedClients)
        server.logger.debug("control client gone", metadata: ["conn": "\(number)"])
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard state == .serving else { return }
        switch unwrapInboundIn(data) {
        case .tooLong:
            server.errors += 1
            server.metrics?.controlRequest(failed: true)
            server.logger.debug("control request line too long", metadata: ["conn": "\(number)"])
            send(context, ControlWire.notice("line_too_long", "request lines are limited to \(limits.maxLine) bytes"))
        case .line(let line):
            if let reply = server.reply(to: line, peer: peer, connection: number, handler: self) { send(context, reply) }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        flush(context)
        context.fireChannelReadComplete()
    }

    func send(_ context: ChannelHandlerContext, _ bytes: [UInt8]) {
        guard state == .serving else { return }
        if queued > 0, queued + bytes.count > limits.maxQueuedReplyBytes {
            server.logger.notice(
                "control client closed: it does not read its replies",
                metadata: ["conn": "\(number)", "peer_pid": "\(peer.pid)", "peer_uid": "\(peer.uid)", "queued_bytes": "\(queued)"])
            state = .closing
            server.metrics?.controlClosed(reason: "reply_queue_full")
            context.close(promise: nil)
            return
        }
        write(context, bytes)
        unflushed += bytes.count
        // A long pipelined batch goes out in pieces rather than all held until the read ends.
        if unflushed >= 64 * 1024 { flush(context) }
    }

    /// One event line, if this connection subscribed to its kind and has room for it;
    /// otherwise it is dropped and counted, and the next event that fits is preceded by
    /// `{"event":"events.lost","count":N}`.
    func deliver(kind: String, _ bytes: [UInt8]) {
        guard state == .serving, let context, subscribedKinds?.contains(kind) == true else { return }
        guard queued + bytes.count <= limits.maxQueuedEventBytes else {
            lostEvents += 1
            server.eventsLost += 1
            server.metrics?.controlEventsLost()
            return
        }
        if lostEvents > 0 {
            let notice = Array(#"{"count":\#(lostEvents),"event":"events.lost"}"#.utf8) + [0x0A]
            lostEvents = 0
            write(context, notice)
        }
        write(context, bytes)
        context.flush()
    }

    /// Writes `bytes`, counted in `queued` until the kernel takes them.
    func write(_ context: ChannelHandlerContext, _ bytes: [UInt8]) {
        queued += bytes.count
        let promise = context.eventLoop.makePromise(of: Void.self)
        let n = bytes.count
        promise.futureResult.assumeIsolated().whenComplete { _ in self.queued -= n }
        context.write(wrapOutboundOut(context.channel.allocator.buffer(bytes: bytes)), promise: promise)
    }

    func flush(_ context: ChannelHandlerContext) {
        guard unflushed > 0 else { return }
        unflushed = 0
        server.beforeReplies?()
        context.flush()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let idle = event as? IdleStateHandler.IdleStateEvent, idle == .read, state == .serving, subscribedKinds == nil {
            server.logger.debug("control client idle: closing", metadata: ["conn": "\(number)"])
            close(
                context, reason: "idle_timeout",
                notice: ControlWire.notice("idle_timeout", "no request for \(limits.idleTimeout.nanoseconds / 1_000_000_000) s"))
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        server.logger.debug("control connection error", metadata: ["conn": "\(number)", "error": "\(error)"])
        context.close(promise: nil)
    }

    /// Says why, then closes.
    func close(_ context: ChannelHandlerContext, reason: String, notice: [UInt8]) {
        guard state != .closing else { return }
        state = .closing
        server.metrics?.controlClosed(reason: reason)
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(bytes: notice)), promise: nil)
        context.close(promise: nil)
    }
}
