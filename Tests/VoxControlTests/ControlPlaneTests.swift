import Foundation
import Glibc
import Logging
import Synchronization
import Testing
import VoxControl
import VoxEngine

/// Plain HTTP/1.1 GET against the metrics listener, one request per connection.
enum HTTP {
    static func get(_ port: UInt16, _ path: String) -> (status: Int, body: String) {
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(s) }
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = port.bigEndian
        a.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        _ = withUnsafePointer(to: &a) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        ControlRig.send(s, Array("GET \(path) HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".utf8))
        var response: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(s, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            response += buffer[0..<n]
        }
        let text = String(decoding: response, as: UTF8.self)
        let status = Int(text.split(separator: " ").dropFirst().first ?? "") ?? 0
        let body = text.components(separatedBy: "\r\n\r\n").dropFirst().joined(separator: "\r\n\r\n")
        return (status, body)
    }
}

/// Every log line, rendered with its metadata, for tests that read the log.
final class LogRecorder: @unchecked Sendable {
    let lines = Mutex<[String]>([])

    var logger: Logger {
        var l = Logger(label: "test") { _ in RecordingLogHandler(recorder: self) }
        l.logLevel = .trace
        return l
    }

    struct RecordingLogHandler: LogHandler {
        let recorder: LogRecorder
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(
            level: Logger.Level, message: Logger.Message, metadata extra: Logger.Metadata?, source: String, file: String,
            function: String, line: UInt
        ) {
            let all = metadata.merging(extra ?? [:]) { $1 }
            let rendered = all.keys.sorted().map { "\($0)=\(all[$0]!)" }.joined(separator: " ")
            recorder.lines.withLock { $0.append("\(level) \(message) \(rendered)") }
        }
    }
}

/// Resident memory of this process (the engine under test lives in it), in bytes.
func residentBytes() -> Int {
    let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
    let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
    return (Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0) * 1024
}

/// Runs a program, returns its exit status and standard output.
func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
    let p = Process()
    let out = Pipe()
    p.executableURL = URL(fileURLWithPath: executable)
    p.arguments = arguments
    p.standardOutput = out
    p.standardError = out
    try p.run()
    let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    p.waitUntilExit()
    return (p.terminationStatus, text)
}

/// The control socket on swift-nio, tried as a hostile client would (issue 13): no client
/// can starve another, grow the engine's memory, lock others out, or get in without the
/// right credentials; no key reaches a log line; metrics and health answer regardless.
@Suite(.serialized) struct ControlPlaneTests {
    static let key = Data((0..<30).map { UInt8($0) }).base64EncodedString()

