import ArgumentParser
import CVoxLinux
import Foundation
import Glibc
import VoxControl
import VoxMedia
import VoxSRTPReference

/// README command 1: the engine up on its defaults, with a backend and callers, in network
/// namespaces of its own, showing audio going round; everything it made is removed after,
/// also on Ctrl-C.
public struct DemoCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Show the engine working: a real WebRTC call through it (or static-key callers); then clean up.",
        discussion: """
            Two network namespaces joined by a veth pair: the edge's (198.18.0.1) runs \
            `voxedge run`, on AF_XDP when it can, with its HTTPS signaling listener on :8443; the \
            far one holds the caller (198.18.0.2) and an echoing `voxedge backend-sim` \
            (198.18.0.3), so both legs cross the veth as they would cross a NIC. By default the \
            caller is aiortc (Tools/webrtc/voxcall.py, in the virtual environment \
            scripts/install-deps makes): it POSTs its offer with a token from `voxedge token`, \
            pins the listener's certificate by the fingerprint the engine prints, does ICE and \
            DTLS, speaks a signal with --beeps beeps and finds each in the echo, and prints the \
            set-up times and the round trip. With --static-keys the callers set up static-key \
            sessions over the control socket, send SRTP (libsrtp2) for --seconds and check every \
            echo. Needs root.
            """
    )

    @Flag(help: "Static-key (SDES-style) callers over the control socket instead of a WebRTC call.") var staticKeys = false
    @Option(help: "WebRTC: beeps in the caller's signal.") var beeps = 8
    @Flag(help: "WebRTC: the caller sends no ICE consent checks after connecting (media alone keeps the call).")
    var noConsent = false
    @Flag(help: "WebRTC: while the call runs, attack the engine from 64 more addresses (Tools/webrtc/hostile.py): a TLS flood, bad tokens and offers, silent and lying DTLS clients, garbage, 1,000 POSTs that never connect — each refused, counted and its slot back, the call unharmed.")
    var hostile = false
    @Flag(help: "WebRTC: the call over IPv6 (2001:2::/48, the benchmarking range): signaling, ICE, media and the backend leg.")
    var ipv6 = false
    @Flag(help: "WebRTC: the backend talks instead of echoing — 3 s of a tone sent ahead in bursts, a flush after 1 s of playout, then 1 s of another tone (Tools/webrtc/bargein.py): the client must hear the first second whole, nothing queued after the flush, all the new audio; two spoofed flushes change nothing; the backend's start carries the token's claims, its end the reason; a second client that never does DTLS ends with connect_timeout.")
    var bargeIn = false
    @Option(help: "WebRTC: the repository checkout holding Tools/webrtc and .build/venv (default: found from the executable or the working directory).")
    var checkout: String?
    @Option(help: "Static keys: calls.") var sessions = 20
    @Option(help: "Seconds of audio (WebRTC: the call lasts at least this long).") var seconds = 5
    @Option(help: "SRTP profile.") var profile = "AES_CM_128_HMAC_SHA1_80"
    @Option(help: "Packet I/O of the engine: auto (AF_XDP, else kernel sockets), xdp or socket.") var io = "auto"
    @Option(help: "Queues of the veth pair, and engine workers (one per queue).") var queues = 1
    @Flag(help: "Halfway, drop a call (its audio must stop) and start another (its audio must start).")
    var midStreamChanges = false
    @Flag(help: "Send the backend's answers on another queue than the callers' (needs --queues 2): they reach the other worker, which hands them to the owner.")
    var crossQueueBackend = false
    @Flag(help: "Halfway, give the far side a new MAC and tell the edge's kernel (`ip neigh replace`): the engine must follow it.")
    var neighbourChange = false

    public init() {}

    public func run() throws {
        vox_unblock_all_signals()  // a parent that blocks signals must not take SIGTERM/SIGCHLD from us
        guard getuid() == 0 else { throw ValidationError("the demo builds network namespaces: run it as root") }
        guard SRTPProfile(name: profile) != nil else { throw ValidationError("unknown profile \(profile)") }
        guard ["auto", "xdp", "socket"].contains(io) else { throw ValidationError("--io must be auto, xdp or socket") }
        guard queues >= 1 && queues <= 8 else { throw ValidationError("--queues must be 1...8") }
        guard !crossQueueBackend || queues >= 2 else { throw ValidationError("--cross-queue-backend needs --queues 2") }
        guard !hostile || !staticKeys else { throw ValidationError("--hostile attacks a WebRTC call: drop --static-keys") }
        guard !ipv6 || (!staticKeys && !hostile) else { throw ValidationError("--ipv6 is for the plain WebRTC call") }
        guard !bargeIn || (!staticKeys && !hostile && !ipv6) else {
            throw ValidationError("--barge-in is a WebRTC call over IPv4: drop --static-keys, --hostile and --ipv6")
        }
        let a = ipv6 ? DemoAddresses.v6 : DemoAddresses.v4
        let tag = "vxd\(getpid())"
        // --barge-in spoofs a flush from one more address (198.18.0.16).
        let demo = DemoNetwork(tag: tag, queues: queues, attackSources: hostile ? DemoCommand.attackSources : (bargeIn ? 1 : 0))
        let session = try DemoSession(demo)
        defer { session.end() }
        let me = URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL.path
        let resolved = me.hasPrefix("/") ? me : FileManager.default.currentDirectoryPath + "/" + me
        let socketPath = "/tmp/\(tag).sock"
        print("namespaces \(demo.far) (callers 198.18.0.2, backend 198.18.0.3) <-veth, \(queues) queue(s)-> \(demo.edge) (edge 198.18.0.1)")
        fflush(nil)
        // With several queues the far side's transmit queue follows its CPU (XPS): the callers
        // run on CPU 0 → queue 0 → worker 0, which owns every call; the backend on CPU 1 when
        // its answers should arrive on the other queue.
        let pinBackend = crossQueueBackend ? ["taskset", "-c", "1"] : (queues > 1 ? ["taskset", "-c", "0"] : [])
        let pinCallers = queues > 1 ? ["taskset", "-c", "0"] : []
        // The backend speaks the backend protocol (docs/backend-protocol.md) under a key made
        // for this run. WebRTC: the signaling listener on the edge's address, tokens signed
        // with a secret made for this run; the listener's certificate is generated at start.
        let configPath = "/tmp/\(tag).yaml"
        let secretPath = "/tmp/\(tag).secret"
        let keyPath = "/tmp/\(tag).key"
        var rng = SystemRandomNumberGenerator()
        func randomHex() -> String {
            (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &rng)) }.joined()
        }
        try DemoCommand.writePrivate(secretPath, randomHex())
        try DemoCommand.writePrivate(keyPath, randomHex() + "\n")
        // --barge-in's backend sends 3 s ahead in 1 s: up to 2 s and a burst queued at the
        // edge, past the default 100 packets (2 s); 200 keeps every packet.
        try DemoCommand.writePrivate(
            configPath,
            "signaling:\n  address: \(a.edge)\n  port: 8443\n  token_hs256_secret_file: \(secretPath)\n"
                + "backends:\n  - address: \"\(a.backend)\"\n    port: 5004\n    key_file: \(keyPath)\n"
                + (bargeIn ? "pacing_depth: 200\n" : ""))
        let backendLog = "/tmp/\(tag).backend.log"
        let backend = try demo.spawn(
            in: demo.far,
            pinBackend + [resolved, "backend-sim", "--listen", a.endpoint(a.backend, 5004), "--key-file", keyPath]
                + (bargeIn ? DemoCommand.bargeInBackend : []),
            quiet: true, output: bargeIn ? backendLog : nil)
        session.children.append(backend)
        let engine = try demo.spawn(
            in: demo.edge,
            [resolved, "run", "--config", configPath, "--io", io, "--workers", "\(queues)", "--media-address", a.edge, "--media-port", "40000",
                // backend legs (the config's backends): from the media address, ports 20000+
                // The metrics listener on the edge's own loopback (its namespace: the port is free);
                // --hostile reaches /healthz there. Room for --hostile's 1,000 held sessions.
                "--control-socket", socketPath, "--metrics", "127.0.0.1:\(DemoCommand.metricsPort)",
                "--max-sessions", "\(hostile ? 1100 : max(64, sessions + 1))",
                "--log-level", "warning"],
            quiet: false)
        session.children.append(engine)
        // Wait until the engine answers on its control socket (the file appears at bind(),
        // a moment before listen()), then ask it how it runs.
        var first: [String: Any]? = nil
        let deadline = Date().addingTimeInterval(20)
        while first == nil && engine.isRunning && Date() < deadline {
            first = try? ControlClient.call(socketPath, ["cmd": "stats"])
            if first == nil { usleep(50_000) }
        }
        guard let first else {
            throw ValidationError("the engine did not come up (\(engine.isRunning ? "no answer in 20 s" : "it exited"); its log is above)")
        }
        let running = first["io"] as? String ?? "?"
        var how = "io \(running)"
        if let x = first["xdp"] as? [String: Any] {
            how += " on \(x["interface"] ?? "?") (\(x["mode"] ?? "?") XDP, \(x["zerocopy"] as? Bool == true ? "zero-copy" : "copy mode"))"
        }
        print(
            "engine up: media \(a.endpoint(a.edge, 40000)), \(how), \(queues) worker(s), control \(socketPath), backend-sim \(a.endpoint(a.backend, 5004)) (backend protocol)")
        fflush(nil)
        if io == "xdp" && running != "xdp" { throw ValidationError("asked for --io xdp, the engine runs \(running)") }
        // `ip netns exec` execs the engine: this pid is the engine's, its schedstat its CPU.
        let cpuBefore = DemoCommand.cpuNanoseconds(engine.processIdentifier)
        guard staticKeys else {
            let status = try webRTCCall(
                demo, session, first, resolved: resolved, configPath: configPath, socketPath: socketPath, pin: pinCallers, a)
            if let stats = try? ControlClient.call(socketPath, ["cmd": "stats"]) {
                let cpu = DemoCommand.cpuNanoseconds(engine.processIdentifier) - cpuBefore
                DemoCommand.printEngineSide(stats, cpu: cpu)
            }
            return try DemoCommand.finish(engine, running: running, demo, session, status: status)
        }
        let client = try demo.spawn(
            in: demo.far,
            pinCallers + [resolved, "demo-callers", "--socket", socketPath, "--sessions", "\(sessions)", "--seconds", "\(seconds)",
                "--profile", profile] + (midStreamChanges ? ["--mid-stream-changes"] : [])
                + (queues > 1 ? ["--worker", "0"] : []), quiet: false)
        session.children.append(client)
        if neighbourChange {
            usleep(useconds_t(seconds) * 500_000)
            let mac = "02:00:5e:\(String(format: "%02x:%02x:%02x", getpid() & 0xFF, (getpid() >> 8) & 0xFF, 0x42))"
            // One shell, so the far side's new MAC and the edge's new neighbour entries follow
            // each other within milliseconds: what the engine sends to the old MAC meanwhile is lost.
            let neigh = ["198.18.0.3", "198.18.0.2"].map {
                "ip -n \(demo.edge) neigh replace \($0) lladdr \(mac) dev \(demo.edgeInterface) nud reachable"
            }
            demo.sh(["sh", "-c", (["ip -n \(demo.far) link set \(demo.farInterface) address \(mac)"] + neigh).joined(separator: " && ")])
            usleep(300_000)
            let seen = ((try? ControlClient.call(socketPath, ["cmd": "stats"]))?["backends"] as? [[String: Any]])?.first?["mac"]
            print("neighbour change: the far side is now \(mac); the engine sends to backend 0 at \(seen ?? "?")")
            fflush(nil)
        }
        client.waitUntilExit()
        var status = client.terminationStatus
        let cpu = DemoCommand.cpuNanoseconds(engine.processIdentifier) - cpuBefore
        if let stats = try? ControlClient.call(socketPath, ["cmd": "stats"]), let workers = stats["workers"] as? [[String: Any]] {
            let forwarded = workers.reduce(0) { total, w in
                let v = w["verdicts"] as? [String: Any] ?? [:]
                return total + ((v["toBackend"] as? Int) ?? 0) + ((v["toClient"] as? Int) ?? 0)
            }
            if forwarded > 0 {
                print(String(format: "engine: %d packets forwarded, %.1f ms of CPU (all its threads), %.2f µs per packet",
                    forwarded, Double(cpu) / 1e6, Double(cpu) / 1e3 / Double(forwarded)))
            }
            let handedOff = workers.map { ((($0["verdicts"] as? [String: Any])?["handedOff"] as? Int) ?? 0) }
            print("workers: handed off \(handedOff.map(String.init).joined(separator: " / "))")
            if let x = stats["xdp"] as? [String: Any], let counters = x["counters"] as? [String: Any] {
                let nonzero = counters.filter { ($0.value as? Int ?? 0) > 0 }.sorted { $0.key < $1.key }
                print("xdp program: " + nonzero.map { "\($0.key)=\($0.value)" }.joined(separator: " "))
            }
            if crossQueueBackend && (handedOff.count < 2 || handedOff[1] == 0) {
                print("expected worker 1 to hand the backend's answers to worker 0, and it handed none")
                status = 1
            }
            fflush(nil)
        }
        try DemoCommand.finish(engine, running: running, demo, session, status: status)
    }
}

