import HTTPTypes
import HummingbirdCore
import Logging
import NIOCore
import NIOSSL
import ServiceLifecycle
import Synchronization
import VoxMedia

/// The public signaling listener: HTTPS (or plain HTTP when configured) on Hummingbird's
/// HTTP/1.1 server, with the connection limits and deadlines of `ConnectionGuards.swift`,
/// serving `SignalingService`. A `Service`: run it in a ServiceGroup, or call `run()` and
/// later `shutdown()`.
///
/// HummingbirdTLS's `TLSChannel` builds one `NIOSSLContext` when the server is built; to load
/// a new certificate without a restart this listener has its own child channel, which takes
/// the current context for each accepted connection (`reload` swaps it).
public final class SignalingServer: Service, Sendable {
    public let service: SignalingService
    public let configuration: SignalingConfiguration
    /// The SHA-256 fingerprint of the generated self-signed certificate
    /// (`sha-256 AB:CD:…`), for printing; nil when the certificate comes from files or
    /// the listener is plain HTTP.
    public let certificateFingerprint: String?
    /// The generated pair's PEM certificate (the embedded default), so a client can trust it.
    public let generatedCertificatePEM: String?

    let tls: TLSContextBox
    let generated: ([NIOSSLCertificate], NIOSSLPrivateKey)?
    let gate: ConnectionGate
    let logger: Logger
    private let server: HummingbirdCore.Server<SignalingChannel>
    private let listening: ListeningPort

    /// Reads the certificate and token keys (or generates the self-signed pair) and builds
    /// the listener; nothing is bound until `run`.
    public init(
        configuration c: SignalingConfiguration, engine: any SignalingEngine, eventLoopGroup: any EventLoopGroup,
        logger: Logger
    ) async throws(SignalingSetupError) {
        let problems = c.problems()
        guard problems.isEmpty else { throw SignalingSetupError(problems.joined(separator: "; ")) }
        configuration = c
        self.logger = logger
        let tokens = try await TokenAuthority.load(c)
        let service = SignalingService(configuration: c, tokens: tokens, engine: engine, logger: logger)
        self.service = service
        let gate = ConnectionGate(maxTotal: c.maxConnections, maxPerSource: c.maxConnectionsPerSource)
        self.gate = gate
        let listening = ListeningPort()
        self.listening = listening
        let tls: TLSContextBox

        if c.plainHTTP {
            generated = nil
            certificateFingerprint = nil
            generatedCertificatePEM = nil
            tls = TLSContextBox(nil)
        } else if c.tlsCertificateFile == nil {
            let pair: DTLSCertificate
            do {
                pair = try DTLSCertificate(commonName: "VoxEdge signaling", validDays: 365)
            } catch {
                throw SignalingSetupError("cannot generate the self-signed certificate: \(error)")
            }
            let material = try Self.parse(certificatePEM: Array(pair.certificatePEM.utf8), keyPEM: Array(pair.privateKeyPEM.utf8), from: "generated")
            generated = material
            certificateFingerprint = pair.fingerprint.description
            generatedCertificatePEM = pair.certificatePEM
            tls = TLSContextBox(try Self.context(material))
        } else {
            generated = nil
            certificateFingerprint = nil
            generatedCertificatePEM = nil
            tls = TLSContextBox(try Self.context(try Self.loadFiles(c)))
        }

        self.tls = tls
        let statistics = service.statistics
        let handshake = TimeAmount.nanoseconds(Int64(c.tlsHandshakeTimeoutSeconds * 1e9))
        let header = TimeAmount.nanoseconds(Int64(c.headerTimeoutSeconds * 1e9))
        let body = TimeAmount.nanoseconds(Int64(c.bodyTimeoutSeconds * 1e9))
        let idle = TimeAmount.nanoseconds(Int64(c.idleTimeoutSeconds * 1e9))
        let decoderLimit = c.maxHeaderBytes + 4096
        var http = HTTP1Channel.Configuration(
            additionalChannelHandlers: [
                RequestDeadlineHandler(
                    headerTimeout: header, bodyTimeout: body, idleTimeout: idle,
                    onTimeout: { statistics.count(.requestTimeout) })
            ],
            idleTimeout: nil)
        http.httpDecoder = .init(maxHeaderFieldSize: decoderLimit, maxHeaderListSize: decoderLimit, maxHeaderFieldCount: 256)
        let channel = SignalingChannel(
            http: HTTP1Channel(
                responder: { request, writer, channel in
                    try await Self.respond(service, request, writer, channel)
                }, configuration: http),
            tls: tls,
            gate: gate, handshakeTimeout: handshake, statistics: statistics)
        server = HummingbirdCore.Server(
            childChannelSetup: channel,
            configuration: ServerConfiguration(address: .hostname(c.address, port: c.port), backlog: 256),
            onServerRunning: { [listening] channel in listening.bound(channel.localAddress?.port ?? 0) },
            eventLoopGroup: eventLoopGroup, logger: logger)
    }

