import Foundation
import Glibc
import Synchronization
import VoxMedia

/// What `voxedge backend-sim` was told to do (BackendSimCommand checks every value).
struct BackendSimConfiguration {
    enum Mode: String { case echo, tone, wav }

    var mode: Mode = .echo
    /// nil: the protocol is off, plain echo.
    var key: HMACSHA1Key?
    /// The key's bytes in base64, for `backend.upsert`.
    var keyBase64: String?
    var delayNs: UInt64 = 0
    var toneHz = 440.0
    var wav: WAVAudio?
    /// Sending ahead: bursts of `burstMs / 20` packets every `burstMs / speed` ms.
    var speed = 1.0
    var burstMs = 20
    /// Packets a session sends before any flush; nil: unlimited.
    var talkPackets: Int?
    var flushAfterNs: UInt64?
    var afterFlushHz: Double?
    var afterFlushPackets = 50
    var endAfterNs: UInt64?
    var keepaliveNs: UInt64 = 1_000_000_000
    var idleNs: UInt64 = 30_000_000_000
    var logPackets = false
}

/// A UDP peer: the address to send to, and its text ("ip:port", "[ipv6]:port") as its key.
struct PeerAddress {
    var storage = sockaddr_storage()
    var length = socklen_t(0)
    var text = ""