extension DemoCommand {
    /// Stops the engine (SIGTERM: it takes its XDP program with it, through the bpf_link),
    /// checks nothing is left attached, removes the network and says how it went.
    static func finish(_ engine: Process, running: String, _ demo: DemoNetwork, _ session: DemoSession, status: Int32) throws {
        var status = status
        engine.terminate()
        engine.waitUntilExit()
        if running == "xdp" {
            let attached = demo.output(["ip", "-n", demo.edge, "link", "show", demo.edgeInterface]).contains(" xdp")
            print("after shutdown: \(attached ? "an XDP program is still attached" : "no XDP program") on \(demo.edgeInterface)")
            if attached { status = 1 }
        }
        session.end()
        print(status == 0 ? "demo passed; namespaces and processes removed" : "demo FAILED (status \(status)); namespaces and processes removed")
        if status != 0 { throw ExitCode(status) }
    }

    static let metricsPort = 9464
    /// --barge-in's backend: 3 s of a 441.7 Hz tone sent 3× faster than real time in 200 ms
    /// bursts, a flush 1 s after the first RTP it gets (after 1 s of playout), then 1 s of
    /// 883.3 Hz at real time; every packet logged. Tones whose phase repeats only every 10 s,
    /// so no two frames' payloads are alike.
    static let bargeInBackend = [
        "--mode", "tone", "--tone-hz", "441.7", "--speed", "3", "--burst-ms", "200", "--talk-ms", "3000",
        "--flush-after-ms", "1000", "--after-flush-hz", "883.3", "--after-flush-ms", "1000", "--log-packets",
    ]
    /// --hostile's attack addresses on the far side: 198.18.0.16 and up.
    static let attackSources = 64

