import Foundation
import Testing
import VoxEngine
import VoxSignaling

@testable import VoxControl

/// The configuration file's `signaling:` section and `voxedge token`, through the real
/// executable: bad keys and values exit 64 naming them; a minted token verifies with the
/// listener's own verifier and carries what was asked.
@Suite struct SignalingConfigurationTests {
    static let badSections: [(yaml: String, mentions: [String])] = [
        ("signaling:\n  prot: 8443\n", ["prot", "unknown key", "port"]),
        ("signaling:\n  port: 70000\n", ["signaling.port"]),
        ("signaling:\n  address: not-an-ip\n", ["signaling.address", "is not an IP address"]),
        ("signaling:\n  plain_http: maybe\n", ["signaling.plain_http"]),
        ("signaling:\n  cors_origins: 5\n", ["signaling.cors_origins"]),
        ("signaling: {}\n", ["needs a token key"]),
        ("signaling:\n  token_hs256_secret_file: /s\n  tls_key_file: /k\n", ["tls_certificate_file and signaling.tls_key_file go together"]),
        ("signaling:\n  token_hs256_secret_file: /s\n  max_sessions_per_subject: 0\n", ["max_sessions_per_subject"]),
        ("signaling:\n  token_hs256_secret_file: /s\n  rate_limit_per_second: 0\n", ["rate_limit_per_second"]),
        ("signaling:\n  token_hs256_secret_file: /s\n  header_timeout_seconds: -1\n", ["header_timeout_seconds"]),
    ]

