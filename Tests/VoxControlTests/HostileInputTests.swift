import Foundation
import Glibc
import Testing
import VoxControl
import VoxEngine
import VoxWire

/// What a hostile or careless control client sends (issue 14), through the real control
/// socket: nothing it sends may trap the engine, take a live call's flow or slot, or make the
/// engine send to itself. Each test keeps a live session and checks it is still served after.
@Suite(.serialized) struct HostileInputTests {
    typealias Engine = DrainTests.Engine

    /// A `voxedge run --io socket` (4 slots, 1 worker, 1 backend) with one live call whose
    /// audio goes through; `tag` 0...4, ports apart from the other suites' (32000...32767,
    /// below the ephemeral range).
    static func engine(tag: Int) throws -> (Engine, UInt64) {
        let engine = try Engine(tag: tag, drainTimeout: 1, base: UInt16(32_000 + Int(getpid() % 15) * 50 + tag * 10))
        let id = try #require(sessionID(engine.createCall(id: 1)), "the live call")
        #expect(engine.audioGoesThrough())
        return (engine, id)
    }

    static func sessionID(_ reply: [String: Any]?) -> UInt64? {
        ((reply?["session"] as? [String: Any])?["id"] as? NSNumber)?.uint64Value
    }

    static func message(_ reply: [String: Any]?) -> String {
        (reply?["error"] as? [String: Any])?["message"] as? String ?? ""
    }

