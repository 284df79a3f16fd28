import Foundation
import VoxEngine
import VoxMedia
import VoxWire
import VoxXDP

/// The control socket's commands over a running engine (DESIGN §5). Runs on the control
/// thread only, as `SessionControl` requires.
public final class EngineController {
    let runtime: EngineRuntime
    /// What the control side knows of each live session, by slot.
    struct Record {
        var id: UInt64
        var slot: Int32
        var worker: Int
        var profile: SRTPProfile
        var client: FlowKey
        var backend: Int
        var edgeSSRC: UInt32
        var created: Date
    }
    var sessions: [Int32: Record] = [:]
    /// Live sessions known to the control side.
    public var sessionCount: Int { sessions.count }
    var nextWorker = 0
    public weak var server: ControlServer?

    public init(runtime: EngineRuntime) {
        self.runtime = runtime
        // A session its worker ended (ICE failed) leaves the list as a dropped one does.
        runtime.control.onRelease = { [unowned self] slot in self.sessions[slot] = nil }
    }

    public func handle(_ request: ControlRequest) -> ControlReply {
        do {
            switch request.command {
            case "session.create": return try create(request)
            case "session.drop": return try drop(request)
            case "session.list": return .ok(["sessions": sessions.values.sorted { $0.id < $1.id }.map(describe)])
            case "session.show": return try show(request)
            case "stats": return stats()
            default:
                return .failure("unknown_command", "unknown command '\(request.command)'")
            }
        } catch {
            return .failure(error.code, error.message)
        }
    }

    func create(_ r: ControlRequest) throws(ControlError) -> ControlReply {
        guard !runtime.draining.load(ordering: .acquiring) else {
            throw ControlError(code: "draining", message: "the engine is draining: it takes no new sessions")
        }
        let profileName = try r.optionalString("profile") ?? SRTPProfile.aes128CmHmacSha1_80.description
        guard let profile = SRTPProfile(name: profileName) else {
            throw ControlError(code: "bad_argument", message: "unknown SRTP profile '\(profileName)'")
        }
        let clientKey = try keyMaterial(try r.string("client_key"), profile, name: "client_key")
        let edgeKeyBytes: [UInt8]
        if let given = try r.optionalString("edge_key") {
            edgeKeyBytes = try keyBytes(given, profile, name: "edge_key")
        } else {
            var rng = SystemRandomNumberGenerator()
            edgeKeyBytes = (0..<(profile.masterKeyLength + profile.masterSaltLength)).map { _ in UInt8.random(in: 0...255, using: &rng) }
        }
        let clientText = try r.string("client")
        guard let (address, port) = EngineController.parseEndpoint(clientText) else {
            throw ControlError(code: "bad_argument", message: "'client' must be ip:port or [ipv6]:port, not '\(clientText)'")
        }
        let backend = try r.optionalInteger("backend") ?? 0
        guard backend >= 0, backend < runtime.backends.table.count else {
            throw ControlError(code: "bad_argument", message: "no backend \(backend) (there are \(runtime.backends.table.count))")
        }
        let workers = runtime.configuration.workers
        let worker = try r.optionalInteger("worker") ?? (nextWorker % workers)
        guard worker >= 0, worker < workers else { throw ControlError(code: "bad_argument", message: "no worker \(worker)") }
        let c = runtime.configuration
        let flow = FlowKey(
            remoteAddress: address, remotePort: port, localAddress: c.mediaAddress, localPort: UDPPort(c.mediaPort))
        var rng = SystemRandomNumberGenerator()
        let ssrc = UInt32.random(in: 1...UInt32.max, using: &rng)
        let edgeKey = KeyMaterial(
            key: Array(edgeKeyBytes[0..<profile.masterKeyLength]), salt: Array(edgeKeyBytes[profile.masterKeyLength...]))!
        let slot: Int32
        do {
            slot = try runtime.control.create(on: worker) { command in
                command.profile = profile
                command.clientKey = clientKey
                command.edgeKey = edgeKey
                command.flow = flow
                command.backend = Int32(backend)
                command.edgeSSRC = ssrc
                command.firstSequence = UInt16.random(in: 0...UInt16.max, using: &rng)
                command.firstTimestamp = UInt32.random(in: 0...UInt32.max, using: &rng)
            }
        } catch .full {
            throw ControlError(code: "full", message: "all \(runtime.store.capacity) session slots are in use")
        } catch {
            throw ControlError(code: "busy", message: "worker \(worker) is not taking commands; try again")
        }
        nextWorker += 1
        // The reply leaves once the worker has applied the command, so the session's
        // 5-tuples are admitted (vox_flows) and its backend port open before the client,
        // told to send, can. The worker admits them itself; nothing else does.
        guard awaitApplied(runtime.control.ticket(worker: worker)) else {
            try? runtime.control.drop(slot)
            throw ControlError(
                code: "busy",
                message: "worker \(worker) did not take the session within \(EngineController.applyTimeout); try again")
        }
        let record = Record(
            id: UInt64(slot) << 32 | UInt64(nextWorker), slot: slot, worker: worker, profile: profile, client: flow,
            backend: backend, edgeSSRC: ssrc, created: Date())
        sessions[slot] = record
        var fields = describe(record)
        fields["edge_key"] = Data(edgeKeyBytes).base64EncodedString()
        return .ok(["session": fields])
    }

