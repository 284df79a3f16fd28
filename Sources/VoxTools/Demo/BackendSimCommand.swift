import ArgumentParser
import CVoxLinux
import Foundation
import Glibc
import VoxControl
import VoxIO
import VoxMedia
import VoxWire

/// The reference backend of the backend protocol (docs/backend-protocol.md, "backend-sim"):
/// with `--key-file`, it takes the edge's start, keepalives and end, sends its own keepalives,
/// flushes and ends on cue, and answers with an echo, a tone or a WAV file, sent ahead of
/// real time in bursts if asked. Without a key it only echoes, as it always did. With
/// `--control`, it registers and reports its load to the engine's backend registry from a
/// thread of its own (`BackendSimReporter`). Logs one JSON object per line on stdout.
public struct BackendSimCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "backend-sim",
        abstract: "A reference inference backend (echo, tone or WAV) for demos and tests."
    )

    @Option(help: "Where to listen, ip:port or [ipv6]:port (port 0: any free port, logged).")
    var listen = "127.0.0.1:5004"
    @Option(help: "Echo after this many milliseconds.") var delayMs = 0
    @Option(help: "The shared key: the file's bytes, trailing whitespace trimmed, ≥ 16. Without it: plain echo.")
    var keyFile: String?
    @Option(help: "echo, tone or wav (tone and wav need --key-file).") var mode = "echo"
    @Option(help: "The tone's frequency (Hz), at -12 dBFS.") var toneHz = 440.0
    @Option(help: "A 16-bit PCM WAV file at 48000 Hz, mono or stereo, played looped (--mode wav).") var wav: String?
    @Option(help: "Send audio this many times faster than real time.") var speed = 1.0
    @Option(help: "Send audio in bursts of this many ms (a multiple of 20), every burst-ms / speed.") var burstMs = 20
    @Option(help: "Audio to send per session before any flush, in ms (default: unlimited).") var talkMs: Int?
    @Option(help: "Send a flush this many ms after each session's start (SIGUSR1 flushes every session now).")
    var flushAfterMs: Int?
    @Option(help: "After a flush, the tone's frequency (default: the same).") var afterFlushHz: Double?
    @Option(help: "After a flush, this many ms of audio, at real time.") var afterFlushMs = 1_000
    @Option(help: "Send end (backend_finished) this many ms after each session's start.") var endAfterMs: Int?
    @Option(help: "Send a keepalive to each session this often (ms).") var keepaliveMs = 1_000
    @Option(help: "Forget a session the edge has sent nothing on for this long (ms).") var idleTimeoutMs = 30_000
    @Flag(help: "Log a line per RTP packet sent.") var logPackets = false

    // Load reports to the engine's backend registry (docs/backend-protocol.md, "Load reports").
    @Option(help: "The engine's control socket: report load there (no reports without it).") var control: String?
    @Option(help: "This backend's id in the engine's registry (default: sim-<listen ip>-<port>).")
    var backendId: String?
    @Flag(help: "Register at start with backend.upsert: the listen address and port, the key, region, models, capacity.")
    var register = false
    @Option(help: "The region it registers in (default: local).") var region: String?
    @Option(help: "A model it has loaded, name or name@version (repeatable).") var model: [String] = []
    @Option(help: "Its session capacity, registered and reported (default: 100).") var capacity: Int?
    @Option(help: "Report load this often, in ms (default: 500).") var reportMs: Int?
    @Option(help: "Requests queued per live session: queue_depth = round(sessions × this) (default: 0.1).")
    var workPerSession: Double?
    @Option(help: "The service time per request it reports, in ms, before --slow (default: 40).")
    var serviceTimeMs: Double?
    @Option(help: "Make it slow: multiplies the service time it reports and its echo delay.") var slow = 1.0
    @Option(help: "Stop reporting this many ms after start, as a dead load reporter would (keepalives and media go on).")
    var stopReportingAfterMs: Int?

    public init() {}

    /// Every flag checked, the key and WAV file read: a ValidationError says what is wrong.
    func makeConfiguration() throws(ValidationError) -> BackendSimConfiguration {
        var c = BackendSimConfiguration()
        guard let mode = BackendSimConfiguration.Mode(rawValue: mode) else {
            throw ValidationError("--mode: '\(mode)' is not echo, tone or wav")
        }
        c.mode = mode
        guard (0...60_000).contains(delayMs) else { throw ValidationError("--delay-ms: 0 to 60000, not \(delayMs)") }
        guard slow.isFinite, (0.01...1_000).contains(slow) else {
            throw ValidationError("--slow: a factor from 0.01 to 1000, not \(slow)")
        }
        c.delayNs = UInt64((Double(delayMs) * slow * 1_000_000).rounded())
        if let keyFile {
            guard let data = FileManager.default.contents(atPath: keyFile) else {
                throw ValidationError("--key-file: cannot read '\(keyFile)'")
            }
            var key = [UInt8](data)
            while let last = key.last, last == 0x20 || (0x09...0x0D).contains(last) { key.removeLast() }
            guard key.count >= 16 else {
                throw ValidationError(
                    "--key-file: the key in '\(keyFile)' is \(key.count) bytes; 16 or more are needed"
                )
            }
            c.key = key.withUnsafeBytes { HMACSHA1Key(key: $0) }
            c.keyBase64 = Data(key).base64EncodedString()
        }
        guard c.key != nil || (mode == .echo && flushAfterMs == nil && endAfterMs == nil) else {
            throw ValidationError(
                "--mode tone|wav, --flush-after-ms and --end-after-ms need the protocol: give --key-file"
            )
        }
        guard (20...20_000).contains(toneHz) else { throw ValidationError("--tone-hz: 20 to 20000, not \(toneHz)") }
        c.toneHz = toneHz
        if let afterFlushHz {
            guard (20...20_000).contains(afterFlushHz) else {
                throw ValidationError("--after-flush-hz: 20 to 20000, not \(afterFlushHz)")
            }
        }
        c.afterFlushHz = afterFlushHz
        switch (mode, wav) {
        case (.wav, nil): throw ValidationError("--mode wav needs --wav FILE")
        case (.wav, let path?): c.wav = try WAVAudio(path: path)
        case (_, .some): throw ValidationError("--wav is for --mode wav")
        case (_, nil): break
        }
        guard speed > 0, speed <= 100 else { throw ValidationError("--speed: above 0, at most 100, not \(speed)") }
        c.speed = speed
        guard (20...10_000).contains(burstMs), burstMs % 20 == 0 else {
            throw ValidationError("--burst-ms: a multiple of 20 from 20 to 10000, not \(burstMs)")
        }
        c.burstMs = burstMs
        func milliseconds(_ value: Int?, _ name: String, from low: Int = 0) throws(ValidationError) -> Int? {
            guard let value else { return nil }
            guard (low...86_400_000).contains(value) else {
                throw ValidationError("\(name): \(low) to 86400000, not \(value)")
            }
            return value
        }
        c.talkPackets = try milliseconds(talkMs, "--talk-ms").map { ($0 + 19) / 20 }
        c.flushAfterNs = try milliseconds(flushAfterMs, "--flush-after-ms").map { UInt64($0) * 1_000_000 }
        c.afterFlushPackets = (try milliseconds(afterFlushMs, "--after-flush-ms")! + 19) / 20
        c.endAfterNs = try milliseconds(endAfterMs, "--end-after-ms").map { UInt64($0) * 1_000_000 }
        c.keepaliveNs = UInt64(try milliseconds(keepaliveMs, "--keepalive-ms", from: 10)!) * 1_000_000
        c.idleNs = UInt64(try milliseconds(idleTimeoutMs, "--idle-timeout-ms", from: 1)!) * 1_000_000
        c.logPackets = logPackets
        return c
    }

    /// The load reporting flags, checked: nil without `--control`. The address, port and
    /// default id are filled in once the socket is bound (`run`).
    func makeReporting(key: String?) throws(ValidationError) -> BackendSimReporting? {
        guard let control else {
            let given: [(Bool, String)] = [
                (register, "--register"), (backendId != nil, "--backend-id"), (region != nil, "--region"),
                (!model.isEmpty, "--model"), (capacity != nil, "--capacity"), (reportMs != nil, "--report-ms"),
                (workPerSession != nil, "--work-per-session"), (serviceTimeMs != nil, "--service-time-ms"),
                (stopReportingAfterMs != nil, "--stop-reporting-after-ms"),
            ]
            if let flag = given.first(where: { $0.0 })?.1 { throw ValidationError("\(flag) needs --control PATH") }
            return nil
        }
        guard !control.isEmpty, control.utf8.count < MemoryLayout.size(ofValue: sockaddr_un().sun_path) else {
            throw ValidationError("--control: a Unix socket path of 1 to 107 bytes, not '\(control)'")
        }
        if !register {
            if region != nil { throw ValidationError("--region is registered: give --register") }
            if !model.isEmpty { throw ValidationError("--model is registered: give --register") }
        }
        /// Names the engine keeps: letters, digits and `.`, `_`, `:`, `-`.
        func name(_ value: String, _ flag: String) throws(ValidationError) -> String {
            let allowed = value.unicodeScalars.allSatisfy {
                $0.isASCII && (CharacterSet.alphanumerics.contains($0) || ".-_:".unicodeScalars.contains($0))
            }
            guard allowed, (1...64).contains(value.utf8.count) else {
                throw ValidationError("\(flag): 1 to 64 of letters, digits, '.', '_', ':', '-', not '\(value)'")
            }
            return value
        }
        var r = BackendSimReporting(controlPath: control, backendID: "")
        if let backendId { r.backendID = try name(backendId, "--backend-id") }
        r.register = register
        r.keyBase64 = key
        if let region { r.region = try name(region, "--region") }
        for m in model {
            let parts = m.split(separator: "@", omittingEmptySubsequences: false)
            let printable = m.unicodeScalars.allSatisfy { $0.value > 0x20 && $0.value != 0x7F }
            guard printable, (1...256).contains(m.utf8.count), (1...2).contains(parts.count),
                parts.allSatisfy({ !$0.isEmpty })
            else {
                throw ValidationError("--model: name or name@version, 1 to 256 bytes, no spaces, not '\(m)'")
            }
        }
        r.models = model
        if let capacity {
            guard (1...1_000_000).contains(capacity) else {
                throw ValidationError("--capacity: 1 to 1000000 sessions, not \(capacity)")
            }
            r.model.capacity = capacity
        }
        if let reportMs {
            guard (10...60_000).contains(reportMs) else { throw ValidationError("--report-ms: 10 to 60000, not \(reportMs)") }
            r.reportNs = UInt64(reportMs) * 1_000_000
        }
        if let workPerSession {
            guard workPerSession.isFinite, (0...1_000).contains(workPerSession) else {
                throw ValidationError("--work-per-session: 0 to 1000 requests, not \(workPerSession)")
            }
            r.model.workPerSession = workPerSession
        }
        if let serviceTimeMs {
            guard serviceTimeMs.isFinite, serviceTimeMs > 0, serviceTimeMs <= 600_000 else {
                throw ValidationError("--service-time-ms: above 0, at most 600000, not \(serviceTimeMs)")
            }
            r.model.serviceTimeMs = serviceTimeMs
        }
        r.model.slow = slow
        if let stopReportingAfterMs {
            guard (1...86_400_000).contains(stopReportingAfterMs) else {
                throw ValidationError("--stop-reporting-after-ms: 1 to 86400000, not \(stopReportingAfterMs)")
            }
            r.stopAfterNs = UInt64(stopReportingAfterMs) * 1_000_000
        }
        return r
    }

    public func run() throws {
        vox_unblock_all_signals()  // a parent that blocks signals must not take SIGTERM/SIGCHLD from us
        let configuration = try makeConfiguration()
        var reporting = try makeReporting(key: configuration.keyBase64)
        let address: IPAddress
        let port: UInt16
        do {
            (address, port) = try EngineController.endpoint(listen, field: "--listen")
        } catch {
            throw ValidationError("--listen: '\(listen)' is not an ip:port or [ipv6]:port")
        }
        let fd: Int32
        do {
            fd = try SocketQueue.bind(address, UDPPort(port), reusePort: false)
        } catch {
            throw ValidationError("cannot bind \(listen): \(error)")
        }
        var bound = PeerAddress()
        bound.length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &bound.storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &bound.length) }
        }
        bound.describe()
        if var r = reporting {
            // "127.0.0.1:5004", "[::1]:5004": the address the edge sends to, and the port.
            let separator = bound.text.lastIndex(of: ":")!
            r.address = String(bound.text[..<separator]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
            r.port = UInt16(bound.text[bound.text.index(after: separator)...]) ?? 0
            if r.backendID.isEmpty { r.backendID = "sim-\(r.address)-\(r.port)" }
            if r.register, r.address == "0.0.0.0" || r.address == "::" {
                throw ValidationError("--register tells the engine the --listen address: give a specific one, not \(listen)")
            }
            reporting = r
        }
        signal(SIGUSR1) { _ in backendSimFlushRequested.store(true, ordering: .relaxed) }
        signal(SIGTERM) { _ in backendSimStopRequested.store(true, ordering: .relaxed) }
        signal(SIGINT) { _ in backendSimStopRequested.store(true, ordering: .relaxed) }
        BackendSimLog.emit(
            "listening",
            ["listen": bound.text, "protocol": configuration.key != nil, "mode": configuration.mode.rawValue]
        )
        let live = BackendSimLiveSessions()
        if let reporting {
            BackendSimLog.emit(
                "reporting_to",
                [
                    "backend": reporting.backendID, "control": reporting.controlPath, "register": reporting.register,
                    "report_ms": Int(reporting.reportNs / 1_000_000),
                ]
            )
            BackendSimReporter(reporting: reporting, live: live).start()
        }
        BackendSim(configuration: configuration, fd: fd, live: live).run()
        close(fd)
    }
}
