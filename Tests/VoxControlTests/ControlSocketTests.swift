import Foundation
import Glibc
import Logging
import Synchronization
import Testing
import VoxControl
import VoxEngine
import VoxTestKit
import VoxWire

/// An engine on loopback sockets with its control plane as `voxedge run` builds it: the
/// control socket's event loop as the control thread, metrics and health on their own listener.
final class ControlRig: @unchecked Sendable {
    static let counter = Mutex(0)
    let runtime: EngineRuntime
    let plane: ControlPlane
    var server: ControlServer { plane.server }
    var metrics: MetricsServer { plane.http }
    let path: String
    let mediaPort: UInt16

    init(
        maxSessions: Int = 8, limits: ControlLimits? = nil, peers: PeerPolicy? = nil,
        logger: Logger = Logger(label: "test"), configure: (inout EngineConfiguration) -> Void = { _ in }
    ) throws {
        let n = ControlRig.counter.withLock { v -> Int in
            v += 1
            return v
        }
        // Below the ephemeral range (32768+) and apart from SocketPortTests' ports (22000+).
        let base = 10_000 + Int(getpid() % 100) * 100 + n * 10
        var c = EngineConfiguration()
        c.mediaAddress = .loopbackV4
        c.mediaPort = UInt16(base)
        c.backendAddress = .loopbackV4
        c.backendPortBase = UInt16(base + 1)
        c.maxSessions = maxSessions
        c.backends = [.init(address: .loopbackV4, port: 9)]
        path = NSTemporaryDirectory() + "voxedge-ctl-\(getpid())-\(n).sock"
        c.controlSocket = path
        // The rig starts the metrics listener itself, on a port the kernel picks.
        c.metricsPort = 0
        configure(&c)
        mediaPort = c.mediaPort
        runtime = try EngineRuntime(configuration: c, logger: logger)
        try runtime.start()
        var l = limits ?? c.controlLimits
        l.maxLine = 1 << 20
        plane = ControlPlane(runtime: runtime, logger: logger, limits: l, peers: peers)
        try plane.start()
        try plane.http.start(address: "127.0.0.1", port: 0)
    }

    func shutdown() {
        plane.stop()
        runtime.stop()
    }

    /// A connected client socket with a 5 s receive timeout.
    func connect() -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { p in for (i, b) in path.utf8.enumerated() { p[i] = b } }
        _ = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        return fd
    }

    static func send(_ fd: Int32, _ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            offset += n
        }
    }

    /// Reads one reply line.
    static func readLine(_ fd: Int32) -> [String: Any]? {
        var line: [UInt8] = []
        var byte: UInt8 = 0
        while recv(fd, &byte, 1, 0) == 1 {
            if byte == 0x0A { return try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] }
            line.append(byte)
        }
        return nil
    }

    func call(_ fd: Int32, _ text: String) -> [String: Any]? {
        ControlRig.send(fd, Array((text + "\n").utf8))
        return ControlRig.readLine(fd)
    }
}

func errorCode(_ reply: [String: Any]?) -> String? {
    (reply?["error"] as? [String: Any])?["code"] as? String
}

@Suite(.serialized) struct ControlSocketTests {
    static let key = Data((0..<30).map { UInt8($0) }).base64EncodedString()

