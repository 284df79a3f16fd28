import Foundation
import HTTPTypes
import JWTKit
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization
import VoxSignaling

/// An engine for the HTTP layer's own rules: it answers offers with an audio m-line, refuses
/// the rest with the engine's reason, and can be made full, draining, or made to end a
/// session by itself.
final class TestEngine: SignalingEngine {
    struct State {
        var live: Set<UInt64> = []
        var next: UInt64 = 1
        var full = false
        var draining = false
        var requests: [SessionRequest] = []
    }
    let state = Mutex(State())

    func createSession(_ request: SessionRequest) async throws(SessionRefusal) -> CreatedSession {
        let outcome: Result<UInt64, SessionRefusal> = state.withLock { s in
            s.requests.append(request)
            if s.draining { return .failure(.draining) }
            guard request.offer.contains("m=audio") else { return .failure(.badOffer("no audio m-line")) }
            if s.full { return .failure(.full) }
            let id = s.next
            s.next += 1
            s.live.insert(id)
            return .success(id)
        }
        switch outcome {
        case .success(let id): return CreatedSession(session: id, answer: "v=0\r\ns=answer \(id)\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n")
        case .failure(let refusal): throw refusal
        }
    }
    func endSession(_ session: UInt64) async -> Bool { state.withLock { $0.live.remove(session) != nil } }
    func isLive(_ session: UInt64) async -> Bool { state.withLock { $0.live.contains(session) } }
    var isDraining: Bool { get async { state.withLock { $0.draining } } }

    var calls: Int { state.withLock { $0.requests.count } }
    var liveSessions: Set<UInt64> { state.withLock { $0.live } }
    /// The engine ends a session by itself (consent lost, ICE failed).
    func drop(_ session: UInt64) { _ = state.withLock { $0.live.remove(session) } }
}

/// Key files in a fresh temporary directory: an HS256 secret and an ES256 pair.
struct KeyFiles {
    let directory: URL
    let secret = "an-hs256-secret-of-more-than-32-bytes-for-tests"
    let es256: ES256PrivateKey

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("voxsig-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        es256 = ES256PrivateKey()
        try (secret + "\n").write(to: path("hs256.secret"), atomically: true, encoding: .utf8)
        try es256.publicKey.pemRepresentation.write(to: path("es256.pub.pem"), atomically: true, encoding: .utf8)
        try es256.pemRepresentation.write(to: path("es256.pem"), atomically: true, encoding: .utf8)
    }

    func path(_ name: String) -> URL { directory.appendingPathComponent(name) }

    func configuration(hs256: Bool = true, es256: Bool = true) -> SignalingConfiguration {
        var c = SignalingConfiguration()
        c.address = "127.0.0.1"
        c.port = 0
        c.audience = "voxedge-test"
        c.tokenHS256SecretFile = hs256 ? path("hs256.secret").path : nil
        c.tokenES256PublicKeyFile = es256 ? path("es256.pub.pem").path : nil
        c.rateLimitPerSecond = 1000
        c.rateLimitBurst = 1000
        // Deadlines far beyond a loaded machine's slowness; the tests of deadlines set theirs.
        c.tlsHandshakeTimeoutSeconds = 120
        c.headerTimeoutSeconds = 120
        c.bodyTimeoutSeconds = 120
        c.idleTimeoutSeconds = 120
        return c
    }

    func remove() { try? FileManager.default.removeItem(at: directory) }
}

/// Claims as a caller may write them: every field optional and of any shape we want to send.
struct LooseClaims: JWTPayload {
    var aud: String?
    var exp: Double?
    var iat: Double?
    var nbf: Double?
    var sub: String?
    var model: String?
    func verify(using algorithm: some JWTAlgorithm) async throws {}

    static func good(lifetime: Double = 300, subject: String = "alice", audience: String = "voxedge-test") -> LooseClaims {
        let now = Date().timeIntervalSince1970
        return LooseClaims(aud: audience, exp: now + lifetime, iat: now, nbf: nil, sub: subject, model: "gpt-realtime")
    }
}

enum Tokens {
    static func hs256(_ claims: LooseClaims, secret: String) async throws -> String {
        let keys = JWTKeyCollection()
        await keys.add(hmac: HMACKey(from: Array(secret.utf8)), digestAlgorithm: .sha256)
        return try await keys.sign(claims)
    }

    static func es256(_ claims: LooseClaims, key: ES256PrivateKey) async throws -> String {
        let keys = JWTKeyCollection()
        await keys.add(ecdsa: key)
        return try await keys.sign(claims)
    }

