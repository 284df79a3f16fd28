import Foundation
import HTTPTypes
import Logging
import Synchronization

/// One HTTP request as the service sees it: no socket, no body yet (the body is read through
/// `respond`'s reader, only once the request has earned it).
public struct SignalingRequest: Sendable {
    public var method: HTTPRequest.Method
    /// The request target as sent (`/v1/sessions`, `/v1/sessions/<id>?x`).
    public var target: String
    public var headers: HTTPFields
    /// The client's IP address as text.
    public var source: String

    public init(method: HTTPRequest.Method, target: String, headers: HTTPFields, source: String) {
        self.method = method
        self.target = target
        self.headers = headers
        self.source = source
    }
}

/// What the service answers: a status, its headers, a body (an SDP answer or a one-line
/// reason), and whether the connection must close after it (a body left unread).
public struct SignalingResponse: Sendable, Equatable {
    public var status: HTTPResponse.Status
    public var headers: HTTPFields
    public var body: String
    public var closeConnection: Bool

    /// A refusal: the status with its one-line plain-text reason.
    static func reason(_ status: HTTPResponse.Status, _ text: String) -> SignalingResponse {
        var headers = HTTPFields()
        headers[.contentType] = "text/plain; charset=utf-8"
        return SignalingResponse(status: status, headers: headers, body: oneLine(text) + "\n", closeConnection: false)
    }

    /// `text` as one printable line of at most 200 characters (an engine's reason included).
    static func oneLine(_ text: String) -> String {
        let kept = text.unicodeScalars.prefix(200).map { $0.value >= 0x20 && $0.value != 0x7f ? Character($0) : " " }
        return String(kept)
    }
}

/// What the listener counted since it started: each refusal by its reason.
public final class SignalingStatistics: Sendable {
    public enum Outcome: String, CaseIterable, Sendable {
        case created, deleted, preflight
        case badToken = "bad_token", rateLimited = "rate_limited", subjectCap = "subject_cap"
        case notSDP = "not_sdp", tooLarge = "too_large", headersTooLarge = "headers_too_large", badOffer = "bad_offer"
        case full, draining, noBackend = "no_backend", notFound = "not_found", methodNotAllowed = "method_not_allowed", bodyFailed = "body_failed"
        case connectionRefused = "connection_refused", handshakeTimeout = "handshake_timeout"
        case requestTimeout = "request_timeout"
    }

    private let counts = Mutex<[Outcome: Int]>([:])

    public init() {}

    func count(_ outcome: Outcome) {
        counts.withLock { $0[outcome, default: 0] += 1 }
    }

    /// How many times `outcome` happened.
    public subscript(_ outcome: Outcome) -> Int {
        counts.withLock { $0[outcome, default: 0] }
    }

    /// Every outcome's count (zeros included), by its name.
    public var snapshot: [(outcome: String, count: Int)] {
        let counts = counts.withLock { $0 }
        return Outcome.allCases.map { ($0.rawValue, counts[$0, default: 0]) }
    }
}

/// The HTTP API's rules, without sockets: routing, CORS, tokens, the per-source rate limit,
/// the per-subject cap, the body limit, and the engine's answer turned into a status.
public final class SignalingService: Sendable {
    public let configuration: SignalingConfiguration
    public let tokens: TokenAuthority
    public let statistics = SignalingStatistics()
    let engine: any SignalingEngine
    let limiter: RateLimiter
    let directory = SessionDirectory()
    let logger: Logger

    public static let collection = "/v1/sessions"

    public init(configuration: SignalingConfiguration, tokens: TokenAuthority, engine: any SignalingEngine, logger: Logger) {
        self.configuration = configuration
        self.tokens = tokens
        self.engine = engine
        self.limiter = RateLimiter(rate: configuration.rateLimitPerSecond, burst: configuration.rateLimitBurst)
        self.logger = logger
    }

    /// Sessions this listener knows of (created, not yet deleted or seen gone).
    public var knownSessions: Int { directory.count }

    /// Forgets the sessions the engine has ended by itself (run now and then).
    public func sweep() async { await directory.sweep(engine: engine) }

    /// Answers `request`. `readBody(limit)` reads the whole body: nil when it is longer than
    /// `limit` bytes; it throws when the connection fails or times out.
    public func respond(
        to request: SignalingRequest, readBody: (Int) async throws -> [UInt8]?
    ) async -> SignalingResponse {
        var consumed = false
        var response = await route(request) { limit in
            consumed = true
            return try await readBody(limit)
        }
        let announcesBody =
            request.headers[.transferEncoding] != nil
            || (request.headers[.contentLength].flatMap { Int($0) } ?? 0) > 0
        if announcesBody && !consumed { response.closeConnection = true }
        if response.closeConnection { response.headers[.connection] = "close" }
        addCORS(to: &response, request: request)
        return response
    }