    @Test func everyCommandAndItsErrors() throws {
        let rig = try ControlRig(maxSessions: 2)
        defer { rig.shutdown() }
        let fd = rig.connect()
        defer { close(fd) }
        // Create, list, show, stats, drop.
        let created = rig.call(fd, #"{"id":1,"cmd":"session.create","client":"127.0.0.1:5000","client_key":"\#(Self.key)"}"#)
        #expect(created?["ok"] as? Bool == true && created?["id"] as? Int == 1)
        let session = created?["session"] as? [String: Any]
        let id = (session?["id"] as? NSNumber)?.uint64Value ?? 0
        #expect((session?["edge_key"] as? String).flatMap { Data(base64Encoded: $0) }?.count == 30)
        #expect(session?["client"] as? String == "127.0.0.1:5000")
        let list = rig.call(fd, #"{"id":"two","cmd":"session.list"}"#)
        #expect(list?["id"] as? String == "two" && (list?["sessions"] as? [Any])?.count == 1)
        let show = rig.call(fd, #"{"id":3,"cmd":"session.show","session":\#(id)}"#)
        #expect((show?["session"] as? [String: Any])?["profile"] as? String == "AES_CM_128_HMAC_SHA1_80")
        let stats = rig.call(fd, #"{"id":4,"cmd":"stats"}"#)
        #expect(stats?["sessions"] as? Int == 1 && (stats?["workers"] as? [Any])?.count == 1)
        // Capacity 2: the third is refused.
        _ = rig.call(fd, #"{"id":5,"cmd":"session.create","client":"127.0.0.1:5002","client_key":"\#(Self.key)"}"#)
        #expect(errorCode(rig.call(fd, #"{"id":6,"cmd":"session.create","client":"127.0.0.1:5001","client_key":"\#(Self.key)"}"#)) == "full")
        #expect(rig.call(fd, #"{"id":7,"cmd":"session.drop","session":\#(id)}"#)?["ok"] as? Bool == true)
        #expect(errorCode(rig.call(fd, #"{"id":8,"cmd":"session.drop","session":\#(id)}"#)) == "not_found")
        #expect(errorCode(rig.call(fd, #"{"id":9,"cmd":"session.show","slot":0}"#)) == "not_found")
        // A slot past the engine's capacity names no slot at all.
        #expect(errorCode(rig.call(fd, #"{"id":9,"cmd":"session.show","slot":77}"#)) == "bad_argument")
        // Errors, each with a code, the connection still usable after each.
        let cases: [(String, String)] = [
            (#"{"id":10,"cmd":"nope"}"#, "unknown_command"),
            (#"{"id":11}"#, "bad_request"),
            (#"[1,2,3]"#, "bad_request"),
            (#"{"id":12,"cmd":"session.create"}"#, "bad_argument"),
            (#"{"id":13,"cmd":"session.create","client":"127.0.0.1:5000","client_key":"@@"}"#, "bad_argument"),
            (#"{"id":14,"cmd":"session.create","client":"127.0.0.1:5000","client_key":"AAAA"}"#, "bad_argument"),
            (#"{"id":15,"cmd":"session.create","client":"nowhere","client_key":"\#(Self.key)"}"#, "bad_argument"),
            (#"{"id":16,"cmd":"session.create","client":"127.0.0.1:1","client_key":"\#(Self.key)","backend":7}"#, "bad_argument"),
            (#"{"id":17,"cmd":"session.create","client":"127.0.0.1:1","client_key":"\#(Self.key)","backend":"0"}"#, "unknown_backend"),  // a string names an id
            (#"{"id":18,"cmd":"session.create","client":"127.0.0.1:1","client_key":"\#(Self.key)","backend":true}"#, "bad_argument"),
            (#"{"id":19,"cmd":"session.create","client":"127.0.0.1:1","client_key":"\#(Self.key)","profile":"NULL"}"#, "bad_argument"),
            (#"{"id":20,"cmd":"session.drop","session":"x"}"#, "bad_argument"),
            // What a backend is told in the start: each checked as the token's claims are.
            (#"{"id":22,"cmd":"session.create","client":"127.0.0.1:1","client_key":"\#(Self.key)","model":7}"#, "bad_argument"),
            (#"{"id":23,"cmd":"session.create","client":"127.0.0.1:1","client_key":"\#(Self.key)","subject":["a"]}"#, "bad_argument"),
            (#"{"id":24,"cmd":"session.create","client":"127.0.0.1:1","client_key":"\#(Self.key)","model":"\#(String(repeating: "m", count: 257))"}"#, "bad_argument"),
            (#"{"id":25,"cmd":"session.create","client":"127.0.0.1:1","client_key":"\#(Self.key)","payload_type":128}"#, "bad_argument"),
            (#"{"id":26,"cmd":"session.create","client":"127.0.0.1:1","client_key":"\#(Self.key)","payload_type":-1}"#, "bad_argument"),
            ("{not json", "bad_json"),
        ]
        for (request, code) in cases {
            let reply = rig.call(fd, request)
            #expect(reply?["ok"] as? Bool == false, "\(request)")
            #expect(errorCode(reply) == code, "\(request)")
        }
        #expect(rig.call(fd, #"{"id":21,"cmd":"stats"}"#)?["ok"] as? Bool == true)
    }

    @Test func hundredConcurrentClientsAndOneThatSaysNothing() throws {
        let rig = try ControlRig()
        defer { rig.shutdown() }
        let silent = rig.connect()
        defer { close(silent) }
        let fds = (0..<100).map { _ in rig.connect() }
        defer { fds.forEach { close($0) } }
        for (i, fd) in fds.enumerated() { ControlRig.send(fd, Array(#"{"id":\#(i),"cmd":"stats"}"#.utf8) + [0x0A]) }
        var answered = 0
        for (i, fd) in fds.enumerated() {
            let reply = ControlRig.readLine(fd)
            if reply?["ok"] as? Bool == true && reply?["id"] as? Int == i { answered += 1 }
        }
        #expect(answered == 100)
        // The silent one is still connected and is served when it speaks.
        #expect(rig.call(silent, #"{"id":"late","cmd":"stats"}"#)?["id"] as? String == "late")
    }

    @Test func garbageAndAHugeLineLeaveTheConnectionUsable() throws {
        let rig = try ControlRig()
        defer { rig.shutdown() }
        let fd = rig.connect()
        defer { close(fd) }
        var rng = SeededRandom(seed: 99)
        var garbage = (0..<4096).map { _ in UInt8.random(in: 0...255, using: &rng) }.filter { $0 != 0x0A }
        garbage.append(0x0A)
        ControlRig.send(fd, garbage)
        #expect(errorCode(ControlRig.readLine(fd)) == "bad_json")
        // 10 MiB in one line: one error, the rest of the line skipped.
        let sent = DispatchSemaphore(value: 0)
        let sender = Thread {
            ControlRig.send(fd, [UInt8](repeating: 0x41, count: 10 * 1024 * 1024) + [0x0A])
            sent.signal()
        }
        sender.start()
        #expect(errorCode(ControlRig.readLine(fd)) == "line_too_long")
        // The next request must not land inside the long line.
        sent.wait()
        #expect(rig.call(fd, #"{"id":1,"cmd":"stats"}"#)?["ok"] as? Bool == true)
    }

    @Test func metricsAndHealth() throws {
        let rig = try ControlRig()
        defer { rig.shutdown() }
        let metrics = rig.metrics
        let fd = rig.connect()
        defer { close(fd) }
        _ = rig.call(fd, #"{"id":1,"cmd":"session.create","client":"127.0.0.1:5000","client_key":"\#(Self.key)"}"#)
        _ = rig.call(fd, #"{"id":2,"cmd":"nope"}"#)
        func get(_ path: String) -> (status: Int, body: String) {
            let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(s) }
            var a = sockaddr_in()
            a.sin_family = sa_family_t(AF_INET)
            a.sin_port = metrics.port.bigEndian
            a.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
            _ = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            ControlRig.send(s, Array("GET \(path) HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".utf8))
            var response: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 65536)
            var timeout = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            while true {
                let n = buffer.withUnsafeMutableBytes { recv(s, $0.baseAddress, $0.count, 0) }
                if n <= 0 { break }
                response += buffer[0..<n]
            }
            let text = String(decoding: response, as: UTF8.self)
            let status = Int(text.split(separator: " ").dropFirst().first ?? "") ?? 0
            let body = text.components(separatedBy: "\r\n\r\n").dropFirst().joined()
            return (status, body)
        }
        let scrape = get("/metrics")
        #expect(scrape.status == 200)
        #expect(scrape.body.contains("# TYPE voxedge_packets_total counter"))
        #expect(scrape.body.contains("voxedge_packets_total{worker=\"0\",verdict=\"toBackend\"} 0"))
        #expect(scrape.body.contains("voxedge_sessions 1"))
        #expect(scrape.body.contains("voxedge_control_errors_total 1"))
        #expect(get("/healthz").status == 200)
        #expect(get("/readyz").status == 200)
        #expect(get("/nope").status == 404)
        rig.plane.beginDraining()
        #expect(get("/readyz").status == 503)
    }

    /// Values a file can hold but an engine cannot run with (what a file cannot even hold —
    /// text where an address or a mode belongs — fails earlier, in decoding: ConfigurationTests).
    @Test func configurationProblemsAreSpelledOut() {
        var c = EngineConfiguration()
        c.mediaAddress = IPAddress("2001:db8::1")!
        c.backendAddress = .loopbackV4  // given: absent, it would follow the media address
        c.workers = 0
        c.maxSessions = 0
        c.controlMaxClients = 0
        c.drainTimeoutSeconds = -1
        let problems = c.problems()
        #expect(problems.count == 5, "\(problems)")
        #expect(problems.contains { $0.contains("backend_address") && $0.contains("media_address") })
        #expect(problems.contains { $0.contains("workers") })
        #expect(problems.contains { $0.contains("drain_timeout_seconds") })
        #expect(EngineController.parseEndpoint("[2001:db8::1]:443")?.1 == UDPPort(443))
        #expect(EngineController.parseEndpoint("1.2.3.4") == nil)
    }
}

extension ControlSocketTests {
    /// `session.create` is answered once the owning worker has applied it (and so admitted
    /// the session's 5-tuples), not when the command is queued: with the workers stopped,
    /// the request gets `busy` and no session is left behind.
    @Test func aSessionIsAcknowledgedOnlyOnceItsWorkerHasIt() throws {
        let rig = try ControlRig()
        defer { rig.shutdown() }
        let fd = rig.connect()
        defer { close(fd) }
        let created = rig.call(
            fd, #"{"id":1,"cmd":"session.create","client":"127.0.0.1:4000","client_key":"\#(Self.key)"}"#)
        #expect(created?["ok"] as? Bool == true, "\(String(describing: created))")
        rig.runtime.stop()
        let unapplied = rig.call(
            fd, #"{"id":2,"cmd":"session.create","client":"127.0.0.1:4001","client_key":"\#(Self.key)"}"#)
        #expect(errorCode(unapplied) == "busy", "\(String(describing: unapplied))")
        let message = (unapplied?["error"] as? [String: Any])?["message"] as? String ?? ""
        #expect(message.contains("did not take the session"), "\(message)")
        let list = rig.call(fd, #"{"id":3,"cmd":"session.list"}"#)
        #expect((list?["sessions"] as? [Any])?.count == 1, "\(String(describing: list))")
    }
}