    @Test func aFloodingClientDoesNotStarveAnotherNorHealth() throws {
        let rig = try ControlRig()
        defer { rig.shutdown() }
        let flooder = rig.connect()
        defer { close(flooder) }
        let stop = Atomic<Bool>(false)
        let answered = Atomic<Int>(0)
        let writerDone = DispatchSemaphore(value: 0)
        let readerDone = DispatchSemaphore(value: 0)
        // The flood: requests as fast as the socket takes them (at most 30 s), replies read
        // as fast as they come.
        Thread {
            let request = Array(#"{"id":1,"cmd":"session.list"}"#.utf8) + [0x0A]
            let batch = Array([[UInt8]](repeating: request, count: 256).joined())
            let started = Date()
            while !stop.load(ordering: .acquiring), Date().timeIntervalSince(started) < 30 {
                let n = batch.withUnsafeBytes { Glibc.send(flooder, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                if n <= 0 { break }
            }
            writerDone.signal()
        }.start()
        Thread {
            var buffer = [UInt8](repeating: 0, count: 1 << 16)
            while true {
                let n = buffer.withUnsafeMutableBytes { recv(flooder, $0.baseAddress, $0.count, 0) }
                if n <= 0 { break }
                answered.add(buffer[0..<n].reduce(0) { $0 + ($1 == 0x0A ? 1 : 0) }, ordering: .relaxed)
            }
            readerDone.signal()
        }.start()
        // Wait until the flood is being served.
        for _ in 0..<300 where answered.load(ordering: .relaxed) < 2000 { usleep(10_000) }
        #expect(answered.load(ordering: .relaxed) >= 2000)
        let other = rig.connect()
        defer { close(other) }
        let before = answered.load(ordering: .relaxed)
        let reply = rig.call(other, #"{"id":"other","cmd":"stats"}"#)
        #expect(reply?["ok"] as? Bool == true && reply?["id"] as? String == "other")
        // Health and metrics answer too, on their own listener.
        #expect(HTTP.get(rig.metrics.port, "/healthz").status == 200)
        #expect(HTTP.get(rig.metrics.port, "/metrics").status == 200)
        // ... and the flood was still being served meanwhile (it was not simply cut off).
        for _ in 0..<300 where answered.load(ordering: .relaxed) <= before { usleep(10_000) }
        #expect(answered.load(ordering: .relaxed) > before)
        stop.store(true, ordering: .releasing)
        writerDone.wait()
        shutdown(flooder, Int32(SHUT_WR))
        readerDone.wait()
    }

    @Test func aClientThatNeverReadsIsClosedAtTheReplyCap() throws {
        let rig = try ControlRig()
        defer { rig.shutdown() }
        // Warm up: the first requests allocate what every later one reuses.
        let warm = rig.connect()
        for i in 0..<200 { _ = rig.call(warm, #"{"id":\#(i),"cmd":"stats"}"#) }
        close(warm)
        let rssBefore = residentBytes()
        let fd = rig.connect()
        defer { close(fd) }
        // 16 MiB of `stats` requests (≈ 700k; their replies would be hundreds of MiB), and
        // never a read.
        let request = Array(#"{"id":1,"cmd":"stats"}"#.utf8) + [0x0A]
        let batch = Array([[UInt8]](repeating: request, count: 1024).joined())
        var sent = 0
        var refused = false
        while sent < 16 << 20 {
            let n = batch.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 {
                refused = true
                break
            }
            sent += n
        }
        let rssAfter = residentBytes()
        print("never-reading client: closed after \(sent) bytes of requests; RSS \(rssBefore >> 20) MiB -> \(rssAfter >> 20) MiB")
        #expect(refused, "the engine kept taking requests whose replies nobody reads")
        #expect(rssAfter - rssBefore < 64 << 20)
        // The engine says why it closed the client, and everyone else is still served.
        let scrape = HTTP.get(rig.metrics.port, "/metrics").body
        #expect(scrape.contains(#"voxedge_control_closed_total{reason="reply_queue_full"} 1"#))
        let other = rig.connect()
        defer { close(other) }
        #expect(rig.call(other, #"{"id":2,"cmd":"stats"}"#)?["ok"] as? Bool == true)
    }

    @Test func twoThousandIdleConnectionsAndANewClient() throws {
        // ulimit -n: both ends of every connection live in this process.
        var limit = rlimit()
        getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
        limit.rlim_cur = limit.rlim_max
        setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
        try #require(limit.rlim_cur >= 6000, "needs ulimit -n of at least 6000")
        let rig = try ControlRig()
        defer { rig.shutdown() }
        let idle = (0..<2000).map { _ in rig.connect() }
        defer { idle.forEach { close($0) } }
        // A new client is answered, or told `busy` — never left hanging.
        let fresh = rig.connect()
        defer { close(fresh) }
        let reply = rig.call(fresh, #"{"id":1,"cmd":"stats"}"#)
        #expect(reply?["ok"] as? Bool == true || errorCode(reply) == "busy", "\(String(describing: reply))")
        // The first idle clients are still served; the ones past the limit were told `busy`.
        #expect(rig.call(idle[0], #"{"id":2,"cmd":"stats"}"#)?["ok"] as? Bool == true)
        let last = ControlRig.readLine(idle[1999])
        #expect(errorCode(last) == "busy")
        let stats = rig.call(idle[1], #"{"id":3,"cmd":"stats"}"#)
        let clients = (stats?["control"] as? [String: Any])?["clients"] as? Int ?? 0
        #expect(clients > 0 && clients <= ControlLimits().maxClients, "\(clients)")
    }

    @Test func anIdleClientIsClosedWithAReason() throws {
        var limits = ControlLimits()
        limits.idleTimeout = .seconds(1)
        let rig = try ControlRig(limits: limits)
        defer { rig.shutdown() }
        let fd = rig.connect()
        defer { close(fd) }
        #expect(errorCode(ControlRig.readLine(fd)) == "idle_timeout")
        var byte: UInt8 = 0
        #expect(recv(fd, &byte, 1, 0) == 0)
    }

    /// The client as another user (`setpriv`, uid/gid 65534), with the socket opened to
    /// everyone so that only SO_PEERCRED stands in the way.
    func askAsNobody(_ rig: ControlRig) throws -> String {
        chmod(rig.path, 0o666)
        let client = """
            import socket, sys
            s = socket.socket(socket.AF_UNIX)
            s.connect(sys.argv[1])
            def line():
                data = b''
                while b'\\n' not in data:
                    chunk = s.recv(65536)
                    if not chunk: break
                    data += chunk
                return data.split(b'\\n')[0].decode()
            # A refused peer is told so at once, before it says anything.
            s.settimeout(1)
            try:
                first = line()
            except socket.timeout:
                s.settimeout(5)
                s.sendall(b'{"id":1,"cmd":"stats"}\\n')
                first = line()
            s.settimeout(1)
            try:
                more = s.recv(1)
                state = 'EOF' if not more else 'MORE'
            except socket.timeout:
                state = 'OPEN'
            print(first)
            print(state)
            """
        let (status, output) = try run(
            "/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", client, rig.path])
        #expect(status == 0, "\(output)")
        return output
    }

    @Test func aPeerOutsideTheAllowedUIDsAndGIDsIsRefused() throws {
        guard getuid() == 0 else {
            if ProcessInfo.processInfo.environment["CI"] == "true" { Issue.record("needs root to run a client as another uid") }
            return
        }
        let recorder = LogRecorder()
        let rig = try ControlRig(logger: recorder.logger)
        defer { rig.shutdown() }
        let refused = try askAsNobody(rig)
        let lines = refused.split(separator: "\n")
        let reply = try JSONSerialization.jsonObject(with: Data((lines.first ?? "").utf8)) as? [String: Any]
        #expect(errorCode(reply) == "forbidden", "\(refused)")
        #expect(lines.last == "EOF", "\(refused)")
        #expect(recorder.lines.withLock { $0.contains { $0.contains("peer not allowed") && $0.contains("peer_uid=65534") } })
        // Root, the engine's own uid here, is served.
        let fd = rig.connect()
        defer { close(fd) }
        #expect(rig.call(fd, #"{"id":1,"cmd":"stats"}"#)?["ok"] as? Bool == true)

        // With its group allowed, the same client is served.
        let open = try ControlRig(peers: PeerPolicy(uids: [0], gids: [65534]))
        defer { open.shutdown() }
        let served = try askAsNobody(open)
        let ok = try JSONSerialization.jsonObject(with: Data((served.split(separator: "\n").first ?? "").utf8)) as? [String: Any]
        #expect(ok?["ok"] as? Bool == true, "\(served)")
        #expect(served.hasSuffix("OPEN\n"), "\(served)")
    }

    @Test func oversizedLinesGarbageAndClientsThatLeaveMidLine() throws {
        let rig = try ControlRig()
        defer { rig.shutdown() }
        let fd = rig.connect()
        defer { close(fd) }
        // Just under 1 MiB: a request like any other.
        let padding = String(repeating: "A", count: (1 << 20) - 64)
        #expect(rig.call(fd, #"{"id":1,"cmd":"stats","pad":"\#(padding)"}"#)?["ok"] as? Bool == true)
        // One byte over: one error, the line skipped, the connection usable.
        ControlRig.send(fd, [UInt8](repeating: 0x41, count: (1 << 20) + 1) + [0x0A])
        #expect(errorCode(ControlRig.readLine(fd)) == "line_too_long")
        #expect(rig.call(fd, #"{"id":2,"cmd":"stats"}"#)?["id"] as? Int == 2)
        // Garbage of every kind, each answered with an error, in order.
        let garbage: [[UInt8]] = [[0, 1, 2, 0xFF, 0xFE], Array("}{".utf8), Array("\"just a string\"".utf8), Array("null".utf8), [0xC3, 0x28]]
        for g in garbage {
            ControlRig.send(fd, g + [0x0A])
            let reply = ControlRig.readLine(fd)
            #expect(reply?["ok"] as? Bool == false && reply?["id"] is NSNull, "\(g)")
        }
        // Clients that go away: mid-line, mid-way through an oversized line, at once.
        for bytes in [Array(#"{"id":1,"cmd":"st"#.utf8), [UInt8](repeating: 0x42, count: 3 << 20), []] {
            let gone = rig.connect()
            ControlRig.send(gone, bytes)
            close(gone)
        }
        // Nothing of theirs is left: only this client remains, and it is served.
        var clients = -1
        for _ in 0..<500 {
            clients = (rig.call(fd, #"{"id":3,"cmd":"stats"}"#)?["control"] as? [String: Any])?["clients"] as? Int ?? -1
            if clients == 1 { break }
            usleep(10_000)
        }
        #expect(clients == 1)
    }

    @Test func noKeyInAnyLogLineOrReply() throws {
        let recorder = LogRecorder()
        let rig = try ControlRig(logger: recorder.logger)
        defer { rig.shutdown() }
        let fd = rig.connect()
        defer { close(fd) }
        let clientKey = Data((100..<130).map { UInt8($0) }).base64EncodedString()
        let edgeKey = Data((200..<230).map { UInt8($0) }).base64EncodedString()
        let shortKey = Data((50..<70).map { UInt8($0) }).base64EncodedString()
        var replies: [String] = []
        func ask(_ line: String) -> [String: Any]? {
            ControlRig.send(fd, Array((line + "\n").utf8))
            let reply = ControlRig.readLine(fd)
            if let reply, let data = try? JSONSerialization.data(withJSONObject: reply) {
                replies.append(String(decoding: data, as: UTF8.self))
            }
            return reply
        }
        let created = ask(#"{"id":1,"cmd":"session.create","client":"127.0.0.1:6000","client_key":"\#(clientKey)","edge_key":"\#(edgeKey)"}"#)
        #expect((created?["session"] as? [String: Any])?["edge_key"] as? String == edgeKey)
        let generated = ask(#"{"id":2,"cmd":"session.create","client":"127.0.0.1:6001","client_key":"\#(clientKey)"}"#)
        let generatedKey = try #require((generated?["session"] as? [String: Any])?["edge_key"] as? String)
        _ = ask(#"{"id":3,"cmd":"session.create","client":"127.0.0.1:6002","client_key":"\#(shortKey)"}"#)
        _ = ask(#"{"id":4,"cmd":"session.create","client":"127.0.0.1:6003","client_key":"\#(clientKey)","edge_key":"\#(shortKey)"}"#)
        _ = ask(#"{"id":5,"cmd":"nope","client_key":"\#(clientKey)","secret":"\#(edgeKey)"}"#)
        _ = ask(#"{"id":6,"cmd":"session.create","client_key":"\#(clientKey)""#)
        _ = ask(#"{"id":7,"cmd":"session.list"}"#)
        _ = ask(#"{"id":8,"cmd":"session.show","slot":0}"#)
        _ = ask(#"{"id":9,"cmd":"stats"}"#)
        _ = ask(#"{"id":10,"cmd":"session.drop","slot":0}"#)
        let lines = recorder.lines.withLock { $0 }
        // Who did what is there...
        #expect(lines.contains { $0.contains("cmd=session.create") && $0.contains("peer_uid=0") && $0.contains("result=ok") })
        #expect(lines.contains { $0.contains("cmd=session.drop") })
        // ... and no key, in any line.
        for secret in [clientKey, edgeKey, generatedKey, shortKey] {
            #expect(!lines.contains { $0.contains(secret) }, "a key in the log")
        }
        // Replies: only the two successful creates carry an edge key, each its own.
        for (i, reply) in replies.enumerated() {
            #expect(!reply.contains(clientKey) && !reply.contains(shortKey), "reply \(i)")
            if i > 1 { #expect(!reply.contains(edgeKey) && !reply.contains(generatedKey), "reply \(i): \(reply)") }
        }
    }

    @Test func metricsParseAndMatchCtlStats() throws {
        guard FileManager.default.isExecutableFile(atPath: DemoTests.voxedge) else {
            Issue.record("no voxedge executable at \(DemoTests.voxedge): run `swift build` first")
            return
        }
        let rig = try ControlRig()
        defer { rig.shutdown() }
        let fd = rig.connect()
        defer { close(fd) }
        #expect(rig.call(fd, #"{"id":1,"cmd":"session.create","client":"127.0.0.1:7000","client_key":"\#(Self.key)"}"#)?["ok"] as? Bool == true)
        _ = rig.call(fd, #"{"id":2,"cmd":"nope"}"#)
        // Packets from nowhere: the worker drops them, and both views must count them.
        let udp = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(udp) }
        var to = sockaddr_in()
        to.sin_family = sa_family_t(AF_INET)
        to.sin_port = rig.mediaPort.bigEndian
        to.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let rtp: [UInt8] = [0x80, 0x60, 0, 1] + [UInt8](repeating: 0, count: 40)
        for _ in 0..<25 {
            _ = withUnsafePointer(to: &to) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(udp, rtp, rtp.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        }
        func dropped(_ stats: [String: Any]?) -> Int {
            ((stats?["workers"] as? [[String: Any]])?.first?["verdicts"] as? [String: Any])?["dropped"] as? Int ?? 0
        }
        for _ in 0..<500 where dropped(rig.call(fd, #"{"id":3,"cmd":"stats"}"#)) < 25 { usleep(10_000) }
        // `voxedge ctl stats --json`, then a scrape; nothing changes in between.
        let ctl = try run(DemoTests.voxedge, ["ctl", "stats", "--json", "--socket", rig.path])
        #expect(ctl.status == 0, "\(ctl.output)")
        let stats = try #require(try JSONSerialization.jsonObject(with: Data(ctl.output.utf8)) as? [String: Any])
        let scrape = HTTP.get(rig.metrics.port, "/metrics")
        #expect(scrape.status == 200)
        // Prometheus' own parser: every sample as [name, labels, value].
        let parser = """
            import json, sys
            from prometheus_client.parser import text_string_to_metric_families
            out = []
            for family in text_string_to_metric_families(sys.stdin.read()):
                for s in family.samples:
                    out.append([s.name, s.labels, s.value])
            print(json.dumps(out))
            """
        let p = Process()
        let input = Pipe()
        let output = Pipe()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", parser]
        p.standardInput = input
        p.standardOutput = output
        try p.run()
        input.fileHandleForWriting.write(Data(scrape.body.utf8))
        try input.fileHandleForWriting.close()
        let parsed = output.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0, "prometheus_client could not parse /metrics:\n\(scrape.body)")
        let samples = try #require(try JSONSerialization.jsonObject(with: parsed) as? [[Any]])
        func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
            samples.first { $0[0] as? String == name && ($0[1] as? [String: String] ?? [:]) == labels }?[2] as? Double
        }
        let workers = try #require(stats["workers"] as? [[String: Any]])
        #expect(workers.count == 1)
        for w in workers {
            let worker = "\(w["worker"] as? Int ?? -1)"
            for (verdict, count) in w["verdicts"] as? [String: Int] ?? [:] {
                #expect(value("voxedge_packets_total", ["worker": worker, "verdict": verdict]) == Double(count), "\(verdict)")
            }
            for (reason, count) in w["drops"] as? [String: Int] ?? [:] {
                #expect(value("voxedge_drops_total", ["worker": worker, "reason": reason]) == Double(count), "\(reason)")
            }
            #expect(value("voxedge_received_packets_total", ["worker": worker]) == Double(w["received"] as? Int ?? -1))
            #expect(value("voxedge_handed_in_packets_total", ["worker": worker]) == Double(w["handed_in"] as? Int ?? -1))
            #expect(value("voxedge_bursts_total", ["worker": worker]) == Double(w["bursts"] as? Int ?? -1))
            #expect(value("voxedge_worker_busy_seconds_total", ["worker": worker]) != nil)
            #expect(value("voxedge_worker_heartbeat_age_seconds", ["worker": worker]) != nil)
        }
        #expect(value("voxedge_packets_total", ["worker": "0", "verdict": "dropped"]) ?? 0 >= 25)
        #expect(value("voxedge_sessions") == Double(stats["sessions"] as? Int ?? -1))
        #expect(value("voxedge_session_capacity") == Double(stats["capacity"] as? Int ?? -1))
        let control = stats["control"] as? [String: Any] ?? [:]
        #expect(value("voxedge_control_requests_total") == Double(control["requests"] as? Int ?? -1))
        #expect(value("voxedge_control_errors_total") == Double(control["errors"] as? Int ?? -1))
        for b in stats["backends"] as? [[String: Any]] ?? [] {
            let labels = ["backend": "\(b["index"] ?? "")", "address": "\(b["address"] ?? "")", "next_hop": "\(b["mac"] ?? "")", "state": "\(b["state"] ?? "")"]
            #expect(value("voxedge_backend_info", labels) == 1, "\(labels)")
        }
    }

    @Test func readinessDuringDrainAndHealthOfAStalledWorker() throws {
        let rig = try ControlRig { $0.healthStallSeconds = 0.5 }
        defer { rig.shutdown() }
        let port = rig.metrics.port
        #expect(HTTP.get(port, "/readyz").status == 200)
        #expect(HTTP.get(port, "/healthz").status == 200)
        // Draining: not ready for new work, still healthy.
        rig.plane.beginDraining()
        #expect(HTTP.get(port, "/readyz") == (503, "draining\n"))
        #expect(HTTP.get(port, "/healthz").status == 200)
        // The worker stops coming round: health fails, naming it.
        rig.runtime.stop()
        var health = HTTP.get(port, "/healthz")
        for _ in 0..<500 where health.status == 200 {
            usleep(10_000)
            health = HTTP.get(port, "/healthz")
        }
        #expect(health.status == 503)
        #expect(health.body.hasPrefix("worker 0: no progress for"), "\(health.body)")
    }
}
