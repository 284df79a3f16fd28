import Foundation
import Glibc
import Testing
import VoxMedia

/// SIGTERM as an operator sends it to `voxedge run`: the engine drains — `/readyz` 503, no new
/// session, the live call's audio still forwarded — and stops when the call ends, when the
/// drain deadline passes, or at once on a second signal. The real executable on loopback
/// sockets (no privileges needed), a real SRTP client and a UDP backend in the test.
@Suite(.serialized) struct DrainTests {
    static let key = Data((0..<30).map { UInt8($0) }).base64EncodedString()

    /// A `voxedge run --io socket` with one static-key call up, its client and its backend.
    final class Engine {
        let process = Process()
        let log = Pipe()
        let socketPath: String
        let mediaPort: UInt16
        let metricsPort: UInt16
        let backend: Int32
        let client: Int32
        let clientPort: UInt16
        var control: Int32 = -1
        var srtp: SRTPContext
        var sequence: UInt16 = 1

        /// `base`: the first of the 10 ports it uses; by default one derived from the process
        /// id and `tag` (0...3).
        /// `arguments`: more for `voxedge run`, after these.
        init(tag: Int, drainTimeout: Int, base given: UInt16? = nil, arguments more: [String] = []) throws {
            // Below the ephemeral range, apart from ControlRig's (10000+) and SocketPortTests' (22000+).
            let base = given ?? UInt16(30_000 + Int(getpid() % 50) * 40 + tag * 10)
            mediaPort = base
            metricsPort = base + 6
            clientPort = base + 7
            let backendPort = base + 8
            socketPath = NSTemporaryDirectory() + "voxedge-drain-\(getpid())-\(base).sock"
            unlink(socketPath)
            backend = Engine.udp(bind: backendPort)
            client = Engine.udp(bind: clientPort)
            srtp = try SRTPContext(
                profile: .aes128CmHmacSha1_80, masterKey: Array((0..<16).map { UInt8($0) }),
                masterSalt: Array((16..<30).map { UInt8($0) }))
            process.executableURL = URL(fileURLWithPath: DemoTests.voxedge)
            process.arguments = [
                "run", "--io", "socket", "--media-address", "127.0.0.1", "--media-port", "\(base)",
                "--backend-address", "127.0.0.1", "--backend-port-base", "\(base + 1)", "--max-sessions", "4",
                "--backend", "127.0.0.1:\(backendPort)", "--control-socket", socketPath,
                "--metrics", "127.0.0.1:\(metricsPort)", "--drain-timeout", "\(drainTimeout)",
            ] + more
            process.standardError = log
            process.standardOutput = log
            try process.run()
            for _ in 0..<1000 where access(socketPath, F_OK) != 0 { usleep(10_000) }
            control = Engine.connect(socketPath)
        }

        deinit {
            if process.isRunning {
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
            }
            close(control)
            close(backend)
            close(client)
            unlink(socketPath)
        }

        func call(_ text: String) -> [String: Any]? {
            ControlRig.send(control, Array((text + "\n").utf8))
            return ControlRig.readLine(control)
        }

        func createCall(id: Int) -> [String: Any]? {
            call(#"{"id":\#(id),"cmd":"session.create","client":"127.0.0.1:\#(clientPort)","client_key":"\#(DrainTests.key)"}"#)
        }

        /// One SRTP packet from the client; true when its payload reached the backend.
        func audioGoesThrough() -> Bool {
            var packet = [UInt8](repeating: 0, count: 256)
            let payload: [UInt8] = Array("voice \(sequence)".utf8)
            let header: [UInt8] = [0x80, 111, UInt8(sequence >> 8), UInt8(sequence & 0xFF), 0, 0, 0, 160, 0x11, 0x22, 0x33, 0x44]
            sequence &+= 1
            packet.replaceSubrange(0..<header.count, with: header)
            packet.replaceSubrange(header.count..<header.count + payload.count, with: payload)
            var length = header.count + payload.count
            let status = packet.withUnsafeMutableBytes { srtp.protectRTP($0.baseAddress!, length: &length, capacity: $0.count) }
            guard status == .ok else { return false }
            var to = sockaddr_in()
            to.sin_family = sa_family_t(AF_INET)
            to.sin_port = mediaPort.bigEndian
            to.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
            _ = withUnsafePointer(to: &to) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(client, packet, length, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            var received = [UInt8](repeating: 0, count: 2048)
            let n = received.withUnsafeMutableBytes { recv(backend, $0.baseAddress, $0.count, 0) }
            guard n > header.count else { return false }
            return Array(received[header.count..<n]) == payload
        }

        /// Waits up to `seconds` for the process to exit; its status, or nil if it still runs.
        func exitStatus(within seconds: Int) -> Int32? {
            for _ in 0..<(seconds * 100) where process.isRunning { usleep(10_000) }
            guard !process.isRunning else { return nil }
            return process.terminationStatus
        }

        /// What the engine logged; read once it has exited.
        var output: String {
            String(decoding: log.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        }

        static func udp(bind port: UInt16) -> Int32 {
            let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
            var a = sockaddr_in()
            a.sin_family = sa_family_t(AF_INET)
            a.sin_port = port.bigEndian
            a.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
            _ = withUnsafePointer(to: &a) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            var timeout = timeval(tv_sec: 3, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            return fd
        }

        static func connect(_ path: String) -> Int32 {
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &address.sun_path) { p in for (i, b) in path.utf8.enumerated() { p[i] = b } }
            _ = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                }
            }
            var timeout = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            return fd
        }
    }

