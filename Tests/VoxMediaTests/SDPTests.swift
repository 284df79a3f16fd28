import Foundation
import Testing
import VoxMedia
import VoxTestKit
import VoxWire

/// The offers real clients posted (Tests/Fixtures/webrtc/*/offer.sdp).
func fixtureOffer(_ client: String) throws -> String {
    try String(contentsOf: fixturesDirectory.appendingPathComponent("webrtc/\(client)/offer.sdp"), encoding: .utf8)
}

/// Answer parameters fixed for the tests.
let testAnswerParameters = SDPAnswer.Parameters(
    credentials: ICECredentials(ufrag: "vx00002aK9pQ/+zW", password: "Hn3sV0pQ8rT2uW5yZ7bC1dF4"),
    fingerprint: CertificateFingerprint(algorithm: .sha256, digest: (0..<32).map { UInt8($0 * 7 & 0xFF) }),
    address: IPAddress("198.18.0.1")!, port: UDPPort(40000), sessionID: 42)

/// The audio section we answer, line by line.
func expectedAudioSection(pt: Int, mid: String?, direction: String = "sendrecv") -> [String] {
    let p = testAnswerParameters
    return ["m=audio 40000 UDP/TLS/RTP/SAVPF \(pt)", "c=IN IP4 198.18.0.1"] + (mid.map { ["a=mid:\($0)"] } ?? []) + [
        "a=ice-ufrag:\(p.credentials.ufrag)", "a=ice-pwd:\(p.credentials.password)",
        "a=fingerprint:\(p.fingerprint.sdpValue)", "a=setup:passive", "a=\(direction)", "a=rtcp-mux",
        "a=rtpmap:\(pt) opus/48000/2", "a=fmtp:\(pt) minptime=10;useinbandfec=1",
        "a=candidate:1 1 udp 2130706431 198.18.0.1 40000 typ host", "a=end-of-candidates",
    ]
}

func answerLines(_ offer: WebRTCOffer) -> [String] {
    let text = SDPAnswer.build(for: offer, testAnswerParameters)
    #expect(text.hasSuffix("\r\n"))
    return text.components(separatedBy: "\r\n").dropLast().map { $0 }
}

@Suite struct SDPFixtureTests {
    @Test(arguments: [
        ("chromium-156", 111, "0", "/XoV", "Whhuk5TkLzcB0WjjuPoDgVk5", 1),
        ("aiortc-1.16", 96, "0", "l6FI", "h67iYVebfBq61gJIRyqQEp", 3),
        ("gstreamer-1.22", 111, "audio0", "KK787spvU20DK8tmViOpLGEA+SwnEQnX", "lkq8ZrLRdV+3a2CTXqnyqUHar95JIuHy", 1),
    ])
    func realOfferIsReadAndAnswered(
        client: String, pt: Int, mid: String, ufrag: String, pwd: String, fingerprints: Int
    ) throws {
        let offer = try WebRTCOffer(fixtureOffer(client))
        #expect(offer.opusPayloadType == UInt8(pt))
        #expect(offer.audioMid == mid)
        #expect(offer.remoteUfrag == ufrag && offer.remotePassword == pwd)
        #expect(offer.fingerprints.count == fingerprints)
        #expect(offer.fingerprints.first?.algorithm == .sha256)
        #expect(offer.setup == "actpass" && offer.direction == "sendrecv")
        let expected =
            ["v=0", "o=- 42 1 IN IP4 198.18.0.1", "s=-", "t=0 0", "a=group:BUNDLE \(mid)", "a=ice-lite"]
            + expectedAudioSection(pt: pt, mid: mid)
        let lines = answerLines(offer)
        #expect(lines.count == expected.count)
        for (got, want) in zip(lines, expected) { #expect(got == want) }
        // Our own parser reads the answer back: one audio m-line, ice-lite at session level.
        let parsed = try SessionDescription.parse(lines.joined(separator: "\r\n"))
        #expect(parsed.media.count == 1 && parsed.attributes.contains { $0.name == "ice-lite" })
    }

    @Test func chromiumFingerprintIsDecoded() throws {
        let offer = try WebRTCOffer(fixtureOffer("chromium-156"))
        #expect(
            offer.fingerprints.first?.sdpValue
                == "sha-256 8B:12:B3:17:C8:7D:EB:38:58:25:65:CC:DB:07:FE:68:38:B5:D0:27:4C:90:21:D6:E1:27:7D:33:A8:AC:F1:C1"
        )
    }