    /// The WebRTC caller: a token from `voxedge token`, the listener's fingerprint from the
    /// engine, then aiortc (voxcall.py) in the far namespace — or, with --hostile,
    /// hostile.py, which starts the call itself once it floods the listener. Returns the
    /// exit status of the caller (or of hostile.py, which fails when the call does).
    func webRTCCall(
        _ demo: DemoNetwork, _ session: DemoSession, _ stats: [String: Any], resolved: String, configPath: String,
        socketPath: String, pin: [String], _ a: DemoAddresses
    ) throws -> Int32 {
        // The control socket answers before the signaling listener is up (it makes its
        // certificate first): ask again for up to 20 s.
        var signaling = stats["signaling"] as? [String: Any]
        let deadline = Date().addingTimeInterval(20)
        while signaling == nil && Date() < deadline {
            usleep(100_000)
            signaling = (try? ControlClient.call(socketPath, ["cmd": "stats"]))?["signaling"] as? [String: Any]
        }
        guard let signaling, let url = signaling["url"] as? String else {
            throw ValidationError("the engine runs no signaling listener (none reported in 20 s)")
        }
        let root = try checkoutRoot(executable: resolved)
        let python = root + "/.build/venv/bin/python3"
        guard FileManager.default.isExecutableFile(atPath: python) else {
            throw ValidationError("no aiortc environment at \(python): run scripts/install-deps")
        }
        let (subject, model) = bargeIn ? ("barge-in-caller-7", "tone-talker-v2") : ("demo", "echo")
        let token = demo.output([resolved, "token", "--config", configPath, "--subject", subject, "--model", model, "--ttl", "600"])
            .trimmingCharacters(in: .whitespacesAndNewlines)
        guard !token.isEmpty else { throw ValidationError("voxedge token printed nothing") }
        let callURL = url
        var arguments = [
            python, root + "/Tools/webrtc/voxcall.py", "--url", callURL,
            "--token", token, "--bind", a.caller, "--beeps", bargeIn ? "0" : "\(beeps)",
        ]
        if let fingerprint = signaling["fingerprint"] as? String { arguments += ["--fingerprint", fingerprint] }
        if noConsent || hostile {
            // Beeps spread over the whole call: past the 30 s consent intervals, or through
            // every attack of --hostile (about a minute).
            let seconds = hostile ? max(seconds, 70) : seconds
            let interval = max(0.5, Double(seconds - 4) / Double(max(1, beeps - 1)))
            arguments += [
                "--max-gap", "0.5", "--beep-interval", String(format: "%.2f", interval), "--duration", "\(seconds)",
            ]
            if noConsent { arguments.append("--no-consent") }
        }
        if bargeIn {
            // The backend's flush comes 1 s after the first RTP it gets, its new audio lasts 1 s:
            // 4 s after DTLS all of it has arrived. bargein.py adds --no-echo and the records.
            arguments += ["--duration", "\(max(seconds, 4))"]
            arguments = [
                python, root + "/Tools/webrtc/bargein.py", "--url", callURL, "--control", socketPath,
                "--secret-file", "/tmp/\(demo.tag).secret", "--key-file", "/tmp/\(demo.tag).key",
                "--backend-log", "/tmp/\(demo.tag).backend.log", "--backend", a.endpoint(a.backend, 5004),
                "--caller", a.caller, "--spoof-source", "198.18.0.16", "--model", model, "--subject", subject,
                "--work", "/tmp/\(demo.tag)", "--",
            ] + arguments
        }
        if hostile {
            arguments = [
                python, root + "/Tools/webrtc/hostile.py", "--url", callURL, "--control", socketPath,
                "--secret-file", "/tmp/\(demo.tag).secret", "--edge-namespace", demo.edge,
                "--metrics", "127.0.0.1:\(DemoCommand.metricsPort)", "--sources", "\(DemoCommand.attackSources)", "--",
            ] + arguments
        }
        print("caller: aiortc in \(demo.far) (\(a.caller)) → POST \(url)" + (hostile ? "; attackers 198.18.0.16…\(15 + DemoCommand.attackSources)" : "")
            + (bargeIn ? "; backend-sim talks: \(DemoCommand.bargeInBackend.joined(separator: " "))" : ""))
        fflush(nil)
        let client = try demo.spawn(in: demo.far, pin + arguments, quiet: false)
        session.children.append(client)
        client.waitUntilExit()
        return client.terminationStatus
    }

