/// What the signaling listener needs of the engine (VoxControl implements it).
///
/// The listener owns the HTTP side only: tokens, limits, the unguessable session URLs. Every
/// decision about the offer itself (audio m-line, Opus, fingerprint, ICE credentials), about
/// capacity and about a session's life belongs to the engine, which answers through this
/// protocol.
public protocol SignalingEngine: Sendable {
    /// Creates a WebRTC session from an SDP offer. Throws with the reason it was refused.
    func createSession(_ request: SessionRequest) async throws(SessionRefusal) -> CreatedSession
    /// Ends a live session (both legs, slot freed). False when it is not live.
    func endSession(_ session: UInt64) async -> Bool
    /// Whether the engine still has the session (it ends sessions itself: ICE failure, consent, DTLS close).
    func isLive(_ session: UInt64) async -> Bool
    /// True while the edge refuses new sessions (drain).
    var isDraining: Bool { get async }
}

/// One accepted POST, handed to the engine: the offer and who asked for what.
public struct SessionRequest: Sendable {
    /// The SDP offer, as the client sent it (UTF-8, at most 64 KiB).
    public var offer: String
    /// The token's `sub`: who the session is counted against.
    public var subject: String
    /// The token's `model`: what the caller asked to talk to (kept with the session).
    public var model: String
    /// The client's IP address as text (`198.18.0.2`, `2001:db8::2`).
    public var source: String

    public init(offer: String, subject: String, model: String, source: String) {
        self.offer = offer
        self.subject = subject
        self.model = model
        self.source = source
    }
}

/// The engine's answer to an accepted offer.
public struct CreatedSession: Sendable {
    /// The engine's own number for the session; never shown to the client.
    public var session: UInt64
    /// The SDP answer, sent back as the POST's body.
    public var answer: String

    public init(session: UInt64, answer: String) {
        self.session = session
        self.answer = answer
    }
}

/// Why the engine did not create a session.
public enum SessionRefusal: Error, Sendable, Equatable {
    /// The offer cannot be answered: `400` with this one-line reason (e.g. "no audio m-line").
    case badOffer(String)
    /// No free slot: `503` with `Retry-After`.
    case full
    /// The edge is draining: `503` with `Retry-After`.
    case draining
    /// No backend can take the call (none serves its model, all are full, down or draining):
    /// `503` with `Retry-After` and this reason.
    case noBackend(String)
}
