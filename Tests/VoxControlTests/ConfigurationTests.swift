import Foundation
import Glibc
import Testing

/// `voxedge run` given a bad configuration, as an operator would give it: each mistake ends the
/// process with exit 64 (EX_USAGE) and one message naming the key and what it accepts, before
/// anything starts. The real executable; nothing here needs privileges.
@Suite struct ConfigurationTests {
    struct Outcome {
        var status: Int32
        var output: String
    }

    static func run(_ arguments: [String], config: String? = nil) throws -> Outcome {
        let dir = NSTemporaryDirectory() + "voxedge-config-\(getpid())-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var all = ["run", "--control-socket", dir + "/control.sock", "--metrics", "127.0.0.1:0", "--io", "socket"]
        if let config {
            try config.write(toFile: dir + "/voxedge.yaml", atomically: true, encoding: .utf8)
            all += ["--config", dir + "/voxedge.yaml"]
        }
        all += arguments
        let p = Process()
        let out = Pipe()
        p.executableURL = URL(fileURLWithPath: DemoTests.voxedge)
        p.arguments = all
        p.standardOutput = out
        p.standardError = out
        try p.run()
        // A configuration that is accepted starts an engine: stop it (the test then fails on status).
        let deadline = Date().addingTimeInterval(20)
        while p.isRunning && Date() < deadline { usleep(10_000) }
        if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
        return Outcome(
            status: p.terminationStatus,
            output: String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))
    }

    /// Each file: what it says, and what the message must name.
    static let badFiles: [(yaml: String, mentions: [String])] = [
        ("io: dpdk\n", ["io", "'dpdk'", "xdp, socket, auto"]),
        ("xdp:\n  idle: nap\n", ["xdp.idle", "'nap'", "poll, busy-poll, prefer-busy-poll"]),
        ("xdp:\n  attach: sideways\n", ["xdp.attach", "auto, native, generic"]),
        ("xdp:\n  bind_mode: fast\n", ["xdp.bind_mode", "auto, copy, zerocopy"]),
        ("xdp:\n  idel: poll\n", ["idel", "unknown key", "idle"]),
        ("log_level: loud\n", ["log_level", "'loud'", "trace", "critical"]),
        ("media_address: not-an-ip\n", ["media_address", "'not-an-ip' is not an IP address"]),
        ("media_address: 1.2.3.4.5\n", ["media_address", "is not an IP address"]),
        ("backends:\n  - address: 1.2.3.4.5\n    port: 5004\n", ["backends[0].address", "is not an IP address"]),
        ("backends:\n  - address: 198.18.1.2\n", ["backends[0].port", "missing"]),
        ("medai_port: 40000\n", ["medai_port", "unknown key", "media_port"]),
        ("media_port: 70000\n", ["media_port"]),
        ("media_port: -1\n", ["media_port"]),
        ("workers: two\n", ["workers"]),
        ("workers: 0\n", ["workers must be 1...64"]),
        ("max_sessions: 0\n", ["max_sessions"]),
        ("backend_port_base: 65000\nmax_sessions: 1024\n", ["backend_port_base + max_sessions"]),
        ("cores: [0, 1]\n", ["cores lists 2 cores for 1 workers"]),
        ("drain_timeout_seconds: -5\n", ["drain_timeout_seconds"]),
        ("huge_pages: [\n", ["not valid YAML"]),
        ("- just\n- a list\n", ["voxedge.yaml"]),
    ]

    @Test(arguments: 0..<ConfigurationTests.badFiles.count)
    func aBadFileIsRefusedNamingTheKey(_ index: Int) throws {
        let (yaml, mentions) = Self.badFiles[index]
        let outcome = try Self.run([], config: yaml)
        #expect(outcome.status == 64, "\(yaml) → \(outcome.output)")
        for text in mentions {
            #expect(outcome.output.contains(text), "\(yaml) → \(outcome.output)")
        }
        #expect(!outcome.output.contains("engine started"), "\(outcome.output)")
    }

    @Test func aMissingFileIsRefused() throws {
        let outcome = try Self.run(["--config", "/nonexistent/voxedge.yaml"])
        #expect(outcome.status == 64, "\(outcome.output)")
        #expect(outcome.output.contains("/nonexistent/voxedge.yaml: cannot be read"), "\(outcome.output)")
    }

    /// Flags are typed too: a value outside the accepted ones is a usage error naming them.
    @Test(arguments: [
        (["--io", "dpdk"], "xdp"),
        (["--xdp-idle", "nap"], "busy-poll"),
        (["--log-level", "loud"], "critical"),
        (["--media-address", "nowhere"], "--media-address"),
        (["--backend-address", "999.1.1.1"], "--backend-address"),
        (["--backend", "198.18.1.2"], "--backend"),
        (["--metrics", "localhost:9464"], "--metrics"),
        (["--media-port", "70000"], "--media-port"),
        (["--workers", "-1"], "workers"),
        (["--drain-timeout", "soon"], "--drain-timeout"),
    ])
    func aBadFlagIsRefused(_ arguments: [String], mention: String) throws {
        let outcome = try Self.run(arguments)
        #expect(outcome.status == 64, "\(arguments) → \(outcome.output)")
        #expect(outcome.output.contains(mention), "\(arguments) → \(outcome.output)")
    }
}
