import Foundation
import JWTKit
import NIOCore
import NIOPosix
import Testing

@testable import VoxSignaling

/// The HTTP API over real sockets on 127.0.0.1 with real TLS: statuses, headers, the session
/// URL's rules, CORS, methods and paths.
@Suite(.serialized) struct SignalingHTTPTests {
    @Test func postAnswersWithAnUnguessableLocation() async throws {
        let l = try await Listener.start()
        defer { Task { await l.stop() } }
        let token = try await l.token()
        let first = try #require(try await l.post(token: token))
        #expect(first.status == 201)
        #expect(first.header("Content-Type") == "application/sdp")
        #expect(first.body.hasPrefix("v=0\r\ns=answer 1"))
        let location = try #require(first.header("Location"))
        #expect(location.wholeMatch(of: /\/v1\/sessions\/[0-9a-f]{32}/) != nil, "\(location)")
        let second = try #require(try await l.post(token: token))
        #expect(second.status == 201)
        #expect(second.header("Location") != location)
        // What the engine was told: the offer, the token's subject and model, the source.
        let asked = l.engine.state.withLock { $0.requests }
        #expect(asked.count == 2)
        #expect(asked.first?.subject == "alice")
        #expect(asked.first?.model == "gpt-realtime")
        #expect(asked.first?.source == "127.0.0.1")
        #expect(asked.first?.offer == offer)
        // ES256 tokens are accepted as well as HS256.
        let es = try await Tokens.es256(.good(subject: "bob"), key: l.keys.es256)
        #expect(try await l.post(token: es)?.status == 201)
    }

    @Test func deleteEndsOnlyItsCreatorsSession() async throws {
        let l = try await Listener.start()
        defer { Task { await l.stop() } }
        let alice = try await l.token()
        let bob = try await l.token(.good(subject: "bob"))
        let created = try #require(try await l.post(token: alice))
        let location = try #require(created.header("Location"))
        #expect(l.engine.liveSessions == [1])

        // Another subject's DELETE: 404, and the session goes on.
        #expect(try await l.request("DELETE", location, token: bob)?.status == 404)
        #expect(l.engine.liveSessions == [1])
        // No token: 401.
        #expect(try await l.request("DELETE", location)?.status == 401)
        // Its creator: 204, the engine's session ended.
        let deleted = try #require(try await l.request("DELETE", location, token: alice))
        #expect(deleted.status == 204)
        #expect(l.engine.liveSessions.isEmpty)
        // The same DELETE again: 404.
        let again = try #require(try await l.request("DELETE", location, token: alice))
        #expect(again.status == 404)
        #expect(again.body == "unknown session\n")
        // Unknown and malformed ids.
        for path in [
            "/v1/sessions/0123456789abcdef0123456789abcdef", "/v1/sessions/1", "/v1/sessions/", "/v1/sessions/\(String(repeating: "f", count: 33))",
            "/v1/sessions/0123456789ABCDEF0123456789ABCDEF", "/v1/sessions/../sessions",
        ] {
            #expect(try await l.request("DELETE", path, token: alice)?.status == 404, "\(path)")
        }
        // A session the engine ended by itself is unknown too.
        let other = try #require(try await l.post(token: alice)?.header("Location"))
        l.engine.drop(2)
        #expect(try await l.request("DELETE", other, token: alice)?.status == 404)
    }

    @Test func methodsPathsAndCORS() async throws {
        let l = try await Listener.start()
        defer { Task { await l.stop() } }
        let token = try await l.token()
        let location = try #require(try await l.post(token: token)?.header("Location"))

        let patch = try #require(try await l.request("PATCH", location, token: token, headers: [("Content-Type", "application/trickle-ice-sdpfrag")], body: "a=x"))
        #expect(patch.status == 405)
        #expect(patch.header("Allow") == "DELETE, OPTIONS")
        #expect(try await l.request("GET", "/v1/sessions", token: token)?.status == 405)
        #expect(try await l.request("PUT", "/v1/sessions", token: token, body: offer)?.status == 405)
        for path in ["/", "/v1", "/v1/session", "//v1/sessions", "/V1/SESSIONS", "/v1/sessions%2F", "/v2/sessions", "/healthz"] {
            #expect(try await l.request("POST", path, token: token, headers: [("Content-Type", "application/sdp")], body: offer)?.status == 404, "\(path)")
        }
        // A query string does not change the resource.
        #expect(try await l.request("POST", "/v1/sessions?x=1", token: token, headers: [("Content-Type", "application/sdp")], body: offer)?.status == 201)

        // Preflight without a token; CORS headers on every response.
        let preflight = try #require(try await l.request("OPTIONS", "/v1/sessions", headers: [("Origin", "https://app.example"), ("Access-Control-Request-Method", "POST")]))
        #expect(preflight.status == 204)
        #expect(preflight.header("Access-Control-Allow-Origin") == "*")
        #expect(preflight.header("Access-Control-Allow-Headers") == "Authorization, Content-Type")
        #expect(preflight.header("Access-Control-Allow-Methods")?.contains("DELETE") == true)
        #expect(preflight.header("Access-Control-Expose-Headers")?.contains("Location") == true)
        #expect(try await l.request("OPTIONS", location)?.status == 204)
        let created = try #require(try await l.post(token: token))
        #expect(created.header("Access-Control-Expose-Headers")?.contains("Location") == true)
        #expect(l.engine.calls == 3)
    }

