import Foundation
import Glibc
import Testing

/// A real WebRTC client calls the engine (issue 15): `voxedge demo` — README command 1 — with
/// aiortc in its own namespace across a veth from the engine, over HTTPS signaling with a
/// token, ICE, DTLS on the handshake thread, SRTP through the workers to the echoing backend
/// and back; every beep of the caller's signal must be found in what it hears. On the AF_XDP
/// port and on kernel sockets, and a 75 s call whose client sends no consent check after
/// connecting (only media keeps it up). Needs root; skipped with the reason without it,
/// except under CI=true, where it fails.
/// Part of `DemoTests`, so no two demos (namespaces, XDP programs, 198.18.0.0/24) run at once.
extension DemoTests {
    /// Runs `voxedge demo` (the WebRTC caller) with `arguments`: its status and output.
    func webRTCCall(_ arguments: [String]) throws -> (status: Int32, text: String)? {
        guard getuid() == 0 else {
            if ProcessInfo.processInfo.environment["CI"] == "true" {
                Issue.record("a WebRTC call needs root (network namespaces), and CI runs as root")
            } else {
                print("skipped: the WebRTC call needs root (network namespaces)")
            }
            return nil
        }
        let p = Process()
        let out = Pipe()
        p.executableURL = URL(fileURLWithPath: DemoTests.voxedge)
        p.arguments = ["demo"] + arguments
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(!DemoTests.namespaces().contains("vxd\(p.processIdentifier)"), "namespaces left behind")
        return (p.terminationStatus, text)
    }

    @Test(arguments: ["xdp", "socket"])
    func aiortcCallsAndHearsEveryBeep(io: String) throws {
        guard let (status, text) = try webRTCCall(["--io", io, "--beeps", "6"]) else { return }
        print(text)
        #expect(status == 0, "\(text)")
        #expect(Self.line(text, "engine up:").contains("io \(io)"), "\(text)")
        #expect(Self.line(text, "beeps").contains("6/6 found"), "\(text)")
        #expect(Self.line(text, "set-up").contains("POST→answer"), "\(text)")
        #expect(Self.line(text, "engine: handshakes").contains("succeeded=1"), "\(text)")
        #expect(text.contains("DELETE       204"), "\(text)")
        #expect(text.contains("demo passed"), "\(text)")
    }

    /// Past the 30 s consent interval with no check from the client: authenticated media
    /// renews consent (libnice under GStreamer keeps calls up that way).
    @Test func aCallWithoutConsentChecksStaysUpPast70Seconds() throws {
        guard let (status, text) = try webRTCCall(["--io", "socket", "--no-consent", "--seconds", "75", "--beeps", "8"]) else {
            return
        }
        print(text)
        #expect(status == 0, "\(text)")
        #expect(Self.line(text, "beeps").contains("8/8 found"), "\(text)")
        #expect(Self.line(text, "stun").contains("0 requests after ICE connected"), "\(text)")
        #expect(text.contains("demo passed"), "\(text)")
    }

    /// A stranger attacks every interface while a call is up (`voxedge demo --hostile`,
    /// Tools/webrtc/hostile.py): a flood of half-open and slow TLS connections through which
    /// the call's POST and the private /healthz are still answered; absent, expired,
    /// wrong-audience, badly signed and too-long-lived tokens; a subject past its cap; DELETE
    /// of unknown and other callers' sessions; every malformed offer; a ClientHello and then
    /// silence; a certificate that is not the offer's fingerprint; STUN with a bad
    /// MESSAGE-INTEGRITY; DTLS from a 5-tuple ICE never admitted; garbage on the media port;
    /// 1,000 POSTs from 64 addresses that never connect. Each refused with its status, counted
    /// by the engine under its reason, its slot back; the call finds every beep.
    @Test(arguments: ["xdp", "socket"])
    func aHostileStrangerCannotHurtALiveCall(io: String) throws {
        guard let (status, text) = try webRTCCall(["--io", io, "--hostile", "--beeps", "12"]) else { return }
        print(text)
        #expect(status == 0, "\(text)")
        #expect(!text.contains("FAIL"), "\(text)")
        #expect(Self.line(text, "beeps").contains("12/12 found"), "\(text)")
        #expect(text.contains("hostile: every attack refused and counted"), "\(text)")
        #expect(text.contains("demo passed"), "\(text)")
    }

    /// IPv6 end to end (`voxedge demo --ipv6`): the POST to [2001:2::1]:8443, an answer whose
    /// candidate is IPv6, ICE, DTLS, media and the backend leg over 2001:2::/64, on AF_XDP
    /// (the XDP program's IPv6 parsing, the backend's next hop found by neighbour discovery)
    /// and on kernel sockets.
    @Test(arguments: ["xdp", "socket"])
    func aCallOverIPv6(io: String) throws {
        guard let (status, text) = try webRTCCall(["--io", io, "--ipv6", "--beeps", "4"]) else { return }
        print(text)
        #expect(status == 0, "\(text)")
        #expect(Self.line(text, "engine up:").contains("[2001:2::1]:40000"), "\(text)")
        #expect(Self.line(text, "session").contains("https://[2001:2::1]:8443/v1/sessions/"), "\(text)")
        #expect(Self.line(text, "beeps").contains("4/4 found"), "\(text)")
        // The backend's next hop was there from the first packet (neighbour discovery done);
        // what a worker drops after the DELETE (the client's last RTCP, close_notify) is not the call's.
        #expect(!text.contains("backendUnavailable"), "\(text)")
        #expect(text.contains("demo passed"), "\(text)")
    }
}

extension DemoTests {
    /// Barge-in end to end (issue 16, `voxedge demo --barge-in`, Tools/webrtc/bargein.py): the
    /// backend sends 3 s of a tone ahead in bursts, flushes after 1 s of playout and answers
    /// with 1 s of another tone; the aiortc client records every packet after SRTP. What it
    /// heard is compared with what the backend logged it sent, around the engine's
    /// `last_flush_sequence`: the first second whole and in order, nothing queued before the
    /// flush after it, all of the new audio; two spoofed flushes (a bad MAC from a stranger,
    /// a good MAC from the backend's address but another port) refused and counted; the
    /// token's model and subject in the backend's start, `client_left` at the DELETE; and a
    /// second client that answers one check and never does DTLS ends `connect_timeout`.
    @Test(arguments: ["xdp", "socket"])
    func aBargeInFlushesWhatWasQueuedAndNothingMore(io: String) throws {
        guard let (status, text) = try webRTCCall(["--io", io, "--barge-in"]) else { return }
        print(text)
        #expect(status == 0, "\(text)")
        #expect(Self.line(text, "engine up:").contains("io \(io)"), "\(text)")
        for property in [
            "first second", "nothing queued after the flush", "after the flush", "spoofed flushes", "start", "end",
            "connect deadline",
        ] {
            #expect(text.contains("  ok   \(property): "), "\(property): \(text)")
            #expect(!text.contains("  FAIL \(property): "), "\(property): \(text)")
        }
        #expect(Self.line(text, "  ok   first second").contains("all received, the backend's pre-flush packets 1–"), "\(text)")
        #expect(Self.line(text, "  ok   start").contains("'tone-talker-v2', subject 'barge-in-caller-7'"), "\(text)")
        #expect(Self.line(text, "  ok   end").contains("client_left"), "\(text)")
        #expect(Self.line(text, "  ok   connect deadline").contains("start then end, end connect_timeout"), "\(text)")
        #expect(text.contains("barge-in: passed"), "\(text)")
        #expect(text.contains("demo passed"), "\(text)")
    }
}