    /// `alg: none`, no signature.
    static func none(_ claims: LooseClaims) throws -> String {
        let header = base64URL(Data(#"{"alg":"none","typ":"JWT"}"#.utf8))
        let payload = base64URL(try JSONEncoder().encode(claims))
        return "\(header).\(payload)."
    }

    static func base64URL(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}

let offer = """
    v=0\r
    o=- 1 1 IN IP4 0.0.0.0\r
    s=-\r
    t=0 0\r
    m=audio 9 UDP/TLS/RTP/SAVPF 111\r
    a=rtpmap:111 opus/48000/2\r

    """

/// A parsed HTTP/1.1 response.
struct RawResponse {
    var status: Int
    var headers: [(String, String)]
    var body: String

    func header(_ name: String) -> String? { headers.first { $0.0.lowercased() == name.lowercased() }?.1 }
    func headers(_ name: String) -> [String] { headers.filter { $0.0.lowercased() == name.lowercased() }.map(\.1) }
}

/// A client connection that writes raw bytes (over TLS or not) and reads raw responses: it
/// can send what no well-behaved client library would.
final class RawConnection: @unchecked Sendable {
    let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>
    var iterator: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
    let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    var buffer: [UInt8] = []
    var closed = false

    /// Connects to 127.0.0.1:`port` from `source`; TLS (any certificate accepted) unless `tls` is false.
    static func open(port: Int, source: String = "127.0.0.1", tls: Bool = true) async throws -> RawConnection {
        let context = try NIOSSLContext(configuration: {
            var c = TLSConfiguration.makeClientConfiguration()
            c.certificateVerification = .none
            return c
        }())
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(to: try SocketAddress(ipAddress: source, port: 0))
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    if tls { try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: nil)) }
                    return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(
                        wrappingChannelSynchronously: channel, configuration: .init(isOutboundHalfClosureEnabled: false))
                }
            }
        return RawConnection(channel)
    }

    init(_ channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>) {
        self.channel = channel
        self.iterator = channel.inbound.makeAsyncIterator()
        self.outbound = channel.outbound
    }

    func send(_ text: String) async throws { try await outbound.write(ByteBuffer(string: text)) }
    func send(_ bytes: [UInt8]) async throws { try await outbound.write(ByteBuffer(bytes: bytes)) }

    /// The next response, or nil when the server closed the connection first.
    func response() async throws -> RawResponse? {
        while true {
            if let r = parse() { return r }
            if closed { return nil }
            do {
                guard let chunk = try await iterator.next() else {
                    closed = true
                    continue
                }
                buffer += chunk.readableBytesView
            } catch {
                closed = true
            }
        }
    }

    /// Reads until the server closes the connection; true when it did (false: bytes came).
    func waitForClose() async -> Bool {
        while !closed {
            do {
                guard let chunk = try await iterator.next() else { closed = true; break }
                if chunk.readableBytes > 0 { buffer += chunk.readableBytesView }
            } catch {
                closed = true
            }
        }
        return true
    }

    func close() async {
        outbound.finish()
        try? await channel.channel.close()
    }

    deinit { outbound.finish() }

    private func parse() -> RawResponse? {
        let separator: [UInt8] = Array("\r\n\r\n".utf8)
        guard let end = buffer.indices.dropLast(3).first(where: { Array(buffer[$0..<$0 + 4]) == separator }) else { return nil }
        let head = String(decoding: buffer[..<end], as: UTF8.self).components(separatedBy: "\r\n")
        let statusParts = head[0].split(separator: " ")
        guard statusParts.count >= 2, let status = Int(statusParts[1]) else { return nil }
        var headers: [(String, String)] = []
        for line in head.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers.append((String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
        }
        let length = headers.first { $0.0.lowercased() == "content-length" }.flatMap { Int($0.1) } ?? 0
        let bodyStart = end + 4
        guard buffer.count >= bodyStart + length else { return nil }
        let body = String(decoding: buffer[bodyStart..<bodyStart + length], as: UTF8.self)
        buffer.removeFirst(bodyStart + length)
        return RawResponse(status: status, headers: headers, body: body)
    }
}

/// A running listener for one test, with its engine and keys; `stop()` at the end.
struct Listener {
    let server: SignalingServer
    let engine: TestEngine
    let keys: KeyFiles
    let port: Int
    let task: Task<Void, any Error>

    static func start(
        tls: Bool = true, hs256: Bool = true, es256: Bool = true, _ adjust: (inout SignalingConfiguration) -> Void = { _ in }
    ) async throws -> Listener {
        let keys = try KeyFiles()
        var c = keys.configuration(hs256: hs256, es256: es256)
        c.plainHTTP = !tls
        adjust(&c)
        let engine = TestEngine()
        var logger = Logger(label: "signaling-test")
        logger.logLevel = .critical
        let server = try await SignalingServer(
            configuration: c, engine: engine, eventLoopGroup: MultiThreadedEventLoopGroup.singleton, logger: logger)
        let task = Task { try await server.run() }
        let port = await server.port()
        return Listener(server: server, engine: engine, keys: keys, port: port, task: task)
    }

    func stop() async {
        await server.shutdown()
        _ = try? await task.value
        keys.remove()
    }

    func token(_ claims: LooseClaims = .good()) async throws -> String {
        try await Tokens.hs256(claims, secret: keys.secret)
    }

    /// One request on a new connection; the response, or nil when the server closed first.
    func request(
        _ method: String, _ path: String, token: String? = nil, headers: [(String, String)] = [],
        body: String? = nil, source: String = "127.0.0.1", tls: Bool = true
    ) async throws -> RawResponse? {
        let connection = try await RawConnection.open(port: port, source: source, tls: tls)
        defer { Task { await connection.close() } }
        var text = "\(method) \(path) HTTP/1.1\r\nHost: edge\r\n"
        if let token { text += "Authorization: Bearer \(token)\r\n" }
        for (name, value) in headers { text += "\(name): \(value)\r\n" }
        if let body { text += "Content-Length: \(body.utf8.count)\r\n" }
        text += "\r\n" + (body ?? "")
        // A server that closes at once (a connection limit) may close before the write.
        do { try await connection.send(text) } catch { return nil }
        return try await connection.response()
    }

    func post(token: String?, body: String = offer, contentType: String = "application/sdp", source: String = "127.0.0.1")
        async throws -> RawResponse?
    {
        try await request("POST", "/v1/sessions", token: token, headers: [("Content-Type", contentType)], body: body, source: source)
    }
}
