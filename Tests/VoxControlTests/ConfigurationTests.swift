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
        ("backends:\n  - address: 127.0.0.2\n    port: 5004\n    kye_file: k\n", ["kye_file", "unknown key", "key_file"]),
        ("backends:\n  - address: 127.0.0.2\n    port: 5004\n    key_file: /nonexistent/key\n", ["key_file /nonexistent/key cannot be read"]),
        // "Linux\n": 5 bytes, where a key needs 16.
        ("backends:\n  - address: 127.0.0.2\n    port: 5004\n    key_file: /proc/sys/kernel/ostype\n", ["holds 5 bytes", "at least 16"]),
        ("backends:\n  - address: 127.0.0.2\n    port: 5004\n    key_file: /dev/zero\n", ["key_file /dev/zero is larger than 4096 bytes"]),
        ("backends:\n  - address: 127.0.0.2\n    port: 5004\n    key_file: /etc\n", ["key_file /etc cannot be read"]),
        ("pacing_depth: 0\n", ["pacing_depth must be 1...3000"]),
        ("pacing_depth: 3001\n", ["pacing_depth must be 1...3000"]),
        ("pacing_slot_bytes: 63\n", ["pacing_slot_bytes must be 64...9000"]),
        ("pacing_slot_bytes: many\n", ["pacing_slot_bytes"]),
        ("client_rate_limit_pps: -1\n", ["client_rate_limit_pps must be 0 (off) ...1000000"]),
        ("client_rate_burst: 0\n", ["client_rate_burst must be 1...100000 packets"]),
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

    /// Defect 6: backend legs sent from an address that cannot reach the backends. Loopback
    /// reaches nothing else (given, or as the media address, the default), and an address the
    /// host does not hold cannot be bound.
    @Test(arguments: [
        (["--backend-address", "127.0.0.1", "--backend", "198.18.1.3:5004"], "backend_address 127.0.0.1 is on loopback"),
        (["--media-address", "127.0.0.1", "--backend", "198.18.1.3:5004"], "backend_address 127.0.0.1 (media_address, the default) is on loopback"),
        (["--backend-address", "198.51.100.7", "--backend", "127.0.0.1:5004"], "backend_address 198.51.100.7 is not an address of this host"),
    ])
    func aBackendAddressThatCannotReachTheBackendsIsRefused(_ arguments: [String], mention: String) throws {
        let outcome = try Self.run(arguments)
        #expect(outcome.status == 64, "\(arguments) → \(outcome.output)")
        #expect(outcome.output.contains(mention), "\(arguments) → \(outcome.output)")
    }

    /// `voxedge run --help` states every flag's default (defect 6: the backend address's was
    /// nowhere to be read).
    @Test func helpStatesEveryDefault() throws {
        let p = Process()
        let out = Pipe()
        p.executableURL = URL(fileURLWithPath: DemoTests.voxedge)
        p.arguments = ["run", "--help"]
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        // One line per option, wrapping undone.
        let options = text.components(separatedBy: "OPTIONS:").last ?? ""
        var entries: [String] = []
        for line in options.split(separator: "\n") {
            // An option starts near the margin; its help continues further in.
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            let indent = line.prefix { $0 == " " }.count
            if indent <= 4 && trimmed.hasPrefix("-") {
                entries.append(trimmed)
            } else if !entries.isEmpty {
                entries[entries.count - 1] += " " + trimmed
            }
        }
        #expect(entries.count >= 17, "\(text)")
        for entry in entries where !entry.hasPrefix("-h, --help") && !entry.hasPrefix("--version") {
            #expect(entry.contains("default"), "no default stated: \(entry)")
        }
        let flat = entries.joined(separator: " ")
        for stated in [
            "default 127.0.0.1)", "default 40000", "default: the media address", "default 20000: 20000-21023",
            "default 1)", "default 1024", "default /run/voxedge/control.sock", "default info", "default auto",
            "default poll", "default 127.0.0.1:9464", "default 300",
        ] {
            #expect(flat.contains(stated), "\(stated): \(text)")
        }
    }
}
