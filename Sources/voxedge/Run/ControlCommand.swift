import ArgumentParser
import Foundation
import Glibc
import VoxControl

/// Options every `voxedge ctl` command shares.
struct ControlOptions: ParsableArguments {
    @Option(help: "The control socket.") var socket = "/run/voxedge/control.sock"
    @Flag(help: "Print the engine's JSON reply instead of a table.") var json = false
}

struct ControlCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ctl",
        abstract: "Talk to a running engine over its control socket.",
        subcommands: [Session.self, Backend.self, Route.self, Stats.self, Drain.self, Undrain.self, Watch.self]
    )

    struct Watch: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Stream the engine's events (sessions created and ended, flushes, drains) until interrupted.",
            discussion: "One line per event; with --json, the engine's JSON line. A watcher that does not keep up loses events (the engine counts them and says how many), never slows the engine.")
        @OptionGroup var options: ControlOptions
        @Option(help: "Event kinds, comma-separated: session, backend, edge (default: all).") var events: String?

        func run() throws {
            let connection = try ControlConnection(path: options.socket)
            var request: [String: Any] = ["cmd": "subscribe"]
            if let events { request["events"] = events.split(separator: ",").map { String($0) } }
            let reply = try connection.call(request)
            guard reply["ok"] as? Bool == true else { return try ControlClient.print(reply, json: options.json) { _ in "" } }
            if !options.json { print("watching: \((reply["subscribed"] as? [String])?.joined(separator: ", ") ?? "")") }
            fflush(nil)
            while true {
                let event = try connection.nextLine()
                if options.json {
                    let data = try JSONSerialization.data(withJSONObject: event, options: [.sortedKeys])
                    print(String(decoding: data, as: UTF8.self))
                } else {
                    let name = event["event"] as? String ?? "?"
                    let rest = event.filter { $0.key != "event" && $0.key != "time" }.sorted { $0.key < $1.key }
                        .map { "\($0.key)=\($0.value is NSNull ? "-" : "\($0.value)")" }.joined(separator: " ")
                    print("\(name) \(rest)")
                }
                fflush(nil)
            }
        }
    }

    struct Drain: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Take no new sessions; exit when the live ones end or at the deadline (the SIGTERM drain on command).")
        @OptionGroup var options: ControlOptions
        @Option(help: "Seconds the live calls may go on (default: the engine's drain_timeout_seconds).") var deadline: Int?

        func run() throws {
            var request: [String: Any] = ["cmd": "edge.drain"]
            if let deadline { request["deadline_seconds"] = deadline }
            let reply = try ControlClient.call(options.socket, request)
            try ControlClient.print(reply, json: options.json) { r in
                "draining: \(r["sessions"] ?? 0) session(s) live, the engine exits when they end or in \(r["deadline_seconds"] ?? "?") s"
            }
        }
    }

    struct Undrain: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Take back a drain started with `ctl drain`.")
        @OptionGroup var options: ControlOptions

        func run() throws {
            let reply = try ControlClient.call(options.socket, ["cmd": "edge.undrain"])
            try ControlClient.print(reply, json: options.json) { r in
                r["was_draining"] as? Bool == true ? "taking sessions again" : "was not draining"
            }
        }
    }

    struct Session: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Sessions.", subcommands: [Create.self, Drop.self, List.self, Show.self])

        struct Create: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Create a session with static SRTP keys (SDES-style: SIP trunks, benchmarks).")
            @OptionGroup var options: ControlOptions
            @Option(help: "The client's address, ip:port or [ipv6]:port.") var client: String
            @Option(help: "The client's master key + salt, base64.") var clientKey: String
            @Option(help: "The edge's master key + salt, base64 (generated when absent).") var edgeKey: String?
            @Option(help: "SRTP profile.") var profile = "AES_CM_128_HMAC_SHA1_80"
            @Option(help: "The backend's id or index (default: placement chooses, by model and load).") var backend: String?
            @Option(help: "Worker to place it on.") var worker: Int?
            @Option(help: "The SSRC the client sends with (sessions naming theirs may share a 5-tuple).") var clientSSRC: UInt32?
            @Option(help: "The model its backend is told in the session's start (backend protocol).") var model: String?
            @Option(help: "The subject its backend is told in the session's start.") var subject: String?

            func run() throws {
                var request: [String: Any] = [
                    "cmd": "session.create", "client": client, "client_key": clientKey, "profile": profile,
                ]
                if let backend { request["backend"] = Int(backend).map { $0 as Any } ?? backend }
                if let edgeKey { request["edge_key"] = edgeKey }
                if let worker { request["worker"] = worker }
                if let clientSSRC { request["client_ssrc"] = clientSSRC }
                if let model { request["model"] = model }
                if let subject { request["subject"] = subject }
                let reply = try ControlClient.call(options.socket, request)
                try ControlClient.print(reply, json: options.json) { r in
                    ControlClient.table([r["session"] as? [String: Any] ?? [:]], columns: ControlClient.sessionColumns + ["edge_key"])
                }
            }
        }

        struct Drop: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "End a session.")
            @OptionGroup var options: ControlOptions
            @Argument(help: "The session id.") var id: UInt64

            func run() throws {
                let reply = try ControlClient.call(options.socket, ["cmd": "session.drop", "session": id])
                try ControlClient.print(reply, json: options.json) { _ in "dropped \(id)" }
            }
        }

        struct List: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "List sessions.")
            @OptionGroup var options: ControlOptions

            func run() throws {
                let reply = try ControlClient.call(options.socket, ["cmd": "session.list"])
                try ControlClient.print(reply, json: options.json) { r in
                    ControlClient.table(r["sessions"] as? [[String: Any]] ?? [], columns: ControlClient.sessionColumns)
                }
            }
        }

        struct Show: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Show one session.")
            @OptionGroup var options: ControlOptions
            @Argument(help: "The session id.") var id: UInt64

            func run() throws {
                let reply = try ControlClient.call(options.socket, ["cmd": "session.show", "session": id])
                try ControlClient.print(reply, json: options.json) { r in
                    let s = r["session"] as? [String: Any] ?? [:]
                    return s.keys.sorted().map { "\($0): \(s[$0]!)" }.joined(separator: "\n")
                }
            }
        }
    }

    struct Backend: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The backend registry (docs/routing.md).",
            subcommands: [List.self, Upsert.self, Report.self, Remove.self, Drain.self, Undrain.self])

        static let columns = ["id", "index", "address", "state", "models", "capacity", "sessions_here", "rtt_ms", "score_ms"]

        struct List: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "List backends: state, models, load, RTT, score.")
            @OptionGroup var options: ControlOptions

            func run() throws {
                let reply = try ControlClient.call(options.socket, ["cmd": "backend.list"])
                try ControlClient.print(reply, json: options.json) { r in
                    ControlClient.table(r["backends"] as? [[String: Any]] ?? [], columns: Backend.columns)
                }
            }
        }

        struct Upsert: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Add a backend, or change one (by id).")
            @OptionGroup var options: ControlOptions
            @Argument(help: "The backend's id.") var id: String
            @Option(help: "Its address (IPv4 or IPv6).") var address: String
            @Option(help: "Its RTP port.") var port: Int
            @Option(help: "A file holding its backend-protocol key (sent base64 to the engine).") var keyFile: String?
            @Option(help: "Its region.") var region: String?
            @Option(help: "A model it has loaded, name or name@version (repeatable).") var model: [String] = []
            @Option(help: "Sessions it takes at most.") var capacity: Int?
            @Flag(help: "It takes no new session.") var draining = false

            func run() throws {
                var backend: [String: Any] = ["id": id, "address": address, "port": port]
                if let keyFile {
                    guard let data = FileManager.default.contents(atPath: keyFile) else {
                        throw ValidationError("cannot read --key-file \(keyFile)")
                    }
                    var bytes = [UInt8](data.prefix(4097))
                    while let last = bytes.last, last == 0x20 || last == 0x09 || last == 0x0A || last == 0x0D { bytes.removeLast() }
                    backend["key"] = Data(bytes).base64EncodedString()
                }
                if let region { backend["region"] = region }
                if !model.isEmpty { backend["models"] = model }
                if let capacity { backend["capacity"] = capacity }
                if draining { backend["draining"] = true }
                let reply = try ControlClient.call(options.socket, ["cmd": "backend.upsert", "backend": backend])
                try ControlClient.print(reply, json: options.json) { r in
                    ControlClient.table([r["backend"] as? [String: Any] ?? [:]], columns: Backend.columns)
                }
            }
        }

        struct Report: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Report one backend's load.")
            @OptionGroup var options: ControlOptions
            @Argument(help: "The backend's id.") var id: String
            @Option(help: "Sessions it carries.") var sessions: Int
            @Option(help: "Requests waiting.") var queueDepth: Int
            @Option(help: "Milliseconds one request takes.") var serviceTimeMs: Double
            @Option(help: "Its capacity now.") var capacity: Int?

            func run() throws {
                var report: [String: Any] = [
                    "backend": id, "sessions": sessions, "queue_depth": queueDepth, "service_time_ms": serviceTimeMs,
                ]
                if let capacity { report["capacity"] = capacity }
                let reply = try ControlClient.call(options.socket, ["cmd": "backend.report", "reports": [report]])
                try ControlClient.print(reply, json: options.json) { r in
                    (r["updated"] as? Int ?? 0) == 1 ? "reported" : "no backend '\(id)'"
                }
            }
        }

        struct Remove: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Remove a backend that carries no session.")
            @OptionGroup var options: ControlOptions
            @Argument(help: "The backend's id.") var id: String

            func run() throws {
                let reply = try ControlClient.call(options.socket, ["cmd": "backend.remove", "backend": id])
                try ControlClient.print(reply, json: options.json) { _ in "removed \(id)" }
            }
        }

        struct Drain: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Give a backend no new session; its own go on.")
            @OptionGroup var options: ControlOptions
            @Argument(help: "The backend's id.") var id: String

            func run() throws {
                let reply = try ControlClient.call(options.socket, ["cmd": "backend.drain", "backend": id])
                try ControlClient.print(reply, json: options.json) { _ in "\(id) draining" }
            }
        }

        struct Undrain: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Give a drained backend new sessions again.")
            @OptionGroup var options: ControlOptions
            @Argument(help: "The backend's id.") var id: String

            func run() throws {
                let reply = try ControlClient.call(options.socket, ["cmd": "backend.undrain", "backend": id])
                try ControlClient.print(reply, json: options.json) { _ in "\(id) taking sessions" }
            }
        }
    }

    struct Route: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Placement.", subcommands: [Explain.self])

        struct Explain: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Where a call asking for a model would go now: every candidate, its inputs and score, and why.")
            @OptionGroup var options: ControlOptions
            @Option(help: "The model asked for, name or name@version (default: the configured default).") var model: String?

            func run() throws {
                var request: [String: Any] = ["cmd": "route.explain"]
                if let model { request["model"] = model }
                let reply = try ControlClient.call(options.socket, request)
                try ControlClient.print(reply, json: options.json) { r in
                    let head = "model \(r["model"] is NSNull ? "(any)" : "\(r["model"] ?? "")"): "
                        + (r["chosen"] is NSNull ? "no backend (\(r["failure"] ?? ""))" : "\(r["chosen"] ?? "")")
                        + ", drawn from the best \(r["choices"] ?? "?")"
                    let rows = ControlClient.table(
                        r["candidates"] as? [[String: Any]] ?? [],
                        columns: ["backend", "score_ms", "rtt_ms", "queue_wait_ms", "load_penalty_ms", "stale_penalty_ms", "sessions", "capacity", "why"])
                    return head + "\n" + rows
                }
            }
        }
    }

    struct Stats: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Per-worker verdicts and drops, sessions, control requests.")
        @OptionGroup var options: ControlOptions

        func run() throws {
            let reply = try ControlClient.call(options.socket, ["cmd": "stats"])
            try ControlClient.print(reply, json: options.json) { r in
                func pairs(_ any: Any?, nonzero: Bool = false) -> String {
                    (any as? [String: Any] ?? [:]).filter { !nonzero || ($0.value as? Int ?? 1) != 0 }
                        .sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
                }
                var lines = ["sessions: \(r["sessions"] ?? 0) of \(r["capacity"] ?? 0) (\(pairs(r["sessions_by_state"], nonzero: true)))   io: \(r["io"] ?? "?")"]
                if let x = r["xdp"] as? [String: Any] {
                    lines.append(
                        "xdp: \(x["interface"] ?? "?") \(x["mode"] ?? "?") mode, zerocopy=\(x["zerocopy"] as? Bool ?? false) "
                            + "hugepages=\(x["hugepages"] as? Bool ?? false)  program: \(pairs(x["counters"], nonzero: true))")
                }
                for b in r["backends"] as? [[String: Any]] ?? [] {
                    // Kernel sockets: the kernel routes and resolves; only AF_XDP writes MACs itself.
                    let hop = r["io"] as? String == "xdp" ? "next hop \(b["mac"] ?? "?")" : "routed by the kernel"
                    lines.append("backend \(b["index"] ?? "?"): \(b["address"] ?? "?") \(b["state"] ?? "?") \(hop)")
                }
                for w in r["workers"] as? [[String: Any]] ?? [] {
                    let drops = pairs(w["drops"])
                    let busy = (w["busy_ns"] as? Double) ?? 0
                    let idle = (w["idle_ns"] as? Double) ?? 0
                    let load = busy + idle > 0 ? String(Double(Int(1000 * busy / (busy + idle))) / 10) + "%" : "-"
                    lines.append(
                        "worker \(w["worker"] ?? "?"): \(pairs(w["verdicts"]))  busy \(load)" + (drops.isEmpty ? "" : "  drops: \(drops)"))
                    let kernel = pairs(w["kernel_drops"], nonzero: true)
                    if !kernel.isEmpty { lines.append("  kernel (AF_XDP) drops: \(kernel)") }
                    let socket = pairs(w["socket_drops"], nonzero: true)
                    if !socket.isEmpty { lines.append("  socket port drops: \(socket)") }
                }
                if let c = r["control"] as? [String: Any] {
                    lines.append("control: requests=\(c["requests"] ?? 0) errors=\(c["errors"] ?? 0) clients=\(c["clients"] ?? 0)")
                }
                return lines.joined(separator: "\n")
            }
        }
    }
}

