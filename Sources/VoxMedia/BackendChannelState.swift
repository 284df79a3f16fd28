/// One side's control-message state for one session's backend leg: the sequence it stamps
/// next, and the highest sequence it accepted from the peer.
///
/// Invariants: `nextSendSequence` ≥ 1 and only grows; `highestAcceptedSequence` only grows,
/// and only when a message is accepted. There is no replay window (docs/backend-protocol.md:
/// control messages are few and in order on one short path), so anything at or below the
/// highest accepted is refused. A new backend (migration) gets a new state.
public struct BackendChannelState: Sendable, BitwiseCopyable {
    /// The session this leg carries; a message naming another is refused.
    public let sessionID: UInt64
    /// The side this state belongs to: it stamps messages as `local`, accepts them from `local.other`.
    public let local: BackendPeer
    public private(set) var nextSendSequence: UInt64 = 1
    /// 0 until the first message is accepted.
    public private(set) var highestAcceptedSequence: UInt64 = 0

    public init(sessionID: UInt64, local: BackendPeer) {
        self.sessionID = sessionID
        self.local = local
    }

    /// Stamps `body` and encodes it into `out`: the bytes written, or nil when `out` is too
    /// small (the sequence is then not taken). Allocates nothing.
    public mutating func send(
        _ body: BackendMessage.Body, now: UInt64, key: HMACSHA1Key, into out: UnsafeMutableRawBufferPointer
    ) -> Int? {
        let message = BackendMessage(
            sender: local, sessionID: sessionID, sequence: nextSendSequence, timestamp: now, body: body)
        guard let written = message.encode(key: key, into: out) else { return nil }
        nextSendSequence &+= 1
        return written
    }

    /// The per-session checks on an authentic message: session, sender, sequence. Moves the
    /// highest accepted sequence only when the verdict is `ok`.
    public mutating func accept(_ message: BackendMessage) -> BackendVerdict {
        guard message.sessionID == sessionID else { return .wrongSession }
        guard message.sender == local.other else { return .wrongDirection }
        guard message.sequence > highestAcceptedSequence else { return .replayed }
        highestAcceptedSequence = message.sequence
        return .ok
    }

    /// Parses, authenticates and accepts a datagram from this leg's 5-tuple: `message` holds
    /// it when the verdict is `ok`. Allocates nothing.
    public mutating func receive(
        _ datagram: UnsafeRawBufferPointer, key: HMACSHA1Key, into message: inout BackendMessage
    ) -> BackendVerdict {
        var parsed = BackendMessage()
        let verdict = BackendMessage.parse(datagram, key: key, into: &parsed)
        guard verdict == .ok else { return verdict }
        let accepted = accept(parsed)
        if accepted == .ok { message = parsed }
        return accepted
    }
}
