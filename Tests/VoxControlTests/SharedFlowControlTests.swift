import Foundation
import Glibc
import Testing
import VoxMedia

/// `session.create`'s `client_ssrc` through the real control socket (issue 14, defect 4):
/// sessions that each name their client's SSRC share one client 5-tuple, each forwarding with
/// its own key; everything else on a 5-tuple in use is refused naming the holder, and an
/// identical create is still a retry. `voxedge run --io socket`, 4 slots, 1 worker.
@Suite(.serialized) struct SharedFlowControlTests {
    typealias Engine = DrainTests.Engine

    /// An engine with no session yet (`more`: arguments for `voxedge run`); `tag` 0...3. Below
    /// the ephemeral range, on ports no other suite of this process takes whatever its pid
    /// (SocketPortTests' backend legs lie in 24100...32080, 8 of them per pid).
    static func engine(tag: Int, _ more: [String] = []) throws -> Engine {
        try Engine(tag: tag, drainTimeout: 1, base: UInt16(26_000 + Int(getpid() % 50) * 40 + tag * 10), arguments: more)
    }

    /// Session key `index` (key + salt, 30 bytes), base64.
    static func key(_ index: Int) -> String {
        Data((0..<30).map { UInt8(truncatingIfNeeded: $0 * 7 + index) }).base64EncodedString()
    }

