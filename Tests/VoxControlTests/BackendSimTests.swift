import COpenSSL
import Foundation
import Glibc
import Synchronization
import Testing
import VoxMedia

/// `voxedge backend-sim` as the reference backend (docs/backend-protocol.md, "backend-sim"),
/// driven from outside over loopback UDP: the test plays the edge with its own
/// `BackendChannelState(local: .edge)` and reads the sim's JSON log. Nothing here trusts the
/// sim's word alone: every message it sends is verified with the key, every packet it logs
/// is matched to a packet received.
@Suite(.serialized) struct BackendSimTests {
    static let keyText = "backend-sim-test-key-0123456789"
    static var key: HMACSHA1Key { Array(keyText.utf8).withUnsafeBytes { HMACSHA1Key(key: $0) } }

    /// A running `voxedge backend-sim` and its log, read line by line as it comes.
    final class Sim {
        /// The log's lines so far, shared with the thread that reads them.
        final class Lines: Sendable {
            let lines = Mutex<[String]>([])
        }

        let process = Process()
        let log = Lines()
        private(set) var port: UInt16 = 0
        let directory: URL

        init(_ arguments: [String], key: Bool = true) throws {
            directory = FileManager.default.temporaryDirectory.appendingPathComponent(
                "backend-sim-\(UUID().uuidString)"
            )
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            var all = ["backend-sim", "--listen", "127.0.0.1:0"]
            if key {
                let keyFile = directory.appendingPathComponent("key")
                try Data((BackendSimTests.keyText + "\n\n").utf8).write(to: keyFile)  // trailing newlines trimmed
                all += ["--key-file", keyFile.path]
            }
            let out = Pipe()
            process.executableURL = URL(fileURLWithPath: DemoTests.voxedge)
            process.arguments = all + arguments
            process.standardOutput = out
            process.standardError = FileHandle.standardError
            try process.run()
            let handle = out.fileHandleForReading
            let log = self.log
            Thread.detachNewThread {
                var pending = Data()
                while true {
                    let chunk = handle.availableData
                    if chunk.isEmpty { return }
                    pending += chunk
                    while let newline = pending.firstIndex(of: 0x0A) {
                        let line = String(decoding: pending[pending.startIndex..<newline], as: UTF8.self)
                        pending = Data(pending[(newline + 1)...])
                        log.lines.withLock { $0.append(line) }
                    }
                }
            }
            let listening = waitFor("listening")
            let listen = listening?["listen"] as? String ?? ""
            guard let text = listen.split(separator: ":").last, let p = UInt16(text), p != 0 else {
                process.terminate()
                throw SimError.noListeningLine(listen)
            }
            port = p
        }

        enum SimError: Error { case noListeningLine(String) }

        deinit {
            if process.isRunning {
                process.terminate()
                process.waitUntilExit()
            }
            try? FileManager.default.removeItem(at: directory)
        }

        /// The log's events, parsed.
        var events: [[String: Any]] {
            log.lines.withLock { $0 }.compactMap {
                try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
            }
        }

        func events(_ name: String) -> [[String: Any]] { events.filter { $0["event"] as? String == name } }

        /// The first event named `name` that satisfies `match`, waiting up to `seconds` for it.
        @discardableResult
        func waitFor(
            _ name: String,
            seconds: Double = 5,
            _ match: ([String: Any]) -> Bool = { _ in true }
        )
            -> [String: Any]?
        {
            let deadline = Date().addingTimeInterval(seconds)
            repeat {
                if let e = events(name).first(where: match) { return e }
                usleep(5_000)
            } while Date() < deadline
            return nil
        }

        /// SIGTERM, then the closing `stats` event.
        func stop() -> [String: Any]? {
            kill(process.processIdentifier, SIGTERM)
            process.waitUntilExit()
            return waitFor("stats", seconds: 2)
        }
    }

    /// The edge's side of one session's backend leg: a UDP socket on loopback and the
    /// channel state; RTP and control messages received are kept apart.
    final class Edge {
        let fd: Int32
        let port: UInt16
        var leg: BackendChannelState
        let sim: UInt16
        var rtp: [(bytes: [UInt8], at: Date)] = []
        /// Every datagram received, in order: true for a control message.
        var order: [Bool] = []