    /// How long a request waits for a worker to apply its command. A running worker does
    /// within a burst (its doorbell wakes it from poll); one that does not is stalled, and
    /// /healthz says so.
    static let applyTimeout = Duration.milliseconds(250)

    /// Waits, on the control thread, until the worker has applied the command `ticket`
    /// names; false after `applyTimeout`.
    func awaitApplied(_ ticket: SessionControl.Ticket) -> Bool {
        let deadline = ContinuousClock.now + EngineController.applyTimeout
        while !runtime.control.isApplied(ticket) {
            guard ContinuousClock.now < deadline else { return false }
            usleep(20)
        }
        return true
    }

    func findRecord(_ r: ControlRequest) throws(ControlError) -> Record {
        if let id = try r.optionalInteger("session") {
            guard let record = sessions.values.first(where: { $0.id == UInt64(id) }) else {
                throw ControlError(code: "not_found", message: "no session \(id)")
            }
            return record
        }
        guard let slot = try r.optionalInteger("slot") else {
            throw ControlError(code: "bad_argument", message: "give 'session' (an id) or 'slot'")
        }
        guard let record = sessions[Int32(truncatingIfNeeded: slot)] else {
            throw ControlError(code: "not_found", message: "no session in slot \(slot)")
        }
        return record
    }

    func drop(_ r: ControlRequest) throws(ControlError) -> ControlReply {
        let record = try findRecord(r)
        do {
            try runtime.control.drop(record.slot)
        } catch {
            throw ControlError(code: "busy", message: "worker \(record.worker) is not taking commands; try again")
        }
        sessions[record.slot] = nil
        return .ok(["dropped": NSNumber(value: record.id)])
    }

    func show(_ r: ControlRequest) throws(ControlError) -> ControlReply {
        .ok(["session": describe(try findRecord(r))])
    }

    func describe(_ r: Record) -> [String: Any] {
        let counts = runtime.store.packetCounts(slot: Int(r.slot))
        return [
            "id": NSNumber(value: r.id), "slot": Int(r.slot), "worker": r.worker, "profile": r.profile.description,
            "client": EngineController.format(r.client.remoteAddress, r.client.remotePort), "backend": r.backend,
            "edge_ssrc": NSNumber(value: r.edgeSSRC), "packets_from_client": NSNumber(value: counts.fromClient),
            "packets_to_client": NSNumber(value: counts.toClient),
            "age_seconds": NSNumber(value: Date().timeIntervalSince(r.created).rounded()),
        ]
    }