    /// The ids `session.list` shows.
    static func listed(_ engine: Engine) -> [UInt64] {
        let sessions = engine.call(#"{"id":"l","cmd":"session.list"}"#)?["sessions"] as? [[String: Any]] ?? []
        return sessions.compactMap { ($0["id"] as? NSNumber)?.uint64Value }
    }

    static func create(_ engine: Engine, _ client: String, key: String = DrainTests.key, extra: String = "")
        -> [String: Any]?
    {
        engine.call(#"{"id":"c","cmd":"session.create","client":"\#(client)","client_key":"\#(key)"\#(extra)}"#)
    }

    /// Defect 1: every integer field of every command, given values no field accepts, is
    /// refused with `bad_argument` naming the field and its range; `session: -1` used to trap
    /// (`UInt64(-1)`, exit 132) and end every call. A value that fits the field's type but
    /// names nothing (Int64.max as an id) is `not_found`; `null` is the field's absence.
    @Test func integersFromTheWireAreRangeCheckedIntoTheirTypes() throws {
        let (engine, liveID) = try Self.engine(tag: 0)
        let values = [
            "-1", "-9223372036854775808", "9223372036854775807", "18446744073709551616", "1e300", "1.5", #""7""#,
            "true", "null",
        ]
        let fields: [(command: String, field: String, range: String)] = [
            ("session.drop", "session", "0...18446744073709551615"), ("session.drop", "slot", "0...3"),
            ("session.show", "session", "0...18446744073709551615"), ("session.show", "slot", "0...3"),
            ("session.create", "backend", "0...0"), ("session.create", "worker", "0...0"),
        ]
        var client = 6000
        for (command, field, range) in fields {
            for value in values {
                let request: String
                if command == "session.create" {
                    client += 1
                    request =
                        #"{"id":1,"cmd":"session.create","client":"127.0.0.1:\#(client)","client_key":"\#(DrainTests.key)","\#(field)":\#(value)}"#
                } else {
                    request = #"{"id":1,"cmd":"\#(command)","\#(field)":\#(value)}"#
                }
                let reply = engine.call(request)
                #expect(engine.process.isRunning, "the engine died on \(request)")
                guard engine.process.isRunning else { return }
                switch (field, value) {
                case ("session", "9223372036854775807"):
                    #expect(errorCode(reply) == "not_found", "\(request): \(String(describing: reply))")
                case ("backend", #""7""#):
                    // A string names a backend by id (routing): none is called "7".
                    #expect(errorCode(reply) == "unknown_backend", "\(request): \(String(describing: reply))")
                case (_, "null") where command == "session.create":
                    // Absent: the default backend and worker; the session is made, then ended.
                    #expect(reply?["ok"] as? Bool == true, "\(request): \(String(describing: reply))")
                    if let id = Self.sessionID(reply) {
                        #expect(engine.call(#"{"id":2,"cmd":"session.drop","session":\#(id)}"#)?["ok"] as? Bool == true)
                    }
                case (_, "null"):
                    #expect(errorCode(reply) == "bad_argument", "\(request): \(String(describing: reply))")
                default:
                    #expect(errorCode(reply) == "bad_argument", "\(request): \(String(describing: reply))")
                    let text = Self.message(reply)
                    #expect(text.contains("'\(field)'") && text.contains(range), "\(request): \(text)")
                }
                #expect(Self.listed(engine) == [liveID], "after \(request)")
            }
        }
        // The engine still serves the live call.
        #expect(engine.process.isRunning)
        #expect(Self.sessionID(engine.call(#"{"id":3,"cmd":"session.show","session":\#(liveID)}"#)) == liveID)
        #expect(engine.audioGoesThrough())
    }

    /// Defect 2: a slot past 32 bits was truncated (`Int32(truncatingIfNeeded:)`): show with
    /// slot 2^32 returned slot 0's session, and drop with 2^32 + 1 ended slot 1's call.
    @Test func slotsPastThirtyTwoBitsAreRefusedNotTruncated() throws {
        let (engine, first) = try Self.engine(tag: 1)
        let second = try #require(Self.sessionID(Self.create(engine, "127.0.0.1:6001")))
        #expect(first >> 32 == 0 && second >> 32 == 1, "slots 0 and 1")
        for slot in ["4294967296", "4294967297"] {
            for command in ["session.show", "session.drop"] {
                let reply = engine.call(#"{"id":1,"cmd":"\#(command)","slot":\#(slot)}"#)
                #expect(errorCode(reply) == "bad_argument", "\(command) slot \(slot): \(String(describing: reply))")
                #expect(Self.message(reply).contains("0...3"))
            }
        }
        #expect(Set(Self.listed(engine)) == [first, second])
        #expect(Self.sessionID(engine.call(#"{"id":2,"cmd":"session.show","slot":0}"#)) == first)
        #expect(Self.sessionID(engine.call(#"{"id":3,"cmd":"session.show","slot":1}"#)) == second)
        #expect(engine.audioGoesThrough())
    }

    /// Defect 8: clients that are no one peer, or the engine itself (with equal keys, one
    /// spoofed datagram to a session whose client was the engine's own media address looped
    /// forever), and a client key reused as the edge key: each refused with its reason.
    @Test func createRefusesClientsThatAreNoPeerOrTheEngineItself() throws {
        let (engine, liveID) = try Self.engine(tag: 2)
        let media = engine.mediaPort
        let backendPorts = (media + 1)...(media + 4)
        let refusals: [(client: String, extra: String, reason: String)] = [
            ("127.0.0.1:\(media)", "", "own media address and port"),
            ("127.0.0.1:\(backendPorts.lowerBound)", "", "backend-leg ports"),
            ("127.0.0.1:\(backendPorts.upperBound)", "", "backend-leg ports"),
            ("0.0.0.0:5000", "", "unspecified"),
            ("[::]:5000", "", "unspecified"),
            ("255.255.255.255:5000", "", "broadcast"),
            ("224.0.0.1:5000", "", "multicast"),
            ("239.255.255.250:1900", "", "multicast"),
            ("[ff02::1]:5000", "", "multicast"),
            ("[2001:db8::1]:5000", "", "IPv6"),
            ("2001:db8::1:5000", "", "ambiguous"),
            ("127.0.0.1:0", "", "port 0"),
            ("127.0.0.1:6002", #","edge_key":"\#(DrainTests.key)""#, "'edge_key' equals 'client_key'"),
        ]
        for (client, extra, reason) in refusals {
            let reply = Self.create(engine, client, extra: extra)
            #expect(errorCode(reply) == "bad_argument", "\(client): \(String(describing: reply))")
            #expect(Self.message(reply).contains(reason), "\(client): \(Self.message(reply))")
        }
        // Just past the backend-leg ports is an ordinary client.
        let next = Self.create(engine, "127.0.0.1:\(backendPorts.upperBound + 1)")
        #expect(next?["ok"] as? Bool == true, "\(String(describing: next))")
        #expect(Set(Self.listed(engine)).contains(liveID) && Self.listed(engine).count == 2)
        #expect(engine.audioGoesThrough())
    }

    /// The configuration's backends go through the same check as clients (one function).
    @Test func backendsGetTheSameCheckAsClients() {
        var c = EngineConfiguration()
        c.mediaAddress = IPAddress("198.18.0.1")!
        c.mediaPort = 40000
        c.backendAddress = IPAddress("198.18.0.1")!
        c.backendPortBase = 50000
        c.maxSessions = 10
        c.backends = [
            .init(address: IPAddress("198.18.0.3")!, port: 5004), .init(address: IPAddress("198.18.0.1")!, port: 40000),
            .init(address: IPAddress("198.18.0.1")!, port: 50009), .init(address: IPAddress("224.0.0.9")!, port: 5004),
            .init(address: IPAddress("2001:db8::3")!, port: 5004), .init(address: IPAddress("198.18.0.3")!, port: 0),
        ]
        let problems = c.problems()
        #expect(problems.count == 5, "\(problems)")
        for i in 1...5 { #expect(problems.contains { $0.hasPrefix("backends[\(i)]") }, "\(problems)") }
        #expect(c.peerProblem(IPAddress("198.18.0.1")!, 50010) == nil)
        #expect(c.peerProblem(IPAddress("198.18.0.1")!, 50000) != nil)
    }

    /// Defect 3: a second session on a client 5-tuple a live call holds took the call's flow
    /// (its packets then failed the newcomer's keys) and, dropped, removed the flow from under
    /// the first. Now it is refused naming the holder; the same request again (a retry after a
    /// lost reply) gets the same session, and takes no second slot.
    @Test func aClientFlowBelongsToOneSessionAndARetryGetsItBack() throws {
        let (engine, liveID) = try Self.engine(tag: 3)
        let client = "127.0.0.1:\(engine.clientPort)"
        let first = engine.createCall(id: 2)
        #expect(Self.sessionID(first) == liveID, "an identical create is a retry: \(String(describing: first))")
        let firstKey = (first?["session"] as? [String: Any])?["edge_key"] as? String
        #expect(firstKey != nil)
        let otherKey = Data((0..<30).map { UInt8(200 - $0) }).base64EncodedString()
        let conflicting: [(key: String, extra: String)] = [
            (otherKey, ""),
            (DrainTests.key, #","edge_key":"\#(otherKey)""#),
            (DrainTests.key, #","backend":0,"worker":0,"profile":"AES_CM_128_HMAC_SHA1_32""#),
        ]
        for (key, extra) in conflicting {
            let reply = Self.create(engine, client, key: key, extra: extra)
            #expect(errorCode(reply) == "flow_in_use", "\(extra): \(String(describing: reply))")
            let text = Self.message(reply)
            #expect(text.contains("session \(liveID)") && text.contains("slot 0"), "\(text)")
        }
        #expect(engine.audioGoesThrough(), "the first call keeps its flow")
        // Retries, with and without the edge key the first reply gave: the same session each time.
        for extra in ["", #","edge_key":"\#(firstKey ?? "")","backend":0"#] {
            let retry = Self.create(engine, client, extra: extra)
            #expect(Self.sessionID(retry) == liveID, "\(String(describing: retry))")
            #expect((retry?["session"] as? [String: Any])?["edge_key"] as? String == firstKey)
        }
        #expect(Self.listed(engine) == [liveID])
        #expect(engine.audioGoesThrough())
        // No slot was taken by the retries: the other three are all still free.
        for port in 6001...6003 { #expect(Self.create(engine, "127.0.0.1:\(port)")?["ok"] as? Bool == true) }
        #expect(errorCode(Self.create(engine, "127.0.0.1:6004")) == "full")
        // Dropping works as before, and the flow is free for a new session afterwards.
        #expect(engine.call(#"{"id":5,"cmd":"session.drop","session":\#(liveID)}"#)?["ok"] as? Bool == true)
        #expect(!Self.listed(engine).contains(liveID))
        // (The dropped slot is free once its worker has applied the drop.)
        var again: UInt64? = nil
        for _ in 0..<200 where again == nil {
            let reply = engine.createCall(id: 6)
            again = Self.sessionID(reply)
            if again == nil { usleep(10_000) }
        }
        #expect(again != nil && again != liveID)
        #expect(engine.audioGoesThrough())
    }

    /// Defect 10: a JSON scalar is JSON, just not a request: `bad_request` like an array (it
    /// was `bad_json`, "not valid JSON"), as docs/operations.md says. Blank lines get no reply.
    @Test func jsonThatIsNoObjectIsABadRequestAndBlankLinesGetNoReply() throws {
        let rig = try ControlRig()
        defer { rig.shutdown() }
        let fd = rig.connect()
        defer { close(fd) }
        for line in ["5", "-1.5", #""stats""#, "null", "true", "[1,2]"] {
            let reply = rig.call(fd, line)
            #expect(errorCode(reply) == "bad_request", "\(line): \(String(describing: reply))")
        }
        #expect(errorCode(rig.call(fd, "{nope")) == "bad_json")
        ControlRig.send(fd, Array("\n  \t\r\n".utf8))
        #expect(rig.call(fd, #"{"id":"after","cmd":"stats"}"#)?["id"] as? String == "after")
    }

    /// Defect 7: on the socket port a backend-leg port someone else holds made the session's
    /// leg silently absent (`session.create` answered ok, audio counted `toBackend` into
    /// nowhere). Now that create fails naming the port, and the next one takes another slot.
    @Test func aBackendLegPortTakenByAnotherProcessFailsTheCreate() throws {
        let (engine, liveID) = try Self.engine(tag: 4)
        // The live call is in slot 0 (port base + 1); slot 1's port is taken by "someone else".
        let taken = Engine.udp(bind: engine.mediaPort + 2)
        defer { close(taken) }
        let refused = Self.create(engine, "127.0.0.1:6001")
        #expect(errorCode(refused) == "backend_port_unavailable", "\(String(describing: refused))")
        #expect(Self.message(refused).contains("127.0.0.1:\(engine.mediaPort + 2)"), "\(Self.message(refused))")
        #expect(Self.listed(engine) == [liveID])
        let next = Self.create(engine, "127.0.0.1:6001")
        #expect(next?["ok"] as? Bool == true, "\(String(describing: next))")
        #expect((next?["session"] as? [String: Any])?["slot"] as? Int == 2)
        #expect(engine.audioGoesThrough())
    }
}