    /// The checkout whose Tools/webrtc and .build/venv the demo uses: --checkout, else the
    /// working directory, else the one the executable was built in (.build/<config>/voxedge).
    func checkoutRoot(executable: String) throws -> String {
        let built = URL(fileURLWithPath: executable).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().path
        let candidates: [String?] = [checkout, FileManager.default.currentDirectoryPath, built]
        for case let root? in candidates where FileManager.default.fileExists(atPath: root + "/Tools/webrtc/voxcall.py") {
            return root
        }
        throw ValidationError("no Tools/webrtc/voxcall.py found: run the demo from the repository (or give --checkout)")
    }

    /// What the engine saw of the call: handshakes, set-up, CPU.
    static func printEngineSide(_ stats: [String: Any], cpu: Int) {
        if let h = stats["handshakes"] as? [String: Any] {
            let succeeded = (h["succeeded"] as? Int) ?? 0
            let cpuNs = (h["cpu_ns"] as? Int) ?? 0
            print("engine: handshakes started=\(h["started"] ?? 0) succeeded=\(succeeded) failed=\(h["failed"] ?? [:])"
                + (succeeded > 0 ? String(format: ", %.0f µs of handshake-thread CPU each", Double(cpuNs) / 1e3 / Double(succeeded)) : ""))
        }
        if let workers = stats["workers"] as? [[String: Any]] {
            let verdicts = workers.map { ($0["verdicts"] as? [String: Any]) ?? [:] }
            let sum = { (k: String) in verdicts.reduce(0) { $0 + (($1[k] as? Int) ?? 0) } }
            var drops: [String: Int] = [:]
            for w in workers { for (k, v) in (w["drops"] as? [String: Int] ?? [:]) { drops[k, default: 0] += v } }
            let why = drops.isEmpty ? "" : " (" + drops.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ") + ")"
            print("engine: \(sum("toBackend")) packets to the backend, \(sum("toClient")) to the client, \(sum("answered")) checks answered, \(sum("dropped")) dropped\(why)"
                + String(format: "; %.1f ms of CPU (all its threads)", Double(cpu) / 1e6))
        }
        fflush(nil)
    }

    /// Writes `text` to `path`, readable by root only (a token secret, the config naming it).
    static func writePrivate(_ path: String, _ text: String) throws {
        unlink(path)
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        guard fd >= 0 else { throw ValidationError("cannot write \(path)") }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        guard write(fd, bytes, bytes.count) == bytes.count else { throw ValidationError("cannot write \(path)") }
    }

    /// CPU time of every thread of `pid` (the sum of /proc/PID/task/*/schedstat's first
    /// field: exact, unlike tick-sampled /proc/stat; FINDINGS).
    static func cpuNanoseconds(_ pid: Int32) -> Int {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        return tasks.reduce(0) { total, task in
            let text = (try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/schedstat", encoding: .utf8)) ?? ""
            return total + (Int(text.split(separator: " ").first ?? "") ?? 0)
        }
    }
}