    static func create(_ engine: Engine, port: UInt16? = nil, key: Int, extra: String) -> [String: Any]? {
        let client = "127.0.0.1:\(port ?? engine.clientPort)"
        return engine.call(
            #"{"id":"c","cmd":"session.create","client":"\#(client)","client_key":"\#(Self.key(key))"\#(extra)}"#)
    }

    static func ssrc(_ value: UInt32) -> String { #","client_ssrc":\#(value)"# }

    /// Sends one SRTP packet with `ssrc` under key `index` from the engine's client socket;
    /// true when its payload reached the backend.
    static func audio(_ engine: Engine, ssrc: UInt32, key index: Int, seq: UInt16, expectArrival: Bool = true) throws
        -> Bool
    {
        let bytes = [UInt8](Data(base64Encoded: Self.key(index))!)
        var context = try SRTPContext(
            profile: .aes128CmHmacSha1_80, masterKey: Array(bytes[0..<16]), masterSalt: Array(bytes[16...]))
        let payload = Array("ssrc \(ssrc) seq \(seq)".utf8)
        var packet: [UInt8] = [0x80, 111, UInt8(seq >> 8), UInt8(seq & 0xFF), 0, 0, 0, 160]
        packet += [UInt8(ssrc >> 24), UInt8(ssrc >> 16 & 0xFF), UInt8(ssrc >> 8 & 0xFF), UInt8(ssrc & 0xFF)] + payload
        var length = packet.count
        packet += [UInt8](repeating: 0, count: 32)
        _ = packet.withUnsafeMutableBytes { context.protectRTP($0.baseAddress!, length: &length, capacity: $0.count) }
        var to = sockaddr_in()
        to.sin_family = sa_family_t(AF_INET)
        to.sin_port = engine.mediaPort.bigEndian
        to.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        _ = withUnsafePointer(to: &to) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                sendto(engine.client, packet, length, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard expectArrival else { return false }
        var received = [UInt8](repeating: 0, count: 2048)
        let n = received.withUnsafeMutableBytes { recv(engine.backend, $0.baseAddress, $0.count, 0) }
        return n > 12 && Array(received[12..<n]) == payload
    }

    /// The worker's drops by reason, from `stats`.
    static func drops(_ engine: Engine) -> [String: Int] {
        let workers = engine.call(#"{"id":"s","cmd":"stats"}"#)?["workers"] as? [[String: Any]] ?? []
        let drops = workers.first?["drops"] as? [String: Any] ?? [:]
        return drops.compactMapValues { ($0 as? NSNumber)?.intValue }
    }

    /// `client_ssrc` is a 32-bit unsigned integer: 0 and 2^32 − 1 are SSRCs; −1, 2^32, a
    /// string, a fraction, a boolean are refused naming the field and its range; a field given
    /// twice is ambiguous and refused before any of it is used.
    @Test func clientSSRCIsRangeCheckedAndGivenOnce() throws {
        let engine = try Self.engine(tag: 0)
        for (i, value) in ["-1", "4294967296", "18446744073709551616", #""7""#, "1.5", "true", "[7]"].enumerated() {
            let reply = Self.create(engine, key: i, extra: #","client_ssrc":\#(value)"#)
            #expect(errorCode(reply) == "bad_argument", "\(value): \(String(describing: reply))")
            let message = HostileInputTests.message(reply)
            #expect(message.contains("'client_ssrc'") && message.contains("0...4294967295"), "\(value): \(message)")
        }
        for extra in [#","client_ssrc":5,"client_ssrc":6"#, #","client_ssrc":5,"client\u005fssrc":5"#] {
            let reply = Self.create(engine, key: 1, extra: extra)
            #expect(errorCode(reply) == "bad_request", "\(extra): \(String(describing: reply))")
            #expect(HostileInputTests.message(reply).contains("'client_ssrc' is given more than once"))
        }
        #expect(HostileInputTests.listed(engine).isEmpty, "nothing was created")
        for (i, value) in [UInt32(0), UInt32.max].enumerated() {
            let reply = Self.create(engine, key: i, extra: Self.ssrc(value))
            let session = reply?["session"] as? [String: Any]
            #expect((session?["client_ssrc"] as? NSNumber)?.uint32Value == value, "\(String(describing: reply))")
            #expect(try Self.audio(engine, ssrc: value, key: i, seq: 1))
        }
        #expect(HostileInputTests.listed(engine).count == 2)
    }

    /// Three sessions on one client address:port, each naming its SSRC and with its own key,
    /// each forwarding; a fourth without an SSRC, or with an SSRC one of them has and another
    /// key, is refused naming the holder; the identical create is a retry. An SSRC none claims
    /// is dropped and counted; dropping the first keeps the others flowing.
    @Test func sessionsNamingTheirSSRCShareAFiveTuple() throws {
        let engine = try Self.engine(tag: 1)
        var ids: [UInt64] = []
        for i in 0..<3 {
            let reply = Self.create(engine, key: i, extra: Self.ssrc(1000 + UInt32(i)))
            ids.append(try #require(HostileInputTests.sessionID(reply), "\(String(describing: reply))"))
        }
        for i in 0..<3 { #expect(try Self.audio(engine, ssrc: 1000 + UInt32(i), key: i, seq: 1), "session \(i)") }

        let plain = Self.create(engine, key: 7, extra: "")
        #expect(errorCode(plain) == "flow_in_use", "\(String(describing: plain))")
        let plainText = HostileInputTests.message(plain)
        #expect(plainText.contains("session \(ids[0])") && plainText.contains("client_ssrc"), "\(plainText)")

        let duplicate = Self.create(engine, key: 7, extra: Self.ssrc(1001))
        #expect(errorCode(duplicate) == "ssrc_in_use", "\(String(describing: duplicate))")
        let duplicateText = HostileInputTests.message(duplicate)
        #expect(duplicateText.contains("session \(ids[1])") && duplicateText.contains("1001"), "\(duplicateText)")

        let retry = Self.create(engine, key: 1, extra: Self.ssrc(1001))
        #expect(HostileInputTests.sessionID(retry) == ids[1], "\(String(describing: retry))")
        #expect(Set(HostileInputTests.listed(engine)) == Set(ids))

        // An SSRC on the 5-tuple that no session claims: dropped before any key is tried.
        _ = try Self.audio(engine, ssrc: 1003, key: 0, seq: 2, expectArrival: false)
        #expect(try Self.audio(engine, ssrc: 1002, key: 2, seq: 2), "the next packet is session 2's, not the stray")
        #expect(Self.drops(engine)["unknownSSRC"] == 1, "\(Self.drops(engine))")

        // The first goes; the others keep the 5-tuple and flow.
        #expect(engine.call(#"{"id":"d","cmd":"session.drop","session":\#(ids[0])}"#)?["ok"] as? Bool == true)
        for i in 1..<3 { #expect(try Self.audio(engine, ssrc: 1000 + UInt32(i), key: i, seq: 3), "session \(i)") }
        _ = try Self.audio(engine, ssrc: 1000, key: 0, seq: 3, expectArrival: false)
        #expect(try Self.audio(engine, ssrc: 1001, key: 1, seq: 4))
        #expect(Self.drops(engine)["unknownSSRC"] == 2, "\(Self.drops(engine))")
        // The 5-tuple is still a trunk: a new session joins it.
        let joined = Self.create(engine, key: 5, extra: Self.ssrc(1005))
        #expect(HostileInputTests.sessionID(joined) != nil, "\(String(describing: joined))")
        #expect(try Self.audio(engine, ssrc: 1005, key: 5, seq: 1))
    }

    /// A session without an SSRC holds its 5-tuple alone: a create naming an SSRC there is
    /// refused naming it, and so is the worker a trunk's sessions cannot have.
    @Test func aSessionWithoutSSRCHoldsItsFiveTupleAlone() throws {
        let engine = try Self.engine(tag: 2)
        let plain = try #require(HostileInputTests.sessionID(Self.create(engine, key: 0, extra: "")))
        let refused = Self.create(engine, key: 1, extra: Self.ssrc(42))
        #expect(errorCode(refused) == "flow_in_use", "\(String(describing: refused))")
        let text = HostileInputTests.message(refused)
        #expect(text.contains("session \(plain)") && text.contains("names no client_ssrc"), "\(text)")
        // Its identical create is still its retry.
        #expect(HostileInputTests.sessionID(Self.create(engine, key: 0, extra: "")) == plain)
        #expect(try Self.audio(engine, ssrc: 9, key: 0, seq: 1), "any SSRC: the session holds the 5-tuple")
        #expect(HostileInputTests.listed(engine) == [plain])
    }

    /// With two workers, sessions are placed round-robin; those sharing a 5-tuple all go to
    /// the worker holding it (one worker finds them all), and a create naming the other
    /// worker is refused. Each forwards whichever worker's socket the kernel gives the packet.
    @Test func aTrunksSessionsShareOneWorker() throws {
        let engine = try Self.engine(tag: 3, ["--workers", "2"])
        var workers: [Int] = []
        for i in 0..<3 {
            let reply = Self.create(engine, key: i, extra: Self.ssrc(2000 + UInt32(i)))
            let worker = (reply?["session"] as? [String: Any])?["worker"] as? Int
            workers.append(try #require(worker, "\(String(describing: reply))"))
        }
        #expect(Set(workers).count == 1, "\(workers)")
        let other = 1 - workers[0]
        let refused = Self.create(engine, key: 5, extra: Self.ssrc(2005) + #","worker":\#(other)"#)
        #expect(errorCode(refused) == "bad_argument", "\(String(describing: refused))")
        #expect(HostileInputTests.message(refused).contains("worker \(workers[0])"))
        for i in 0..<3 { #expect(try Self.audio(engine, ssrc: 2000 + UInt32(i), key: i, seq: 1), "session \(i)") }
        // Round-robin goes on for other clients.
        let elsewhere = Self.create(engine, port: engine.clientPort + 2, key: 6, extra: "")
        #expect((elsewhere?["session"] as? [String: Any])?["worker"] as? Int == other, "\(String(describing: elsewhere))")
    }
}
