import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import Testing
import VoxMedia

@testable import VoxSignaling

/// The public listener protecting itself: connection limits, deadlines on the handshake, the
/// head and the body, head size limits; and the certificate and keys reloaded without a restart.
@Suite(.serialized) struct SignalingProtectionTests {
    /// A flood of slow and half-open connections from one address — silent TCP, a ClientHello
    /// cut short, a finished handshake and then a head trickling in — while a real POST from
    /// another address is answered. Past the per-source limit the server closes them at once.
    @Test func floodOfSlowAndHalfOpenConnections() async throws {
        let l = try await Listener.start {
            $0.maxConnectionsPerSource = 8
            $0.maxConnections = 64
        }
        defer { Task { await l.stop() } }
        var flood: [RawConnection] = []
        for i in 0..<30 {
            switch i % 3 {
            case 0: flood.append(try await RawConnection.open(port: l.port, tls: false))
            case 1:
                let c = try await RawConnection.open(port: l.port, tls: false)
                try? await c.send(Self.partialClientHello)
                flood.append(c)
            default:
                let c = try await RawConnection.open(port: l.port)
                try? await c.send("POST /v1/sessions HTTP/1.1\r\nHost: e")
                flood.append(c)
            }
        }
        // The server saw every one: 8 held, the rest closed at once.
        let stats = l.server.service.statistics
        try await Self.until { stats[.connectionRefused] + l.server.gate.open == 30 }
        #expect(stats[.connectionRefused] == 22)
        #expect(l.server.gate.open == 8)

        // The real call's POST from another source, while the flood is held open.
        let token = try await l.token()
        let answer = try #require(try await l.post(token: token, source: "127.0.0.2"))
        #expect(answer.status == 201)
        #expect(l.engine.liveSessions.count == 1)
        // None of the flood was served a request.
        #expect(l.engine.calls == 1)
        #expect(stats[.created] == 1)
        for c in flood { await c.close() }
        try await Self.until { l.server.gate.open == 0 }
        // And the source can connect again once its connections are gone.
        #expect(try await l.request("OPTIONS", "/v1/sessions")?.status == 204)
    }

    /// Half-open TLS: nothing after the TCP handshake, or a ClientHello cut short; the server
    /// closes both at the handshake deadline, without an HTTP word.
    @Test func halfOpenTLSIsCutAtTheHandshakeDeadline() async throws {
        let l = try await Listener.start { $0.tlsHandshakeTimeoutSeconds = 1 }
        defer { Task { await l.stop() } }
        let silent = try await RawConnection.open(port: l.port, tls: false)
        let partial = try await RawConnection.open(port: l.port, tls: false)
        try await partial.send(Self.partialClientHello)
        #expect(await silent.waitForClose())
        #expect(await partial.waitForClose())
        #expect(silent.buffer.isEmpty)
        #expect(l.server.service.statistics[.handshakeTimeout] == 2)
    }