    @Test func corsAllowsOnlyConfiguredOrigins() async throws {
        let l = try await Listener.start { $0.corsOrigins = ["https://app.example"] }
        defer { Task { await l.stop() } }
        let allowed = try #require(try await l.request("OPTIONS", "/v1/sessions", headers: [("Origin", "https://app.example")]))
        #expect(allowed.header("Access-Control-Allow-Origin") == "https://app.example")
        #expect(allowed.header("Vary") == "Origin")
        let other = try #require(try await l.request("OPTIONS", "/v1/sessions", headers: [("Origin", "https://evil.example")]))
        #expect(other.header("Access-Control-Allow-Origin") == nil)
    }

    @Test func mediaTypeAndBodyLimits() async throws {
        let l = try await Listener.start()
        defer { Task { await l.stop() } }
        let token = try await l.token(.good(subject: "many"))

        #expect(try await l.post(token: token, contentType: "text/plain")?.status == 415)
        #expect(try await l.post(token: token, contentType: "application/sdpx")?.status == 415)
        #expect(try await l.request("POST", "/v1/sessions", token: token, body: offer)?.status == 415)
        #expect(try await l.request("POST", "/v1/sessions", token: token, headers: [("Content-Type", "application/sdp"), ("Content-Type", "application/sdp")], body: offer)?.status == 415)
        #expect(try await l.post(token: token, contentType: "APPLICATION/SDP; charset=utf-8")?.status == 201)

        // Exactly 64 KiB is accepted; one byte more is a 413 and the connection closes.
        let padding = String(repeating: "a", count: SignalingConfiguration.maxOfferBytes - offer.utf8.count - 2) + "\r\n"
        #expect(try await l.post(token: token, body: offer + padding)?.status == 201)
        let tooLarge = try #require(try await l.post(token: token, body: offer + padding + "x"))
        #expect(tooLarge.status == 413)
        #expect(tooLarge.header("Connection") == "close")
        // Announced too large: refused before any byte of the body is read.
        let connection = try await RawConnection.open(port: l.port)
        try await connection.send("POST /v1/sessions HTTP/1.1\r\nAuthorization: Bearer \(token)\r\nContent-Type: application/sdp\r\nContent-Length: 1000000000\r\n\r\n")
        #expect(try await connection.response()?.status == 413)
        #expect(await connection.waitForClose())
        // Chunked past the limit.
        let chunked = try await RawConnection.open(port: l.port)
        try await chunked.send("POST /v1/sessions HTTP/1.1\r\nAuthorization: Bearer \(token)\r\nContent-Type: application/sdp\r\nTransfer-Encoding: chunked\r\n\r\n")
        let chunk = String(repeating: "b", count: 16384)
        for _ in 0..<5 { try? await chunked.send(String(chunk.utf8.count, radix: 16) + "\r\n" + chunk + "\r\n") }
        #expect(try await chunked.response()?.status == 413)
        await chunked.close()

        // Not UTF-8, empty, and the engine's own reason.
        let latin1 = try await RawConnection.open(port: l.port)
        try await latin1.send(Array("POST /v1/sessions HTTP/1.1\r\nAuthorization: Bearer \(token)\r\nContent-Type: application/sdp\r\nContent-Length: 3\r\n\r\n".utf8) + [0xff, 0xfe, 0x41])
        let notUTF8 = try #require(try await latin1.response())
        #expect(notUTF8.status == 400)
        #expect(notUTF8.body == "the offer is not UTF-8 text\n")
        #expect(try await l.post(token: token, body: "")?.status == 400)
        let noAudio = try #require(try await l.post(token: token, body: "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"))
        #expect(noAudio.status == 400)
        #expect(noAudio.body == "no audio m-line\n")
        #expect(noAudio.header("Content-Type") == "text/plain; charset=utf-8")
        #expect(l.engine.liveSessions.count == 2)
    }