/// Ctrl-C during the demo still removes what it made.
enum DemoSignals {
    nonisolated(unsafe) static var onSignal: (() -> Void)?
    static func install(_ body: @escaping () -> Void) {
        onSignal = body
        signal(SIGINT) { _ in
            DemoSignals.onSignal?()
            exit(130)
        }
        signal(SIGTERM) { _ in
            DemoSignals.onSignal?()
            exit(143)
        }
    }
}

/// What a demo or bench made: its network and the processes it started, all stopped and
/// removed by `end()` — on any exit, also on Ctrl-C or SIGTERM.
final class DemoSession {
    let network: DemoNetwork
    var children: [Process] = []

    /// Removes what crashed earlier runs left, installs the signal handlers, creates the network.
    init(_ network: DemoNetwork) throws {
        self.network = network
        network.removeLeftovers()
        DemoSignals.install { [self] in end() }
        do { try network.create() } catch {
            end()
            throw error
        }
    }

    func end() {
        for p in children where p.isRunning { p.terminate() }
        for p in children { p.waitUntilExit() }
        children = []
        network.remove()
    }
}

/// Where the WebRTC demo's edge, caller and backend are: 198.18.0.0/24, or with --ipv6
/// 2001:2::/64 (RFC 5180's benchmarking range, as 198.18.0.0/15 is IPv4's). The network has both.
struct DemoAddresses {
    let edge: String
    let caller: String
    let backend: String
    static let v4 = DemoAddresses(edge: "198.18.0.1", caller: "198.18.0.2", backend: "198.18.0.3")
    static let v6 = DemoAddresses(edge: "2001:2::1", caller: "2001:2::2", backend: "2001:2::3")

