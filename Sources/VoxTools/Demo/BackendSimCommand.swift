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
/// real time in bursts if asked. Without a key it only echoes, as it always did. Logs one
/// JSON object per line on stdout.
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

    public init() {}

    /// Every flag checked, the key and WAV file read: a ValidationError says what is wrong.
    func makeConfiguration() throws(ValidationError) -> BackendSimConfiguration {
        var c = BackendSimConfiguration()
        guard let mode = BackendSimConfiguration.Mode(rawValue: mode) else {
            throw ValidationError("--mode: '\(mode)' is not echo, tone or wav")
        }
        c.mode = mode
        guard (0...60_000).contains(delayMs) else { throw ValidationError("--delay-ms: 0 to 60000, not \(delayMs)") }
        c.delayNs = UInt64(delayMs) * 1_000_000
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

    public func run() throws {
        vox_unblock_all_signals()  // a parent that blocks signals must not take SIGTERM/SIGCHLD from us
        let configuration = try makeConfiguration()
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
        signal(SIGUSR1) { _ in backendSimFlushRequested.store(true, ordering: .relaxed) }
        signal(SIGTERM) { _ in backendSimStopRequested.store(true, ordering: .relaxed) }
        signal(SIGINT) { _ in backendSimStopRequested.store(true, ordering: .relaxed) }
        BackendSimLog.emit(
            "listening",
            ["listen": bound.text, "protocol": configuration.key != nil, "mode": configuration.mode.rawValue]
        )
        BackendSim(configuration: configuration, fd: fd).run()
        close(fd)
    }
}
