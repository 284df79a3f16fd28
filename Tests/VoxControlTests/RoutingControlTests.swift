import Foundation
import Glibc
import Testing
import VoxControl
import VoxEngine

/// The backend registry's commands from the outside (issue 18): `backend.upsert`,
/// `backend.report` (a thousand backends in one line), `backend.remove`, `backend.list`,
/// `backend.drain`/`undrain`, `route.explain`, and placement of `session.create` by model and
/// load — each with what a stranger sends: wrong types, limits, missing and unknown fields,
/// the same request twice, resources in use.
@Suite(.serialized) struct RoutingControlTests {
    static let key = ControlSocketTests.key

    static func rig(_ configure: (inout EngineConfiguration) -> Void = { _ in }) throws -> ControlRig {
        try ControlRig(maxSessions: 8) { c in
            c.backends = [
                .init(id: "gpu-a", address: .loopbackV4, port: 7001, models: ["whisper@3"]),
                .init(id: "gpu-b", address: .loopbackV4, port: 7002, models: ["whisper@2", "tts"]),
            ]
            c.routing.choices = 1
            configure(&c)
        }
    }

    static func backends(_ reply: [String: Any]?) -> [String: [String: Any]] {
        Dictionary(
            uniqueKeysWithValues: ((reply?["backends"] as? [[String: Any]]) ?? []).map { ($0["id"] as? String ?? "", $0) })
    }

