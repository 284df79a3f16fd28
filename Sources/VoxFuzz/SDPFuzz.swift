import VoxMedia
import VoxWire

/// An SDP offer as signaling receives it: `WebRTCOffer` (which parses with
/// `SessionDescription.parse`), and for an offer we accept, the answer `SDPAnswer.build`
/// writes, which must itself parse and keep one m-line per offered m-line (RFC 3264 §6).
enum SDPFuzz {
    static let parameters = SDPAnswer.Parameters(
        credentials: ICECredentials(ufrag: "vx00002aK9pQ/+zW", password: "Hn3sV0pQ8rT2uW5yZ7bC1dF4"),
        fingerprint: CertificateFingerprint(algorithm: .sha256, digest: (0..<32).map { UInt8($0 * 7 & 0xFF) }),
        address: IPAddress("198.18.0.1")!, port: UDPPort(40000), sessionID: 42)

    static func run(_ data: UnsafeRawBufferPointer) {
        let text = String(decoding: data, as: UTF8.self)
        let offer: WebRTCOffer
        do {
            offer = try WebRTCOffer(text)
        } catch {
            FuzzCheck.consume(error.description)
            return
        }
        FuzzCheck.expect(offer.audioIndex >= 0 && offer.audioIndex < offer.sdp.media.count, "audio m-line out of range")
        FuzzCheck.expect(!offer.fingerprints.isEmpty, "an offer accepted without a fingerprint")
        let answer = SDPAnswer.build(for: offer, parameters)
        let parsed: SessionDescription
        do {
            parsed = try SessionDescription.parse(answer)
        } catch {
            FuzzCheck.expect(false, "our answer does not parse (\(error)): \(answer)")
            return
        }
        FuzzCheck.expect(
            parsed.media.count == offer.sdp.media.count,
            "the answer has \(parsed.media.count) m-lines for \(offer.sdp.media.count) offered")
    }
}