    private func route(_ request: SignalingRequest, readBody: (Int) async throws -> [UInt8]?) async -> SignalingResponse {
        if let wait = limiter.take(request.source) {
            statistics.count(.rateLimited)
            var r = SignalingResponse.reason(.tooManyRequests, "too many requests from \(request.source); retry in \(wait) s")
            r.headers[.retryAfter] = String(wait)
            return r
        }
        if headBytes(request) > configuration.maxHeaderBytes {
            statistics.count(.headersTooLarge)
            var r = SignalingResponse.reason(
                .init(code: 431, reasonPhrase: "Request Header Fields Too Large"),
                "request head longer than \(configuration.maxHeaderBytes) bytes")
            r.closeConnection = true
            return r
        }
        let path = request.target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        if path == Self.collection {
            switch request.method {
            case .post: return await create(request, readBody: readBody)
            case .options: return preflight()
            default: return notAllowed("POST, OPTIONS")
            }
        }
        if path.hasPrefix(Self.collection + "/") {
            let id = path.dropFirst(Self.collection.count + 1)
            switch request.method {
            case .delete: return await delete(id: id, request)
            case .options: return preflight()
            default: return notAllowed("DELETE, OPTIONS")
            }
        }
        statistics.count(.notFound)
        return .reason(.notFound, "no such resource; sessions are at \(Self.collection)")
    }

    /// POST /v1/sessions: token, SDP media type, size, drain, the subject's cap, then the engine.
    private func create(_ request: SignalingRequest, readBody: (Int) async throws -> [UInt8]?) async -> SignalingResponse {
        let grant: TokenGrant
        switch await authorize(request) {
        case .success(let g): grant = g
        case .failure(let refusal): return refusal.response
        }
        let types = request.headers[values: .contentType]
        guard types.count == 1, Self.isSDP(types[0]) else {
            statistics.count(.notSDP)
            return .reason(.unsupportedMediaType, "the offer must be sent as Content-Type: application/sdp")
        }
        let limit = SignalingConfiguration.maxOfferBytes
        if let length = request.headers[.contentLength], let n = Int(length), n > limit {
            statistics.count(.tooLarge)
            return .reason(.contentTooLarge, "offer larger than \(limit) bytes")
        }
        if await engine.isDraining { return unavailable(.draining, "the edge is draining; try another") }
        guard await directory.reserve(subject: grant.subject, cap: configuration.maxSessionsPerSubject, engine: engine) else {
            statistics.count(.subjectCap)
            return .reason(
                .forbidden, "subject \(grant.subject) holds \(configuration.maxSessionsPerSubject) live sessions, its cap")
        }
        var settled = false
        defer { if !settled { _ = directory.settle(subject: grant.subject, created: nil) } }
        let body: [UInt8]
        do {
            guard let read = try await readBody(limit) else {
                statistics.count(.tooLarge)
                var r = SignalingResponse.reason(.contentTooLarge, "offer larger than \(limit) bytes")
                r.closeConnection = true
                return r
            }
            body = read
        } catch {
            statistics.count(.bodyFailed)
            var r = SignalingResponse.reason(.badRequest, "the offer's body could not be read")
            r.closeConnection = true
            return r
        }
        guard !body.isEmpty else {
            statistics.count(.badOffer)
            return .reason(.badRequest, "empty offer")
        }
        guard let offer = String(validating: body, as: UTF8.self) else {
            statistics.count(.badOffer)
            return .reason(.badRequest, "the offer is not UTF-8 text")
        }
        let created: CreatedSession
        do {
            created = try await engine.createSession(
                SessionRequest(offer: offer, subject: grant.subject, model: grant.model, source: request.source))
        } catch {
            switch error {
            case .badOffer(let reason):
                statistics.count(.badOffer)
                return .reason(.badRequest, reason)
            case .full: return unavailable(.full, "no free session slot; retry later")
            case .draining: return unavailable(.draining, "the edge is draining; try another")
            case .noBackend(let reason): return unavailable(.noBackend, "no backend can take the call: \(reason)")
            }
        }
        settled = true
        guard let id = directory.settle(subject: grant.subject, created: created.session) else {
            preconditionFailure("a settled session always has an id")
        }
        statistics.count(.created)
        var headers = HTTPFields()
        headers[.contentType] = "application/sdp"
        headers[.location] = "\(Self.collection)/\(id)"
        return SignalingResponse(status: .created, headers: headers, body: created.answer, closeConnection: false)
    }