    static func string(_ cString: [CChar]) -> String {
        String(decoding: cString.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    mutating func describe() {
        var host = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        var storage = self.storage
        let family = storage.ss_family
        text = withUnsafePointer(to: &storage) { p in
            let raw = UnsafeRawPointer(p)
            if family == sa_family_t(AF_INET) {
                let sin = raw.assumingMemoryBound(to: sockaddr_in.self)
                var a = sin.pointee.sin_addr
                inet_ntop(AF_INET, &a, &host, socklen_t(host.count))
                return "\(PeerAddress.string(host)):\(UInt16(bigEndian: sin.pointee.sin_port))"
            } else {
                let sin6 = raw.assumingMemoryBound(to: sockaddr_in6.self)
                var a = sin6.pointee.sin6_addr
                inet_ntop(AF_INET6, &a, &host, socklen_t(host.count))
                return "[\(PeerAddress.string(host))]:\(UInt16(bigEndian: sin6.pointee.sin6_port))"
            }
        }
    }
}

/// Set from signal handlers, read by the loop (poll returns EINTR, and waits at most 50 ms).
let backendSimFlushRequested = Atomic<Bool>(false)
let backendSimStopRequested = Atomic<Bool>(false)

/// The reference backend of docs/backend-protocol.md, on one UDP socket and one thread: a
/// loop that waits in poll until a datagram or the next deadline (a burst, a keepalive, a
/// delayed echo, a timed flush or end, an idle session), then does what is due.
///
/// Sessions are known by id and by the address their start came from (the edge's backend
/// leg): a message from a session's address goes through that session's channel state
/// (session, direction, replay); one from an unknown address is authenticated and must be
/// a start or migrated-in. A message for a known session from another address is refused.
final class BackendSim {
    /// One session's state: its channel state toward the edge, its timers, and its audio.
    final class Session {
        let id: UInt64
        let address: PeerAddress
        var leg: BackendChannelState
        var description: BackendStreamDescription
        let startedAt: UInt64
        var lastHeard: UInt64
        var nextKeepalive: UInt64
        var flushAt: UInt64?
        var endAt: UInt64?
        var flushed = false
        /// The edge has sent RTP for this session: the client's audio flows, so its leg is
        /// keyed and audio sent now reaches it (the audio and the flush clock start here).
        var heardMedia = false
        var packetsSent = 0
        var audio: AudioStream?

        init(id: UInt64, address: PeerAddress, description: BackendStreamDescription, now: UInt64) {
            self.id = id
            self.address = address
            leg = BackendChannelState(sessionID: id, local: .backend)
            self.description = description
            startedAt = now
            lastHeard = now
            nextKeepalive = now
        }

        var phase: String { flushed ? "after_flush" : "before_flush" }
    }

    let configuration: BackendSimConfiguration
    let fd: Int32
    var sessions: [UInt64: Session] = [:] {
        didSet { live.count.store(sessions.count, ordering: .relaxed) }  // the load reporter's input
    }
    /// How many sessions are open, for the load reporter's thread.
    let live: BackendSimLiveSessions
    var sessionByAddress: [String: UInt64] = [:]
    /// Datagrams to echo, in the order they are due (one delay for all: arrival order).
    var echoes: [(due: UInt64, bytes: [UInt8], to: PeerAddress, session: UInt64?)] = []
    var echoHead = 0
    /// Refusals by verdict; the first of each kind is logged.
    var refused: [String: Int] = [:]
    var rtpReceived = 0
    var rtpSent = 0
    var controlIgnored = 0

    private var receiveBuffer = [UInt8](repeating: 0, count: 65_536)
    private var sendBuffer = [UInt8](repeating: 0, count: BackendMessage.maximumLength)

    init(configuration: BackendSimConfiguration, fd: Int32, live: BackendSimLiveSessions = BackendSimLiveSessions()) {
        self.configuration = configuration
        self.fd = fd
        self.live = live
    }

    static func now() -> UInt64 {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return UInt64(t.tv_sec) * 1_000_000_000 + UInt64(t.tv_nsec)
    }

    /// Runs until SIGINT or SIGTERM, then logs the counters.
    func run() {
        while !backendSimStopRequested.load(ordering: .relaxed) {
            var now = Self.now()
            let wait =
                nextDeadline(now: now).map { $0 > now ? Int32(min(($0 - now + 999_999) / 1_000_000, 50)) : 0 } ?? 50
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&pfd, 1, wait) > 0 { receiveAll() }
            now = Self.now()
            if backendSimFlushRequested.exchange(false, ordering: .relaxed) {
                for id in sessions.keys.sorted() { flush(sessions[id]!, now: now) }
            }
            runTimers(now: now)
        }
        logStats()
    }

    func logStats() {
        BackendSimLog.emit(
            "stats",
            [
                "sessions": sessions.count, "rtp_received": rtpReceived, "rtp_sent": rtpSent,
                "control_ignored": controlIgnored, "refused": refused,
            ]
        )
    }

    // MARK: receiving

    func receiveAll() {
        while true {
            var from = PeerAddress()
            from.length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let n = receiveBuffer.withUnsafeMutableBytes { b in
                withUnsafeMutablePointer(to: &from.storage) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        recvfrom(fd, b.baseAddress, b.count, 0, $0, &from.length)
                    }
                }
            }
            guard n >= 0 else { return }  // EAGAIN: drained
            from.describe()
            handle(Array(receiveBuffer[0..<n]), from: from, now: Self.now())
        }
    }

    func handle(_ datagram: [UInt8], from: PeerAddress, now: UInt64) {
        let first = datagram.first
        guard configuration.key != nil else {
            // The protocol off: echo as ever, control messages ignored and counted.
            if first == BackendMessage.magic {
                controlIgnored += 1
            } else {
                if let first, (0x80...0xBF).contains(first) { rtpReceived += 1 }
                scheduleEcho(datagram, to: from, session: nil, now: now)
            }
            return
        }
        switch first {
        case .some(0x80...0xBF):
            guard let id = sessionByAddress[from.text], let session = sessions[id] else {
                return refuse("rtp_without_session", from: from)
            }
            rtpReceived += 1
            session.lastHeard = now
            if !session.heardMedia {
                session.heardMedia = true
                beginTalking(session, now: now)
            }
            if configuration.mode == .echo { scheduleEcho(datagram, to: from, session: id, now: now) }
        case .some(BackendMessage.magic):
            handleControl(datagram, from: from, now: now)
        default:
            refuse("not_rtp_nor_control", from: from)
        }
    }

    func handleControl(_ datagram: [UInt8], from: PeerAddress, now: UInt64) {
        guard let key = configuration.key else { return }
        var message = BackendMessage()
        if let id = sessionByAddress[from.text], let session = sessions[id] {
            let verdict = datagram.withUnsafeBytes { session.leg.receive($0, key: key, into: &message) }
            guard verdict == .ok else { return refuse(verdict.description, from: from) }
            session.lastHeard = now
            return dispatch(message, session: session, now: now)
        }
        let verdict = datagram.withUnsafeBytes { BackendMessage.parse($0, key: key, into: &message) }
        guard verdict == .ok else { return refuse(verdict.description, from: from) }
        if sessions[message.sessionID] != nil {
            return refuse("wrong_address", from: from)  // authentic, but not from the session's leg
        }
        switch message.body {
        case .start(let d), .migratedIn(let d):
            let session = Session(id: message.sessionID, address: from, description: d, now: now)
            guard session.leg.accept(message) == .ok else { return refuse("wrong_direction", from: from) }
            sessions[session.id] = session
            sessionByAddress[from.text] = session.id
            begin(session, message: message, now: now)
        default:
            refuse("unknown_session", from: from)
        }
    }

    /// An accepted message on a known session.
    func dispatch(_ message: BackendMessage, session: Session, now: UInt64) {
        switch message.body {
        case .start(let d), .migratedIn(let d):
            // The edge said it again (with a new sequence): its description is the one to use.
            session.description = d
            logStart(session, event: message.body.type == .start ? "start" : "migrated_in")
        case .end(let reason):
            BackendSimLog.emit(
                "end",
                ["session": session.id, "reason": reason.description, "code": Int(reason.rawValue), "by": "edge"]
            )
            forget(session)
        case .keepalive:
            send(.keepaliveAck(echo: message.timestamp), on: session, now: now)
        case .keepaliveAck(let echo):
            if echo <= now { BackendSimLog.emit("rtt", ["session": session.id, "rtt_us": (now - echo) / 1_000]) }
        case .migratedAway:
            BackendSimLog.emit("migrated_away", ["session": session.id])
            forget(session)
        case .flush:
            break  // never accepted from the edge (parse refuses it as malformed)
        }
    }

    /// A new session (start or migrated-in): log it, arm its keepalive and end timers. Its
    /// audio and flush wait for the edge's first RTP (`beginTalking`).
    func begin(_ session: Session, message: BackendMessage, now: UInt64) {
        logStart(session, event: message.body.type == .start ? "start" : "migrated_in")
        session.nextKeepalive = now + configuration.keepaliveNs
        session.endAt = configuration.endAfterNs.map { now + $0 }
    }

    /// The edge's first RTP on `session`: arm the flush, set up the audio. Not at start: a
    /// WebRTC session starts at the client's first ICE check, before DTLS, and the edge drops
    /// what a backend sends before the client leg has keys (`notKeyed`); RTP from the edge
    /// means the client's audio flows, so its leg is keyed.
    func beginTalking(_ session: Session, now: UInt64) {
        session.flushAt = configuration.flushAfterNs.map { now + $0 }
        let source: AudioSource
        switch configuration.mode {
        case .echo: return
        case .tone: source = .tone(hz: configuration.toneHz, phase: 0)
        case .wav: source = .wav(configuration.wav!, position: 0)
        }
        let d = session.description
        guard d.codecNameString.lowercased() == "opus", d.clockRate == 48_000 else {
            BackendSimLog.emit(
                "no_audio",
                ["session": session.id, "reason": "\(d.codecNameString)/\(d.clockRate) is not opus/48000"]
            )
            return
        }
        let c = configuration
        do {
            session.audio = try AudioStream(
                source: source,
                start: now,
                burstNs: UInt64(Double(c.burstMs) * 1_000_000 / c.speed),
                perBurst: c.burstMs / 20,
                budget: c.talkPackets
            )
        } catch {
            BackendSimLog.emit("no_audio", ["session": session.id, "reason": "\(error)"])
        }
    }

    func logStart(_ session: Session, event: String) {
        let d = session.description
        BackendSimLog.emit(
            event,
            [
                "session": session.id, "from": session.address.text, "model": d.modelString,
                "subject": d.subjectString, "codec": d.codecNameString, "clock_rate": Int(d.clockRate),
                "channels": Int(d.channels), "payload_type": Int(d.payloadType), "ssrc": Int(d.ssrc),
            ]
        )
    }

    func forget(_ session: Session) {
        sessions[session.id] = nil
        sessionByAddress[session.address.text] = nil
    }

    func refuse(_ verdict: String, from: PeerAddress) {
        refused[verdict, default: 0] += 1
        if refused[verdict] == 1 { BackendSimLog.emit("refused", ["from": from.text, "verdict": verdict]) }
    }

    // MARK: sending

    func send(_ body: BackendMessage.Body, on session: Session, now: UInt64) {
        guard let key = configuration.key else { return }
        let n = sendBuffer.withUnsafeMutableBytes { session.leg.send(body, now: now, key: key, into: $0) }
        guard let n else { return }
        sendTo(session.address, sendBuffer[0..<n])
    }

    func sendTo(_ address: PeerAddress, _ bytes: ArraySlice<UInt8>) {
        var address = address
        _ = bytes.withUnsafeBytes { b in
            withUnsafePointer(to: &address.storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, b.baseAddress, b.count, 0, $0, address.length)
                }
            }
        }
    }

    func scheduleEcho(_ datagram: [UInt8], to: PeerAddress, session: UInt64?, now: UInt64) {
        echoes.append((now + configuration.delayNs, datagram, to, session))
    }

    func logPacket(_ session: Session?, sequence: UInt16, timestamp: UInt32, payload: ArraySlice<UInt8>) {
        guard configuration.logPackets else { return }
        BackendSimLog.emit(
            "packet",
            [
                "session": session.map { $0.id as Any } ?? NSNull(), "phase": session?.phase ?? "before_flush",
                "rtp_sequence": Int(sequence), "rtp_timestamp": Int(timestamp),
                "payload_sha1": BackendSimLog.sha1Prefix(payload),
            ]
        )
    }

    /// Sends a flush on `session` now: its audio (if any) starts a new run of after-flush audio.
    func flush(_ session: Session, now: UInt64) {
        let sequence = session.leg.nextSendSequence
        send(.flush, on: session, now: now)
        BackendSimLog.emit(
            "flush",
            ["session": session.id, "sequence": Int(sequence), "packets_sent_before": session.packetsSent]
        )
        session.flushed = true
        guard let audio = session.audio else { return }
        let source: AudioSource
        switch audio.source {
        case .tone(let hz, let phase): source = .tone(hz: configuration.afterFlushHz ?? hz, phase: phase)
        case .wav(let file, _): source = .wav(file, position: 0)
        }
        audio.restart(source: source, now: now, budget: configuration.afterFlushPackets)
    }

    // MARK: timers

    func nextDeadline(now: UInt64) -> UInt64? {
        var next: UInt64? = echoHead < echoes.count ? echoes[echoHead].due : nil
        func consider(_ t: UInt64?) { if let t { next = min(next ?? t, t) } }
        for session in sessions.values {
            consider(session.nextKeepalive)
            consider(session.flushAt)
            consider(session.endAt)
            consider(session.audio?.nextDue)
            consider(session.lastHeard + configuration.idleNs)
        }
        return next
    }

    func runTimers(now: UInt64) {
        while echoHead < echoes.count, echoes[echoHead].due <= now {
            let e = echoes[echoHead]
            echoHead += 1
            sendTo(e.to, e.bytes[...])
            let session = e.session.flatMap { sessions[$0] }
            if e.bytes.count >= 12, (0x80...0xBF).contains(e.bytes[0]) {
                rtpSent += 1
                session?.packetsSent += 1
                logPacket(
                    session,
                    sequence: UInt16(e.bytes[2]) << 8 | UInt16(e.bytes[3]),
                    timestamp: e.bytes[4..<8].reduce(0) { $0 << 8 | UInt32($1) },
                    payload: e.bytes[12...]
                )
            }
        }
        if echoHead > 1_024, echoHead * 2 > echoes.count {
            echoes.removeFirst(echoHead)
            echoHead = 0
        }
        for id in sessions.keys.sorted() {
            guard let session = sessions[id] else { continue }
            if session.lastHeard + configuration.idleNs <= now {
                BackendSimLog.emit("idle", ["session": id])
                forget(session)
                continue
            }
            if let at = session.endAt, at <= now {
                send(.end(.backendFinished), on: session, now: now)
                let reason = BackendEndReason.backendFinished
                BackendSimLog.emit(
                    "end",
                    ["session": id, "reason": reason.description, "code": Int(reason.rawValue), "by": "backend"]
                )
                forget(session)
                continue
            }
            if let at = session.flushAt, at <= now {
                session.flushAt = nil
                flush(session, now: now)
            }
            if session.nextKeepalive <= now {
                send(.keepalive, on: session, now: now)
                session.nextKeepalive = now + configuration.keepaliveNs
            }
            sendAudio(session, now: now)
        }
    }

    /// Sends every burst of `session` that is due.
    func sendAudio(_ session: Session, now: UInt64) {
        guard let audio = session.audio else { return }
        while let due = audio.nextDue, due <= now {
            let end =
                audio.budget.map { min($0, audio.sentInSpurt + audio.perBurst) } ?? audio.sentInSpurt + audio.perBurst
            while audio.sentInSpurt < end {
                let ok = audio.sendNext(payloadType: session.description.payloadType) {
                    packet,
                    sequence,
                    timestamp,
                    payload in
                    sendTo(session.address, packet)
                    rtpSent += 1
                    session.packetsSent += 1
                    logPacket(session, sequence: sequence, timestamp: timestamp, payload: payload)
                }
                guard ok else {
                    BackendSimLog.emit("no_audio", ["session": session.id, "reason": "the Opus encoder failed"])
                    session.audio = nil
                    return
                }
            }
        }
    }
}