    /// Serves until `shutdown()` (or the ServiceGroup's graceful shutdown); forgets sessions
    /// the engine has ended every few seconds meanwhile.
    public func run() async throws {
        // A listener that never bound (the port taken, the address not the host's) still
        // releases whoever waits in `port()`: with 0.
        defer { listening.bound(0, ifUnbound: true) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await self.server.run() }
            group.addTask {
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(5))
                    await self.service.sweep()
                }
            }
            try await group.next()
            group.cancelAll()
        }
    }

    /// Stops accepting, lets requests in progress finish, and makes `run` return.
    public func shutdown() async {
        try? await server.shutdownGracefully()
    }

    /// The bound TCP port, once the listener is up (waits for it); 0 when it stopped unbound.
    public func port() async -> Int { await listening.wait() }

    /// Connections open on the listener now (TLS handshakes in progress included).
    public var openConnections: Int { gate.open }

    /// Re-reads the certificate and key files and the token keys: new connections get the new
    /// certificate, new requests the new keys; connections already open keep theirs. On any
    /// failure nothing changes and the error names the file.
    public func reload() async throws(SignalingSetupError) {
        var fresh: NIOSSLContext? = nil
        if !configuration.plainHTTP {
            if let generated {
                fresh = try Self.context(generated)
            } else {
                fresh = try Self.context(try Self.loadFiles(configuration))
            }
        }
        try await service.tokens.reload(configuration)
        if let fresh { tls.replace(fresh) }
        logger.info("signaling: certificate and token keys reloaded")
    }

    static func loadFiles(_ c: SignalingConfiguration) throws(SignalingSetupError) -> ([NIOSSLCertificate], NIOSSLPrivateKey) {
        guard let certificateFile = c.tlsCertificateFile, let keyFile = c.tlsKeyFile else {
            throw SignalingSetupError("no certificate files configured")
        }
        let certificate = try SignalingSetupError.readFile(certificateFile, what: "tls_certificate_file")
        let key = try SignalingSetupError.readFile(keyFile, what: "tls_key_file")
        return try parse(certificatePEM: certificate, keyPEM: key, from: "\(certificateFile), \(keyFile)")
    }

    static func parse(certificatePEM: [UInt8], keyPEM: [UInt8], from: String) throws(SignalingSetupError) -> (
        [NIOSSLCertificate], NIOSSLPrivateKey
    ) {
        do {
            let chain = try NIOSSLCertificate.fromPEMBytes(certificatePEM)
            guard !chain.isEmpty else { throw SignalingSetupError("no certificate in it") }
            return (chain, try NIOSSLPrivateKey(bytes: keyPEM, format: .pem))
        } catch {
            throw SignalingSetupError("\(from): not a PEM certificate and key (\(error))")
        }
    }

    static func context(_ material: ([NIOSSLCertificate], NIOSSLPrivateKey)) throws(SignalingSetupError) -> NIOSSLContext {
        var tls = TLSConfiguration.makeServerConfiguration(
            certificateChain: material.0.map { .certificate($0) }, privateKey: .privateKey(material.1))
        tls.minimumTLSVersion = .tlsv12
        tls.applicationProtocols = ["http/1.1"]
        do {
            return try NIOSSLContext(configuration: tls)
        } catch {
            throw SignalingSetupError("the certificate and key do not make a TLS context (\(error))")
        }
    }

    /// One request through the service, its answer written back.
    static func respond(_ service: SignalingService, _ request: Request, _ writer: consuming ResponseWriter, _ channel: any Channel)
        async throws
    {
        let source = channel.remoteAddress?.ipAddress ?? "unknown"
        let answer = await service.respond(
            to: SignalingRequest(
                method: request.method, target: request.head.path ?? "", headers: request.headers, source: source)
        ) { limit in
            var bytes: [UInt8] = []
            for try await buffer in request.body {
                guard bytes.count + buffer.readableBytes <= limit else { return nil }
                bytes += buffer.readableBytesView
            }
            return bytes
        }
        var head = HTTPResponse(status: answer.status, headerFields: answer.headers)
        head.headerFields[.contentLength] = String(answer.body.utf8.count)
        try await writer.write(response: head, body: ResponseBody(byteBuffer: ByteBuffer(string: answer.body)))
    }
}