    func endpoint(_ address: String, _ port: Int) -> String { address.contains(":") ? "[\(address)]:\(port)" : "\(address):\(port)" }
}

/// The demo's two namespaces and veth pair.
struct DemoNetwork {
    let tag: String
    var queues = 1
    /// More addresses on the far side (198.18.0.16 and up), for `--hostile`'s attackers.
    var attackSources = 0
    var far: String { "\(tag)c" }
    var edge: String { "\(tag)e" }
    var farInterface: String { "\(tag)a" }
    var edgeInterface: String { "\(tag)b" }

    @discardableResult
    func sh(_ args: [String]) -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = args
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        do { try p.run() } catch { return -1 }
        p.waitUntilExit()
        return p.terminationStatus
    }

    func output(_ args: [String]) -> String {
        let p = Process()
        let pipe = Pipe()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = args
        p.standardOutput = pipe
        p.standardError = FileHandle.nullDevice
        do { try p.run() } catch { return "" }
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return text
    }

    func create() throws {
        let q = ["numtxqueues", "\(queues)", "numrxqueues", "\(queues)"]
        var steps: [[String]] = [
            ["ip", "netns", "add", far], ["ip", "netns", "add", edge],
            ["ip", "link", "add", farInterface, "netns", far] + q + ["type", "veth", "peer", "name", edgeInterface, "netns", edge] + q,
            ["ip", "-n", far, "addr", "add", "198.18.0.2/24", "dev", farInterface],
            ["ip", "-n", far, "addr", "add", "198.18.0.3/24", "dev", farInterface],
        ]
        steps += (0..<attackSources).map { ["ip", "-n", far, "addr", "add", "198.18.0.\(16 + $0)/24", "dev", farInterface] }
        steps += [
            ["ip", "-n", edge, "addr", "add", "198.18.0.1/24", "dev", edgeInterface],
            // IPv6 beside it (--ipv6), without duplicate address detection's wait — for the
            // link-local addresses too, which neighbour solicitation needs as its source: with
            // DAD a new link answers no neighbour lookup for its first second or two.
            ["ip", "netns", "exec", far, "sysctl", "-qw", "net.ipv6.conf.\(farInterface).accept_dad=0"],
            ["ip", "netns", "exec", edge, "sysctl", "-qw", "net.ipv6.conf.\(edgeInterface).accept_dad=0"],
            ["ip", "-n", far, "addr", "add", "2001:2::2/64", "dev", farInterface, "nodad"],
            ["ip", "-n", far, "addr", "add", "2001:2::3/64", "dev", farInterface, "nodad"],
            ["ip", "-n", edge, "addr", "add", "2001:2::1/64", "dev", edgeInterface, "nodad"],
            ["ip", "-n", far, "link", "set", farInterface, "up"], ["ip", "-n", edge, "link", "set", edgeInterface, "up"],
            ["ip", "-n", far, "link", "set", "lo", "up"], ["ip", "-n", edge, "link", "set", "lo", "up"],
        ]
        // Transmit queue q of the far side for CPU q (XPS), so which queue a packet reaches
        // at the edge depends on the CPU its sender runs on.
        for i in 0..<(queues > 1 ? queues : 0) {
            steps.append([
                "ip", "netns", "exec", far, "sh", "-c",
                "echo \(String(1 << (i % 2), radix: 16)) > /sys/class/net/\(farInterface)/queues/tx-\(i)/xps_cpus",
            ])
        }
        for s in steps where sh(s) != 0 {
            throw ValidationError("could not set up the demo network: \(s.joined(separator: " "))")
        }
    }

    func remove() {
        sh(["ip", "netns", "del", far])
        sh(["ip", "netns", "del", edge])
        for suffix in ["sock", "yaml", "secret", "key", "backend.log", "rtp.jsonl", "call.json"] {
            unlink("/tmp/\(tag).\(suffix)")
        }
    }

    /// Namespaces of earlier demos whose process is gone.
    func removeLeftovers() {
        let p = Process()
        let pipe = Pipe()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["ip", "netns", "list"]
        p.standardOutput = pipe
        guard (try? p.run()) != nil else { return }
        p.waitUntilExit()
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        for line in text.split(separator: "\n") {
            let name = String(line.split(separator: " ").first ?? "")
            guard name.hasPrefix("vxd"), let pid = Int32(name.dropFirst(3).dropLast()), kill(pid, 0) != 0 else { continue }
            sh(["ip", "netns", "del", name])
        }
    }

    /// Starts `command` in `namespace`; its standard output to `output` (a file made for it),
    /// else nowhere when `quiet`, else ours.
    func spawn(in namespace: String, _ command: [String], quiet: Bool, output: String? = nil) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["ip", "netns", "exec", namespace] + command
        if let output {
            unlink(output)
            guard FileManager.default.createFile(atPath: output, contents: nil),
                let handle = FileHandle(forWritingAtPath: output)
            else { throw ValidationError("cannot write \(output)") }
            p.standardOutput = handle
        } else if quiet {
            p.standardOutput = FileHandle.nullDevice
        }
        try p.run()
        return p
    }
}