    /// The first bytes of a TLS ClientHello record announcing 512 bytes, of which 6 follow.
    static let partialClientHello: [UInt8] = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]

    /// Waits (polling) until `condition` holds; fails the test after 60 s.
    static func until(_ condition: () -> Bool) async throws {
        for _ in 0..<3000 {
            if condition() { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        Issue.record("condition not met within 60 s")
    }

    @Test func connectionLimitInAll() async throws {
        let l = try await Listener.start {
            $0.maxConnections = 4
        }
        defer { Task { await l.stop() } }
        var held: [RawConnection] = []
        for _ in 0..<4 { held.append(try await RawConnection.open(port: l.port, source: "127.0.0.3", tls: false)) }
        // Wait until the server has them all, then one more from anywhere is closed at once.
        try await Self.until { l.server.gate.open == 4 }
        #expect(try await l.request("OPTIONS", "/v1/sessions", source: "127.0.0.4") == nil)
        for c in held { await c.close() }
        try await Self.until { l.server.gate.open == 0 }
        #expect(try await l.request("OPTIONS", "/v1/sessions", source: "127.0.0.4")?.status == 204)
    }

    /// A chunked body that never ends: closed at the body deadline, no session made.
    @Test func endlessChunkedBodyIsCut() async throws {
        let l = try await Listener.start { $0.bodyTimeoutSeconds = 1 }
        defer { Task { await l.stop() } }
        let token = try await l.token()
        let c = try await RawConnection.open(port: l.port)
        try await c.send("POST /v1/sessions HTTP/1.1\r\nAuthorization: Bearer \(token)\r\nContent-Type: application/sdp\r\nTransfer-Encoding: chunked\r\n\r\n")
        let chunk = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
        try await c.send(String(chunk.utf8.count, radix: 16) + "\r\n" + chunk + "\r\n")
        #expect(await c.waitForClose())
        #expect(l.engine.calls == 0)
        #expect(l.server.service.statistics[.requestTimeout] == 1)
    }

    @Test func headLimits() async throws {
        let l = try await Listener.start { $0.maxHeaderBytes = 4096 }
        defer { Task { await l.stop() } }
        let token = try await l.token()
        let big = try #require(try await l.request("OPTIONS", "/v1/sessions", headers: [("X-Pad", String(repeating: "p", count: 5000))]))
        #expect(big.status == 431)
        // Past the parser's own limit: refused and closed, never served.
        let huge = try #require(try await l.request("OPTIONS", "/v1/sessions", headers: [("X-Pad", String(repeating: "p", count: 20000))]))
        #expect(huge.status == 400)
        let many = (0..<300).map { ("X-H\($0)", "v") }
        #expect(try await l.request("OPTIONS", "/v1/sessions", headers: many).map(\.status) != 204)
        #expect(try await l.post(token: token)?.status == 201)
    }

    /// A head that never completes is cut at the header deadline.
    @Test func slowHeadIsCut() async throws {
        let l = try await Listener.start { $0.headerTimeoutSeconds = 1 }
        defer { Task { await l.stop() } }
        let c = try await RawConnection.open(port: l.port)
        try await c.send("POST /v1/sessions HTTP/1.1\r\n")
        try await c.send("Content-Type: appl")
        #expect(await c.waitForClose())
        #expect(l.server.service.statistics[.requestTimeout] == 1)
    }

    @Test func certificateAndTokenKeysReload() async throws {
        let keys = try KeyFiles()
        defer { keys.remove() }
        let first = try DTLSCertificate(commonName: "first")
        let second = try DTLSCertificate(commonName: "second")
        let certificate = keys.path("cert.pem"), key = keys.path("key.pem")
        try first.certificatePEM.write(to: certificate, atomically: true, encoding: .utf8)
        try first.privateKeyPEM.write(to: key, atomically: true, encoding: .utf8)
        let l = try await Listener.start {
            $0.tlsCertificateFile = certificate.path
            $0.tlsKeyFile = key.path
            $0.tokenHS256SecretFile = keys.path("hs256.secret").path
        }
        defer { Task { await l.stop() } }
        #expect(l.server.certificateFingerprint == nil)
        #expect(try await Self.servedCertificate(l.port) == Self.der(first.certificatePEM))

        // New files: a reload serves the new certificate to new connections.
        try second.certificatePEM.write(to: certificate, atomically: true, encoding: .utf8)
        try second.privateKeyPEM.write(to: key, atomically: true, encoding: .utf8)
        // A new HS256 secret too: tokens of the old one stop verifying.
        let oldToken = try await l.token()
        let newSecret = String(repeating: "n", count: 48)
        try newSecret.write(to: keys.path("hs256.secret"), atomically: true, encoding: .utf8)
        try await l.server.reload()
        #expect(try await Self.servedCertificate(l.port) == Self.der(second.certificatePEM))
        #expect(try await l.post(token: oldToken)?.status == 401)
        #expect(try await l.post(token: try await Tokens.hs256(.good(), secret: newSecret))?.status == 201)

        // A broken file: the reload fails naming it, and the last good certificate stays.
        try "not a certificate".write(to: certificate, atomically: true, encoding: .utf8)
        await #expect(throws: SignalingSetupError.self) { try await l.server.reload() }
        #expect(try await Self.servedCertificate(l.port) == Self.der(second.certificatePEM))
    }

    @Test func embeddedDefaultGeneratesItsCertificate() async throws {
        let l = try await Listener.start()
        defer { Task { await l.stop() } }
        let pem = try #require(l.server.generatedCertificatePEM)
        let fingerprint = try #require(l.server.certificateFingerprint)
        let served = try await Self.servedCertificate(l.port)
        #expect(served == (try Self.der(pem)))
        // The printed fingerprint is the SHA-256 of the certificate the listener serves.
        let digest = try #require(CertificateFingerprint(sdpValue: fingerprint)).digest
        #expect(try Self.sha256(served) == digest)
    }

    static func der(_ pem: String) throws -> [UInt8] { try NIOSSLCertificate(bytes: Array(pem.utf8), format: .pem).toDERBytes() }

    /// SHA-256 by coreutils' sha256sum: an oracle outside the code under test.
    static func sha256(_ bytes: [UInt8]) throws -> [UInt8] {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("voxsig-\(UUID().uuidString).der")
        defer { try? FileManager.default.removeItem(at: file) }
        try Data(bytes).write(to: file)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
        process.arguments = [file.path]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        process.waitUntilExit()
        let hex = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).prefix(64)
        return stride(from: 0, to: 64, by: 2).map { UInt8(hex.dropFirst($0).prefix(2), radix: 16)! }
    }

    /// The leaf certificate a new TLS connection to the listener is shown, as DER.
    static func servedCertificate(_ port: Int) async throws -> [UInt8] {
        final class Seen: @unchecked Sendable { var der: [UInt8] = [] }
        let seen = Seen()
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.certificateVerification = .none
        let context = try NIOSSLContext(configuration: configuration)
        let done = MultiThreadedEventLoopGroup.singleton.next().makePromise(of: Void.self)
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        NIOSSLClientHandler(context: context, serverHostname: nil) { certificates, promise in
                            seen.der = (try? certificates.first?.toDERBytes()) ?? []
                            promise.succeed(.certificateVerified)
                            done.succeed()
                        })
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        try await done.futureResult.get()
        try? await channel.close()
        return seen.der
    }
}
