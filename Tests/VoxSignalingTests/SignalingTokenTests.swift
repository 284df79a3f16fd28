import Foundation
import JWTKit
import Testing

@testable import VoxSignaling

/// Tokens as a hostile caller would send them: every one refused with a `401`, a
/// `WWW-Authenticate` and a one-line reason, and the engine never asked.
@Suite(.serialized) struct SignalingTokenTests {
    @Test func badTokensAreRefused() async throws {
        let l = try await Listener.start { $0.tokenMaxLifetimeSeconds = 600 }
        defer { Task { await l.stop() } }
        let now = Date().timeIntervalSince1970
        let secret = l.keys.secret
        let publicPEM = try String(contentsOf: l.keys.path("es256.pub.pem"), encoding: .utf8)
        var cases: [(String, String?, String)] = [
            ("absent", nil, "no Authorization"),
            ("garbage", "not-a-jwt", "not a signed JWT"),
            ("two dots only", "..", "not a signed JWT"),
            ("wrong secret", try await Tokens.hs256(.good(), secret: String(repeating: "x", count: 40)), "signature"),
            ("expired", try await Tokens.hs256(LooseClaims(aud: "voxedge-test", exp: now - 5, iat: now - 65, sub: "a", model: "m"), secret: secret), "expired"),
            ("wrong audience", try await Tokens.hs256(.good(audience: "someone-else"), secret: secret), "aud"),
            ("no audience", try await Tokens.hs256(LooseClaims(aud: nil, exp: now + 500, iat: now, sub: "a", model: "m"), secret: secret), "no aud"),
            ("no exp", try await Tokens.hs256(LooseClaims(aud: "voxedge-test", exp: nil, iat: now, sub: "a", model: "m"), secret: secret), "no exp"),
            ("lives too long", try await Tokens.hs256(.good(lifetime: 3600), secret: secret), "maximum lifetime"),
            ("iat long ago", try await Tokens.hs256(LooseClaims(aud: "voxedge-test", exp: now + 500, iat: now - 3600, sub: "a", model: "m"), secret: secret), "exp - iat"),
            ("not yet valid", try await Tokens.hs256(LooseClaims(aud: "voxedge-test", exp: now + 599, iat: now, nbf: now + 590, sub: "a", model: "m"), secret: secret), "nbf"),
            ("no subject", try await Tokens.hs256(LooseClaims(aud: "voxedge-test", exp: now + 500, iat: now, sub: nil, model: "m"), secret: secret), "no sub"),
            ("empty subject", try await Tokens.hs256(LooseClaims(aud: "voxedge-test", exp: now + 500, iat: now, sub: "", model: "m"), secret: secret), "no sub"),
            ("no model", try await Tokens.hs256(LooseClaims(aud: "voxedge-test", exp: now + 500, iat: now, sub: "a", model: nil), secret: secret), "no model"),
            ("alg none", try Tokens.none(.good()), "alg 'none' not accepted"),
            // Algorithm confusion: HS256 keyed with the ES256 public key's PEM text.
            ("alg confusion", try await Tokens.hs256(.good(), secret: publicPEM), "signature"),
            ("ES256 by another key", try await Tokens.es256(.good(), key: ES256PrivateKey()), "signature"),
            ("too long", String(repeating: "a", count: 5000), "longer than"),
        ]
        // A valid signature with the header's alg changed is refused too.
        let good = try await l.token()
        let parts = good.split(separator: ".")
        cases.append(("alg swapped", Tokens.base64URL(Data(#"{"alg":"ES256","typ":"JWT"}"#.utf8)) + ".\(parts[1]).\(parts[2])", "does not verify"))
        cases.append(("lowercase alg", Tokens.base64URL(Data(#"{"alg":"hs256"}"#.utf8)) + ".\(parts[1]).\(parts[2])", "not accepted"))
        for (name, token, reason) in cases {
            let r = try #require(try await l.post(token: token), "\(name)")
            #expect(r.status == 401, "\(name)")
            #expect(r.body.contains(reason), "\(name): \(r.body)")
            #expect(r.body.split(separator: "\n").count == 1, "\(name): one line")
            #expect(r.header("WWW-Authenticate")?.hasPrefix("Bearer") == true, "\(name)")
        }
        // Header-level shapes of a bad Authorization.
        let twice = try #require(
            try await l.request("POST", "/v1/sessions", headers: [("Authorization", "Bearer \(good)"), ("Authorization", "Bearer \(good)"), ("Content-Type", "application/sdp")], body: offer))
        #expect(twice.status == 401)
        #expect(twice.body.contains("more than one"))
        let basic = try #require(try await l.request("POST", "/v1/sessions", headers: [("Authorization", "Basic YWxpY2U6cHc="), ("Content-Type", "application/sdp")], body: offer))
        #expect(basic.status == 401)
        #expect(l.engine.calls == 0)
        #expect(l.server.service.statistics[.badToken] == cases.count + 2)
        // The good one passes, with the scheme in any case.
        #expect(try await l.request("POST", "/v1/sessions", headers: [("Authorization", "bearer \(good)"), ("Content-Type", "application/sdp")], body: offer)?.status == 201)
    }

    /// With only the ES256 public key configured, an HS256 token has no key at all: the public
    /// key can never be used as an HMAC secret.
    @Test func algorithmConfusionWithOnlyES256() async throws {
        let l = try await Listener.start(hs256: false)
        defer { Task { await l.stop() } }
        let publicPEM = try String(contentsOf: l.keys.path("es256.pub.pem"), encoding: .utf8)
        let confused = try #require(try await l.post(token: try await Tokens.hs256(.good(), secret: publicPEM)))
        #expect(confused.status == 401)
        #expect(confused.body.contains("no key configured"))
        #expect(try await l.post(token: try await Tokens.es256(.good(), key: l.keys.es256))?.status == 201)
    }

    /// The verifier's claim rules with an injected clock, without sockets.
    @Test func claimRulesAtTheEdges() async throws {
        let keys = try KeyFiles()
        defer { keys.remove() }
        var c = keys.configuration()
        c.tokenMaxLifetimeSeconds = 100
        let authority = try await TokenAuthority.load(c)
        let t0 = Date(timeIntervalSince1970: 1_800_000_000)
        let token = try await Tokens.hs256(
            LooseClaims(aud: "voxedge-test", exp: t0.timeIntervalSince1970 + 100, iat: t0.timeIntervalSince1970, sub: "s", model: "m"),
            secret: keys.secret)
        let grant = try await authority.verify(token, now: t0)
        #expect(grant == TokenGrant(subject: "s", model: "m", expires: t0.addingTimeInterval(100)))
        await #expect(throws: TokenRejection("token expired")) { try await authority.verify(token, now: t0.addingTimeInterval(100)) }
        await #expect(throws: TokenRejection("token lives past the maximum lifetime of 100 s")) {
            try await authority.verify(token, now: t0.addingTimeInterval(-1))
        }
        // Minting uses the configured key and the configured audience.
        let minted = try await authority.mint(subject: "demo", model: "echo", lifetime: 60, now: t0)
        #expect(try await authority.verify(minted, now: t0.addingTimeInterval(1)).subject == "demo")
        let foreign = try await authority.mint(subject: "demo", model: "echo", lifetime: 60, audience: "other", now: t0)
        await #expect(throws: TokenRejection("token aud is not voxedge-test")) { try await authority.verify(foreign, now: t0) }
    }

    @Test func unusableKeyFilesAreRefusedAtStart() async throws {
        let keys = try KeyFiles()
        defer { keys.remove() }
        var c = keys.configuration()
        c.tokenHS256SecretFile = nil
        c.tokenES256PublicKeyFile = nil
        #expect(c.problems().contains { $0.contains("needs a token key") })
        try "short\n".write(to: keys.path("short"), atomically: true, encoding: .utf8)
        c.tokenHS256SecretFile = keys.path("short").path
        await #expect(throws: SignalingSetupError.self) { try await TokenAuthority.load(c) }
        c.tokenHS256SecretFile = keys.path("missing").path
        await #expect(throws: SignalingSetupError.self) { try await TokenAuthority.load(c) }
        c.tokenHS256SecretFile = nil
        c.tokenES256PublicKeyFile = keys.path("hs256.secret").path
        await #expect(throws: SignalingSetupError.self) { try await TokenAuthority.load(c) }
    }
}