    @Test(arguments: 0..<SignalingConfigurationTests.badSections.count)
    func aBadSectionIsRefusedNamingTheKey(_ index: Int) throws {
        let (yaml, mentions) = Self.badSections[index]
        let outcome = try ConfigurationTests.run([], config: yaml)
        #expect(outcome.status == 64, "\(yaml) → \(outcome.output)")
        for text in mentions { #expect(outcome.output.contains(text), "\(yaml) → \(outcome.output)") }
    }

    @Test func sectionMapsOntoTheListenersConfiguration() throws {
        let engine = try Self.decode(#"{"signaling": {"address": "198.18.0.1", "port": 9443, "token_hs256_secret_file": "/s", "cors_origins": ["https://a.example"]}}"#)
        let c = SignalingConfiguration(try #require(engine.signaling))
        #expect(c.address == "198.18.0.1")
        #expect(c.port == 9443)
        #expect(c.corsOrigins == ["https://a.example"])
        #expect(c.tokenHS256SecretFile == "/s")
        #expect(c.maxSessionsPerSubject == SignalingConfiguration().maxSessionsPerSubject, "absent: VoxSignaling's default")
        #expect(try Self.decode(#"{"media_port": 40000}"#).signaling == nil)
    }

    /// JSON is YAML: the same keys `voxedge run` reads (Yams is in the executable only).
    static func decode(_ json: String) throws -> EngineConfiguration {
        try JSONDecoder().decode(EngineConfiguration.self, from: Data(json.utf8))
    }

    struct Files {
        let dir: String
        init() throws {
            dir = NSTemporaryDirectory() + "voxedge-token-\(UUID().uuidString)"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        }
        func write(_ name: String, _ text: String) throws -> String {
            try text.write(toFile: dir + "/" + name, atomically: true, encoding: .utf8)
            return dir + "/" + name
        }
        func remove() { try? FileManager.default.removeItem(atPath: dir) }
    }

    static func token(_ arguments: [String]) throws -> (status: Int32, output: String) {
        try run(DemoTests.voxedge, ["token"] + arguments)
    }

    @Test func tokenMintsWhatTheListenerAccepts() async throws {
        let files = try Files()
        defer { files.remove() }
        let secret = try files.write("secret", String(repeating: "k", count: 40) + "\n")
        let config = try files.write("voxedge.yaml", "signaling:\n  audience: edge-a\n  token_hs256_secret_file: \(secret)\n  token_max_lifetime_seconds: 600\n")
        let minted = try Self.token(["--config", config, "--subject", "demo", "--model", "echo", "--ttl", "120"])
        #expect(minted.status == 0, "\(minted.output)")
        let token = minted.output.trimmingCharacters(in: .whitespacesAndNewlines)
        var c = SignalingConfiguration()
        c.audience = "edge-a"
        c.tokenHS256SecretFile = secret
        c.tokenMaxLifetimeSeconds = 600
        let grant = try await TokenAuthority.load(c).verify(token)
        #expect(grant.subject == "demo")
        #expect(grant.model == "echo")
        #expect(abs(grant.expires.timeIntervalSinceNow - 120) < 60)
        // Another audience on request: this listener refuses it.
        let other = try Self.token(["--config", config, "--subject", "demo", "--model", "echo", "--audience", "edge-b"])
        await #expect(throws: TokenRejection.self) {
            try await TokenAuthority.load(c).verify(other.output.trimmingCharacters(in: .whitespacesAndNewlines))
        }
    }

    @Test func tokenWithES256SignsWithThePrivateKey() async throws {
        let files = try Files()
        defer { files.remove() }
        let key = try run("/usr/bin/env", ["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", files.dir + "/es.pem"])
        try #require(key.status == 0, "\(key.output)")
        let pkcs8 = try run("/usr/bin/env", ["openssl", "pkcs8", "-topk8", "-nocrypt", "-in", files.dir + "/es.pem", "-out", files.dir + "/es8.pem"])
        try #require(pkcs8.status == 0, "\(pkcs8.output)")
        let pub = try run("/usr/bin/env", ["openssl", "ec", "-in", files.dir + "/es.pem", "-pubout", "-out", files.dir + "/es.pub"])
        try #require(pub.status == 0, "\(pub.output)")
        let config = try files.write(
            "voxedge.yaml",
            "signaling:\n  token_es256_public_key_file: \(files.dir)/es.pub\n  token_es256_private_key_file: \(files.dir)/es8.pem\n")
        let minted = try Self.token(["--config", config, "--subject", "s", "--model", "m"])
        #expect(minted.status == 0, "\(minted.output)")
        let token = minted.output.trimmingCharacters(in: .whitespacesAndNewlines)
        let header = try #require(token.split(separator: ".").first)
        #expect(String(decoding: Data(base64Encoded: String(header) + String(repeating: "=", count: (4 - header.count % 4) % 4)) ?? Data(), as: UTF8.self).contains("ES256"))
        var c = SignalingConfiguration()
        c.tokenES256PublicKeyFile = files.dir + "/es.pub"
        #expect(try await TokenAuthority.load(c).verify(token).subject == "s")
    }

    @Test func tokenRefusesWhatTheListenerWouldRefuse() throws {
        let files = try Files()
        defer { files.remove() }
        let secret = try files.write("secret", String(repeating: "k", count: 40))
        let config = try files.write("voxedge.yaml", "signaling:\n  token_hs256_secret_file: \(secret)\n  token_max_lifetime_seconds: 60\n")
        let tooLong = try Self.token(["--config", config, "--subject", "s", "--model", "m", "--ttl", "61"])
        #expect(tooLong.status == 64)
        #expect(tooLong.output.contains("token_max_lifetime_seconds"))
        let noSection = try Self.token(["--config", try files.write("plain.yaml", "media_port: 40000\n"), "--subject", "s", "--model", "m"])
        #expect(noSection.status == 64)
        #expect(noSection.output.contains("no signaling: section"))
        let verifyOnly = try files.write("pub.yaml", "signaling:\n  token_es256_public_key_file: /nonexistent.pem\n")
        let unreadable = try Self.token(["--config", verifyOnly, "--subject", "s", "--model", "m"])
        #expect(unreadable.status == 64)
        #expect(unreadable.output.contains("/nonexistent.pem"))
        #expect(try Self.token(["--config", config, "--model", "m"]).status == 64)
    }
}
