import Foundation
import Glibc
import Testing
import VoxControl
import VoxEngine
import VoxMedia
import VoxWire

/// `session.offer`: a WebRTC session from an SDP offer over the control socket, as a
/// stranger would send it — real clients' offers (Tests/Fixtures/webrtc), broken ones, wrong
/// types, oversized ones, a full engine, a draining one.
@Suite(.serialized) struct SessionOfferTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/webrtc")

    static func offer(_ client: String) throws -> String {
        try String(contentsOf: fixtures.appendingPathComponent("\(client)/offer.sdp"), encoding: .utf8)
    }

    static func request(id: Int, sdp: String, extra: String = "") -> String {
        let data = try! JSONSerialization.data(withJSONObject: ["sdp": sdp])
        let body = String(decoding: data, as: UTF8.self).dropFirst().dropLast()
        return #"{"id":\#(id),"cmd":"session.offer",\#(body)\#(extra)}"#
    }

    @Test(arguments: ["aiortc-1.16", "chromium-156", "gstreamer-1.22"])
    func aRealClientsOfferIsAnswered(client: String) throws {
        let rig = try ControlRig(maxSessions: 2)
        defer { rig.shutdown() }
        let fd = rig.connect()
        defer { close(fd) }
        let reply = rig.call(fd, Self.request(id: 1, sdp: try Self.offer(client), extra: #","subject":"alice","model":"m1""#))
        #expect(reply?["ok"] as? Bool == true, "\(reply ?? [:])")
        let answer = try #require(reply?["answer"] as? String)
        let parsed = try SessionDescription.parse(answer)
        #expect(parsed.attributes.contains { $0.name == "ice-lite" })
        let audio = try #require(parsed.media.first { $0.kind == "audio" && $0.port != 0 })
        #expect(audio.port == rig.mediaPort)
        #expect(audio.attribute("setup") == "passive")
        #expect(audio.attribute("fingerprint") == rig.runtime.handshakes.context.fingerprint.sdpValue)
        #expect(audio.attribute("candidate")?.contains("127.0.0.1 \(rig.mediaPort) typ host") == true)
        // Every other m-line (Chromium's and aiortc's data channel, …) is refused: port 0.
        for m in parsed.media where m.kind != "audio" { #expect(m.port == 0) }
        let session = try #require(reply?["session"] as? [String: Any])
        #expect(session["kind"] as? String == "webrtc" && session["state"] as? String == "waiting_for_ice")
        #expect(session["subject"] as? String == "alice" && session["model"] as? String == "m1")
        // `stats` counts it by state (voxedge_sessions_by_state is the same function).
        let byState = rig.call(fd, #"{"id":9,"cmd":"stats"}"#)?["sessions_by_state"] as? [String: Any]
        #expect(byState?["waiting_for_ice"] as? Int == 1 && byState?["connected"] as? Int == 0, "\(byState ?? [:])")
        // It is listed, and dropping it frees its slot (held, so reaped at once).
        let id = try #require((session["id"] as? NSNumber)?.uint64Value)
        #expect(rig.call(fd, #"{"id":2,"cmd":"session.drop","session":\#(id)}"#)?["ok"] as? Bool == true)
        #expect(rig.call(fd, #"{"id":3,"cmd":"session.list"}"#).flatMap { $0["sessions"] as? [Any] }?.isEmpty == true)
    }

    @Test func badOffersAreRefusedWithTheirReason() throws {
        let rig = try ControlRig(maxSessions: 2)
        defer { rig.shutdown() }
        let fd = rig.connect()
        defer { close(fd) }
        let good = try Self.offer("aiortc-1.16")
        let noFingerprint = good.split(separator: "\r\n", omittingEmptySubsequences: false)
            .filter { !$0.hasPrefix("a=fingerprint") }.joined(separator: "\r\n")
        let noOpus = good.replacingOccurrences(of: "opus/48000/2", with: "PCMU/8000")
        let noCredentials = good.split(separator: "\r\n", omittingEmptySubsequences: false)
            .filter { !$0.hasPrefix("a=ice-ufrag") && !$0.hasPrefix("a=ice-pwd") }.joined(separator: "\r\n")
        let videoOnly = good.replacingOccurrences(of: "m=audio", with: "m=video")
        let longUfrag = good.replacing(#/a=ice-ufrag:\S+/#, with: "a=ice-ufrag:" + String(repeating: "u", count: 300))
        // The sdp fuzz target's find: an m-line whose port is only "/" trapped the engine.
        let slashPort = good.replacing(#/m=audio \d+ /#, with: "m=audio / ")
        #expect(slashPort != good)
        for (i, sdp) in [
            "", "hello", noFingerprint, noOpus, noCredentials, videoOnly, longUfrag, String(repeating: "v=0\r\n", count: 100),
            slashPort,
        ].enumerated() {
            let reply = rig.call(fd, Self.request(id: i, sdp: sdp))
            #expect(errorCode(reply) == "bad_offer", "offer \(i): \(reply ?? [:])")
        }
        // Wrong types, missing fields, oversized: bad_argument; nothing was created.
        for text in [
            #"{"id":20,"cmd":"session.offer"}"#, #"{"id":21,"cmd":"session.offer","sdp":7}"#,
            #"{"id":22,"cmd":"session.offer","sdp":null}"#, #"{"id":23,"cmd":"session.offer","sdp":["v=0"]}"#,
            Self.request(id: 24, sdp: good, extra: #","subject":5"#), Self.request(id: 25, sdp: good, extra: #","model":{}"#),
            Self.request(id: 26, sdp: good + String(repeating: "a=x\r\n", count: 14_000)),
        ] {
            #expect(errorCode(rig.call(fd, text)) == "bad_argument", "\(text.prefix(80))")
        }
        #expect(rig.runtime.control.freeCount == 2)
        // The same offer twice is two sessions (each POST is a call); a third finds it full.
        #expect(rig.call(fd, Self.request(id: 30, sdp: good))?["ok"] as? Bool == true)
        #expect(rig.call(fd, Self.request(id: 31, sdp: good))?["ok"] as? Bool == true)
        #expect(errorCode(rig.call(fd, Self.request(id: 32, sdp: good))) == "full")
    }

    /// Answers are secrets (they carry our ICE password): only the caller sees one.
    @Test func theAnswerIsShownOnlyToItsCaller() throws {
        let rig = try ControlRig(maxSessions: 2)
        defer { rig.shutdown() }
        let fd = rig.connect()
        defer { close(fd) }
        let reply = rig.call(fd, Self.request(id: 1, sdp: try Self.offer("chromium-156")))
        let answer = try #require(reply?["answer"] as? String)
        #expect(answer.contains("a=ice-pwd:"))
        let id = ((reply?["session"] as? [String: Any])?["id"] as? NSNumber)?.uint64Value ?? 0
        let show = rig.call(fd, #"{"id":2,"cmd":"session.show","session":\#(id)}"#)
        #expect(!"\(show ?? [:])".contains("ice-pwd"))
    }

    @Test func aDrainingEngineTakesNoOffer() throws {
        let rig = try ControlRig(maxSessions: 2)
        defer { rig.shutdown() }
        let fd = rig.connect()
        defer { close(fd) }
        rig.plane.beginDraining()
        #expect(errorCode(rig.call(fd, Self.request(id: 1, sdp: try Self.offer("aiortc-1.16")))) == "draining")
    }

    /// An offer nobody connects to gives its slot back at the connect deadline.
    @Test func anOfferNobodyConnectsToIsReaped() throws {
        let rig = try ControlRig(maxSessions: 1)
        defer { rig.shutdown() }
        let fd = rig.connect()
        defer { close(fd) }
        #expect(rig.call(fd, Self.request(id: 1, sdp: try Self.offer("aiortc-1.16")))?["ok"] as? Bool == true)
        #expect(errorCode(rig.call(fd, Self.request(id: 2, sdp: try Self.offer("aiortc-1.16")))) == "full")
        #expect(rig.call(fd, #"{"id":4,"cmd":"stats"}"#)?["expired_unclaimed"] as? Int == 0)
        rig.server.onControlThread { _ = rig.runtime.control.reapUnclaimed(now: .max) }
        // Counted: no worker saw it, so the control thread's count is the only one.
        #expect(rig.call(fd, #"{"id":5,"cmd":"stats"}"#)?["expired_unclaimed"] as? Int == 1)
        #expect(rig.call(fd, Self.request(id: 3, sdp: try Self.offer("aiortc-1.16")))?["ok"] as? Bool == true)
    }
}