    @Test func videoDataChannelAndSecondAudioAreRejectedWithPortZero() throws {
        let offer = try WebRTCOffer(
            """
            v=0\r
            o=- 1 2 IN IP4 127.0.0.1\r
            s=-\r
            t=0 0\r
            a=group:BUNDLE a v d a2\r
            a=ice-ufrag:abcd\r
            a=ice-pwd:abcdefghijklmnopqrstuvwx\r
            a=fingerprint:SHA-256 \(testAnswerParameters.fingerprint.sdpValue.dropFirst(8))\r
            m=audio 9 UDP/TLS/RTP/SAVPF 0 109\r
            a=mid:a\r
            a=sendonly\r
            a=rtpmap:0 PCMU/8000\r
            a=rtpmap:109 opus/48000/2\r
            m=video 9 UDP/TLS/RTP/SAVPF 96 97\r
            a=mid:v\r
            a=rtpmap:96 VP8/90000\r
            m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r
            a=mid:d\r
            a=sctp-port:5000\r
            m=audio 9 UDP/TLS/RTP/SAVPF 109\r
            a=mid:a2\r
            a=rtpmap:109 opus/48000/2\r

            """)
        #expect(offer.audioIndex == 0 && offer.opusPayloadType == 109 && offer.answerDirection == "recvonly")
        let expected =
            ["v=0", "o=- 42 1 IN IP4 198.18.0.1", "s=-", "t=0 0", "a=group:BUNDLE a", "a=ice-lite"]
            + expectedAudioSection(pt: 109, mid: "a", direction: "recvonly")
            + ["m=video 0 UDP/TLS/RTP/SAVPF 96 97", "c=IN IP4 198.18.0.1", "a=mid:v"]
            + ["m=application 0 UDP/DTLS/SCTP webrtc-datachannel", "c=IN IP4 198.18.0.1", "a=mid:d"]
            + ["m=audio 0 UDP/TLS/RTP/SAVPF 109", "c=IN IP4 198.18.0.1", "a=mid:a2"]
        let lines = answerLines(offer)
        #expect(lines == expected)
    }

    @Test func credentialsCarryTheSlot() {
        var rng = SeededRandom(seed: 8)
        let c = ICECredentials.make(slot: 0x2A, using: &rng)
        #expect(c.ufrag.hasPrefix("vx00002a") && c.ufrag.utf8.count == 16)
        #expect(c.password.utf8.count == 24)
        let other = ICECredentials.make(slot: 0xABCDEF, using: &rng)
        #expect(other.ufrag.hasPrefix("vxabcdef") && other.ufrag != c.ufrag && other.password != c.password)
        // What the answer carries is what a client's offer parser accepts.
        let ufragOK = c.ufrag.utf8.allSatisfy { $0 == 0x2B || $0 == 0x2F || (0x30...0x7A).contains($0) }
        #expect(ufragOK)
    }
}

@Suite struct SDPErrorTests {
    static let base = """
        v=0
        o=- 1 2 IN IP4 127.0.0.1
        s=-
        t=0 0
        m=audio 9 UDP/TLS/RTP/SAVPF 111
        a=ice-ufrag:abcd
        a=ice-pwd:abcdefghijklmnopqrstuvwx
        a=fingerprint:sha-256 \(testAnswerParameters.fingerprint.sdpValue.dropFirst(8))
        a=setup:actpass
        a=rtpmap:111 opus/48000/2

        """

    static func variant(_ replace: String, with: String) -> String {
        precondition(base.contains(replace))
        return base.replacingOccurrences(of: replace, with: with)
    }

    static let cases: [(String, String, SDPError.Code)] = [
        ("empty", "", .malformed),
        ("not SDP", "hello world", .malformed),
        ("v=1", variant("v=0", with: "v=1"), .malformed),
        ("no v= first", variant("v=0\n", with: ""), .malformed),
        ("bare m-line", variant("m=audio 9 UDP/TLS/RTP/SAVPF 111", with: "m=audio"), .malformed),
        ("port", variant("m=audio 9 ", with: "m=audio x "), .malformed),
        ("port range", variant("m=audio 9 ", with: "m=audio 70000 "), .malformed),
        // Found by the sdp fuzz target (3 Dec 2026): a port field of only "/" trapped the
        // process (an empty split indexed at 0), ending every call on the host.
        ("port only a slash", variant("m=audio 9 ", with: "m=audio / "), .malformed),
        ("port count without port", variant("m=audio 9 ", with: "m=audio /2 "), .malformed),
        ("port slashes", variant("m=audio 9 ", with: "m=audio // "), .malformed),
        ("upper-case type", variant("s=-", with: "S=-"), .malformed),
        ("no audio", variant("m=audio 9 UDP/TLS/RTP/SAVPF 111", with: "m=video 9 UDP/TLS/RTP/SAVPF 111"), .noAudio),
        (
            "data only",
            variant("m=audio 9 UDP/TLS/RTP/SAVPF 111", with: "m=application 9 UDP/DTLS/SCTP webrtc-datachannel"),
            .noAudio
        ),
        ("audio rejected", variant("m=audio 9 ", with: "m=audio 0 "), .noAudio),
        ("RTP/AVP", variant("UDP/TLS/RTP/SAVPF", with: "RTP/AVP"), .notDTLSSRTP),
        ("SDES", variant("UDP/TLS/RTP/SAVPF", with: "RTP/SAVP"), .notDTLSSRTP),
        ("no Opus", variant("a=rtpmap:111 opus/48000/2", with: "a=rtpmap:111 PCMU/8000"), .noOpus),
        ("Opus not listed", variant("SAVPF 111", with: "SAVPF 0"), .noOpus),
        ("Opus at 16 kHz", variant("opus/48000/2", with: "opus/16000/1"), .noOpus),
        ("no fingerprint", variant("a=fingerprint:", with: "a=x-fingerprint:"), .noFingerprint),
        ("sha-1 only", variant("a=fingerprint:sha-256 00:07", with: "a=fingerprint:sha-1 00:07"), .noFingerprint),
        ("bad hex", variant("a=fingerprint:sha-256 00:07", with: "a=fingerprint:sha-256 0G:07"), .noFingerprint),
        ("short digest", variant("a=fingerprint:sha-256 00:07:", with: "a=fingerprint:sha-256 "), .noFingerprint),
        ("no ufrag", variant("a=ice-ufrag:abcd\n", with: ""), .noICECredentials),
        ("no pwd", variant("a=ice-pwd:abcdefghijklmnopqrstuvwx\n", with: ""), .noICECredentials),
        ("short pwd", variant("a=ice-pwd:abcdefghijklmnopqrstuvwx", with: "a=ice-pwd:short"), .noICECredentials),
        ("bad ufrag char", variant("a=ice-ufrag:abcd", with: "a=ice-ufrag:ab;d"), .noICECredentials),
        ("setup passive", variant("a=setup:actpass", with: "a=setup:passive"), .setupConflict),
        ("too large", base + String(repeating: "a=x\n", count: 20_000), .tooLarge),
    ]

