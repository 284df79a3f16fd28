import ArgumentParser
import CVoxLinux
import Foundation
import Glibc
import VoxMedia
import VoxSRTPReference

/// README command 1: the engine up on its defaults, with a backend and callers, in network
/// namespaces of its own, showing audio going round; everything it made is removed after,
/// also on Ctrl-C.
struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Show the engine working: namespaces, engine, echo backend, SRTP callers; then clean up.",
        discussion: """
            Two network namespaces joined by a veth pair (198.18.0.2 the callers, 198.18.0.1 the \
            edge); in the edge's, `voxedge run` and `voxedge backend-sim`. The callers set up \
            static-key sessions over the control socket, send SRTP (libsrtp2) for --seconds and \
            check every echo the edge sends back. Needs root.
            """
    )

    @Option(help: "Calls.") var sessions = 20
    @Option(help: "Seconds of audio.") var seconds = 5
    @Option(help: "SRTP profile.") var profile = "AES_CM_128_HMAC_SHA1_80"
    @Flag(help: "Halfway, drop a call (its audio must stop) and start another (its audio must start).")
    var midStreamChanges = false

    func run() throws {
        vox_unblock_all_signals()  // a parent that blocks signals must not take SIGTERM/SIGCHLD from us
        guard getuid() == 0 else { throw ValidationError("the demo builds network namespaces: run it as root") }
        guard SRTPProfile(name: profile) != nil else { throw ValidationError("unknown profile \(profile)") }
        let tag = "vxd\(getpid())"
        let demo = DemoNetwork(tag: tag)
        demo.removeLeftovers()
        var children: [Process] = []
        func cleanup() {
            for p in children where p.isRunning { p.terminate() }
            for p in children { p.waitUntilExit() }
            demo.remove()
        }
        DemoSignals.install { cleanup() }
        defer { cleanup() }
        try demo.create()
        let me = URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL.path
        let resolved = me.hasPrefix("/") ? me : FileManager.default.currentDirectoryPath + "/" + me
        let socketPath = "/tmp/\(tag).sock"
        print("namespaces \(demo.client) (198.18.0.2) <-veth-> \(demo.edge) (198.18.0.1)")
        fflush(nil)
        children.append(try demo.spawn(in: demo.edge, [resolved, "backend-sim", "--listen", "127.0.0.1:5004"], quiet: true))
        let engine = try demo.spawn(
                in: demo.edge,
                [resolved, "run", "--media-address", "198.18.0.1", "--media-port", "40000", "--backend-address", "127.0.0.1",
                    "--backend-port-base", "41000", "--backend", "127.0.0.1:5004", "--control-socket", socketPath,
                    "--metrics", "127.0.0.1:0", "--max-sessions", "\(max(64, sessions + 1))", "--log-level", "warning"],
                quiet: false)
        children.append(engine)
        // Wait for the control socket.
        for _ in 0..<100 where !FileManager.default.fileExists(atPath: socketPath) { usleep(50_000) }
        print("engine up: media 198.18.0.1:40000, control \(socketPath), backend-sim 127.0.0.1:5004 (edge namespace)")
        fflush(nil)
        // `ip netns exec` execs the engine: this pid is the engine's, its schedstat its CPU.
        let cpuBefore = DemoCommand.cpuNanoseconds(engine.processIdentifier)
        let client = try demo.spawn(
            in: demo.client,
            [resolved, "demo-callers", "--socket", socketPath, "--sessions", "\(sessions)", "--seconds", "\(seconds)",
                "--profile", profile] + (midStreamChanges ? ["--mid-stream-changes"] : []), quiet: false)
        client.waitUntilExit()
        let status = client.terminationStatus
        let cpu = DemoCommand.cpuNanoseconds(engine.processIdentifier) - cpuBefore
        if let stats = try? ControlClient.call(socketPath, ["cmd": "stats"]), let workers = stats["workers"] as? [[String: Any]] {
            let forwarded = workers.reduce(0) { total, w in
                let v = w["verdicts"] as? [String: Any] ?? [:]
                return total + ((v["toBackend"] as? Int) ?? 0) + ((v["toClient"] as? Int) ?? 0)
            }
            if forwarded > 0 {
                print(String(format: "engine: %d packets forwarded, %.1f ms of CPU (all its threads), %.2f µs per packet",
                    forwarded, Double(cpu) / 1e6, Double(cpu) / 1e3 / Double(forwarded)))
                fflush(nil)
            }
        }
        cleanup()
        print(status == 0 ? "demo passed; namespaces and processes removed" : "demo FAILED (status \(status)); namespaces and processes removed")
        if status != 0 { throw ExitCode(status) }
    }
}

extension DemoCommand {
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

/// The demo's two namespaces and veth pair.
struct DemoNetwork {
    let tag: String
    var client: String { "\(tag)c" }
    var edge: String { "\(tag)e" }

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

    func create() throws {
        let steps: [[String]] = [
            ["ip", "netns", "add", client], ["ip", "netns", "add", edge],
            ["ip", "link", "add", "\(tag)a", "netns", client, "type", "veth", "peer", "name", "\(tag)b", "netns", edge],
            ["ip", "-n", client, "addr", "add", "198.18.0.2/24", "dev", "\(tag)a"],
            ["ip", "-n", edge, "addr", "add", "198.18.0.1/24", "dev", "\(tag)b"],
            ["ip", "-n", client, "link", "set", "\(tag)a", "up"], ["ip", "-n", edge, "link", "set", "\(tag)b", "up"],
            ["ip", "-n", client, "link", "set", "lo", "up"], ["ip", "-n", edge, "link", "set", "lo", "up"],
        ]
        for s in steps where sh(s) != 0 {
            throw ValidationError("could not set up the demo network: \(s.joined(separator: " "))")
        }
    }

    func remove() {
        sh(["ip", "netns", "del", client])
        sh(["ip", "netns", "del", edge])
        unlink("/tmp/\(tag).sock")
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

    func spawn(in namespace: String, _ command: [String], quiet: Bool) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["ip", "netns", "exec", namespace] + command
        if quiet { p.standardOutput = FileHandle.nullDevice }
        try p.run()
        return p
    }
}
