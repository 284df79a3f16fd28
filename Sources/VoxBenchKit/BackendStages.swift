import VoxMedia
import VoxWire

/// Each session's backend-protocol state, in one allocation.
final class ChannelTable {
    let states: UnsafeMutablePointer<BackendChannelState>
    let count: Int

    init(sessions: Int) {
        count = sessions
        states = .allocate(capacity: sessions)
        restart()
    }

    /// Every session's edge side as new: nothing accepted yet.
    func restart() {
        for s in 0..<count { (states + s).initialize(to: BackendChannelState(sessionID: UInt64(s + 1), local: .edge)) }
    }

    deinit { states.deallocate() }
}

/// Each session's pacing queue (they are ~Copyable: no Array).
final class PacingTable {
    let queues: UnsafeMutablePointer<PacingQueue>
    let count: Int

    init(sessions: Int, configuration: PacingConfiguration) {
        count = sessions
        queues = .allocate(capacity: sessions)
        for s in 0..<sessions { (queues + s).initialize(to: PacingQueue(configuration)) }
    }

    func restart() {
        for s in 0..<count { queues[s].reset(clockRate: 48_000) }
    }

    deinit {
        queues.deinitialize(count: count)
        queues.deallocate()
    }
}

extension MicroBench {
    /// The backend leg's control messages (parse, MAC, session and replay checks) and the
    /// pacing queue toward the client (docs/backend-protocol.md).
    static func backendStages(_ c: Configuration) throws -> [Stage] {
        let n = c.packets
        let sessions = c.sessions
        let keyBytes = Array("bench-backend-shared-key-32bytes".utf8)
        let key = keyBytes.withUnsafeBytes { HMACSHA1Key(key: $0) }

        // What backends send the edge: keepalive-acks mostly, a keepalive and a flush now and
        // then, each session's sequences rising round by round.
        let messages = PacketSet(count: n, sessions: sessions)
        var senders = (0..<sessions).map { BackendChannelState(sessionID: UInt64($0 + 1), local: .backend) }
        for i in 0..<n {
            let s = Int(messages.flows[i])
            let r = i / sessions
            let body: BackendMessage.Body =
                r % 8 == 3 ? .flush : r % 8 == 5 ? .keepalive : .keepaliveAck(echo: UInt64(r) * 1_000_000_000)
            let written = senders[s].send(
                body,
                now: UInt64(r),
                key: key,
                into: UnsafeMutableRawBufferPointer(start: messages.packet(i), count: PacketSet.stride)
            )
            guard let written else { throw BenchError.setup("backend message does not fit") }
            messages.lengths[i] = Int32(written)
        }
        let channels = ChannelTable(sessions: sessions)
        let work = WorkBuffer()
        let control = Stage(
            name: "backend.control parse+verify",
            perPacketPath: true,
            packets: n,
            setup: { channels.restart() },
            body: {
                let w = work.pointer
                var ok = 0
                var message = BackendMessage()
                for i in 0..<n {
                    let length = Int(messages.lengths[i])
                    w.copyMemory(from: messages.packet(i), byteCount: length)
                    let s = Int(messages.flows[i])
                    let datagram = UnsafeRawBufferPointer(start: w, count: length)
                    if channels.states[s].receive(datagram, key: key, into: &message) == .ok { ok += 1 }
                }
                return ok
            }
        )

        // A backend sending twice as fast as real time: each round of 20 ms of audio per
        // session arrives 10 ms after the last, so half the packets are copied into the queue
        // and released by `due` later. 16 entries of 256 bytes per session (no overflow at 16
        // packets per session per pass; deeper queues only cost memory, not time).
        let audio = PacketSet(count: n, sessions: sessions)
        for i in 0..<n { _ = writeRTP(audio.packet(i), session: Int(audio.flows[i]), round: i / sessions) }
        let pacing = PacingTable(
            sessions: sessions,
            configuration: PacingConfiguration(depth: max(16, c.packetsPerSession), slotBytes: 256)
        )
        let base: UInt64 = 1_000_000_000
        let queue = Stage(
            name: "backend.pacing offer+due",
            perPacketPath: true,
            packets: n,
            setup: { pacing.restart() },
            body: {
                var ok = 0
                let queues = pacing.queues
                for i in 0..<n {
                    let s = Int(audio.flows[i])
                    let r = i / sessions
                    let now = base + UInt64(r) * 10_000_000
                    let payload = UnsafeRawBufferPointer(start: audio.packet(i) + 12, count: rtpPayloadLength)
                    switch queues[s].offer(payload, rtpTimestamp: UInt32(truncatingIfNeeded: r * 960), now: now) {
                    case .sendNow, .queued: ok += 1
                    case .droppedOldest, .tooLarge: break
                    }
                    while queues[s].due(now: now) != nil {}
                }
                return ok
            }
        )
        return [control, queue]
    }
}