    @Test func baseIsAnswerable() throws {
        let offer = try WebRTCOffer(Self.base)
        #expect(offer.opusPayloadType == 111 && offer.audioMid == nil)
        // No mid, no BUNDLE: the answer has neither.
        let lines = answerLines(offer)
        #expect(!lines.contains { $0.hasPrefix("a=group") || $0.hasPrefix("a=mid") })
    }

    @Test(arguments: cases.indices)
    func malformedOfferIsATypedError(index: Int) {
        let (name, text, code) = Self.cases[index]
        do {
            _ = try WebRTCOffer(text)
            Issue.record("\(name): accepted")
        } catch {
            #expect(error.code == code, "\(name): \(error)")
        }
    }

    @Test func bundleOnlyAudioIsAnswered() throws {
        let offer = try WebRTCOffer(Self.variant("m=audio 9 ", with: "m=audio 0 ") + "a=bundle-only\n")
        #expect(answerLines(offer).contains("m=audio 40000 UDP/TLS/RTP/SAVPF 111"))
    }

    @Test func sessionLevelCredentialsAndFingerprintCount() throws {
        // Moved above the m-line: still found.
        var text = Self.base
        for line in ["a=ice-ufrag:abcd\n", "a=ice-pwd:abcdefghijklmnopqrstuvwx\n"] {
            text = text.replacingOccurrences(of: line, with: "")
            text = text.replacingOccurrences(of: "t=0 0\n", with: "t=0 0\n" + line)
        }
        let offer = try WebRTCOffer(text)
        #expect(offer.remoteUfrag == "abcd")
    }
}

@Suite struct SDPMutationTests {
    /// Seeded line drops, swaps, duplications, truncations and byte flips of the three real
    /// offers: each parse is an answer that reads back, or a typed error. Never a trap.
    @Test func twentyThousandMutatedOffers() throws {
        let seeds = try ["chromium-156", "aiortc-1.16", "gstreamer-1.22"].map { Array(try fixtureOffer($0).utf8) }
        var rng = SeededRandom(seed: 0x5D9)
        var answered = 0
        var codes: Set<SDPError.Code> = []
        for i in 0..<20_000 {
            var bytes = seeds[i % seeds.count]
            var lines = bytes.split(separator: 0x0A, omittingEmptySubsequences: false).map(Array.init)
            for _ in 0..<Int.random(in: 1...3, using: &rng) {
                let j = Int.random(in: 0..<lines.count, using: &rng)
                switch Int.random(in: 0..<5, using: &rng) {
                case 0: lines.remove(at: j)
                case 1: lines.swapAt(j, Int.random(in: 0..<lines.count, using: &rng))
                case 2: lines.insert(lines[j], at: Int.random(in: 0...lines.count, using: &rng))
                case 3: if !lines[j].isEmpty { lines[j].removeLast(Int.random(in: 0...lines[j].count, using: &rng)) }
                default:
                    if !lines[j].isEmpty {
                        lines[j][Int.random(in: 0..<lines[j].count, using: &rng)] ^=
                            UInt8(1) << UInt8.random(in: 0..<8, using: &rng)
                    }
                }
                if lines.isEmpty { lines = [[]] }
            }
            bytes = Array(lines.joined(separator: [0x0A]))
            do {
                let offer = try WebRTCOffer(String(decoding: bytes, as: UTF8.self))
                let answer = SDPAnswer.build(for: offer, testAnswerParameters)
                let parsed = try SessionDescription.parse(answer)
                #expect(parsed.media.count == offer.sdp.media.count)
                #expect(parsed.media.filter { $0.port != 0 }.count == 1)
                answered += 1
            } catch {
                codes.insert(error.code)
            }
        }
        #expect(answered > 0 && codes.count >= 4)
    }
}
