/// What an SDP offer asks of VoxEdge, read the way real clients write it (Chromium,
/// aiortc, GStreamer: see Tests/Fixtures/webrtc): the one audio m-line we accept, its Opus
/// payload type, the client's ICE credentials and certificate fingerprints, and the other
/// m-lines, which the answer rejects with port 0.
///
/// ICE credentials and fingerprints may sit at the session or media level (RFC 8839 §5.4,
/// RFC 8122 §5); the media level wins. Candidates are not needed: an ICE-lite server
/// learns the client's address from its checks.
public struct WebRTCOffer: Equatable, Sendable {
    /// The parsed document.
    public var sdp: SessionDescription
    /// Index in `description.media` of the audio m-line the answer accepts.
    public var audioIndex: Int
    /// The client's payload type for Opus (any number, any letter case in the rtpmap).
    public var opusPayloadType: UInt8
    /// The audio m-line's `a=mid`, nil when the client sent none (then the answer sends none).
    public var audioMid: String?
    public var remoteUfrag: String
    public var remotePassword: String
    /// Every fingerprint the client offered for the audio transport; its certificate must
    /// match one of them.
    public var fingerprints: [CertificateFingerprint]
    /// `a=setup` of the offer (`actpass` from every browser; `active` is also answerable).
    public var setup: String
    /// The audio direction as the client wrote it (`sendrecv` when absent, RFC 3264 §5.1).
    public var direction: String

    /// Reads `text` and checks that we can answer it.
    public init(_ text: String) throws(SDPError) {
        try self.init(parsed: SessionDescription.parse(text))
    }

    public init(parsed sdp: SessionDescription) throws(SDPError) {
        self.sdp = sdp
        // Port 0 rejects an m-line, unless it is `a=bundle-only` (JSEP max-bundle, RFC 8843 §6).
        let audio = sdp.media.indices.filter { i in
            sdp.media[i].kind == "audio" && (sdp.media[i].port != 0 || sdp.media[i].has("bundle-only"))
        }
        guard !audio.isEmpty else { throw SDPError(.noAudio, "no m=audio line with a port") }
        // The first audio m-line that is DTLS-SRTP and carries Opus; errors describe the first one.
        var chosen: (Int, UInt8)? = nil
        var firstError: SDPError? = nil
        for i in audio {
            let m = sdp.media[i]
            guard Self.isDTLSSRTP(m.proto) else {
                firstError =
                    firstError ?? SDPError(.notDTLSSRTP, line: m.line, "proto \(m.proto) is not UDP/TLS/RTP/SAVP(F)")
                continue
            }
            guard let pt = Self.opusPayloadType(m) else {
                firstError = firstError ?? SDPError(.noOpus, line: m.line, "no opus/48000/2 rtpmap for a listed format")
                continue
            }
            chosen = (i, pt)
            break
        }
        guard let (index, pt) = chosen else { throw firstError! }
        let m = sdp.media[index]
        audioIndex = index
        opusPayloadType = pt
        audioMid = m.attribute("mid")

        guard let ufrag = m.attribute("ice-ufrag") ?? sdp.attribute("ice-ufrag"),
            let password = m.attribute("ice-pwd") ?? sdp.attribute("ice-pwd")
        else { throw SDPError(.noICECredentials, line: m.line, "no a=ice-ufrag and a=ice-pwd") }
        // RFC 8839 §5.4: ufrag 4-256 ice-chars, pwd 22-256.
        guard Self.isICEChars(ufrag, 4...256), Self.isICEChars(password, 22...256) else {
            throw SDPError(.noICECredentials, line: m.line, "ice-ufrag or ice-pwd has the wrong length or characters")
        }
        remoteUfrag = ufrag
        remotePassword = password

        let media = m.attributes.filter { $0.name == "fingerprint" }
        let lines = media.isEmpty ? sdp.attributes.filter { $0.name == "fingerprint" } : media
        fingerprints = lines.compactMap { $0.value.flatMap(CertificateFingerprint.init(sdpValue:)) }
        guard fingerprints.contains(where: { $0.algorithm != .sha1 }) else {
            throw SDPError(.noFingerprint, line: m.line, "no a=fingerprint with sha-256, sha-384 or sha-512")
        }

        setup = (m.attribute("setup") ?? sdp.attribute("setup") ?? "actpass").lowercased()
        guard setup == "actpass" || setup == "active" else {
            throw SDPError(.setupConflict, line: m.line, "a=setup:\(setup); VoxEdge is always the DTLS server")
        }
        direction = ["sendrecv", "sendonly", "recvonly", "inactive"].first { m.has($0) } ?? "sendrecv"
    }

    /// The SSRC the client declares for its audio (the audio m-line's first `a=ssrc`), if any:
    /// what the backend is told it will see (docs/backend-protocol.md's start).
    public var offeredSSRC: UInt32? {
        guard let value = sdp.media[audioIndex].attribute("ssrc"),
            let first = value.split(separator: " ", maxSplits: 1).first
        else { return nil }
        return UInt32(first)
    }

    /// The answer's direction: the mirror of the offer's (RFC 3264 §6.1).
    public var answerDirection: String {
        switch direction {
        case "sendonly": return "recvonly"
        case "recvonly": return "sendonly"
        default: return direction
        }
    }

    /// `UDP/TLS/RTP/SAVPF` from browsers; `UDP/TLS/RTP/SAVP` and `TCP/TLS/...` are DTLS-SRTP too
    /// (RFC 5764 §8), but only UDP reaches us.
    static func isDTLSSRTP(_ proto: String) -> Bool {
        let p = proto.uppercased()
        return p == "UDP/TLS/RTP/SAVPF" || p == "UDP/TLS/RTP/SAVP"
    }

    /// The first listed format whose rtpmap is Opus at 48 kHz, 2 channels (RFC 7587 §7).
    static func opusPayloadType(_ m: MediaDescription) -> UInt8? {
        var opus: Set<UInt8> = []
        for a in m.attributes where a.name == "rtpmap" {
            guard let v = a.value else { continue }
            let parts = v.split(separator: " ", maxSplits: 1)
            guard parts.count == 2, let pt = UInt8(parts[0]), pt < 128 else { continue }
            if parts[1].lowercased().hasPrefix("opus/48000") { opus.insert(pt) }
        }
        for f in m.formats {
            if let pt = UInt8(f), opus.contains(pt) { return pt }
        }
        return nil
    }

    /// ice-char = ALPHA / DIGIT / "+" / "/" (RFC 8839 §5.4).
    static func isICEChars(_ s: String, _ lengths: ClosedRange<Int>) -> Bool {
        lengths.contains(s.utf8.count)
            && s.utf8.allSatisfy { c in
                (0x30...0x39).contains(c) || (0x41...0x5A).contains(c) || (0x61...0x7A).contains(c) || c == 0x2B
                    || c == 0x2F
            }
    }
}
