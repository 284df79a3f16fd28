import ArgumentParser
import CVoxLinux
import Foundation
import Glibc
import VoxControl
import VoxIO
import VoxXDP

/// `voxedge bench e2e`: the engine end to end, as DESIGN §7 asks — its own namespaces and
/// veth (afxdp-ref's layout), the generator (`voxedge loadgen`) on one core, the engine on
/// the other, each side's veth NAPI threaded and pinned beside it. Measures the forwarded
/// rate and the engine's CPU per packet at a fixed rate, and the max lossless rate by
/// binary search. Every step has a bounded duration; everything it made is removed after,
/// also on Ctrl-C.
struct EndToEndBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "e2e",
        abstract: "End to end over veth: forwarded pps and engine CPU per packet at a fixed rate, and max lossless rate.",
        discussion: """
            Namespaces vxd<pid>c (generator, 198.18.0.2, and the "backend" 198.18.0.3 behind its \
            veth) and vxd<pid>e (engine, 198.18.0.1), static neighbours, GRO on and TSO off, \
            threaded NAPI pinned to each side's core (the generator's at SCHED_FIFO so returns are \
            not lost to a busy generator). CPU per packet is the engine's threads' schedstat (and \
            its veth NAPI thread's) over the send window divided by the packets forwarded. Max \
            lossless: < 0.1 % loss, binary search, median of --repetitions. Needs root; see \
            docs/benchmarks.md.
            """,
        aliases: ["endtoend"]
    )

    @Option(help: "The engine's packet I/O (voxedge run --io).") var io = "socket"
    @Option(help: "With --io xdp: the engine's idle strategy (voxedge run --xdp-idle: poll, busy-poll, prefer-busy-poll).")
    var xdpIdle: String?
    @Option(help: "The generator's transmit path (voxedge loadgen --tx): xdp or packet.") var tx = "xdp"
    @Option(help: "Sessions.") var sessions = 1000
    @Option(help: "The fixed rate, packets per second.") var rate = 100_000
    @Option(help: "Seconds of each fixed-rate trial.") var seconds: Double = 3
    @Option(help: "Fixed-rate trials and binary searches (medians over them).") var repetitions = 3
    @Option(help: "Seconds of each search trial.") var searchSeconds: Double = 2
    @Option(help: "Halvings per binary search.") var steps = 6
    @Option(help: "SRTP profile.") var profile = "AES_CM_128_HMAC_SHA1_80"
    @Option(help: "The engine's core.") var engineCore = 1
    @Option(help: "The generator's core.") var generatorCore = 0
    @Flag(help: "Only the fixed-rate trials.") var noSearch = false
    @Flag(help: "With --io xdp: the XDP program checks RTP in its exact flow map, not its flow filter (xdp.flow_filter: false), for comparison.")
    var exactFlowMap = false
    @Flag(help: "Print a JSON summary as the last line.") var json = false

    static let lossless = 0.001

    struct Trial {
        var report: [String: Any]
        var engineNs: Int
        var napiNs: Int
        /// The generator's own CPU time (protecting and sending) over the same window.
        var generatorNs: Int
        var wallNs: UInt64
        /// The engine namespace's UDP receive-buffer overflows during the trial.
        var receiveBufferErrors: Int
        /// The XDP program's run time and runs over the trial (AF_XDP only; kernel-counted).
        var programNs: UInt64 = 0
        var programRuns: UInt64 = 0
        var programNsPerPacket: Double { programRuns > 0 ? Double(programNs) / Double(programRuns) : 0 }
        func number(_ key: String) -> Double { (report[key] as? NSNumber)?.doubleValue ?? 0 }
        var returned: Double { number("returned") }
        var loss: Double { report["loss"] == nil ? 1 : number("loss") }
        var engineMicrosPerPacket: Double { returned > 0 ? Double(engineNs) / 1e3 / returned : 0 }
        var napiMicrosPerPacket: Double { returned > 0 ? Double(napiNs) / 1e3 / returned : 0 }
        var generatorMicrosPerPacket: Double { number("offered") > 0 ? Double(generatorNs) / 1e3 / number("offered") : 0 }
        var engineCPUPercent: Double { wallNs > 0 ? 100 * Double(engineNs) / Double(wallNs) : 0 }
        var line: String {
            String(
                format: "offered %7.0f pps  forwarded %7.0f pps  loss %7.3f %%  engine %5.2f µs/pkt (%4.1f %% CPU) + NAPI %5.2f µs/pkt",
                number("offered_pps"), number("returned_pps"), loss * 100, engineMicrosPerPacket, engineCPUPercent,
                napiMicrosPerPacket)
                + String(format: "  generator %.2f µs/pkt", generatorMicrosPerPacket)
                + "  lost at: veth \(Int(number("refused"))), socket buffers \(receiveBufferErrors)"
                + (programRuns > 0 ? String(format: "  XDP program %.0f ns/pkt", programNsPerPacket) : "")
        }
    }

    func run() throws {
        vox_unblock_all_signals()  // a parent that blocks signals must not take SIGTERM/SIGCHLD from us
        guard getuid() == 0 else { throw ValidationError("the bench builds network namespaces: run it as root") }
        guard ["socket", "xdp", "auto"].contains(io) else { throw ValidationError("--io: socket, xdp or auto") }
        let net = DemoNetwork(tag: "vxd\(getpid())")
        let me = URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL.path
        let voxedge = me.hasPrefix("/") ? me : FileManager.default.currentDirectoryPath + "/" + me
        let socketPath = "/tmp/\(net.tag).sock"
        let session = try DemoSession(net)
        defer { session.end() }
        let napi = try net.prepareForBenchmark(generatorCore: generatorCore, engineCore: engineCore)
        var configuration: [String] = []
        if exactFlowMap {
            let path = "/tmp/\(net.tag).yaml"  // removed with the namespaces (DemoNetwork.remove)
            try "xdp:\n  flow_filter: false\n".write(toFile: path, atomically: true, encoding: .utf8)
            configuration = ["--config", path]
        }
        let engine = try net.spawn(
            in: net.edge,
            ["taskset", "-c", "\(engineCore)", voxedge, "run", "--io", io, "--media-address", "198.18.0.1", "--media-port", "40000",
                "--backend", "198.18.0.3:5004",  // backend legs: 198.18.0.1 (the media address), ports 20000+
                "--control-socket", socketPath, "--metrics", "127.0.0.1:0", "--max-sessions", "\(sessions + 16)",
                // The search offers each flow far more than a call sends: no per-client policing.
                "--client-rate-limit", "0",
                "--cores", "\(engineCore)", "--log-level", "warning"] + (xdpIdle.map { ["--xdp-idle", $0] } ?? []) + configuration,
            quiet: true)
        session.children.append(engine)
        for _ in 0..<100 where !FileManager.default.fileExists(atPath: socketPath) { usleep(50_000) }
        guard engine.isRunning, FileManager.default.fileExists(atPath: socketPath) else {
            throw ValidationError("the engine did not start (voxedge run --io \(io))")
        }
        say("namespaces \(net.generatorSide) (generator) and \(net.edge) (engine), removed at the end")
        let idle = xdpIdle.map { " --xdp-idle " + $0 } ?? ""
        let engineNAPI = napi.engine.map(String.init) ?? "?"
        let generatorNAPI = napi.generator.map(String.init) ?? "?"
        say(
            "engine (--io \(io)\(idle)\(exactFlowMap ? ", exact flow map" : "")) on CPU \(engineCore), NAPI \(engineNAPI); generator on CPU \(generatorCore),"
                + " NAPI \(generatorNAPI) (SCHED_FIFO); \(sessions) sessions, \(profile),"
                + " generator TX \(tx == "xdp" ? "AF_XDP" : "packet socket")")

        // The XDP program's own run time per packet: the kernel counts it while this fd is
        // open (BPF_ENABLE_STATS), and stops by itself when the bench exits.
        let statisticsFD: Int32? = io == "socket" ? nil : try? XDPProgram.enableRunTimeStatistics().get()
        defer { if let statisticsFD { close(statisticsFD) } }
        func programRun() -> (UInt64, UInt64) {
            guard let x = (try? ControlClient.call(socketPath, ["cmd": "stats"]))?["xdp"] as? [String: Any] else { return (0, 0) }
            return (
                (x["program_run_ns"] as? NSNumber)?.uint64Value ?? 0, (x["program_runs"] as? NSNumber)?.uint64Value ?? 0
            )
        }

        func trial(_ rate: Int, _ seconds: Double) throws -> Trial {
            // One trial at a time on this machine, with afxdp-ref's bench.py too (its lock).
            let lock = open("/tmp/bench.lock", O_CREAT | O_RDWR, 0o666)
            if lock >= 0 { flock(lock, LOCK_EX) }
            defer { if lock >= 0 { close(lock) } }
            let buffersBefore = net.receiveBufferErrors()
            let programBefore = programRun()
            let g = Process()
            let out = Pipe()
            g.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            g.arguments = [
                "ip", "netns", "exec", net.generatorSide, "taskset", "-c", "\(generatorCore)", voxedge, "loadgen",
                "--control-socket", socketPath, "--interface", net.generatorInterface, "--sessions", "\(sessions)", "--rate", "\(rate)",
                "--seconds", "\(seconds)", "--profile", profile, "--engine-mac", DemoNetwork.edgeMAC,
                "--backend-address", "198.18.0.3", "--backend-ports", "5004-5004", "--tx", tx, "--quiet", "--json",
            ]
            g.standardOutput = out
            try g.run()
            session.children.append(g)
            defer { session.children.removeAll { $0 === g } }
            // Bounded: the generator stops by itself; if it does not within a generous margin, kill it.
            let deadline = Date().addingTimeInterval(seconds + 60)
            var before = (0, 0, UInt64(0), 0)
            var after = (0, 0, UInt64(0), 0)
            var lines: [String] = []
            var pending = Data()
            let handle = out.fileHandleForReading
            while Date() < deadline {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                pending.append(chunk)
                while let newline = pending.firstIndex(of: 0x0A) {
                    let line = String(decoding: pending[pending.startIndex..<newline], as: UTF8.self)
                    pending.removeSubrange(pending.startIndex...newline)
                    let sample = (
                        DemoCommand.cpuNanoseconds(engine.processIdentifier), napi.engine.map(Self.cpuNanoseconds) ?? 0,
                        MonotonicClock.now(), DemoCommand.cpuNanoseconds(g.processIdentifier)
                    )
                    if line == "sending" { before = sample }
                    if line == "drained" { after = sample }
                    lines.append(line)
                }
            }
            if g.isRunning { g.terminate() }
            g.waitUntilExit()
            guard let last = lines.last(where: { $0.hasPrefix("{") }),
                let report = try? JSONSerialization.jsonObject(with: Data(last.utf8)) as? [String: Any]
            else { throw ValidationError("loadgen failed (status \(g.terminationStatus)): \(lines.joined(separator: "\n"))") }
            let programAfter = programRun()
            return Trial(
                report: report, engineNs: after.0 - before.0, napiNs: after.1 - before.1, generatorNs: after.3 - before.3,
                wallNs: after.2 &- before.2,
                receiveBufferErrors: net.receiveBufferErrors() - buffersBefore,
                programNs: programAfter.0 &- programBefore.0, programRuns: programAfter.1 &- programBefore.1)
        }

        // (a) the fixed rate
        var fixed: [Trial] = []
        say("fixed rate \(rate) pps, \(repetitions) × \(seconds) s:")
        for _ in 0..<repetitions {
            let t = try trial(rate, seconds)
            say("  " + t.line)
            fixed.append(t)
        }
        // (b) max lossless, like afxdp-ref's bench.py: a trial flat out, then halvings.
        var maxima: [Double] = []
        var generatorLimited: [Bool] = []
        if !noSearch {
            say("max lossless (< \(Self.lossless * 100) % loss), \(repetitions) binary searches of \(steps) steps × \(searchSeconds) s:")
            for rep in 0..<repetitions {
                let top = try trial(0, searchSeconds)
                say("  flat out: " + top.line)
                var best = 0.0
                var limited = false
                if top.loss < Self.lossless {
                    best = top.number("offered_pps")
                    limited = true
                } else {
                    var low = 0.0
                    var high = top.number("offered_pps")
                    for _ in 0..<steps {
                        let mid = low > 0 ? (low + high) / 2 : high / 2
                        let t = try trial(Int(mid), searchSeconds)
                        let ok = t.loss < Self.lossless && t.number("offered_pps") > 0.97 * mid
                        say("  \(String(format: "%7.0f", mid)): " + t.line + (ok ? "  ok" : "  lossy"))
                        if ok {
                            low = mid
                            best = t.number("offered_pps")
                        } else {
                            high = mid
                        }
                    }
                }
                say("  search \(rep + 1): max lossless \(Int(best)) pps" + (limited ? " (generator-limited: a lower bound)" : ""))
                maxima.append(best)
                generatorLimited.append(limited)
            }
        }

        func stats(_ values: [Double]) -> [String: Double] {
            let sorted = values.sorted()
            guard !sorted.isEmpty else { return [:] }
            return ["median": sorted[sorted.count / 2], "min": sorted.first!, "max": sorted.last!]
        }
        func text(_ s: [String: Double], _ format: String) -> String {
            guard let m = s["median"], let lo = s["min"], let hi = s["max"] else { return "-" }
            return String(format: "\(format) [\(format)–\(format)]", m, lo, hi)
        }
        let forwarded = stats(fixed.map { $0.number("returned_pps") })
        let engineMicros = stats(fixed.map(\.engineMicrosPerPacket))
        let napiMicros = stats(fixed.map(\.napiMicrosPerPacket))
        let engineCPU = stats(fixed.map(\.engineCPUPercent))
        let generatorMicros = stats(fixed.map(\.generatorMicrosPerPacket))
        let loss = stats(fixed.map { $0.loss * 100 })
        let programNs = stats(fixed.filter { $0.programRuns > 0 }.map(\.programNsPerPacket))
        let maxLossless = stats(maxima)
        say("summary (median [min–max] over \(repetitions)), --io \(io):")
        say("  at \(rate) pps: forwarded \(text(forwarded, "%.0f")) pps, loss \(text(loss, "%.3f")) %")
        say("  engine CPU per packet \(text(engineMicros, "%.2f")) µs (\(text(engineCPU, "%.1f")) % of its core) + its veth NAPI \(text(napiMicros, "%.2f")) µs")
        say("  generator CPU per packet offered \(text(generatorMicros, "%.2f")) µs (protect + frame + send)")
        if !programNs.isEmpty { say("  XDP program (voxedge_xdp) \(text(programNs, "%.0f")) ns per packet, in the NAPI time above") }
        if !noSearch {
            say("  max lossless \(text(maxLossless, "%.0f")) pps" + (generatorLimited.contains(true) ? " (some searches generator-limited)" : ""))
        }
        if json {
            let summary: [String: Any] = [
                "io": io, "xdp_idle": xdpIdle ?? "default", "tx": tx, "sessions": sessions, "profile": profile, "rate": rate, "seconds": seconds,
                "forwarded_pps": forwarded, "loss_percent": loss, "engine_us_per_packet": engineMicros,
                "engine_napi_us_per_packet": napiMicros, "generator_us_per_packet": generatorMicros, "engine_cpu_percent": engineCPU,
                "xdp_program_ns_per_packet": programNs,
                "max_lossless_pps": maxLossless, "generator_limited": generatorLimited,
                "receive_buffer_errors": fixed.map(\.receiveBufferErrors),
                "trials": fixed.map(\.report),
            ]
            let data = try JSONSerialization.data(withJSONObject: summary, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        }
        session.end()
    }

    func say(_ line: String) {
        print(line)
        fflush(nil)
    }

    /// CPU time of one thread (a NAPI kthread): schedstat's first field.
    static func cpuNanoseconds(_ pid: Int32) -> Int {
        let text = (try? String(contentsOfFile: "/proc/\(pid)/schedstat", encoding: .utf8)) ?? ""
        return Int(text.split(separator: " ").first ?? "") ?? 0
    }
}

