import VoxWire

/// The server's ICE credentials for one session: the ufrag names the session's slot
/// (`IceUfrag`, the codec the workers read it back with); the password is the STUN
/// MESSAGE-INTEGRITY key.
public struct ICECredentials: Equatable, Sendable {
    public var ufrag: String
    public var password: String

    public init(ufrag: String, password: String) {
        self.ufrag = ufrag
        self.password = password
    }

    /// ice-char (RFC 8839 §5.4): 64 of them, so each random character carries 6 bits.
    static let iceChars = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/".utf8)

    /// Fresh credentials for `slot` (0 ..< 2^24): an 8-character random part (48 bits)
    /// and a 24-character password (144 bits; RFC 8839 asks for at least 128).
    public static func make(slot: Int, using rng: inout some RandomNumberGenerator) -> ICECredentials {
        precondition((0..<IceUfrag.slotLimit).contains(slot), "the ufrag has six hex digits for the slot")
        let random = (0..<8).map { _ in iceChars[Int(rng.next() & 63)] }
        let password = (0..<24).map { _ in iceChars[Int(rng.next() & 63)] }
        return ICECredentials(
            ufrag: IceUfrag.make(slot: slot, random: String(decoding: random, as: UTF8.self))!.description,
            password: String(decoding: password, as: UTF8.self))
    }
}

/// Builds the SDP answer VoxEdge sends for a `WebRTCOffer` (JSEP, RFC 8829 §5.3):
///
/// - `a=ice-lite`: the server never checks, it answers checks (RFC 8445 §2.5), so it
///   needs no STUN/TURN of its own and one UDP port serves every session.
/// - one host candidate, the engine's media address and port, then `a=end-of-candidates`.
/// - `a=fingerprint:sha-256` of our certificate, `a=setup:passive`: the client is the DTLS
///   client, so its first flight (after ICE) starts the handshake and we never retransmit
///   into a path ICE has not validated.
/// - `a=rtcp-mux` (RTP and RTCP on one port); Opus alone, under the client's payload
///   type, with `useinbandfec=1` so the client sends FEC we can use on loss.
/// - every other m-line (video, data channel, a second audio) rejected: port 0, the
///   offer's proto and formats, its mid, nothing else (RFC 8843 §7.3.3, RFC 3264 §6).
/// - `a=group:BUNDLE` with the audio mid when the client bundled it: rejected m-lines
///   leave the group.
public enum SDPAnswer {
    public struct Parameters: Sendable {
        public var credentials: ICECredentials
        /// Our certificate's SHA-256 fingerprint (browsers require SHA-256 support).
        public var fingerprint: CertificateFingerprint
        /// The engine's media address and UDP port, for the candidate and `c=`.
        public var address: IPAddress
        public var port: UDPPort
        /// `o=` session id: random per session, so answers are told apart in logs.
        public var sessionID: UInt64

        public init(
            credentials: ICECredentials, fingerprint: CertificateFingerprint, address: IPAddress, port: UDPPort,
            sessionID: UInt64
        ) {
            self.credentials = credentials
            self.fingerprint = fingerprint
            self.address = address
            self.port = port
            self.sessionID = sessionID
        }
    }

    /// The host candidate's priority: type preference 126 (host), local preference 65535,
    /// component 1 (RFC 8445 §5.1.2.1).
    public static let candidatePriority: UInt32 = (126 << 24) | (65535 << 8) | (256 - 1)

    /// The answer's lines, CRLF-terminated as RFC 8866 §5 writes them.
    public static func build(for offer: WebRTCOffer, _ p: Parameters) -> String {
        let family = p.address.isIPv4 ? "IP4" : "IP6"
        let address = p.address.description
        var lines = ["v=0", "o=- \(p.sessionID) 1 IN \(family) \(address)", "s=-", "t=0 0"]
        if let mid = offer.audioMid, bundled(offer).contains(mid) {
            lines.append("a=group:BUNDLE \(mid)")
        }
        lines.append("a=ice-lite")
        for (i, m) in offer.sdp.media.enumerated() {
            guard i == offer.audioIndex else {
                lines.append("m=\(m.kind) 0 \(m.proto) \(m.formats.joined(separator: " "))")
                lines.append("c=IN \(family) \(address)")
                if let mid = m.attribute("mid") { lines.append("a=mid:\(mid)") }
                continue
            }
            let pt = offer.opusPayloadType
            lines.append("m=audio \(p.port.rawValue) \(m.proto) \(pt)")
            lines.append("c=IN \(family) \(address)")
            if let mid = offer.audioMid { lines.append("a=mid:\(mid)") }
            lines.append("a=ice-ufrag:\(p.credentials.ufrag)")
            lines.append("a=ice-pwd:\(p.credentials.password)")
            lines.append("a=fingerprint:\(p.fingerprint.sdpValue)")
            lines.append("a=setup:passive")
            lines.append("a=\(offer.answerDirection)")
            lines.append("a=rtcp-mux")
            lines.append("a=rtpmap:\(pt) opus/48000/2")
            lines.append("a=fmtp:\(pt) minptime=10;useinbandfec=1")
            lines.append("a=candidate:1 1 udp \(candidatePriority) \(address) \(p.port.rawValue) typ host")
            lines.append("a=end-of-candidates")
        }
        return lines.joined(separator: "\r\n") + "\r\n"
    }

    /// The mids of the offer's first BUNDLE group.
    static func bundled(_ offer: WebRTCOffer) -> [String] {
        for a in offer.sdp.attributes where a.name == "group" {
            let fields = (a.value ?? "").split(separator: " ")
            if fields.first?.uppercased() == "BUNDLE" { return fields.dropFirst().map(String.init) }
        }
        return []
    }
}