    @Test func upsertAddsAndUpdatesAndRefusesWhatCannotBeABackend() throws {
        let rig = try Self.rig()
        defer { rig.shutdown() }
        let fd = rig.connect()
        defer { close(fd) }
        let add = #"{"id":1,"cmd":"backend.upsert","backend":{"id":"gpu-c","address":"127.0.0.1","port":7003,"models":["whisper@3"],"region":"eu-west","capacity":40}}"#
        let added = rig.call(fd, add)
        #expect(added?["ok"] as? Bool == true && added?["created"] as? Bool == true, "\(added ?? [:])")
        let entry = try #require(added?["backend"] as? [String: Any])
        #expect(entry["index"] as? Int == 2 && entry["state"] as? String == "active" && entry["capacity"] as? Int == 40)
        #expect(entry["models"] as? [String] == ["whisper@3"] && entry["region"] as? String == "eu-west")
        // The same request again (a retry) changes nothing and says so.
        let again = rig.call(fd, add)
        #expect(again?["ok"] as? Bool == true && again?["created"] as? Bool == false)
        #expect((again?["backend"] as? [String: Any])?["index"] as? Int == 2)
        // An update names only what changes.
        let update = rig.call(fd, #"{"id":2,"cmd":"backend.upsert","backend":{"id":"gpu-c","address":"127.0.0.1","port":7003,"capacity":80}}"#)
        #expect((update?["backend"] as? [String: Any])?["capacity"] as? Int == 80)
        #expect((update?["backend"] as? [String: Any])?["models"] as? [String] == ["whisper@3"])
        let list = Self.backends(rig.call(fd, #"{"id":3,"cmd":"backend.list"}"#))
        #expect(Set(list.keys) == ["gpu-a", "gpu-b", "gpu-c"])
        #expect(list["gpu-a"]?["index"] as? Int == 0 && list["gpu-a"]?["report"] is NSNull)

        let refused: [(String, String)] = [
            (#"{"id":"gpu-d","address":"127.0.0.1"}"#, "bad_argument"),  // no port
            (#"{"id":"gpu-d","port":7004}"#, "bad_argument"),  // no address
            (#"{"address":"127.0.0.1","port":7004}"#, "bad_argument"),  // no id
            (#"{"id":"gpu-d","address":"127.0.0.1","port":0}"#, "bad_argument"),
            (#"{"id":"gpu-d","address":"127.0.0.1","port":65536}"#, "bad_argument"),
            (#"{"id":"gpu-d","address":"127.0.0.1","port":-1}"#, "bad_argument"),
            (#"{"id":"gpu-d","address":"127.0.0.1","port":"7004"}"#, "bad_argument"),
            (#"{"id":"gpu-d","address":"127.0.0.1","port":7004.5}"#, "bad_argument"),
            (#"{"id":"gpu-d","address":"not-an-ip","port":7004}"#, "bad_argument"),
            (#"{"id":"gpu-d","address":"0.0.0.0","port":7004}"#, "bad_argument"),
            (#"{"id":"gpu-d","address":"255.255.255.255","port":7004}"#, "bad_argument"),
            (#"{"id":"gpu-d","address":"224.0.0.1","port":7004}"#, "bad_argument"),
            (#"{"id":"gpu-d","address":"::1","port":7004}"#, "bad_argument"),  // the other family
            (#"{"id":"gpu-d","address":"127.0.0.1","port":\#(rig.mediaPort)}"#, "bad_argument"),  // the engine's own
            (#"{"id":"has space","address":"127.0.0.1","port":7004}"#, "bad_argument"),
            (#"{"id":"","address":"127.0.0.1","port":7004}"#, "bad_argument"),
            (#"{"id":"gpu-d","address":"127.0.0.1","port":7004,"capacity":0}"#, "bad_argument"),
            (#"{"id":"gpu-d","address":"127.0.0.1","port":7004,"capacity":-5}"#, "bad_argument"),
            (#"{"id":"gpu-d","address":"127.0.0.1","port":7004,"capacity":18446744073709551616}"#, "bad_argument"),
            (#"{"id":"gpu-d","address":"127.0.0.1","port":7004,"models":"whisper"}"#, "bad_argument"),
            (#"{"id":"gpu-d","address":"127.0.0.1","port":7004,"models":[3]}"#, "bad_argument"),
            (#"{"id":"gpu-d","address":"127.0.0.1","port":7004,"models":["a b"]}"#, "bad_argument"),
            (#"{"id":"gpu-d","address":"127.0.0.1","port":7004,"media":"l16"}"#, "bad_argument"),
            (#"{"id":"gpu-d","address":"127.0.0.1","port":7004,"key":"c2hvcnQ="}"#, "bad_argument"),  // 5 bytes
            (#"{"id":"gpu-d","address":"127.0.0.1","port":7004,"key":"***"}"#, "bad_argument"),
            (#"{"id":"gpu-d","address":"127.0.0.1","port":7004,"draining":"yes"}"#, "bad_argument"),
            (#"{"id":"gpu-d","address":"127.0.0.1","port":7004,"colour":"blue"}"#, "bad_argument"),
            (#"{"id":"gpu-d","address":"127.0.0.1","port":7001}"#, "backend_exists"),  // gpu-a's endpoint
        ]
        for (i, (backend, code)) in refused.enumerated() {
            let reply = rig.call(fd, #"{"id":\#(10 + i),"cmd":"backend.upsert","backend":\#(backend)}"#)
            #expect(errorCode(reply) == code, "\(backend): \(reply ?? [:])")
        }
        for bad in [#""backend":"gpu-d""#, #""backend":null"#, #""backend":[1]"#, #""other":1"#] {
            #expect(errorCode(rig.call(fd, #"{"id":99,"cmd":"backend.upsert",\#(bad)}"#)) == "bad_argument", "\(bad)")
        }
        #expect(Self.backends(rig.call(fd, #"{"id":100,"cmd":"backend.list"}"#)).count == 3)
    }

    @Test func aThousandBackendsReportInOneLine() throws {
        let rig = try Self.rig()
        defer { rig.shutdown() }
        let fd = rig.connect()
        defer { close(fd) }
        for i in 0..<1000 {
            let reply = rig.call(
                fd,
                #"{"id":\#(i),"cmd":"backend.upsert","backend":{"id":"sim-\#(i)","address":"127.0.\#(i / 250).\#(1 + i % 250)","port":6000}}"#)
            #expect(reply?["ok"] as? Bool == true, "\(i): \(reply ?? [:])")
        }
        let reports = (0..<1000).map { i in
            #"{"backend":"sim-\#(i)","sessions":\#(i),"queue_depth":\#(i % 7),"service_time_ms":\#(20 + Double(i % 5) / 2),"capacity":\#(1000 + i)}"#
        }
        let line = #"{"id":2000,"cmd":"backend.report","reports":[\#(reports.joined(separator: ",")),{"backend":"elsewhere","sessions":1,"queue_depth":0,"service_time_ms":10}]}"#
        let reply = rig.call(fd, line)
        #expect(reply?["updated"] as? Int == 1000 && reply?["unknown"] as? [String] == ["elsewhere"], "\(reply ?? [:])")
        let list = Self.backends(rig.call(fd, #"{"id":2001,"cmd":"backend.list"}"#))
        #expect(list.count == 1002)
        let b = try #require(list["sim-999"]?["report"] as? [String: Any])
        #expect(b["sessions"] as? Int == 999 && b["queue_depth"] as? Int == 999 % 7 && b["service_time_ms"] as? Double == 22)
        #expect(list["sim-999"]?["capacity"] as? Int == 1999)
        // One bad report refuses the whole line, naming it; nothing of it is applied.
        let bad: [String] = [
            #"{"backend":"sim-1","sessions":-1,"queue_depth":0,"service_time_ms":1}"#,
            #"{"backend":"sim-1","sessions":1,"queue_depth":0}"#,
            #"{"backend":"sim-1","sessions":1,"queue_depth":0,"service_time_ms":"fast"}"#,
            #"{"backend":"sim-1","sessions":1,"queue_depth":0,"service_time_ms":1e300}"#,
            #"{"backend":"sim-1","sessions":1,"queue_depth":1.5,"service_time_ms":1}"#,
            #"{"backend":"sim-1","sessions":1,"queue_depth":0,"service_time_ms":true}"#,
            #"{"backend":7,"sessions":1,"queue_depth":0,"service_time_ms":1}"#,
            #""sim-1""#,
        ]
        for item in bad {
            let r = rig.call(fd, #"{"id":2002,"cmd":"backend.report","reports":[{"backend":"sim-0","sessions":555,"queue_depth":0,"service_time_ms":1},\#(item)]}"#)
            #expect(errorCode(r) == "bad_argument", "\(item): \(r ?? [:])")
            let message: String = ((r?["error"] as? [String: Any])?["message"] as? String) ?? ""
            #expect(message.hasPrefix("reports[1]"), "\(r ?? [:])")
        }
        let after = Self.backends(rig.call(fd, #"{"id":2003,"cmd":"backend.list"}"#))
        #expect((after["sim-0"]?["report"] as? [String: Any])?["sessions"] as? Int == 0)
        for missing in [#"{"id":1,"cmd":"backend.report"}"#, #"{"id":1,"cmd":"backend.report","reports":{}}"#] {
            #expect(errorCode(rig.call(fd, missing)) == "bad_argument")
        }
    }

    @Test func placementFollowsModelLoadAndDrainAndExplainSaysWhy() throws {
        let rig = try Self.rig()
        defer { rig.shutdown() }
        let fd = rig.connect()
        defer { close(fd) }
        // gpu-a: whisper@3, queue 5 × 40 ms; gpu-b: whisper@2 and tts, idle.
        _ = rig.call(fd, #"{"id":1,"cmd":"backend.report","reports":[{"backend":"gpu-a","sessions":3,"queue_depth":5,"service_time_ms":40},{"backend":"gpu-b","sessions":0,"queue_depth":0,"service_time_ms":40}]}"#)
        let explained = try #require(rig.call(fd, #"{"id":2,"cmd":"route.explain","model":"whisper"}"#))
        #expect(explained["chosen"] as? String == "gpu-b", "\(explained)")
        let candidates = try #require(explained["candidates"] as? [[String: Any]])
        #expect(candidates.map { $0["backend"] as? String } == ["gpu-b", "gpu-a"])
        #expect(candidates[1]["queue_wait_ms"] as? Double == 200 && candidates[1]["eligible"] as? Bool == true)
        #expect(candidates[0]["why"] as? String == "chosen: the better of the two drawn")
        // whisper@3 only on gpu-a: gpu-b is excluded by model, and says so.
        let v3 = try #require(rig.call(fd, #"{"id":3,"cmd":"route.explain","model":"whisper@3"}"#))
        #expect(v3["chosen"] as? String == "gpu-a")
        let b = try #require((v3["candidates"] as? [[String: Any]])?.first { $0["backend"] as? String == "gpu-b" })
        #expect(b["eligible"] as? Bool == false && b["why"] as? String == "does not serve the model")
        // A create goes where explain said, and says where.
        let created = rig.call(fd, #"{"id":4,"cmd":"session.create","client":"127.0.0.1:5000","client_key":"\#(Self.key)","model":"whisper@3"}"#)
        let session = try #require(created?["session"] as? [String: Any], "\(created ?? [:])")
        #expect(session["backend_id"] as? String == "gpu-a" && session["backend"] as? Int == 0)
        #expect(Self.backends(rig.call(fd, #"{"id":5,"cmd":"backend.list"}"#))["gpu-a"]?["sessions_here"] as? Int == 1)
        // A model nobody serves: no_backend, with the reason; explain shows it too.
        let none = rig.call(fd, #"{"id":6,"cmd":"session.create","client":"127.0.0.1:5001","client_key":"\#(Self.key)","model":"llama"}"#)
        #expect(errorCode(none) == "no_backend", "\(none ?? [:])")
        #expect(rig.call(fd, #"{"id":7,"cmd":"route.explain","model":"llama"}"#)?["failure"] as? String == "no backend serves model llama")
        for bad in [#""model":"a b""#, #""model":7"#, #""model":"@3""#] {
            #expect(errorCode(rig.call(fd, #"{"id":8,"cmd":"route.explain",\#(bad)}"#)) == "bad_argument", "\(bad)")
        }
        // Drained: no new session on it, not even when named; its own session goes on.
        #expect(rig.call(fd, #"{"id":9,"cmd":"backend.drain","backend":"gpu-a"}"#)?["ok"] as? Bool == true)
        let drained = rig.call(fd, #"{"id":10,"cmd":"session.create","client":"127.0.0.1:5002","client_key":"\#(Self.key)","model":"whisper@3"}"#)
        #expect(errorCode(drained) == "no_backend", "\(drained ?? [:])")
        let named = rig.call(fd, #"{"id":11,"cmd":"session.create","client":"127.0.0.1:5002","client_key":"\#(Self.key)","backend":"gpu-a"}"#)
        #expect(errorCode(named) == "no_backend", "\(named ?? [:])")
        #expect(rig.call(fd, #"{"id":12,"cmd":"session.list"}"#).flatMap { ($0["sessions"] as? [Any])?.count } == 1)
        // Removing a backend that carries a session is refused; drop the session and it goes.
        #expect(errorCode(rig.call(fd, #"{"id":13,"cmd":"backend.remove","backend":"gpu-a"}"#)) == "backend_in_use")
        #expect(errorCode(rig.call(fd, #"{"id":14,"cmd":"backend.upsert","backend":{"id":"gpu-a","address":"127.0.0.1","port":7009}}"#)) == "backend_in_use")
        #expect(rig.call(fd, #"{"id":15,"cmd":"backend.undrain","backend":"gpu-a"}"#)?["was_draining"] as? Bool == true)
        let id = try #require(session["id"] as? UInt64)
        #expect(rig.call(fd, #"{"id":16,"cmd":"session.drop","session":\#(id)}"#)?["ok"] as? Bool == true)
        #expect(rig.call(fd, #"{"id":17,"cmd":"backend.remove","backend":"gpu-a"}"#)?["removed"] as? String == "gpu-a")
        #expect(errorCode(rig.call(fd, #"{"id":18,"cmd":"backend.remove","backend":"gpu-a"}"#)) == "unknown_backend")
        #expect(errorCode(rig.call(fd, #"{"id":19,"cmd":"backend.drain","backend":"gpu-a"}"#)) == "unknown_backend")
        // Named by index or id; a name that is neither is refused.
        let byIndex = rig.call(fd, #"{"id":20,"cmd":"session.create","client":"127.0.0.1:5003","client_key":"\#(Self.key)","backend":1}"#)
        #expect((byIndex?["session"] as? [String: Any])?["backend_id"] as? String == "gpu-b", "\(byIndex ?? [:])")
        for bad in [#""backend":0"#, #""backend":-1"#, #""backend":"nobody""#, #""backend":true"#, #""backend":4294967297"#] {
            let r = rig.call(fd, #"{"id":21,"cmd":"session.create","client":"127.0.0.1:5004","client_key":"\#(Self.key)",\#(bad)}"#)
            #expect(["bad_argument", "unknown_backend"].contains(errorCode(r) ?? ""), "\(bad): \(r ?? [:])")
        }
    }

    @Test func theRegistryComesFromTheConfigurationAndItsMistakesAreRefused() throws {
        var c = EngineConfiguration()
        c.backends = [
            .init(id: "a", address: .loopbackV4, port: 7001, models: ["m@1"], capacity: 10),
            .init(address: .loopbackV4, port: 7002, draining: true),
        ]
        let registry = try c.makeRegistry()
        #expect(registry.all.map(\.spec.id) == ["a", "backend-1"])
        #expect(registry[1]?.draining == true)
        #expect(registry[0]?.spec.capacity == 10)
        var bad = c
        bad.backends.append(.init(id: "a", address: .loopbackV4, port: 7003))
        #expect(bad.problems().contains { $0.contains("id 'a' is taken") })
        bad = c
        bad.backends.append(.init(address: .loopbackV4, port: 7001))
        #expect(bad.problems().contains { $0.contains("listed twice") })
        bad = c
        bad.backends[0].models = ["bad model"]
        bad.backends[0].capacity = 0
        bad.backends[0].media = "mp3"
        bad.routing.choices = 0
        bad.routing.defaultModel = "@x"
        let problems = bad.problems().joined(separator: "; ")
        for part in ["model 'bad model'", "capacity 0", "media 'mp3'", "routing.choices 0", "routing.default_model"] {
            #expect(problems.contains(part), "\(part) in \(problems)")
        }
    }
}