    @Test func sigtermKeepsTheCallUntilItEnds() throws {
        let engine = try Engine(tag: 0, drainTimeout: 600)
        let created = try #require(engine.createCall(id: 1))
        #expect(created["ok"] as? Bool == true, "\(created)")
        let session = try #require((created["session"] as? [String: Any])?["id"] as? Int)
        #expect(engine.audioGoesThrough())
        // Ready before the signal (the metrics listener may come up a moment after the control
        // socket on a loaded machine: asked again for up to 10 s).
        var ready = HTTP.get(engine.metricsPort, "/readyz").status
        for _ in 0..<50 where ready != 200 {
            usleep(200_000)
            ready = HTTP.get(engine.metricsPort, "/readyz").status
        }
        #expect(ready == 200)

        kill(engine.process.processIdentifier, SIGTERM)
        #expect(engine.exitStatus(within: 1) == nil, "the engine stopped with a call up")
        // Draining: not ready, no new session, the live call's audio still goes through.
        #expect(HTTP.get(engine.metricsPort, "/readyz") == (503, "draining\n"))
        #expect(errorCode(engine.call(#"{"id":2,"cmd":"session.create","client":"127.0.0.1:9","client_key":"\#(Self.key)"}"#)) == "draining")
        for _ in 0..<5 { #expect(engine.audioGoesThrough()) }
        #expect(engine.call(#"{"id":3,"cmd":"session.list"}"#)?["ok"] as? Bool == true)

        // The call ends: the engine stops by itself, cleanly.
        #expect(engine.call(#"{"id":4,"cmd":"session.drop","session":\#(session)}"#)?["ok"] as? Bool == true)
        #expect(engine.exitStatus(within: 20) == 0)
        #expect(access(engine.socketPath, F_OK) != 0, "the control socket was left behind")
    }

    @Test func aSecondSignalStopsAtOnce() throws {
        let engine = try Engine(tag: 1, drainTimeout: 600)
        #expect(engine.createCall(id: 1)?["ok"] as? Bool == true)
        kill(engine.process.processIdentifier, SIGTERM)
        #expect(engine.exitStatus(within: 1) == nil, "the engine stopped with a call up")
        #expect(engine.audioGoesThrough())
        kill(engine.process.processIdentifier, SIGTERM)
        #expect(engine.exitStatus(within: 20) == 0)
    }

    @Test func theDeadlineEndsTheDrain() throws {
        let engine = try Engine(tag: 2, drainTimeout: 1)
        #expect(engine.createCall(id: 1)?["ok"] as? Bool == true)
        kill(engine.process.processIdentifier, SIGTERM)
        #expect(engine.exitStatus(within: 20) == 0)
        #expect(engine.output.contains("drain=deadline"), "\(engine.output)")
    }

    @Test func anIdleEngineStopsAtTheFirstSignal() throws {
        let engine = try Engine(tag: 3, drainTimeout: 600)
        kill(engine.process.processIdentifier, SIGTERM)
        #expect(engine.exitStatus(within: 20) == 0)
        #expect(engine.output.contains("drain=empty"), "\(engine.output)")
    }

    /// `edge.drain` over the control socket is the same drain as SIGTERM's — `/readyz` 503, no
    /// new session, the live call's audio still forwarded — and `edge.undrain` takes it back;
    /// drained again, the engine exits when its last call ends.
    @Test func edgeDrainKeepsTheCallAndUndrainTakesItBack() throws {
        let engine = try Engine(tag: 4, drainTimeout: 600)
        let created = try #require(engine.createCall(id: 1))
        let session = try #require((created["session"] as? [String: Any])?["id"] as? Int)
        var ready = HTTP.get(engine.metricsPort, "/readyz").status
        for _ in 0..<50 where ready != 200 {
            usleep(200_000)
            ready = HTTP.get(engine.metricsPort, "/readyz").status
        }
        #expect(ready == 200)

        let drained = engine.call(#"{"id":2,"cmd":"edge.drain","deadline_seconds":600}"#)
        #expect(drained?["ok"] as? Bool == true && drained?["draining"] as? Bool == true, "\(drained ?? [:])")
        #expect(drained?["deadline_seconds"] as? Int == 600 && drained?["sessions"] as? Int == 1)
        #expect(HTTP.get(engine.metricsPort, "/readyz") == (503, "draining\n"))
        #expect(errorCode(engine.call(#"{"id":3,"cmd":"session.create","client":"127.0.0.1:9","client_key":"\#(Self.key)"}"#)) == "draining")
        for _ in 0..<3 { #expect(engine.audioGoesThrough()) }
        usleep(300_000)
        #expect(engine.exitStatus(within: 0) == nil, "the engine stopped with a call up")

        // Taken back: ready, and new sessions again.
        let undrained = engine.call(#"{"id":4,"cmd":"edge.undrain"}"#)
        #expect(undrained?["ok"] as? Bool == true && undrained?["was_draining"] as? Bool == true, "\(undrained ?? [:])")
        #expect(HTTP.get(engine.metricsPort, "/readyz").status == 200)
        let second = engine.call(#"{"id":5,"cmd":"session.create","client":"127.0.0.1:9","client_key":"\#(Self.key)"}"#)
        #expect(second?["ok"] as? Bool == true, "\(second ?? [:])")
        let secondID = try #require((second?["session"] as? [String: Any])?["id"] as? Int)
        // The same undrain again changes nothing and says so.
        #expect(engine.call(#"{"id":6,"cmd":"edge.undrain"}"#)?["was_draining"] as? Bool == false)
        usleep(300_000)
        #expect(engine.exitStatus(within: 0) == nil, "undrained, the engine must keep running")

        // Drained again (asked twice: the second moves the deadline), both calls end: it exits.
        #expect(engine.call(#"{"id":7,"cmd":"edge.drain"}"#)?["deadline_seconds"] as? Int == 600)
        #expect(engine.call(#"{"id":8,"cmd":"edge.drain","deadline_seconds":900}"#)?["deadline_seconds"] as? Int == 900)
        #expect(engine.call(#"{"id":9,"cmd":"session.drop","session":\#(session)}"#)?["ok"] as? Bool == true)
        usleep(300_000)
        #expect(engine.exitStatus(within: 0) == nil, "one call is still up")
        #expect(engine.call(#"{"id":10,"cmd":"session.drop","session":\#(secondID)}"#)?["ok"] as? Bool == true)
        #expect(engine.exitStatus(within: 20) == 0)
        #expect(engine.output.contains("drain=empty"), "\(engine.output)")
    }

    /// At a commanded drain's deadline the calls still up are ended, and the engine exits.
    @Test func edgeDrainsDeadlineEndsTheRest() throws {
        let engine = try Engine(tag: 5, drainTimeout: 600)
        #expect(engine.createCall(id: 1)?["ok"] as? Bool == true)
        // As an operator asks: `voxedge ctl drain`.
        let ctl = Process()
        let out = Pipe()
        ctl.executableURL = URL(fileURLWithPath: DemoTests.voxedge)
        ctl.arguments = ["ctl", "drain", "--socket", engine.socketPath, "--deadline", "1"]
        ctl.standardOutput = out
        try ctl.run()
        let said = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        ctl.waitUntilExit()
        #expect(ctl.terminationStatus == 0 && said.contains("draining: 1 session(s) live"), "\(said)")
        #expect(engine.exitStatus(within: 20) == 0)
        let output = engine.output
        #expect(output.contains("drain=deadline"), "\(output)")
        #expect(output.contains("drain ended the calls still up") && output.contains("sessions=1"), "\(output)")
    }

    /// Arguments as a stranger sends them, and an undrain after a signal (which nothing takes back).
    @Test func edgeDrainRefusesWhatItCannotTake() throws {
        let engine = try Engine(tag: 6, drainTimeout: 600)
        for bad in ["-1", "86401", "1.5", "1e300", "\"60\"", "true", "[60]", "18446744073709551616"] {
            let reply = engine.call(#"{"id":1,"cmd":"edge.drain","deadline_seconds":\#(bad)}"#)
            #expect(errorCode(reply) == "bad_argument", "deadline_seconds \(bad): \(reply ?? [:])")
        }
        #expect(HTTP.get(engine.metricsPort, "/readyz").status != 503, "a refused drain must not drain")
        #expect(engine.call(#"{"id":2,"cmd":"edge.undrain"}"#)?["was_draining"] as? Bool == false)
        #expect(engine.createCall(id: 3)?["ok"] as? Bool == true)
        kill(engine.process.processIdentifier, SIGTERM)
        #expect(engine.exitStatus(within: 1) == nil, "the engine stopped with a call up")
        #expect(errorCode(engine.call(#"{"id":4,"cmd":"edge.undrain"}"#)) == "stopping")
        #expect(errorCode(engine.call(#"{"id":5,"cmd":"edge.drain","deadline_seconds":5}"#)) == "stopping")
        kill(engine.process.processIdentifier, SIGTERM)
        #expect(engine.exitStatus(within: 20) == 0)
    }
}