/// The TLS context new connections get (nil: plain HTTP); `reload` replaces it.
final class TLSContextBox: Sendable {
    private let context: Mutex<NIOSSLContext?>
    init(_ context: NIOSSLContext?) { self.context = Mutex(context) }
    var current: NIOSSLContext? { context.withLock { $0 } }
    func replace(_ fresh: NIOSSLContext) { context.withLock { $0 = fresh } }
}

/// The port the listener bound, for those who wait for it.
final class ListeningPort: Sendable {
    private let state = Mutex<(port: Int?, waiters: [CheckedContinuation<Int, Never>])>((nil, []))

    func bound(_ port: Int, ifUnbound: Bool = false) {
        let waiters = state.withLock { s -> [CheckedContinuation<Int, Never>] in
            if ifUnbound && s.port != nil { return [] }
            s.port = port
            defer { s.waiters = [] }
            return s.waiters
        }
        for w in waiters { w.resume(returning: port) }
    }

    func wait() async -> Int {
        await withCheckedContinuation { continuation in
            let ready: Int? = state.withLock { s in
                if let port = s.port { return port }
                s.waiters.append(continuation)
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }
}

/// Each accepted connection: the connection gate, TLS with the current context and its
/// handshake deadline, then Hummingbird's HTTP/1.1 channel.
struct SignalingChannel: ServerChildChannel {
    typealias Value = HTTP1Channel.Value
    let http: HTTP1Channel
    let tls: TLSContextBox
    let gate: ConnectionGate
    let handshakeTimeout: TimeAmount
    let statistics: SignalingStatistics

    struct Refused: Error {}

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let source = channel.remoteAddress?.ipAddress ?? "unknown"
        guard gate.open(source) else {
            statistics.count(.connectionRefused)
            channel.close(promise: nil)
            return channel.eventLoop.makeFailedFuture(Refused())
        }
        let gate = self.gate
        channel.closeFuture.whenComplete { _ in gate.close(source) }
        do {
            if let context = tls.current {
                let statistics = self.statistics
                try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context))
                try channel.pipeline.syncOperations.addHandler(
                    HandshakeDeadlineHandler(timeout: handshakeTimeout, onTimeout: { statistics.count(.handshakeTimeout) }))
            }
        } catch {
            channel.close(promise: nil)
            return channel.eventLoop.makeFailedFuture(error)
        }
        return http.setup(channel: channel, logger: logger)
    }

    func handle(value: Value, logger: Logger) async {
        await http.handle(value: value, logger: logger)
    }
}