    /// DELETE /v1/sessions/<id>: only its creator's token ends it; anything else is a 404.
    private func delete(id: Substring, _ request: SignalingRequest) async -> SignalingResponse {
        let grant: TokenGrant
        switch await authorize(request) {
        case .success(let g): grant = g
        case .failure(let refusal): return refusal.response
        }
        guard SessionDirectory.isWellFormed(id), let entry = directory.take(id: String(id), subject: grant.subject),
            await engine.endSession(entry.session)
        else {
            statistics.count(.notFound)
            return .reason(.notFound, "unknown session")
        }
        statistics.count(.deleted)
        return SignalingResponse(status: .noContent, headers: [:], body: "", closeConnection: false)
    }

    /// The `Authorization: Bearer` token's grant, or the `401` that refuses it.
    private func authorize(_ request: SignalingRequest) async -> Result<TokenGrant, RefusedResponse> {
        func refuse(_ reason: String) -> Result<TokenGrant, RefusedResponse> {
            statistics.count(.badToken)
            var r = SignalingResponse.reason(.unauthorized, reason)
            r.headers[.wwwAuthenticate] = "Bearer realm=\"voxedge\", error=\"invalid_token\""
            return .failure(RefusedResponse(response: r))
        }
        let fields = request.headers[values: .authorization]
        guard !fields.isEmpty else { return refuse("no Authorization: Bearer token") }
        guard fields.count == 1 else { return refuse("more than one Authorization header") }
        let value = fields[0]
        guard value.count > 7, value.prefix(7).lowercased() == "bearer " else {
            return refuse("Authorization is not a Bearer token")
        }
        let token = value.dropFirst(7).trimmingCharacters(in: .whitespaces)
        do {
            return .success(try await tokens.verify(token))
        } catch {
            return refuse(error.reason)
        }
    }

    private func preflight() -> SignalingResponse {
        statistics.count(.preflight)
        var headers = HTTPFields()
        headers[.accessControlAllowMethods] = "POST, DELETE, OPTIONS"
        headers[.accessControlAllowHeaders] = "Authorization, Content-Type"
        headers[.accessControlMaxAge] = "600"
        headers[.allow] = "POST, DELETE, OPTIONS"
        return SignalingResponse(status: .noContent, headers: headers, body: "", closeConnection: false)
    }

    private func notAllowed(_ allow: String) -> SignalingResponse {
        statistics.count(.methodNotAllowed)
        var r = SignalingResponse.reason(.methodNotAllowed, "method not allowed here; allowed: \(allow) (no trickle ICE)")
        r.headers[.allow] = allow
        return r
    }

    private func unavailable(_ outcome: SignalingStatistics.Outcome, _ reason: String) -> SignalingResponse {
        statistics.count(outcome)
        var r = SignalingResponse.reason(.serviceUnavailable, reason)
        r.headers[.retryAfter] = String(configuration.retryAfterSeconds)
        return r
    }

    private func addCORS(to response: inout SignalingResponse, request: SignalingRequest) {
        let origins = configuration.corsOrigins
        if origins.contains("*") {
            response.headers[.accessControlAllowOrigin] = "*"
        } else if let origin = request.headers[.origin], origins.contains(origin) {
            response.headers[.accessControlAllowOrigin] = origin
            response.headers[.vary] = "Origin"
        } else {
            return
        }
        response.headers[.accessControlExposeHeaders] = "Location, Retry-After"
    }

    /// The request line and header fields, in bytes, as they were on the wire (near enough).
    private func headBytes(_ request: SignalingRequest) -> Int {
        var n = request.method.rawValue.utf8.count + request.target.utf8.count + 11
        for field in request.headers { n += field.name.rawName.utf8.count + field.value.utf8.count + 4 }
        return n
    }

    /// `application/sdp`, parameters allowed, any case.
    static func isSDP(_ value: String) -> Bool {
        let type = value.split(separator: ";", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        return type.trimmingCharacters(in: .whitespaces).lowercased() == "application/sdp"
    }
}

/// A refusal as an error, so `authorize` can return it in a `Result`.
struct RefusedResponse: Error {
    var response: SignalingResponse
}