        init(session: UInt64, sim: UInt16) {
            let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
            self.fd = fd
            var a = sockaddr_in()
            a.sin_family = sa_family_t(AF_INET)
            a.sin_addr.s_addr = inet_addr("127.0.0.1")
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            withUnsafeMutablePointer(to: &a) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    _ = bind(fd, $0, length)
                    _ = getsockname(fd, $0, &length)
                }
            }
            port = UInt16(bigEndian: a.sin_port)
            leg = BackendChannelState(sessionID: session, local: .edge)
            self.sim = sim
        }

        deinit { close(fd) }

        var address: String { "127.0.0.1:\(port)" }

        func send(_ bytes: [UInt8]) {
            var to = sockaddr_in()
            to.sin_family = sa_family_t(AF_INET)
            to.sin_addr.s_addr = inet_addr("127.0.0.1")
            to.sin_port = sim.bigEndian
            _ = bytes.withUnsafeBytes { b in
                withUnsafePointer(to: &to) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        sendto(fd, b.baseAddress, b.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                    }
                }
            }
        }

        /// Stamps and sends `body` from the edge; returns the bytes sent.
        @discardableResult
        func send(_ body: BackendMessage.Body, now: UInt64 = 1) -> [UInt8] {
            var out = [UInt8](repeating: 0, count: BackendMessage.maximumLength)
            let n = out.withUnsafeMutableBytes { leg.send(body, now: now, key: BackendSimTests.key, into: $0) }!
            send(Array(out[0..<n]))
            return Array(out[0..<n])
        }

        /// One RTP packet from the edge, as the client's audio would be: the sim's audio and
        /// its flush clock start at the first.
        func speak(sequence: UInt16 = 1) {
            send(BackendSimTests.rtpPacket(sequence: sequence, payload: [0xF8, 0xFF, 0xFE]))
        }

        /// The next datagram within `seconds`, or nil.
        func receive(seconds: Double) -> [UInt8]? {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, Int32(seconds * 1_000)) > 0 else { return nil }
            var buffer = [UInt8](repeating: 0, count: 2_048)
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n >= 0 else { return nil }
            return Array(buffer[0..<n])
        }

        /// The next control message within `seconds` that `match` accepts, verified with
        /// the key and accepted by the edge's channel state; RTP on the way is kept in `rtp`.
        func control(seconds: Double = 5, _ match: (BackendMessage) -> Bool = { _ in true }) -> BackendMessage? {
            let deadline = Date().addingTimeInterval(seconds)
            while deadline.timeIntervalSinceNow > 0, let d = receive(seconds: deadline.timeIntervalSinceNow) {
                guard d.first == BackendMessage.magic else {
                    rtp.append((d, Date()))
                    order.append(false)
                    continue
                }
                order.append(true)
                var m = BackendMessage()
                let verdict = d.withUnsafeBytes { leg.receive($0, key: BackendSimTests.key, into: &m) }
                #expect(verdict == .ok, "a message from the sim that does not verify: \(verdict)")
                if verdict == .ok, match(m) { return m }
            }
            return nil
        }

        /// RTP until `count` packets are held or nothing comes for `quiet` seconds; control
        /// messages on the way are verified and dropped.
        func collectRTP(count: Int = .max, quiet: Double = 0.5) {
            while rtp.count < count, let d = receive(seconds: quiet) {
                if d.first == BackendMessage.magic {
                    order.append(true)
                    var m = BackendMessage()
                    #expect(d.withUnsafeBytes { leg.receive($0, key: BackendSimTests.key, into: &m) } == .ok)
                } else {
                    rtp.append((d, Date()))
                    order.append(false)
                }
            }
        }
    }

    static func stream(
        payloadType: UInt8 = 111,
        codec: String = "opus",
        model: String = "m-1",
        subject: String = "s-1"
    )
        -> BackendStreamDescription
    {
        BackendStreamDescription(
            ssrc: 0x1234_5678,
            clockRate: 48_000,
            payloadType: payloadType,
            channels: 2,
            codecName: codec,
            model: model,
            subject: subject
        )!
    }

    static func rtpPacket(sequence: UInt16, payload: [UInt8]) -> [UInt8] {
        [0x80, 111, UInt8(sequence >> 8), UInt8(sequence & 0xFF), 0, 0, 3, 0xC0, 0xCA, 0xFE, 0xBA, 0xBE] + payload
    }

    static func sha1Prefix(_ bytes: ArraySlice<UInt8>) -> String {
        var digest = [UInt8](repeating: 0, count: 20)
        bytes.withUnsafeBufferPointer { b in _ = SHA1(b.baseAddress, b.count, &digest) }
        return digest.prefix(8).map { String(format: "%02x", $0) }.joined()
    }

    static func int(_ value: Any?) -> Int? { (value as? NSNumber)?.intValue }

    // MARK: the protocol's exchanges

    @Test func startIsLoggedWithAllItsMetadata() throws {
        let sim = try Sim([])
        let edge = Edge(session: 12, sim: sim.port)
        edge.send(.start(Self.stream(payloadType: 101, model: "voice-\"model\"", subject: "ünïcode/subject")))
        let start = try #require(sim.waitFor("start"))
        #expect(Self.int(start["session"]) == 12)
        #expect(start["from"] as? String == edge.address)
        #expect(start["model"] as? String == "voice-\"model\"")
        #expect(start["subject"] as? String == "ünïcode/subject")
        #expect(start["codec"] as? String == "opus")
        #expect(Self.int(start["clock_rate"]) == 48_000)
        #expect(Self.int(start["channels"]) == 2)
        #expect(Self.int(start["payload_type"]) == 101)
        #expect(Self.int(start["ssrc"]) == 0x1234_5678)
        let listening = try #require(sim.events("listening").first)
        #expect(listening["protocol"] as? Bool == true)
    }

    @Test func keepalivesAreAckedAndTheSimMeasuresRTT() throws {
        let sim = try Sim(["--keepalive-ms", "100"])
        let edge = Edge(session: 7, sim: sim.port)
        edge.send(.start(Self.stream()))
        edge.send(.keepalive, now: 0xDEAD_BEEF_0000_0001)
        let ack = try #require(edge.control { $0.body.type == .keepaliveAck })
        #expect(ack.body == .keepaliveAck(echo: 0xDEAD_BEEF_0000_0001))
        #expect(ack.sender == .backend && ack.sessionID == 7)
        // The sim's own keepalive, answered by the edge: the sim logs the round trip.
        let keepalive = try #require(edge.control { $0.body.type == .keepalive })
        edge.send(.keepaliveAck(echo: keepalive.timestamp))
        let rtt = try #require(sim.waitFor("rtt"))
        #expect(Self.int(rtt["session"]) == 7)
        #expect((Self.int(rtt["rtt_us"]) ?? -1) >= 0)
        // An ack that echoes a time in the future is no measurement.
        edge.send(.keepaliveAck(echo: UInt64.max))
        edge.send(.keepalive, now: 42)
        #expect(edge.control { $0.body.type == .keepaliveAck }?.body == .keepaliveAck(echo: 42))
        #expect(sim.events("rtt").allSatisfy { (Self.int($0["rtt_us"]) ?? -1) >= 0 })
    }

    @Test func endIsLoggedWithItsReasonAndTheSessionForgotten() throws {
        let sim = try Sim([])
        let edge = Edge(session: 99, sim: sim.port)
        edge.send(.start(Self.stream()))
        try #require(sim.waitFor("start") != nil)
        edge.send(.end(.clientLeft))
        let end = try #require(sim.waitFor("end"))
        #expect(Self.int(end["session"]) == 99)
        #expect(end["reason"] as? String == "client_left")
        #expect(Self.int(end["code"]) == 1)
        // Forgotten: its keepalive is no session's now, and gets no answer.
        edge.send(.keepalive)
        #expect(sim.waitFor("refused") { $0["verdict"] as? String == "unknown_session" } != nil)
        #expect(edge.control(seconds: 0.3) { $0.body.type == .keepaliveAck } == nil)
        // A code this build does not know is logged by its number.
        let other = Edge(session: 100, sim: sim.port)
        other.send(.start(Self.stream()))
        other.send(.end(BackendEndReason(rawValue: 777)))
        let unknown = try #require(sim.waitFor("end") { Self.int($0["session"]) == 100 })
        #expect(unknown["reason"] as? String == "reason_777")
        #expect(Self.int(unknown["code"]) == 777)
    }

    @Test func endAfterMsSendsBackendFinished() throws {
        let sim = try Sim(["--end-after-ms", "200", "--mode", "tone"])
        let edge = Edge(session: 5, sim: sim.port)
        edge.send(.start(Self.stream()))
        edge.speak()
        let end = try #require(edge.control { $0.body.type == .end })
        #expect(end.body == .end(.backendFinished))
        let logged = try #require(sim.waitFor("end"))
        #expect(logged["reason"] as? String == "backend_finished" && Self.int(logged["code"]) == 9)
        // And the audio stops with the session.
        edge.collectRTP(quiet: 0.1)
        let before = edge.rtp.count
        #expect(before > 0)
        edge.collectRTP(quiet: 0.4)
        #expect(edge.rtp.count == before)
    }

    @Test func migrationsStartAndStopASession() throws {
        let sim = try Sim(["--mode", "tone"])
        let edge = Edge(session: 31, sim: sim.port)
        edge.send(.migratedIn(Self.stream(payloadType: 97)))
        edge.speak()
        let logged = try #require(sim.waitFor("migrated_in"))
        #expect(Self.int(logged["session"]) == 31 && Self.int(logged["payload_type"]) == 97)
        edge.collectRTP(count: 3)
        #expect(edge.rtp.count == 3 && edge.rtp.allSatisfy { $0.bytes[1] & 0x7F == 97 })
        edge.send(.migratedAway)
        try #require(sim.waitFor("migrated_away") { Self.int($0["session"]) == 31 } != nil)
        edge.collectRTP(quiet: 0.1)
        let before = edge.rtp.count
        edge.collectRTP(quiet: 0.4)
        #expect(edge.rtp.count == before, "audio went on after migrated-away")
    }

    @Test func idleSessionsAreForgotten() throws {
        let sim = try Sim(["--idle-timeout-ms", "300", "--keepalive-ms", "10000"])
        let edge = Edge(session: 3, sim: sim.port)
        edge.send(.start(Self.stream()))
        let idle = try #require(sim.waitFor("idle"))
        #expect(Self.int(idle["session"]) == 3)
        edge.send(.keepalive)
        #expect(sim.waitFor("refused") { $0["verdict"] as? String == "unknown_session" } != nil)
    }

    // MARK: audio

    @Test func toneModeSendsPacedRTPWithTheStartsPayloadType() throws {
        let sim = try Sim(["--mode", "tone", "--talk-ms", "400", "--log-packets"])
        let edge = Edge(session: 8, sim: sim.port)
        edge.send(.start(Self.stream(payloadType: 96)))
        edge.collectRTP(count: 1, quiet: 0.3)
        #expect(edge.rtp.isEmpty, "audio before the edge's first RTP (the client leg may not be keyed yet)")
        edge.speak()
        edge.collectRTP(count: 25)
        #expect(edge.rtp.count == 20, "400 ms of 20 ms frames")
        let packets = edge.rtp.map(\.bytes)
        #expect(packets.allSatisfy { $0.count > 12 && $0[0] == 0x80 && $0[1] & 0x7F == 96 })
        #expect(packets.first.map { $0[1] & 0x80 != 0 } == true, "the first packet is marked")
        #expect(packets.dropFirst().allSatisfy { $0[1] & 0x80 == 0 })
        let ssrcs = Set(packets.map { Array($0[8..<12]) })
        #expect(ssrcs.count == 1 && ssrcs.first != [0x12, 0x34, 0x56, 0x78], "its own SSRC, not the edge's")
        for (a, b) in zip(packets, packets.dropFirst()) {
            let sa = UInt16(a[2]) << 8 | UInt16(a[3])
            let sb = UInt16(b[2]) << 8 | UInt16(b[3])
            let ta = a[4..<8].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
            let tb = b[4..<8].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
            #expect(sb == sa &+ 1 && tb == ta &+ 960)
        }
        // Paced at real time: 20 packets of 20 ms cannot all come in less than 19 intervals.
        let span = edge.rtp.last!.at.timeIntervalSince(edge.rtp.first!.at)
        #expect(span >= 0.3, "20 packets in \(span) s")
        // Every packet logged, with the payload that came.
        let logged = sim.events("packet")
        #expect(logged.count == 20)
        #expect(logged.map { $0["payload_sha1"] as? String } == packets.map { Self.sha1Prefix($0[12...]) })
        #expect(logged.allSatisfy { $0["phase"] as? String == "before_flush" && Self.int($0["session"]) == 8 })
    }

    @Test func speedAndBurstSendAheadInBursts() throws {
        let sim = try Sim(["--mode", "tone", "--talk-ms", "2000", "--speed", "4", "--burst-ms", "200"])
        let edge = Edge(session: 9, sim: sim.port)
        edge.send(.start(Self.stream()))
        edge.speak()
        edge.collectRTP(count: 101, quiet: 1)
        #expect(edge.rtp.count == 100)
        // 2 s of audio in 10 bursts, one every 50 ms: well ahead of real time, not all at once.
        let span = edge.rtp.last!.at.timeIntervalSince(edge.rtp.first!.at)
        #expect(span >= 0.4 && span < 1.5, "2 s of audio in \(span) s")
        // Bursts: a load can merge them, never split one in ten.
        let gaps = zip(edge.rtp, edge.rtp.dropFirst()).filter { $1.at.timeIntervalSince($0.at) > 0.025 }.count
        #expect(gaps >= 1 && gaps <= 12, "\(gaps + 1) groups of packets")
    }

    @Test func flushAfterMsThenAfterFlushAudio() throws {
        let sim = try Sim([
            "--mode", "tone", "--flush-after-ms", "300", "--after-flush-ms", "200", "--after-flush-hz", "880",
            "--log-packets",
        ])
        let edge = Edge(session: 77, sim: sim.port)
        edge.send(.start(Self.stream()))
        // The flush clock starts at the edge's first RTP, not at start.
        #expect(edge.control(seconds: 0.5) { $0.body.type == .flush } == nil, "a flush before any RTP from the edge")
        edge.speak()
        let flush = try #require(edge.control { $0.body.type == .flush })
        #expect(flush.sender == .backend && flush.sessionID == 77)
        let before = edge.rtp.map(\.bytes)
        edge.rtp = []
        edge.collectRTP(quiet: 0.5)
        let after = edge.rtp.map(\.bytes)
        #expect(before.count >= 5, "about 15 packets before the flush at 300 ms")
        #expect(after.count == 10, "200 ms after the flush")
        #expect(after.first.map { $0[1] & 0x80 != 0 } == true, "the new answer is marked")
        let logged = try #require(sim.waitFor("flush"))
        #expect(Self.int(logged["session"]) == 77)
        #expect(Self.int(logged["sequence"]) == Int(flush.sequence))
        #expect(Self.int(logged["packets_sent_before"]) == before.count)
        // The log tells which audio came before the flush and which after it.
        var phases: [String: String] = [:]
        for p in sim.events("packet") { phases[p["payload_sha1"] as? String ?? ""] = p["phase"] as? String }
        #expect(before.allSatisfy { phases[Self.sha1Prefix($0[12...])] == "before_flush" })
        #expect(after.allSatisfy { phases[Self.sha1Prefix($0[12...])] == "after_flush" })
        #expect(sim.events("packet").count == before.count + after.count)
    }

    @Test func sigusr1FlushesEveryLiveSession() throws {
        let sim = try Sim(["--mode", "tone"])
        let a = Edge(session: 1, sim: sim.port)
        let b = Edge(session: 2, sim: sim.port)
        a.send(.start(Self.stream()))
        b.send(.start(Self.stream()))
        #expect(sim.waitFor("start") { Self.int($0["session"]) == 2 } != nil)
        kill(sim.process.processIdentifier, SIGUSR1)
        #expect(a.control { $0.body.type == .flush } != nil)
        #expect(b.control { $0.body.type == .flush } != nil)
        #expect(sim.waitFor("flush") { Self.int($0["session"]) == 2 } != nil)
        #expect(sim.events("flush").count == 2)
    }

    @Test func wavModePlaysTheFileAndRefusesOthers() throws {
        func wav(rate: UInt32 = 48_000, channels: UInt16 = 2, bits: UInt16 = 16, frames: Int = 4_800) -> [UInt8] {
            func le16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8)] }
            func le32(_ v: UInt32) -> [UInt8] { le16(UInt16(v & 0xFFFF)) + le16(UInt16(v >> 16)) }
            let data = (0..<(frames * Int(channels))).flatMap {
                le16(UInt16(bitPattern: Int16(($0 * 37) % 20_000 - 10_000)))
            }
            let block = channels * bits / 8
            let fmt = le16(1) + le16(channels) + le32(rate) + le32(rate * UInt32(block)) + le16(block) + le16(bits)
            let list = Array("LIST".utf8) + le32(3) + [1, 2, 3, 0]  // an odd chunk, padded, to skip
            let body =
                Array("WAVE".utf8) + list + Array("fmt ".utf8) + le32(16) + fmt + Array("data".utf8)
                + le32(UInt32(data.count)) + data
            return Array("RIFF".utf8) + le32(UInt32(body.count)) + body
        }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("wav-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        func file(_ name: String, _ bytes: [UInt8]) throws -> String {
            let url = directory.appendingPathComponent(name)
            try Data(bytes).write(to: url)
            return url.path
        }
        let keyFile = try file("key", Array(Self.keyText.utf8))

        let good = try file("good.wav", wav())
        let sim = try Sim(["--mode", "wav", "--wav", good, "--talk-ms", "300"])  // 100 ms file, looped
        let edge = Edge(session: 4, sim: sim.port)
        edge.send(.start(Self.stream(payloadType: 120)))
        edge.speak()
        edge.collectRTP(count: 20)
        #expect(edge.rtp.count == 15)
        #expect(edge.rtp.allSatisfy { $0.bytes[1] & 0x7F == 120 && $0.bytes.count > 12 })

        let refusals: [([UInt8], String)] = [
            (wav(rate: 44_100), "44100 Hz"), (wav(channels: 3), "3 channels"), (wav(bits: 8), "8-bit"),
            (wav(frames: 0), "no samples"), (Array("RIFF....WAVEjunk".utf8), "no fmt"),
            (Array("hello".utf8), "not a RIFF"),
        ]
        for (i, (bytes, reason)) in refusals.enumerated() {
            let path = try file("bad\(i).wav", bytes)
            let (status, output) = try run(
                DemoTests.voxedge,
                ["backend-sim", "--key-file", keyFile, "--mode", "wav", "--wav", path]
            )
            #expect(status != 0 && output.contains(reason), "\(reason): \(status) \(output)")
        }
    }

    // MARK: hostile input

    @Test func hostileDatagramsChangeNothingAndTheSimKeepsAnswering() throws {
        let sim = try Sim(["--keepalive-ms", "10000"])
        let edge = Edge(session: 50, sim: sim.port)
        let start = edge.send(.start(Self.stream()))
        try #require(sim.waitFor("start") != nil)

        func stillAnswers(_ what: String) {
            let t = UInt64.random(in: 1...UInt64.max)
            edge.send(.keepalive, now: t)
            #expect(
                edge.control(seconds: 2) { $0.body.type == .keepaliveAck }?.body == .keepaliveAck(echo: t),
                "after \(what)"
            )
        }
        func expectRefused(_ verdict: String) {
            #expect(sim.waitFor("refused") { $0["verdict"] as? String == verdict } != nil, "\(verdict) not logged")
        }

        var keepalive = BackendChannelState(sessionID: 50, local: .edge)
        var bytes = [UInt8](repeating: 0, count: 64)
        let n = bytes.withUnsafeMutableBytes { keepalive.send(.keepalive, now: 5, key: Self.key, into: $0) }!
        var badMAC = Array(bytes[0..<n])
        badMAC[n - 1] ^= 0x01
        edge.send(badMAC)
        expectRefused("bad_mac")
        stillAnswers("a bad MAC")

        edge.send(start)  // the same start again: replayed
        expectRefused("replayed")
        stillAnswers("a replayed start")

        edge.send(Array(start[0..<40]))  // truncated
        expectRefused("malformed")
        stillAnswers("a truncated start")

        edge.send([0x42, 0x13, 0x37, 0x00])
        edge.send([])
        expectRefused("not_rtp_nor_control")
        stillAnswers("junk")

        var other = BackendChannelState(sessionID: 51, local: .edge)
        var otherStart = [UInt8](repeating: 0, count: BackendMessage.maximumLength)
        let m = otherStart.withUnsafeMutableBytes {
            other.send(.start(Self.stream()), now: 1, key: Self.key, into: $0)
        }!
        edge.send(Array(otherStart[0..<m]))
        expectRefused("wrong_session")
        stillAnswers("a start for another session from the same address")

        var wrongKey = BackendChannelState(sessionID: 52, local: .edge)
        let otherKey = Array("not-the-shared-key-at-all".utf8).withUnsafeBytes { HMACSHA1Key(key: $0) }
        let k = otherStart.withUnsafeMutableBytes {
            wrongKey.send(.start(Self.stream()), now: 1, key: otherKey, into: $0)
        }!
        let stranger = Edge(session: 52, sim: sim.port)
        stranger.send(Array(otherStart[0..<k]))
        stranger.send(start)  // session 50's start, replayed from another address
        expectRefused("wrong_address")
        stranger.send(Self.rtpPacket(sequence: 1, payload: [1, 2, 3]))
        expectRefused("rtp_without_session")
        #expect(stranger.receive(seconds: 0.3) == nil, "a stranger got an answer")
        stillAnswers("strangers")

        #expect(sim.events("start").count == 1, "a refused message started a session")
        let stats = try #require(sim.stop())
        let refused = stats["refused"] as? [String: Any] ?? [:]
        #expect(Self.int(refused["bad_mac"]) == 2, "\(refused)")  // the wrong key's start too
        #expect(Self.int(refused["not_rtp_nor_control"]) == 2)
        #expect(Self.int(stats["sessions"]) == 1)
        #expect(
            sim.events("refused").count == Set(sim.events("refused").map { $0["verdict"] as? String }).count,
            "a verdict logged more than once"
        )
    }

    @Test func randomAndMutatedDatagramsNeverStopIt() throws {
        let sim = try Sim(["--keepalive-ms", "10000", "--mode", "tone", "--talk-ms", "0"])
        let edge = Edge(session: 60, sim: sim.port)
        edge.send(.start(Self.stream()))
        try #require(sim.waitFor("start") != nil)
        var sent: [[UInt8]] = []
        /// Sends in rounds of 50, each closed by a keepalive the sim must answer: it has
        /// read the round (none lost to a full socket buffer) and is still serving.
        func send(_ datagrams: [[UInt8]]) {
            for round in stride(from: 0, to: datagrams.count, by: 50) {
                for d in datagrams[round..<min(round + 50, datagrams.count)] { edge.send(d) }
                let t = UInt64(round + 1)
                edge.send(.keepalive, now: t)
                #expect(edge.control(seconds: 5) { $0.body.type == .keepaliveAck }?.body == .keepaliveAck(echo: t))
            }
            sent += datagrams
        }
        // Random bytes, half of them starting like a control message or like RTP.
        var generator = SystemRandomNumberGenerator()
        send(
            (0..<2_000).map { i in
                var d = (0..<Int.random(in: 0...700, using: &generator)).map { _ in
                    UInt8.random(in: 0...255, using: &generator)
                }
                if !d.isEmpty && i % 2 == 0 { d[0] = i % 4 == 0 ? 0x0B : 0x80 }
                if d.count >= 2 && i % 8 == 0 { d[1] = 1 }  // version 1: on to the MAC check
                return d
            }
        )
        // Every single-bit flip of a valid keepalive: none may pass.
        var valid = BackendChannelState(sessionID: 60, local: .edge)
        var bytes = [UInt8](repeating: 0, count: 64)
        let n = bytes.withUnsafeMutableBytes { valid.send(.keepalive, now: 9, key: Self.key, into: $0) }!
        send(
            (0..<(n * 8)).map { bit in
                var d = Array(bytes[0..<n])
                d[bit / 8] ^= UInt8(1) << (bit % 8)
                return d
            }
        )
        #expect(edge.rtp.isEmpty)
        #expect(sim.process.isRunning)
        let stats = try #require(sim.stop())
        // Everything that did not look like RTP was refused; the RTP-looking ones were taken
        // as the session's (its address); nothing else started or ended a session.
        let rtpLike = sent.filter { ($0.first ?? 0) & 0xC0 == 0x80 }.count
        let refused = (stats["refused"] as? [String: Any] ?? [:]).values.compactMap { Self.int($0) }.reduce(0, +)
        #expect(refused == sent.count - rtpLike, "\(stats)")
        #expect(Self.int(stats["rtp_received"]) == rtpLike)
        #expect(Self.int(stats["sessions"]) == 1)
        #expect(sim.events("start").count == 1 && sim.events("end").isEmpty)
    }

    // MARK: without the protocol

    @Test func withoutAKeyItEchoesAsBefore() throws {
        let sim = try Sim(["--delay-ms", "50"], key: false)
        #expect(sim.events("listening").first?["protocol"] as? Bool == false)
        let edge = Edge(session: 1, sim: sim.port)
        let packets = (0..<5).map {
            Self.rtpPacket(sequence: UInt16($0), payload: [UInt8](repeating: UInt8($0), count: 100))
        }
        for p in packets { edge.send(p) }
        edge.send(.start(Self.stream()))  // no protocol: ignored and counted
        var echoed: [[UInt8]] = []
        while echoed.count < 6, let d = edge.receive(seconds: 1) { echoed.append(d) }
        #expect(echoed == packets)
        let stats = try #require(sim.stop())
        #expect(Self.int(stats["control_ignored"]) == 1)
        #expect(sim.events("start").isEmpty)
    }

    @Test func badFlagsAreRefusedClearly() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("simflags-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let short = directory.appendingPathComponent("short").path
        try Data("fifteen-bytes!!\n \n".utf8).write(to: URL(fileURLWithPath: short))  // 15 after trimming
        let good = directory.appendingPathComponent("good").path
        try Data(Self.keyText.utf8).write(to: URL(fileURLWithPath: good))
        let cases: [([String], String)] = [
            (["--key-file", short], "15 bytes"),
            (["--key-file", directory.appendingPathComponent("missing").path], "cannot read"),
            (["--mode", "tone"], "--key-file"),
            (["--flush-after-ms", "10"], "--key-file"),
            (["--key-file", good, "--mode", "sing"], "--mode"),
            (["--key-file", good, "--mode", "wav"], "--wav"),
            (["--key-file", good, "--burst-ms", "30"], "--burst-ms"),
            (["--key-file", good, "--speed", "0"], "--speed"),
            (["--key-file", good, "--speed", "-1"], "--speed"),
            (["--key-file", good, "--talk-ms", "-5"], "--talk-ms"),
            (["--key-file", good, "--tone-hz", "30000"], "--tone-hz"),
            (["--key-file", good, "--keepalive-ms", "0"], "--keepalive-ms"),
            (["--listen", "127.0.0.1"], "--listen"),
            (["--listen", "999.1.1.1:5"], "--listen"),
        ]
        for (arguments, message) in cases {
            let (status, output) = try run(DemoTests.voxedge, ["backend-sim", "--listen", "127.0.0.1:0"] + arguments)
            #expect(status != 0 && output.contains(message), "\(arguments): \(status) \(output)")
        }
    }

    // MARK: load reports to the control socket (issue 18)

    /// The engine's control socket as backend-sim meets it: a Unix stream listener that
    /// keeps every line with the connection it came on and answers as `answer` says for the
    /// `index`-th line of that command (0 first). `stop()` ends its threads.
    final class ControlPeer: Sendable {
        enum Answer: Sendable {
            case ok
            /// ok, but every backend in the report is unknown to the engine.
            case unknown
            /// ok:false with this error code.
            case refuse(String)
            /// No reply: the connection is closed.
            case close
        }

        let path: String
        private let listener: Int32
        private let received = Mutex<[(connection: Int, line: String, at: Date)]>([])
        private let counts = Mutex<[String: Int]>([:])
        private let accepted = Mutex<Int>(0)
        private let stopped = Atomic<Bool>(false)
        private let answer: @Sendable (_ command: String, _ index: Int) -> Answer

        static func freshPath() -> String { "/tmp/vsim-\(UUID().uuidString.prefix(12)).sock" }

        init(path: String = ControlPeer.freshPath(), answer: @escaping @Sendable (String, Int) -> Answer = { _, _ in .ok })
            throws
        {
            self.path = path
            self.answer = answer
            unlink(path)
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &address.sun_path) { p in for (i, b) in path.utf8.enumerated() { p[i] = b } }
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                }
            }
            guard bound == 0, listen(fd, 8) == 0 else {
                close(fd)
                throw PeerError.cannotListen(String(cString: strerror(errno)))
            }
            listener = fd
            Thread.detachNewThread { self.acceptLoop() }
        }

        enum PeerError: Error { case cannotListen(String) }

        func stop() {
            stopped.store(true, ordering: .relaxed)
            unlink(path)
        }

        /// How many connections backend-sim has made.
        var connections: Int { accepted.withLock { $0 } }

        /// Every line so far, parsed, with its connection (1 first) and arrival.
        var lines: [(connection: Int, object: [String: Any], at: Date)] {
            received.withLock { $0 }.map {
                ($0.connection, (try? JSONSerialization.jsonObject(with: Data($0.line.utf8))) as? [String: Any] ?? [:], $0.at)
            }
        }

        func lines(_ command: String) -> [(connection: Int, object: [String: Any], at: Date)] {
            lines.filter { $0.object["cmd"] as? String == command }
        }

        /// The single backend's entry of every `backend.report` line, with its connection.
        var reports: [(connection: Int, report: [String: Any])] {
            lines("backend.report").compactMap { line in
                (line.object["reports"] as? [[String: Any]]).flatMap { $0.count == 1 ? (line.connection, $0[0]) : nil }
            }
        }

        /// The first report from the `after`-th on that `match` accepts, waiting up to `seconds`.
        func waitForReport(after: Int = 0, seconds: Double = 5, _ match: ([String: Any]) -> Bool) -> [String: Any]? {
            let deadline = Date().addingTimeInterval(seconds)
            repeat {
                if let r = reports.dropFirst(after).first(where: { match($0.report) }) { return r.report }
                usleep(5_000)
            } while Date() < deadline
            return nil
        }

        /// The first line of `command` that `match` accepts, waiting up to `seconds`.
        func waitFor(_ command: String, seconds: Double = 5, _ match: ([String: Any]) -> Bool = { _ in true })
            -> [String: Any]?
        {
            let deadline = Date().addingTimeInterval(seconds)
            repeat {
                if let l = lines(command).first(where: { match($0.object) }) { return l.object }
                usleep(5_000)
            } while Date() < deadline
            return nil
        }

        private func acceptLoop() {
            defer { close(listener) }
            while !stopped.load(ordering: .relaxed) {
                var p = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
                guard poll(&p, 1, 20) > 0 else { continue }
                let c = accept(listener, nil, nil)
                guard c >= 0 else { continue }
                let n = accepted.withLock {
                    $0 += 1
                    return $0
                }
                Thread.detachNewThread { self.serve(c, connection: n) }
            }
        }

        private func serve(_ fd: Int32, connection: Int) {
            defer { close(fd) }
            var pending: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 65_536)
            while !stopped.load(ordering: .relaxed) {
                var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard poll(&p, 1, 20) > 0 else { continue }
                let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                guard n > 0 else { return }
                pending += buffer[0..<n]
                while let newline = pending.firstIndex(of: 0x0A) {
                    let line = String(decoding: pending[..<newline], as: UTF8.self)
                    pending.removeSubrange(...newline)
                    let object = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] ?? [:]
                    let command = object["cmd"] as? String ?? ""
                    received.withLock { $0.append((connection, line, Date())) }
                    let index = counts.withLock { counts in
                        defer { counts[command, default: 0] += 1 }
                        return counts[command, default: 0]
                    }
                    let id = object["id"] ?? NSNull()
                    let backends = (object["reports"] as? [[String: Any]] ?? []).compactMap { $0["backend"] as? String }
                    let reply: [String: Any]
                    switch answer(command, index) {
                    case .close: return
                    case .ok:
                        reply =
                            command == "backend.report"
                            ? ["id": id, "ok": true, "updated": backends.count, "unknown": [String]()]
                            : ["id": id, "ok": true]
                    case .unknown: reply = ["id": id, "ok": true, "updated": 0, "unknown": backends]
                    case .refuse(let code):
                        reply = ["id": id, "ok": false, "error": ["code": code, "message": "refused by the test"]]
                    }
                    var out = [UInt8](try! JSONSerialization.data(withJSONObject: reply))
                    out.append(0x0A)
                    _ = out.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                }
            }
        }
    }

    static func double(_ value: Any?) -> Double? { (value as? NSNumber)?.doubleValue }

    @Test func registersThenReportsLoadThatFollowsItsLiveSessions() throws {
        let peer = try ControlPeer()
        defer { peer.stop() }
        let launched = Date()
        let sim = try Sim([
            "--control", peer.path, "--register", "--backend-id", "sim-a", "--region", "eu-west", "--model", "whisper@3",
            "--model", "tts", "--capacity", "8", "--report-ms", "50", "--work-per-session", "0.5",
            "--service-time-ms", "40", "--slow", "2",
        ])
        // The upsert first, with the listen address and port the edge must send to, and the key.
        let upsert = try #require(peer.waitFor("backend.upsert"))
        #expect(peer.lines.first?.object["cmd"] as? String == "backend.upsert", "a report before the upsert")
        #expect(Self.int(upsert["id"]) != nil)
        let backend = try #require(upsert["backend"] as? [String: Any])
        #expect(backend["id"] as? String == "sim-a")
        #expect(backend["address"] as? String == "127.0.0.1")
        #expect(Self.int(backend["port"]) == Int(sim.port))
        #expect(backend["key"] as? String == Data(Self.keyText.utf8).base64EncodedString())
        #expect(backend["region"] as? String == "eu-west")
        #expect(backend["models"] as? [String] == ["whisper@3", "tts"])
        #expect(backend["media"] as? String == "opus")
        #expect(Self.int(backend["capacity"]) == 8)
        let registered = try #require(sim.waitFor("registered"))
        #expect(registered["backend"] as? String == "sim-a" && registered["key"] as? Bool == true)
        #expect(!sim.log.lines.withLock { $0 }.contains { $0.contains(backend["key"] as? String ?? "?") }, "the key logged")

        // Idle: no sessions, no queue; the service time is 40 ms × 2 (slow).
        let idle = try #require(peer.waitForReport { Self.int($0["sessions"]) == 0 })
        #expect(idle["backend"] as? String == "sim-a")
        #expect(Self.int(idle["capacity"]) == 8 && Self.int(idle["queue_depth"]) == 0)
        #expect(Self.double(idle["service_time_ms"]) == 80)

        // Three sessions through the backend protocol: queue depth round(3 × 0.5) = 2.
        let edges = (1...3).map { Edge(session: UInt64(40 + $0), sim: sim.port) }
        for e in edges { e.send(.start(Self.stream(model: "whisper@3"))) }
        #expect(peer.waitForReport { Self.int($0["sessions"]) == 3 }.flatMap { Self.int($0["queue_depth"]) } == 2)
        #expect(sim.waitFor("start")?["model"] as? String == "whisper@3")
        #expect(sim.waitFor("report") { Self.int($0["sessions"]) == 3 }.flatMap { Self.int($0["queue_depth"]) } == 2)
        edges[0].send(.end(.clientLeft))
        #expect(peer.waitForReport { Self.int($0["sessions"]) == 2 }.flatMap { Self.int($0["queue_depth"]) } == 1)
        let before = peer.reports.count
        edges[1].send(.end(.clientLeft))
        edges[2].send(.end(.clientLeft))
        #expect(peer.waitForReport(after: before) { Self.int($0["sessions"]) == 0 } != nil)

        // Every report is the model's: one backend, the same capacity and service time, the
        // queue following the sessions; all on one connection, one upsert; never more often
        // than the interval since the sim was launched.
        let reports = peer.reports
        for (connection, r) in reports {
            let sessions = try #require(Self.int(r["sessions"]))
            #expect(connection == 1 && r["backend"] as? String == "sim-a" && Self.int(r["capacity"]) == 8)
            #expect(Self.int(r["queue_depth"]) == Int((Double(sessions) * 0.5).rounded()))
            #expect(Self.double(r["service_time_ms"]) == 80)
        }
        #expect(peer.lines("backend.upsert").count == 1)
        #expect(Double(reports.count) <= Date().timeIntervalSince(launched) / 0.05 + 1)
        #expect(sim.events("control_error").isEmpty)
    }

    @Test func reportsWithoutRegisteringUnderADerivedID() throws {
        let peer = try ControlPeer()
        defer { peer.stop() }
        let sim = try Sim(["--control", peer.path, "--report-ms", "50"])
        let first = try #require(peer.waitForReport { _ in true })
        #expect(first["backend"] as? String == "sim-127.0.0.1-\(sim.port)")
        #expect(Self.int(first["capacity"]) == 100 && Self.int(first["sessions"]) == 0)
        #expect(Self.int(first["queue_depth"]) == 0 && Self.double(first["service_time_ms"]) == 40)
        // Five sessions × 0.1 = 0.5: rounded half away from zero, a queue of 1.
        let edges = (1...5).map { Edge(session: UInt64(70 + $0), sim: sim.port) }
        for e in edges { e.send(.start(Self.stream())) }
        #expect(peer.waitForReport { Self.int($0["sessions"]) == 5 }.flatMap { Self.int($0["queue_depth"]) } == 1)
        #expect(peer.lines("backend.upsert").isEmpty)
    }

    @Test func stopReportingAfterMsStopsReportsButNotTheSessions() throws {
        let peer = try ControlPeer()
        defer { peer.stop() }
        let sim = try Sim([
            "--control", peer.path, "--register", "--report-ms", "50", "--stop-reporting-after-ms", "800",
            "--keepalive-ms", "100",
        ])
        let edge = Edge(session: 90, sim: sim.port)
        edge.send(.start(Self.stream()))
        let stopped = try #require(sim.waitFor("reporting_stopped"))
        #expect(Self.int(stopped["after_ms"]) == 800)
        usleep(100_000)  // a report sent just before the line is read by the peer by now
        let count = peer.reports.count
        // The session goes on: the sim's keepalives come, and it answers the edge's.
        for t in UInt64(1)...5 {
            #expect(edge.control(seconds: 2) { $0.body.type == .keepalive } != nil)
            edge.send(.keepalive, now: t)
            #expect(edge.control(seconds: 2) { $0.body.type == .keepaliveAck }?.body == .keepaliveAck(echo: t))
        }
        #expect(peer.reports.count == count, "reports after --stop-reporting-after-ms")
        #expect(count >= 1)
        #expect(sim.process.isRunning)
    }

    @Test func refusalsAndClosedConnectionsAreLoggedAndReportingResumes() throws {
        // The first two reports refused, the third's connection closed, the fourth says the
        // engine does not know the sim (it restarted): the sim registers again and goes on.
        let peer = try ControlPeer { command, index in
            guard command == "backend.report" else { return .ok }
            switch index {
            case 0, 1: return .refuse("overloaded")
            case 2: return .close
            case 3: return .unknown
            default: return .ok
            }
        }
        defer { peer.stop() }
        let sim = try Sim(["--control", peer.path, "--register", "--backend-id", "sim-b", "--report-ms", "50"])
        let edge = Edge(session: 91, sim: sim.port)
        edge.send(.start(Self.stream()))
        let refused = try #require(sim.waitFor("control_error") { $0["code"] as? String == "overloaded" })
        #expect(refused["request"] as? String == "backend.report" && refused["backend"] as? String == "sim-b")
        #expect(sim.waitFor("control_error") { $0["code"] as? String == "connection_lost" } != nil)
        #expect(sim.waitFor("control_error") { $0["code"] as? String == "unknown_backend" } != nil)
        #expect(sim.waitFor("reporting") != nil, "no line saying reporting resumed")
        // Registered again on the new connection, then reports there.
        #expect(peer.waitForReport(after: 4) { _ in true } != nil)
        let upserts = peer.lines("backend.upsert")
        #expect(upserts.count == 2 && upserts.map(\.connection) == [1, 2])
        #expect(peer.connections == 2)
        #expect(peer.reports.dropFirst(3).allSatisfy { $0.connection == 2 })
        #expect(peer.waitForReport(after: 4) { Self.int($0["sessions"]) == 1 } != nil)
        // Each kind logged once, not once per interval.
        #expect(sim.events("control_error").filter { $0["code"] as? String == "overloaded" }.count == 1)
        // And the sessions never noticed.
        edge.send(.keepalive, now: 77)
        #expect(edge.control { $0.body.type == .keepaliveAck }?.body == .keepaliveAck(echo: 77))
        #expect(sim.process.isRunning)
    }

    @Test func anEngineNotThereYetOrRefusingTheUpsertIsWaitedFor() throws {
        let path = ControlPeer.freshPath()
        let sim = try Sim(["--control", path, "--register", "--report-ms", "50"])
        let missing = try #require(sim.waitFor("control_error"))
        #expect(missing["code"] as? String == "unreachable" && missing["request"] as? String == "connect")
        usleep(300_000)
        #expect(sim.events("control_error").count == 1, "one line for the engine missing, not one per interval")
        // A socket file nobody listens on: connection refused, the same.
        let stale = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { p in for (i, b) in path.utf8.enumerated() { p[i] = b } }
        _ = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(stale, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        #expect(sim.waitFor("control_error") { ($0["message"] as? String ?? "").contains("refused") } != nil)
        close(stale)
        // The engine comes up, and refuses the first upsert: the sim tries again, then reports.
        let peer = try ControlPeer(path: path) { command, index in
            command == "backend.upsert" && index == 0 ? .refuse("invalid_backend") : .ok
        }
        defer { peer.stop() }
        #expect(peer.waitForReport { _ in true } != nil)
        #expect(sim.waitFor("control_error") { $0["code"] as? String == "invalid_backend" } != nil)
        #expect(peer.lines("backend.upsert").count == 2)
        #expect(peer.lines.prefix(2).allSatisfy { $0.object["cmd"] as? String == "backend.upsert" })
        #expect(sim.waitFor("registered") != nil && sim.waitFor("control_connected") != nil)
    }

    @Test func slowMultipliesTheEchoDelay() throws {
        // 50 ms × 4: the echo cannot come back sooner than 200 ms after it was sent.
        let sim = try Sim(["--delay-ms", "50", "--slow", "4"], key: false)
        let edge = Edge(session: 1, sim: sim.port)
        let packet = Self.rtpPacket(sequence: 1, payload: [1, 2, 3])
        let sent = Date()
        edge.send(packet)
        #expect(edge.receive(seconds: 5) == packet)
        #expect(Date().timeIntervalSince(sent) >= 0.19)
    }

    @Test func badReportingFlagsAreRefusedWithUsageStatus() throws {
        let control = ["--control", "/tmp/vsim-flags.sock"]
        let cases: [([String], String)] = [
            (["--register"], "needs --control"),
            (["--report-ms", "500"], "needs --control"),
            (["--model", "m"], "needs --control"),
            (control + ["--region", "eu"], "--register"),
            (control + ["--model", "m"], "--register"),
            (["--control", ""], "--control"),
            (["--control", "/tmp/" + String(repeating: "x", count: 120)], "--control"),
            (control + ["--report-ms", "0"], "--report-ms"),
            (control + ["--report-ms=-5"], "--report-ms"),
            (control + ["--report-ms", "3600000"], "--report-ms"),
            (control + ["--capacity=-1"], "--capacity"),
            (control + ["--capacity", "0"], "--capacity"),
            (control + ["--capacity", "1000000000"], "--capacity"),
            (control + ["--work-per-session=-0.5"], "--work-per-session"),
            (control + ["--work-per-session", "nan"], "--work-per-session"),
            (control + ["--work-per-session", "1e9"], "--work-per-session"),
            (control + ["--service-time-ms", "0"], "--service-time-ms"),
            (control + ["--service-time-ms=-40"], "--service-time-ms"),
            (control + ["--service-time-ms", "inf"], "--service-time-ms"),
            (["--slow", "0"], "--slow"),
            (["--slow=-2"], "--slow"),
            (["--slow", "1e6"], "--slow"),
            (["--slow", "nan"], "--slow"),
            (control + ["--stop-reporting-after-ms", "0"], "--stop-reporting-after-ms"),
            (control + ["--stop-reporting-after-ms=-100"], "--stop-reporting-after-ms"),
            (control + ["--backend-id", ""], "--backend-id"),
            (control + ["--backend-id", "has space"], "--backend-id"),
            (control + ["--backend-id", String(repeating: "a", count: 65)], "--backend-id"),
            (control + ["--register", "--region", "eu\"west"], "--region"),
            (control + ["--register", "--model", "a@b@c"], "--model"),
            (control + ["--register", "--model", "@3"], "--model"),
            (control + ["--register", "--model", "whisper@"], "--model"),
            (control + ["--register", "--model", "two words"], "--model"),
            (control + ["--register", "--model", String(repeating: "m", count: 257)], "--model"),
            (control + ["--register", "--listen", "0.0.0.0:0"], "--register"),
        ]
        for (arguments, message) in cases {
            let (status, output) = try run(DemoTests.voxedge, ["backend-sim", "--listen", "127.0.0.1:0"] + arguments)
            #expect(status == 64 && output.contains(message), "\(arguments): \(status) \(output)")
        }
    }
}
