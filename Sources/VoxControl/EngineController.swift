import Foundation
import Logging
import VoxEngine
import VoxIO
import VoxMedia
import VoxSignaling
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
        /// The worker it was placed on; -1 for a WebRTC session (the worker whose queue gets
        /// its first valid check claims it).
        var worker: Int
        var profile: SRTPProfile
        /// The client's 5-tuple: given (static keys), or learned from checks (WebRTC).
        var client: FlowKey?
        /// The SSRC the create named: the session may share its 5-tuple with others that did.
        var clientSSRC: UInt32? = nil
        var backend: Int
        var edgeSSRC: UInt32
        var created: Date
        /// The keys as given (and generated): a retried create is told apart by them and gets
        /// its edge key again. Never logged nor shown but to that retry. Empty for WebRTC
        /// sessions (their keys come from DTLS, on the worker).
        var clientKey: [UInt8]
        var edgeKey: [UInt8]
        /// WebRTC sessions: what the offer's token asked for, and when it was answered.
        var webRTC: WebRTCInfo? = nil
    }

    struct WebRTCInfo {
        var subject: String
        var model: String
        var source: String
    }
    var sessions: [Int32: Record] = [:]
    /// Where session records go (`voxedge run`'s logger, set by `ControlPlane`).
    public var logger = Logger(label: "voxedge")
    /// Live sessions known to the control side.
    public var sessionCount: Int { sessions.count }
    var nextWorker = 0
    /// New sessions' backends by how they were found: `placed`, `named` (by `session.create`),
    /// `no_backend` (refused): `voxedge_placements_total`.
    var placements: [String: Int] = ["placed": 0, "named": 0, "no_backend": 0]
    /// Load reports applied (`voxedge_backend_reports_total`).
    var reportsApplied = 0
    var lastRTTMeasurement: UInt64 = 0
    public weak var server: ControlServer?
    /// The signaling listener's URL and certificate fingerprint, for `stats` (set at start).
    var signalingInfo: [String: Any]? = nil
    /// The public listener, for its counters in `stats` (set at start, with `signalingInfo`).
    var signalingServer: SignalingServer? = nil
    /// Re-reads the listener's certificate and token keys, off the control thread (it waits
    /// for the listener's own loop).
    var reloadSignaling: (() -> ControlReply)? = nil

    public init(runtime: EngineRuntime) {
        self.runtime = runtime
        // A session its worker ended (ICE failed) leaves the list as a dropped one does.
        runtime.control.onRelease = { [unowned self] slot in
            self.retire(slot)
            self.runtime.handshakes.forget(slot: slot)
        }
        // `subscribe`: what the workers report, and sessions no worker ever claimed.
        runtime.onWorkerEvent = { [unowned self] worker, event in
            switch event.kind {
            case .ended:
                self.record(ended: event.sessionID, slot: event.slot, worker: worker, BackendEndReason(rawValue: event.reason))
            case .flush:
                self.server?.publish(
                    "backend.flush",
                    [
                        "session": NSNumber(value: event.sessionID), "slot": Int(event.slot), "worker": worker,
                        "last_sequence_sent": Int(event.sequence), "packets_dropped": Int(event.count),
                    ])
            case .backendEnded:
                break  // `session.ended` carries the backend's reason
            }
        }
        runtime.control.onReap = { [unowned self] slot, id, reason in
            self.retire(slot)
            self.record(ended: id, slot: slot, worker: nil, reason)
        }
    }

    /// Sessions that left `sessions` (dropped, or released by their worker) and whose worker
    /// has not yet said how they ended: their record is written when it does.
    var ending: [Int32: Record] = [:]

    /// `slot`'s session is no longer live; its record waits for its end (`record(ended:)`).
    func retire(_ slot: Int32) {
        guard let record = sessions.removeValue(forKey: slot) else { return }
        routes.registry.sessionEnded(on: Int32(record.backend))
        ending[slot] = record
    }

    /// The record of a session that ended (issue 19, item 4): one info log line and one
    /// `session.ended` event with its duration, reason, backend, kind, SRTP profile, model and
    /// subject, and what the edge saw (packets each way, the client's loss and jitter). Read
    /// before the control thread frees the slot: the worker is done with it.
    func record(ended id: UInt64, slot: Int32, worker: Int?, _ reason: BackendEndReason) {
        var fields: [String: Any] = [
            "session": NSNumber(value: id), "slot": Int(slot), "worker": worker.map { $0 as Any } ?? NSNull(),
            "reason": "\(reason)",
        ]
        if let record = ending[slot] ?? sessions[slot], record.id == id {
            ending[slot] = nil
            let counts = runtime.store.packetCounts(slot: Int(slot))
            let client = runtime.store.clientReceiveStatistics(slot: Int(slot))
            fields["duration_seconds"] = (Date().timeIntervalSince(record.created) * 1000).rounded() / 1000
            fields["kind"] = record.webRTC == nil ? "static" : "webrtc"
            fields["backend"] = record.backend
            fields["backend_id"] = routes.registry[Int32(record.backend)]?.spec.id ?? ""
            fields["packets_from_client"] = NSNumber(value: counts.fromClient)
            fields["packets_to_client"] = NSNumber(value: counts.toClient)
            fields["client_packets_lost"] = NSNumber(value: client.lost)
            fields["client_jitter_ms"] = (client.jitterMilliseconds * 100).rounded() / 100
            // A WebRTC session's profile is what its DTLS negotiated: known if media flowed.
            if record.webRTC == nil {
                fields["profile"] = record.profile.description
            } else if counts.fromClient > 0 {
                fields["profile"] = client.profile.description
            }
            if let w = record.webRTC {
                fields["model"] = w.model
                fields["subject"] = w.subject
            }
        }
        server?.publish("session.ended", fields)
        var metadata: Logger.Metadata = [:]
        for (k, v) in fields { metadata[k] = "\(v is NSNull ? "-" : v)" }
        logger.info("session ended", metadata: metadata)
    }

    public func handle(_ request: ControlRequest) -> ControlReply {
        do {
            if let reply = try handleRouting(request) { return reply }
            switch request.command {
            case "session.create": return try create(request)
            case "session.offer": return try offer(request)
            case "session.drop": return try drop(request)
            case "session.list": return .ok(["sessions": sessions.values.sorted { $0.id < $1.id }.map(describe)])
            case "session.show": return try show(request)
            case "stats": return stats()
            case "edge.drain": return try drainEdge(request)
            case "edge.undrain": return try undrainEdge()
            case "signaling.reload":
                guard let reload = reloadSignaling else {
                    return .failure("signaling", "no signaling listener is configured")
                }
                return reload()
            default:
                return .failure("unknown_command", "unknown command '\(request.command)'")
            }
        } catch {
            return .failure(error.code, error.message)
        }
    }

    /// `edge.drain` (`deadline_seconds`: 0...86400, default `drain_timeout_seconds`): from now
    /// on no new session (POST → 503, `/readyz` → 503); the live ones go on; the process exits
    /// when the last one ends or at the deadline, ending the rest. Asked again, it moves the
    /// deadline. `edge.undrain` takes it back before then.
    func drainEdge(_ r: ControlRequest) throws(ControlError) -> ControlReply {
        let seconds = try r.optionalInteger("deadline_seconds", in: 0...86_400) ?? runtime.configuration.drainTimeoutSeconds
        guard !runtime.signalled.load(ordering: .acquiring) else {
            throw ControlError(code: "stopping", message: "the engine is already stopping (a signal): it drains until it exits")
        }
        let deadline = MonotonicClock.now() &+ UInt64(seconds) &* 1_000_000_000
        runtime.draining.store(true, ordering: .releasing)
        runtime.commandedDrainDeadline.store(max(deadline, 1), ordering: .releasing)
        server?.publish("edge.draining", ["deadline_seconds": seconds, "sessions": sessions.count])
        return .ok(["draining": true, "deadline_seconds": seconds, "sessions": sessions.count])
    }

    /// `edge.undrain`: takes a commanded drain back (sessions accepted, `/readyz` 200 again);
    /// an engine that was not draining says so and stays as it is. A signal's drain stays.
    func undrainEdge() throws(ControlError) -> ControlReply {
        guard !runtime.signalled.load(ordering: .acquiring) else {
            throw ControlError(code: "stopping", message: "the engine is stopping (a signal): its drain cannot be taken back")
        }
        let was = runtime.commandedDrainDeadline.exchange(0, ordering: .acquiringAndReleasing) != 0
        runtime.draining.store(false, ordering: .releasing)
        if was { server?.publish("edge.undrained", ["sessions": sessions.count]) }
        return .ok(["draining": false, "was_draining": was, "sessions": sessions.count])
    }

    /// Ends every live session (the drain's deadline): their slots, flows and keys go.
    /// Returns how many there were.
    public func endAll() -> Int {
        let records = Array(sessions.values)
        for record in records {
            try? runtime.control.drop(record.slot, reason: .drained)
            retire(record.slot)
        }
        return records.count
    }

    func create(_ r: ControlRequest) throws(ControlError) -> ControlReply {
        guard !runtime.draining.load(ordering: .acquiring) else {
            throw ControlError(code: "draining", message: "the engine is draining: it takes no new sessions")
        }
        let c = runtime.configuration
        let profileName = try r.optionalString("profile") ?? SRTPProfile.aes128CmHmacSha1_80.description
        guard let profile = SRTPProfile(name: profileName) else {
            throw ControlError(code: "bad_argument", message: "unknown SRTP profile '\(profileName)'")
        }
        let clientKey = try keyBytes(try r.string("client_key"), profile, name: "client_key")
        var givenEdgeKey: [UInt8]? = nil
        if let given = try r.optionalString("edge_key") {
            givenEdgeKey = try keyBytes(given, profile, name: "edge_key")
        }
        if let givenEdgeKey, EngineController.same(givenEdgeKey, clientKey) {
            throw ControlError(
                code: "bad_argument",
                message: "'edge_key' equals 'client_key': each direction needs a key of its own")
        }
        let (address, clientPort) = try EngineController.endpoint(try r.string("client"), field: "client")
        if let reason = c.peerProblem(address, clientPort) {
            throw ControlError(code: "bad_argument", message: "'client' refused: \(reason)")
        }
        let model = try placementModel(try r.optionalString("model"))
        let named = r.arguments["backend"]
        let givenWorker = try r.optionalInteger("worker", in: 0..<c.workers)
        let clientSSRC = try r.optionalInteger("client_ssrc", in: UInt32.min...UInt32.max)
        let stream = try EngineController.stream(
            ssrc: clientSSRC ?? 0, payloadType: try r.optionalInteger("payload_type", in: UInt8(0)...127) ?? 111,
            model: model.map { "\($0)" } ?? "", subject: try r.optionalString("subject") ?? "")
        let flow = FlowKey(
            remoteAddress: address, remotePort: UDPPort(clientPort), localAddress: c.mediaAddress,
            localPort: UDPPort(c.mediaPort))
        // A client 5-tuple belongs to one session, or to sessions that each name their client's
        // SSRC (found by 5-tuple and SSRC): any other second session would take the first's
        // packets (they would fail its keys) and, dropped, take the flow from the first. The same
        // request again (a retry after a lost reply) gets the session it made.
        var sharedWorker: Int? = nil
        let holders = runtime.control.slots(ofClient: flow)
        if !holders.isEmpty {
            let shown = EngineController.format(address, UDPPort(clientPort))
            let records = holders.compactMap { sessions[$0] }
            guard records.count == holders.count else {
                let held = holders.first { sessions[$0] == nil } ?? holders[0]
                throw ControlError(
                    code: "flow_in_use",
                    message: "client \(shown) is held by the session in slot \(held); use another address:port")
            }
            if let holder = records.first(where: { $0.clientSSRC == clientSSRC }) {
                let retried = EngineController.same(holder.clientKey, clientKey) && holder.profile == profile
                    && (givenEdgeKey.map { EngineController.same($0, holder.edgeKey) } ?? true)
                    && (named == nil || named is NSNull || (try? namedBackend(named!)) == Int32(holder.backend))
                    && (givenWorker ?? holder.worker) == holder.worker
                guard retried else {
                    if let clientSSRC {
                        throw ControlError(
                            code: "ssrc_in_use",
                            message: "client \(shown) already sends client_ssrc \(clientSSRC) for session \(holder.id) "
                                + "(slot \(holder.slot)); drop that session first or use another SSRC")
                    }
                    throw ControlError(
                        code: "flow_in_use",
                        message: "client \(shown) is held by session \(holder.id) (slot \(holder.slot)); drop that "
                            + "session first or use another address:port")
                }
                var fields = describe(holder)
                fields["edge_key"] = Data(holder.edgeKey).base64EncodedString()
                return .ok(["session": fields])
            }
            if let plain = records.first(where: { $0.clientSSRC == nil }) {
                throw ControlError(
                    code: "flow_in_use",
                    message: "client \(shown) is held by session \(plain.id) (slot \(plain.slot)), which names no "
                        + "client_ssrc: only sessions that each name their client_ssrc share a 5-tuple; drop that "
                        + "session first or use another address:port")
            }
            let first = records[0]
            guard clientSSRC != nil else {
                throw ControlError(
                    code: "flow_in_use",
                    message: "client \(shown) is shared by \(records.count) session(s) multiplexed by SSRC, session "
                        + "\(first.id) (slot \(first.slot), client_ssrc \(first.clientSSRC ?? 0)) the first: a session "
                        + "on it must name its client_ssrc too")
            }
            // Sessions sharing a 5-tuple share its owner: one worker finds them all.
            if let givenWorker, givenWorker != first.worker {
                throw ControlError(
                    code: "bad_argument",
                    message: "'worker' \(givenWorker): client \(shown)'s sessions are on worker \(first.worker), and "
                        + "sessions sharing a 5-tuple share its worker")
            }
            sharedWorker = first.worker
        }
        let backend = Int(try chooseBackend(named: named, model: model))
        let worker = sharedWorker ?? givenWorker ?? (nextWorker % c.workers)
        var rng = SystemRandomNumberGenerator()
        let edgeKeyBytes = givenEdgeKey ?? (0..<(profile.masterKeyLength + profile.masterSaltLength)).map { _ in
            UInt8.random(in: 0...255, using: &rng)
        }
        let ssrc = UInt32.random(in: 1...UInt32.max, using: &rng)
        // On the socket port each session's backend leg is a socket of its own: bind it here,
        // so a port someone else holds fails this create with its reason instead of leaving
        // the session sending into nowhere.
        let (backendSocket, boundSlot) = try bindBackendLeg()
        let slot: Int32
        var sessionID: UInt64 = 0
        do {
            slot = try runtime.control.create(on: worker, slot: boundSlot) { command in
                // One id for the session everywhere: the control socket, signaling, the
                // worker, and the backend protocol.
                command.sessionID = self.newID(slot: command.slot)
                sessionID = command.sessionID
                command.backendStream = stream
                command.backendSocket = backendSocket
                command.profile = profile
                command.clientKey = EngineController.material(clientKey, profile)
                command.edgeKey = EngineController.material(edgeKeyBytes, profile)
                command.flow = flow
                command.clientSSRC = clientSSRC
                command.backend = Int32(backend)
                command.edgeSSRC = ssrc
                command.firstSequence = UInt16.random(in: 0...UInt16.max, using: &rng)
                command.firstTimestamp = UInt32.random(in: 0...UInt32.max, using: &rng)
            }
        } catch .full {
            if backendSocket >= 0 { close(backendSocket) }
            throw ControlError(code: "full", message: "all \(runtime.store.capacity) session slots are in use")
        } catch {
            if backendSocket >= 0 { close(backendSocket) }
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
            id: sessionID, slot: slot, worker: worker, profile: profile, client: flow,
            clientSSRC: clientSSRC, backend: backend, edgeSSRC: ssrc, created: Date(), clientKey: clientKey,
            edgeKey: edgeKeyBytes)
        sessions[slot] = record
        placed(on: Int32(backend))
        server?.publish(
            "session.created",
            [
                "session": NSNumber(value: record.id), "slot": Int(slot), "kind": "static", "worker": worker,
                "backend": backend, "backend_id": routes.registry[Int32(backend)]?.spec.id ?? "", "client": EngineController.format(flow.remoteAddress, flow.remotePort),
            ])
        var fields = describe(record)
        fields["edge_key"] = Data(edgeKeyBytes).base64EncodedString()
        return .ok(["session": fields])
    }

    /// On the socket port each session's backend leg is a socket of its own: bound here, for
    /// the slot the next create takes, so a port someone else holds fails the create with
    /// its reason instead of leaving the session sending into nowhere. (-1, nil) on AF_XDP.
    func bindBackendLeg() throws(ControlError) -> (socket: Int32, slot: Int32?) {
        guard runtime.io == "socket" else { return (-1, nil) }
        let c = runtime.configuration
        guard let next = runtime.control.nextSlot() else {
            throw ControlError(code: "full", message: "all \(runtime.store.capacity) session slots are in use")
        }
        let port = UDPPort(c.backendPortBase &+ UInt16(truncatingIfNeeded: next))
        do {
            return (try SocketQueue.bind(c.backendLegAddress, port, reusePort: false), next)
        } catch {
            runtime.control.setAside(next)
            throw ControlError(
                code: "backend_port_unavailable",
                message: "the backend-leg port \(EngineController.format(c.backendLegAddress, port)) of slot \(next) "
                    + "cannot be bound (\(String(cString: strerror(error.errno)))): another process holds it; "
                    + "the next create tries another slot")
        }
    }

    /// What a session's backend is told in its start: Opus at 48 kHz (RFC 7587), with the
    /// call's model and subject (each at most 256 bytes, as the token's claims).
    static func stream(ssrc: UInt32, payloadType: UInt8, model: String, subject: String) throws(ControlError)
        -> BackendStreamDescription
    {
        for (name, value) in [("model", model), ("subject", subject)]
        where value.utf8.count > BackendStreamDescription.textCapacity {
            throw ControlError(
                code: "bad_argument", message: "'\(name)' is over \(BackendStreamDescription.textCapacity) bytes")
        }
        guard
            let stream = BackendStreamDescription(
                ssrc: ssrc, clockRate: 48_000, payloadType: payloadType, channels: 2, codecName: "opus", model: model,
                subject: subject)
        else { throw ControlError(code: "bad_argument", message: "payload type \(payloadType) is not 0...127") }
        return stream
    }

    /// Session ids: the slot in the high half (so `session show` finds it at once), a
    /// counter of creates in the low half (so a reused slot never repeats an id).
    func newID(slot: Int32) -> UInt64 {
        created &+= 1
        return UInt64(UInt32(bitPattern: slot)) << 32 | UInt64(created)
    }
    var created: UInt32 = 0

    /// How long a WebRTC client has from its answer to connected media (ICE and DTLS).
    public static let connectTimeout: UInt64 = 10_000_000_000

    /// A WebRTC session from an SDP offer (signaling's POST, DESIGN §2a): its slot is held
    /// for whichever worker's queue receives the client's first valid check; ICE-lite
    /// answers there, DTLS runs on the handshake thread with the offer's fingerprints, and
    /// the keys it exports start the media. The session must be connected within
    /// `connectTimeout`, or its slot comes back. Returns the session id and the SDP answer.
    public func createWebRTC(offer text: String, subject: String, model: String, source: String)
        throws(ControlError) -> (id: UInt64, answer: String)
    {
        guard !runtime.draining.load(ordering: .acquiring) else {
            throw ControlError(code: "draining", message: "the engine is draining: it takes no new sessions")
        }
        let offer: WebRTCOffer
        do {
            offer = try WebRTCOffer(text)
        } catch {
            throw ControlError(code: "bad_offer", message: "\(error)")
        }
        guard let remoteUfrag = IceUfrag(offer.remoteUfrag) else {
            throw ControlError(code: "bad_offer", message: "the offer's ice-ufrag is longer than \(IceUfrag.capacity) bytes")
        }
        let c = runtime.configuration
        let asked = try placementModel(model)
        let stream = try EngineController.stream(
            ssrc: offer.offeredSSRC ?? 0, payloadType: offer.opusPayloadType, model: asked.map { "\($0)" } ?? "",
            subject: subject)
        let backend = Int(try chooseBackend(named: nil, model: asked))
        let (backendSocket, boundSlot) = try bindBackendLeg()
        let now = MonotonicClock.now()
        let deadline = now &+ EngineController.connectTimeout
        var rng = SystemRandomNumberGenerator()
        var credentials = ICECredentials(ufrag: "", password: "")
        var sessionID: UInt64 = 0
        let ssrc = UInt32.random(in: 1...UInt32.max, using: &rng)
        let slot: Int32
        do {
            slot = try runtime.control.hold(until: deadline, slot: boundSlot) { command in
                credentials = ICECredentials.make(slot: Int(command.slot), using: &rng)
                command.sessionID = self.newID(slot: command.slot)
                sessionID = command.sessionID
                command.backendStream = stream
                command.ufrag = IceUfrag(credentials.ufrag)!
                command.remoteUfrag = remoteUfrag
                command.icePassword = IcePassword(credentials.password)!
                command.keysFromHandshake = true
                command.connectDeadline = deadline
                command.backend = Int32(backend)
                command.backendSocket = backendSocket
                command.edgeSSRC = ssrc
                command.firstSequence = UInt16.random(in: 0...UInt16.max, using: &rng)
                command.firstTimestamp = UInt32.random(in: 0...UInt32.max, using: &rng)
            }
        } catch {
            if backendSocket >= 0 { close(backendSocket) }
            throw ControlError(code: "full", message: "all \(runtime.store.capacity) session slots are in use")
        }
        runtime.handshakes.expect(slot: slot, session: sessionID, fingerprints: offer.fingerprints, offeredAt: now)
        let answer = SDPAnswer.build(
            for: offer,
            SDPAnswer.Parameters(
                credentials: credentials, fingerprint: runtime.handshakes.context.fingerprint,
                address: c.publicAddress ?? c.mediaAddress, port: UDPPort(c.mediaPort),
                sessionID: UInt64.random(in: 1...UInt64(Int64.max), using: &rng)))
        let record = Record(
            id: sessionID, slot: slot, worker: -1, profile: .aes128CmHmacSha1_80, client: nil, backend: backend,
            edgeSSRC: ssrc, created: Date(), clientKey: [], edgeKey: [],
            webRTC: WebRTCInfo(subject: subject, model: asked.map { "\($0)" } ?? "", source: source))
        sessions[slot] = record
        placed(on: Int32(backend))
        server?.publish(
            "session.created",
            [
                "session": NSNumber(value: record.id), "slot": Int(slot), "kind": "webrtc", "backend": backend,
                "backend_id": routes.registry[Int32(backend)]?.spec.id ?? "", "model": asked.map { "\($0)" } ?? "", "subject": subject, "source": source,
            ])
        return (record.id, answer)
    }

    /// The largest SDP offer taken (signaling's limit too).
    public static let maxOffer = 64 * 1024

    /// `session.offer`: a WebRTC session from an SDP offer given over the control socket (an
    /// operator's own signaling server), answered in the reply.
    func offer(_ r: ControlRequest) throws(ControlError) -> ControlReply {
        let sdp = try r.string("sdp")
        guard sdp.utf8.count <= EngineController.maxOffer else {
            throw ControlError(code: "bad_argument", message: "'sdp' is over \(EngineController.maxOffer) bytes")
        }
        let subject = try r.optionalString("subject") ?? "control"
        let model = try r.optionalString("model") ?? ""
        let (id, answer) = try createWebRTC(offer: sdp, subject: subject, model: model, source: "control")
        guard let record = sessions[Int32(truncatingIfNeeded: id >> 32)] else {
            throw ControlError(code: "internal", message: "the session vanished")
        }
        return .ok(["session": describe(record), "answer": answer])
    }

    /// Ends the session `id` (signaling's DELETE): false when it is not live.
    public func end(session id: UInt64) -> Bool {
        guard let record = sessions.values.first(where: { $0.id == id }) else { return false }
        do {
            try runtime.control.drop(record.slot, reason: .clientLeft)
        } catch {
            return false
        }
        retire(record.slot)
        return true
    }

    /// Whether session `id` is live.
    public func isLive(session id: UInt64) -> Bool {
        sessions[Int32(truncatingIfNeeded: id >> 32)]?.id == id
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

    /// Whether two keys are equal, in time that depends on their length only.
    static func same(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for i in 0..<a.count { difference |= a[i] ^ b[i] }
        return difference == 0
    }

    /// The live session a request names by `session` (its id) or `slot`.
    func findRecord(_ r: ControlRequest) throws(ControlError) -> Record {
        if let id = try r.optionalInteger("session", in: UInt64.min...UInt64.max) {
            guard let record = sessions.values.first(where: { $0.id == id }) else {
                throw ControlError(code: "not_found", message: "no session \(id)")
            }
            return record
        }
        guard let slot = try r.optionalInteger("slot", in: 0..<Int32(clamping: runtime.store.capacity)) else {
            throw ControlError(code: "bad_argument", message: "give 'session' (an id) or 'slot'")
        }
        guard let record = sessions[slot] else {
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
        retire(record.slot)
        return .ok(["dropped": NSNumber(value: record.id)])
    }

    func show(_ r: ControlRequest) throws(ControlError) -> ControlReply {
        .ok(["session": describe(try findRecord(r))])
    }

    /// A session's state as `session show` and `voxedge_sessions_by_state` give it:
    /// waiting_for_ice (held, no valid check yet), handshaking (claimed, no keys yet),
    /// connected (WebRTC with keys), static (keys from the control socket).
    func state(of r: Record) -> String {
        guard r.webRTC != nil else { return "static" }
        if SessionStore.isHeld(runtime.store.owner(of: Int(r.slot))) { return "waiting_for_ice" }
        return runtime.store.isKeyed(slot: Int(r.slot)) ? "connected" : "handshaking"
    }

    /// Live sessions by `state(of:)`, every state named (zeros included).
    public func sessionsByState() -> [String: Int] {
        var out = ["waiting_for_ice": 0, "handshaking": 0, "connected": 0, "static": 0]
        for r in sessions.values { out[state(of: r), default: 0] += 1 }
        return out
    }

    func describe(_ r: Record) -> [String: Any] {
        let counts = runtime.store.packetCounts(slot: Int(r.slot))
        var fields: [String: Any] = [
            "id": NSNumber(value: r.id), "slot": Int(r.slot), "worker": r.worker, "profile": r.profile.description,
            "backend": r.backend, "backend_id": routes.registry[Int32(r.backend)]?.spec.id ?? "",
            "edge_ssrc": NSNumber(value: r.edgeSSRC), "packets_from_client": NSNumber(value: counts.fromClient),
            "packets_to_client": NSNumber(value: counts.toClient),
            "age_seconds": NSNumber(value: Date().timeIntervalSince(r.created).rounded()),
        ]
        let client = r.client ?? runtime.control.clientFlow(ofSlot: r.slot)
        if let client { fields["client"] = EngineController.format(client.remoteAddress, client.remotePort) }
        if let w = r.webRTC {
            let owner = runtime.store.owner(of: Int(r.slot))
            let keyed = runtime.store.isKeyed(slot: Int(r.slot))
            fields["kind"] = "webrtc"
            fields["worker"] = owner >= 0 ? Int(owner) : -1
            fields["state"] = state(of: r)
            if keyed, let profile = runtime.store.profile(slot: Int(r.slot)) { fields["profile"] = profile.description }
            fields["subject"] = w.subject
            fields["model"] = w.model
            fields["source"] = w.source
        } else {
            fields["kind"] = "static"
            fields["state"] = "connected"
        }
        if let ssrc = r.clientSSRC { fields["client_ssrc"] = NSNumber(value: ssrc) }
        let b = runtime.store.backendState(slot: Int(r.slot))
        if b.paced {
            var protocolFields: [String: Any] = [
                "pacing_queued": b.queued, "flushes": NSNumber(value: b.flushes),
                "rtt_ms": b.rtt == 0 ? NSNull() : NSNumber(value: Double(b.rtt) / 1e6),
            ]
            if b.flushes > 0 { protocolFields["last_flush_sequence"] = Int(b.lastFlushSequence) }
            fields["backend_protocol"] = protocolFields
        }
        return fields
    }

    func stats() -> ControlReply {
        let workers: [[String: Any]] = runtime.counters.enumerated().map { w, c in
            var verdicts: [String: Any] = [:]
            for v in PacketVerdict.allCases { verdicts["\(v)"] = NSNumber(value: c[v]) }
            var drops: [String: Any] = [:]
            for d in DropReason.allCases where c[d] > 0 { drops["\(d)"] = NSNumber(value: c[d]) }
            var ended: [String: Any] = [:]
            for reason in SessionEndReason.allCases { ended["\(reason)"] = NSNumber(value: c.sessionsEnded(reason)) }
            var backend: [String: Any] = [:]
            var messages: [String: Any] = [:]
            for v in BackendVerdict.allCases where v != .notControl { messages["\(v)"] = NSNumber(value: c.backendMessages(v)) }
            backend["messages"] = messages
            for counter in BackendCounter.allCases { backend[counter.name] = NSNumber(value: c[counter]) }
            var worker: [String: Any] = [
                "worker": w, "verdicts": verdicts, "drops": drops, "ended": ended, "received": NSNumber(value: c.received),
                "backend_protocol": backend,
                "handed_in": NSNumber(value: c.handedIn), "bursts": NSNumber(value: c.bursts),
                "busy_ns": NSNumber(value: c.busyNanoseconds), "idle_ns": NSNumber(value: c.idleNanoseconds),
            ]
            if runtime.xdp != nil {
                let k = runtime.xskStatistics(worker: w)
                worker["kernel_drops"] = [
                    "rx_dropped": NSNumber(value: k.rxDropped), "rx_ring_full": NSNumber(value: k.rxRingFull),
                    "rx_fill_ring_empty": NSNumber(value: k.rxFillRingEmpty),
                    "rx_invalid_descriptors": NSNumber(value: k.rxInvalidDescriptors),
                    "tx_invalid_descriptors": NSNumber(value: k.txInvalidDescriptors),
                ]
            }
            if let s = runtime.socketPortStatistics(worker: w) {
                worker["socket_drops"] = Dictionary(uniqueKeysWithValues: s.labelled.map { ($0.0, NSNumber(value: $0.1)) })
            }
            return worker
        }
        let table = runtime.backends.table
        let backendList: [[String: Any]] = routes.registry.all.map { e in
            var fields = describe(backend: e)
            if Int(e.index) < table.count { fields["mac"] = "\(table[Int(e.index)].mac)" }
            return fields
        }
        let h = runtime.handshakes.snapshot
        var reply: [String: Any] = [
            "handshakes": [
                "started": NSNumber(value: h.started), "succeeded": NSNumber(value: h.succeeded),
                "failed": h.failed.mapValues { NSNumber(value: $0) }, "closed_by_client": NSNumber(value: h.closedByClient),
                "unexpected": NSNumber(value: h.unexpected), "cpu_ns": NSNumber(value: h.cpuNanoseconds),
            ] as [String: Any],
            "backends": backendList,
            "sessions": sessions.count, "capacity": runtime.store.capacity, "workers": workers, "io": runtime.io,
            "sessions_by_state": sessionsByState(),
            // Held sessions no check ever claimed, freed at their connect deadline by this thread.
            "expired_unclaimed": NSNumber(value: runtime.control.expiredUnclaimed.load(ordering: .relaxed)),
            "control": [
                "requests": server?.requests ?? 0, "errors": server?.errors ?? 0, "clients": server?.connectedClients ?? 0,
                "subscribers": server?.subscriberCount ?? 0,
                "events_published": NSNumber(value: server?.eventsPublished ?? 0),
                "events_lost": NSNumber(value: server?.eventsLost ?? 0),
            ],
        ]
        if var signaling = signalingInfo {
            if let server = signalingServer {
                signaling["requests"] = Dictionary(
                    uniqueKeysWithValues: server.service.statistics.snapshot.map { ($0.outcome, NSNumber(value: $0.count)) })
                signaling["connections"] = server.openConnections
            }
            reply["signaling"] = signaling
        }
        if let xdp = runtime.xdp {
            var counters: [String: Any] = [:]
            if let read = xdp.programCounters() {
                for counter in XDPCounter.allCases { counters["\(counter)"] = NSNumber(value: read[counter]) }
            }
            let run = xdp.programRunStatistics() ?? (0, 0)
            reply["xdp"] = [
                "interface": xdp.interface, "mode": "\(xdp.mode)", "zerocopy": xdp.sockets.isZeroCopy,
                "hugepages": xdp.sockets.region.usesHugePages, "counters": counters,
                // Counted only while the kernel's BPF run-time statistics are on (bench e2e).
                "program_run_ns": NSNumber(value: run.nanoseconds), "program_runs": NSNumber(value: run.runs),
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

    /// Key + salt bytes, of the length `keyBytes` checked for `profile`, as a command carries them.
    static func material(_ bytes: [UInt8], _ profile: SRTPProfile) -> KeyMaterial {
        KeyMaterial(key: Array(bytes[0..<profile.masterKeyLength]), salt: Array(bytes[profile.masterKeyLength...]))!
    }

    /// "1.2.3.4:5" or "[2001:db8::1]:5" (port 1...65535), or nil.
    public static func parseEndpoint(_ text: String) -> (IPAddress, UDPPort)? {
        guard let (address, port) = try? endpoint(text, field: "endpoint"), port > 0 else { return nil }
        return (address, UDPPort(port))
    }

    /// "1.2.3.4:5" or "[2001:db8::1]:5" (any port, 0 included: whether it may be used is the
    /// caller's to say), or `bad_argument` naming `field` and what is wrong. An IPv6 address
    /// with a port must be bracketed: in "2001:db8::1:5000" the port cannot be told from the
    /// address's last group.
    public static func endpoint(_ text: String, field: String) throws(ControlError) -> (IPAddress, UInt16) {
        let host: Substring
        let portText: Substring
        let shown = text.count > 60 ? text.prefix(60) + "…" : Substring(text)
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                throw ControlError(code: "bad_argument", message: "'\(field)' must be [ipv6]:port, not '\(shown)'")
            }
            host = text[text.index(after: text.startIndex)..<close]
            portText = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":") else {
                throw ControlError(code: "bad_argument", message: "'\(field)' must be ip:port or [ipv6]:port, not '\(shown)'")
            }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
            guard !host.contains(":") else {
                throw ControlError(
                    code: "bad_argument",
                    message: "'\(field)' '\(shown)' is ambiguous: write an IPv6 address with a port in brackets, [ipv6]:port")
            }
        }
        guard let address = IPAddress(String(host)) else {
            throw ControlError(code: "bad_argument", message: "'\(field)': '\(host.prefix(60))' is not an IP address")
        }
        guard let port = UInt16(portText) else {
            throw ControlError(code: "bad_argument", message: "'\(field)': port '\(portText.prefix(20))' is not 0...65535")
        }
        return (address, port)
    }

    static func format(_ address: IPAddress, _ port: UDPPort) -> String {
        address.isIPv4 ? "\(address):\(port)" : "[\(address)]:\(port)"
    }
}