    @Test func fullAndDrainingAre503WithRetryAfter() async throws {
        let l = try await Listener.start { $0.retryAfterSeconds = 7 }
        defer { Task { await l.stop() } }
        let token = try await l.token()
        l.engine.state.withLock { $0.full = true }
        let full = try #require(try await l.post(token: token))
        #expect(full.status == 503)
        #expect(full.header("Retry-After") == "7")
        l.engine.state.withLock {
            $0.full = false
            $0.draining = true
        }
        let calls = l.engine.calls
        let draining = try #require(try await l.post(token: token))
        #expect(draining.status == 503)
        #expect(draining.header("Retry-After") == "7")
        #expect(l.engine.calls == calls, "a draining edge is not asked")
    }

    @Test func subjectCapCountsLiveSessionsOnly() async throws {
        let l = try await Listener.start { $0.maxSessionsPerSubject = 2 }
        defer { Task { await l.stop() } }
        let alice = try await l.token()
        let first = try #require(try await l.post(token: alice)?.header("Location"))
        #expect(try await l.post(token: alice)?.status == 201)
        let capped = try #require(try await l.post(token: alice))
        #expect(capped.status == 403)
        #expect(capped.body.contains("cap"))
        #expect(l.engine.calls == 2)
        // Another subject is not affected.
        #expect(try await l.post(token: try await l.token(.good(subject: "bob")))?.status == 201)
        // A session the engine ended by itself frees a place; so does a DELETE.
        l.engine.drop(2)
        #expect(try await l.post(token: alice)?.status == 201)
        #expect(try await l.post(token: alice)?.status == 403)
        #expect(try await l.request("DELETE", first, token: alice)?.status == 204)
        #expect(try await l.post(token: alice)?.status == 201)
    }

    @Test func perSourceRateLimit() async throws {
        let l = try await Listener.start {
            $0.rateLimitBurst = 3
            $0.rateLimitPerSecond = 0.01
        }
        defer { Task { await l.stop() } }
        let token = try await l.token(.good(subject: "rate"))
        for _ in 0..<3 { #expect(try await l.request("OPTIONS", "/v1/sessions")?.status == 204) }
        let limited = try #require(try await l.post(token: token))
        #expect(limited.status == 429)
        #expect(Int(limited.header("Retry-After") ?? "") ?? 0 >= 1)
        #expect(l.engine.calls == 0)
        // Another source address has its own bucket.
        #expect(try await l.post(token: token, source: "127.0.0.2")?.status == 201)
    }

    @Test func keepAliveServesSeveralRequests() async throws {
        let l = try await Listener.start()
        defer { Task { await l.stop() } }
        let token = try await l.token()
        let c = try await RawConnection.open(port: l.port)
        try await c.send("POST /v1/sessions HTTP/1.1\r\nAuthorization: Bearer \(token)\r\nContent-Type: application/sdp\r\nContent-Length: \(offer.utf8.count)\r\n\r\n\(offer)")
        let created = try #require(try await c.response())
        #expect(created.status == 201)
        let location = try #require(created.header("Location"))
        try await c.send("DELETE \(location) HTTP/1.1\r\nAuthorization: Bearer \(token)\r\n\r\n")
        #expect(try await c.response()?.status == 204)
        await c.close()
    }

    /// A port already taken: `run` fails and `port()` does not wait for ever.
    @Test func aTakenPortFailsTheRun() async throws {
        let first = try await Listener.start()
        defer { Task { await first.stop() } }
        let keys = try KeyFiles()
        defer { keys.remove() }
        var c = keys.configuration()
        c.port = first.port
        let second = try await SignalingServer(
            configuration: c, engine: TestEngine(), eventLoopGroup: MultiThreadedEventLoopGroup.singleton, logger: .init(label: "t"))
        await #expect(throws: (any Error).self) { try await second.run() }
        #expect(await second.port() == 0)
    }

    @Test func plainHTTPOnlyWhenConfigured() async throws {
        let plain = try await Listener.start(tls: false)
        #expect(plain.server.certificateFingerprint == nil)
        #expect(try await plain.post(token: try await plain.token()).map(\.status) == nil)
        let token = try await plain.token()
        #expect(try await plain.request("POST", "/v1/sessions", token: token, headers: [("Content-Type", "application/sdp")], body: offer, tls: false)?.status == 201)
        await plain.stop()

        // An HTTPS listener answers no plain-text request.
        let tls = try await Listener.start()
        defer { Task { await tls.stop() } }
        #expect(try await tls.request("OPTIONS", "/v1/sessions", tls: false) == nil)
        #expect(tls.server.certificateFingerprint?.hasPrefix("sha-256 ") == true)
    }
}
