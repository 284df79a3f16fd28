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
}