    func stats() -> ControlReply {
        let workers: [[String: Any]] = runtime.counters.enumerated().map { w, c in
            var verdicts: [String: Any] = [:]
            for v in PacketVerdict.allCases { verdicts["\(v)"] = NSNumber(value: c[v]) }
            var drops: [String: Any] = [:]
            for d in DropReason.allCases where c[d] > 0 { drops["\(d)"] = NSNumber(value: c[d]) }
            var worker: [String: Any] = [
                "worker": w, "verdicts": verdicts, "drops": drops, "received": NSNumber(value: c.received),
                "handed_in": NSNumber(value: c.handedIn), "bursts": NSNumber(value: c.bursts),
                "busy_ns": NSNumber(value: c.busyNanoseconds), "idle_ns": NSNumber(value: c.idleNanoseconds),
            ]
            if runtime.xdp != nil {
                let k = runtime.socketStatistics(worker: w)
                worker["kernel_drops"] = [
                    "rx_dropped": NSNumber(value: k.rxDropped), "rx_ring_full": NSNumber(value: k.rxRingFull),
                    "rx_fill_ring_empty": NSNumber(value: k.rxFillRingEmpty),
                    "rx_invalid_descriptors": NSNumber(value: k.rxInvalidDescriptors),
                    "tx_invalid_descriptors": NSNumber(value: k.txInvalidDescriptors),
                ]
            }
            return worker
        }
        let table = runtime.backends.table
        let backendList: [[String: Any]] = (0..<table.count).map { i in
            let b = table[i]
            return ["index": i, "address": EngineController.format(b.address, b.port), "mac": "\(b.mac)", "state": "\(b.state)"]
        }
        var reply: [String: Any] = [
            "backends": backendList,
            "sessions": sessions.count, "capacity": runtime.store.capacity, "workers": workers, "io": runtime.io,
            "control": ["requests": server?.requests ?? 0, "errors": server?.errors ?? 0, "clients": server?.connectedClients ?? 0],
        ]
        if let xdp = runtime.xdp {
            var counters: [String: Any] = [:]
            if let read = xdp.programCounters() {
                for counter in XDPCounter.allCases { counters["\(counter)"] = NSNumber(value: read[counter]) }
            }
            reply["xdp"] = [
                "interface": xdp.interface, "mode": "\(xdp.mode)", "zerocopy": xdp.sockets.isZeroCopy,
                "hugepages": xdp.sockets.region.usesHugePages, "counters": counters,
            ]
        }
        return .ok(reply)
    }

    func keyBytes(_ base64: String, _ profile: SRTPProfile, name: String) throws(ControlError) -> [UInt8] {
        guard let data = Data(base64Encoded: base64) else {
            throw ControlError(code: "bad_argument", message: "'\(name)' must be base64")
        }
        let want = profile.masterKeyLength + profile.masterSaltLength
        guard data.count == want else {
            throw ControlError(code: "bad_argument", message: "'\(name)' must be \(want) bytes (key + salt) for \(profile)")
        }
        return [UInt8](data)
    }

    func keyMaterial(_ base64: String, _ profile: SRTPProfile, name: String) throws(ControlError) -> KeyMaterial {
        let bytes = try keyBytes(base64, profile, name: name)
        return KeyMaterial(key: Array(bytes[0..<profile.masterKeyLength]), salt: Array(bytes[profile.masterKeyLength...]))!
    }

    /// "1.2.3.4:5" or "[2001:db8::1]:5".
    public static func parseEndpoint(_ text: String) -> (IPAddress, UDPPort)? {
        let host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else { return nil }
            host = text[text.index(after: text.startIndex)..<close]
            portText = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        guard let address = IPAddress(String(host)), let port = UInt16(portText), port > 0 else { return nil }
        return (address, UDPPort(port))
    }

    static func format(_ address: IPAddress, _ port: UDPPort) -> String {
        address.isIPv4 ? "\(address):\(port)" : "[\(address)]:\(port)"
    }
}