/// How `voxedge ctl` shows replies.
extension ControlClient {
    static let sessionColumns = ["id", "slot", "worker", "client", "backend", "profile", "packets_from_client", "packets_to_client"]

    /// Prints the reply (JSON, or `render`'s text); an error reply exits 1 with its message.
    static func print(_ reply: [String: Any], json: Bool, render: ([String: Any]) -> String) throws {
        if json {
            let data = try JSONSerialization.data(withJSONObject: reply, options: [.prettyPrinted, .sortedKeys])
            Swift.print(String(decoding: data, as: UTF8.self))
        }
        guard reply["ok"] as? Bool == true else {
            let e = reply["error"] as? [String: Any] ?? [:]
            if !json { FileHandle.standardError.write(Data("error \(e["code"] ?? "?"): \(e["message"] ?? "")\n".utf8)) }
            throw ExitCode(1)
        }
        if !json { Swift.print(render(reply)) }
    }

    static func table(_ rows: [[String: Any]], columns: [String]) -> String {
        let cells = [columns] + rows.map { row in columns.map { row[$0].map { "\($0)" } ?? "" } }
        let widths = columns.indices.map { c in cells.map { $0[c].count }.max() ?? 0 }
        return cells.map { row in
            row.enumerated().map { $1.padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(separator: "  ")
        }.joined(separator: "\n")
    }
}

