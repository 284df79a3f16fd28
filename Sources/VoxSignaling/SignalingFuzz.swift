import Dispatch
import Foundation
import HTTPTypes
import Logging
import Synchronization

/// The fuzz entry point of the HTTP signaling request: bytes in the shape of an HTTP/1.1
/// request (request line, header fields, blank line, body) go through `SignalingService` —
/// routing, header limits, tokens, media type, body limit, UTF-8 — without sockets, against an
/// engine that answers offers carrying an audio m-line and refuses the rest.
public enum SignalingFuzz {
    /// The HS256 secret of the fuzz service (so a corpus can hold tokens that verify:
    /// `Tests/Fixtures/fuzz/make-seeds.py` signs its seeds' tokens with it).
    public static let secret = "voxedge-fuzz-secret-0123456789abcdef"
    public static let audience = "voxedge-fuzz"

    /// Feeds one input through the request path. Never throws; a crash or a hang is the finding.
    /// Blocks its thread until the answer is there: call it from the fuzzer's own thread, never
    /// from a Swift concurrency task (it waits for one).
    public static func fuzzOne(_ bytes: UnsafeRawBufferPointer) {
        let input = [UInt8](bytes)
        _ = runBlocking { await respond(await service(), input) }
    }

    /// Well-formed inputs to start a corpus from: a POST with a valid token, a DELETE, an OPTIONS.
    public static func seedInputs() -> [[UInt8]] {
        let token = runBlocking { try? await service().tokens.mint(subject: "fuzz", model: "m", lifetime: 3000) } ?? ""
        let offer = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
        return [
            "POST /v1/sessions HTTP/1.1\r\nAuthorization: Bearer \(token)\r\nContent-Type: application/sdp\r\nContent-Length: \(offer.utf8.count)\r\n\r\n\(offer)",
            "DELETE /v1/sessions/0123456789abcdef0123456789abcdef HTTP/1.1\r\nAuthorization: Bearer \(token)\r\n\r\n",
            "OPTIONS /v1/sessions HTTP/1.1\r\nOrigin: https://example.com\r\n\r\n",
        ].map { Array($0.utf8) }
    }

    /// Parses `input` leniently (what NIO's parser would refuse becomes a 400 here) and answers it.
    static func respond(_ service: SignalingService, _ input: [UInt8]) async -> SignalingResponse {
        let text = String(decoding: input, as: UTF8.self)
        let split = text.range(of: "\r\n\r\n") ?? text.range(of: "\n\n")
        let head = split.map { text[..<$0.lowerBound] } ?? Substring(text)
        let body = split.map { Array(text[$0.upperBound...].utf8) } ?? []
        var lines = head.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" })
        guard !lines.isEmpty else { return .reason(.badRequest, "empty") }
        let requestLine = lines.removeFirst().split(separator: " ")
        guard requestLine.count >= 2, let method = HTTPRequest.Method(String(requestLine[0])) else {
            return .reason(.badRequest, "bad request line")
        }
        var fields = HTTPFields()
        for line in lines {
            guard let colon = line.firstIndex(of: ":"), let name = HTTPField.Name(String(line[..<colon])) else { continue }
            fields.append(HTTPField(name: name, value: line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
        }
        let request = SignalingRequest(method: method, target: String(requestLine[1]), headers: fields, source: "198.18.0.2")
        return await service.respond(to: request) { limit in body.count > limit ? nil : body }
    }

    /// The fuzz service, made once.
    static func service() async -> SignalingService {
        if let made = made.withLock({ $0 }) { return made }
        var c = SignalingConfiguration()
        c.audience = audience
        c.rateLimitPerSecond = 1e9
        c.rateLimitBurst = 1 << 30
        // Committed seeds carry tokens that expire in 2100: the fuzz service allows that lifetime
        // so they still reach past the token check when CI replays them years from now.
        c.tokenMaxLifetimeSeconds = 200 * 365 * 86_400
        var keys = TokenKeys()
        keys.hs256 = await TokenKeys.hs256(Array(secret.utf8))
        let fresh = SignalingService(
            configuration: c, tokens: TokenAuthority(configuration: c, keys: keys), engine: FuzzEngine(), logger: Logger(label: "fuzz"))
        return made.withLock { m in
            if let m { return m }
            m = fresh
            return fresh
        }
    }

    private static let made = Mutex<SignalingService?>(nil)
}

/// The fuzz service's engine: offers with an audio m-line get a session, others a reason.
final class FuzzEngine: SignalingEngine {
    let next = Atomic<UInt64>(1)
    func createSession(_ request: SessionRequest) async throws(SessionRefusal) -> CreatedSession {
        guard request.offer.contains("m=audio") else { throw .badOffer("no audio m-line") }
        return CreatedSession(session: next.add(1, ordering: .relaxed).newValue, answer: "v=0\r\n")
    }
    func endSession(_ session: UInt64) async -> Bool { true }
    func isLive(_ session: UInt64) async -> Bool { false }
    var isDraining: Bool { get async { false } }
}

/// Runs `body` to completion from synchronous code (start-up, shutdown, a CLI command, the
/// fuzzer's thread): the calling thread waits; never call it from a Swift concurrency task.
public func runBlocking<T: Sendable>(_ body: @escaping @Sendable () async -> T) -> T {
    let result = Mutex<T?>(nil)
    let done = DispatchSemaphore(value: 0)
    Task {
        let value = await body()
        result.withLock { $0 = value }
        done.signal()
    }
    done.wait()
    return result.withLock { $0! }
}