extension DemoNetwork {
    static let clientMAC = "02:00:00:00:00:02"
    static let edgeMAC = "02:00:00:00:00:01"
    /// The demo's callers' side, where the bench runs the generator (named here from the
    /// tag, as the demo names it, so the bench depends only on `tag` and `edge`).
    var generatorSide: String { "\(tag)c" }
    var generatorInterface: String { "\(tag)a" }
    var engineInterface: String { "\(tag)b" }

    /// afxdp-ref's run.sh, on the demo's pair: fixed MACs; static neighbours (no ARP during
    /// runs), the "backend" 198.18.0.3 behind the generator's veth; GRO on (veth keeps its
    /// NAPI instance) and TSO off (else the receive stack runs on the sender's core);
    /// threaded NAPI, each side's thread pinned to its side's core, the generator's at
    /// SCHED_FIFO so a busy generator cannot starve the counting of returns.
    /// Returns the NAPI threads' pids.
    func prepareForBenchmark(generatorCore: Int, engineCore: Int) throws -> (generator: Int32?, engine: Int32?) {
        let a = generatorInterface
        let b = engineInterface
        let client = generatorSide
        let steps: [[String]] = [
            ["ip", "-n", client, "link", "set", a, "address", Self.clientMAC],
            ["ip", "-n", edge, "link", "set", b, "address", Self.edgeMAC],
            ["ip", "-n", edge, "neigh", "replace", "198.18.0.2", "lladdr", Self.clientMAC, "dev", b, "nud", "permanent"],
            ["ip", "-n", edge, "neigh", "replace", "198.18.0.3", "lladdr", Self.clientMAC, "dev", b, "nud", "permanent"],
            ["ip", "-n", client, "neigh", "replace", "198.18.0.1", "lladdr", Self.edgeMAC, "dev", a, "nud", "permanent"],
            ["ip", "netns", "exec", client, "ethtool", "-K", a, "gro", "on", "tso", "off"],
            ["ip", "netns", "exec", edge, "ethtool", "-K", b, "gro", "on", "tso", "off"],
            ["ip", "netns", "exec", client, "sh", "-c", "echo 1 > /sys/class/net/\(a)/threaded"],
            ["ip", "netns", "exec", edge, "sh", "-c", "echo 1 > /sys/class/net/\(b)/threaded"],
        ]
        for s in steps where sh(s) != 0 {
            throw ValidationError("could not prepare the bench network: \(s.joined(separator: " ")) (is ethtool installed?)")
        }
        usleep(200_000)
        let generator = Self.napiThread(a)
        let engine = Self.napiThread(b)
        if let generator {
            sh(["taskset", "-pc", "\(generatorCore)", "\(generator)"])
            sh(["chrt", "-f", "-p", "50", "\(generator)"])
        }
        if let engine { sh(["taskset", "-pc", "\(engineCore)", "\(engine)"]) }
        return (generator, engine)
    }

    /// UdpRcvbufErrors of the engine's namespace (/proc/net/snmp is per namespace).
    func receiveBufferErrors() -> Int {
        let p = Process()
        let pipe = Pipe()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["ip", "netns", "exec", edge, "cat", "/proc/net/snmp"]
        p.standardOutput = pipe
        guard (try? p.run()) != nil else { return 0 }
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        let udp = text.split(separator: "\n").filter { $0.hasPrefix("Udp: ") }
        guard udp.count == 2 else { return 0 }
        let names = udp[0].split(separator: " ")
        let values = udp[1].split(separator: " ")
        guard let i = names.firstIndex(of: "RcvbufErrors"), i < values.count else { return 0 }
        return Int(values[i]) ?? 0
    }

    /// The threaded-NAPI kthread of `interface` ("napi/<if>-<id>").
    static func napiThread(_ interface: String) -> Int32? {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        for entry in entries {
            guard let pid = Int32(entry),
                let comm = try? String(contentsOfFile: "/proc/\(entry)/comm", encoding: .utf8),
                comm.hasPrefix("napi/\(interface)-")
            else { continue }
            return pid
        }
        return nil
    }
}
