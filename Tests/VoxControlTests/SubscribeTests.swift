import Foundation
import Glibc
import Testing
import VoxControl
import VoxEngine
import VoxMedia

/// `subscribe` (`voxedge ctl watch`, issue 19 item 3) from the outside: a client on the
/// control socket gets a line per event — sessions created and ended with their reason,
/// drains — beside its replies; one that never reads loses events (counted, and told how many
/// when it reads again) while the engine and every other client go on; bad arguments are
/// refused with the reason.
@Suite(.serialized) struct SubscribeTests {
    static let key = ControlSocketTests.key

    /// The next line on `fd` that is an event (skipping replies), or nil after the 5 s timeout.
    static func nextEvent(_ fd: Int32) -> [String: Any]? {
        while let line = ControlRig.readLine(fd) {
            if line["event"] != nil { return line }
        }
        return nil
    }

    @Test func aSubscriberSeesSessionsComeAndGoWithTheirReasons() throws {
        let rig = try ControlRig(maxSessions: 4)
        defer { rig.shutdown() }
        let watcher = rig.connect()
        defer { close(watcher) }
        let subscribed = rig.call(watcher, #"{"id":1,"cmd":"subscribe"}"#)
        #expect(subscribed?["ok"] as? Bool == true, "\(subscribed ?? [:])")
        #expect(subscribed?["subscribed"] as? [String] == ["backend", "edge", "session"])
        let fd = rig.connect()
        defer { close(fd) }
        let created = rig.call(fd, #"{"id":2,"cmd":"session.create","client":"127.0.0.1:5000","client_key":"\#(Self.key)"}"#)
        let id = try #require((created?["session"] as? [String: Any])?["id"] as? UInt64)
        let first = try #require(Self.nextEvent(watcher))
        #expect(first["event"] as? String == "session.created")
        #expect(first["session"] as? UInt64 == id && first["kind"] as? String == "static")
        #expect(first["client"] as? String == "127.0.0.1:5000")
        #expect(first["time"] is Double)
        #expect(rig.call(fd, #"{"id":3,"cmd":"session.drop","session":\#(id)}"#)?["ok"] as? Bool == true)
        let ended = try #require(Self.nextEvent(watcher))
        #expect(ended["event"] as? String == "session.ended", "\(ended)")
        #expect(ended["session"] as? UInt64 == id && ended["reason"] as? String == "dropped" && ended["worker"] as? Int == 0)
        // The session's record (issue 19, item 4).
        #expect(ended["kind"] as? String == "static" && ended["backend"] as? Int == 0, "\(ended)")
        #expect(ended["profile"] as? String == "AES_CM_128_HMAC_SHA1_80", "\(ended)")
        #expect(ended["packets_from_client"] as? Int == 0 && ended["packets_to_client"] as? Int == 0, "\(ended)")
        #expect(ended["client_packets_lost"] as? Int == 0 && ended["client_jitter_ms"] as? Double == 0, "\(ended)")
        #expect((ended["duration_seconds"] as? Double).map { $0 >= 0 && $0 < 60 } == true, "\(ended)")
        // Drain and undrain are events too; the subscriber's own requests still get replies.
        #expect(rig.call(fd, #"{"id":4,"cmd":"edge.drain","deadline_seconds":600}"#)?["ok"] as? Bool == true)
        #expect(Self.nextEvent(watcher)?["event"] as? String == "edge.draining")
        #expect(rig.call(fd, #"{"id":5,"cmd":"edge.undrain"}"#)?["ok"] as? Bool == true)
        #expect(Self.nextEvent(watcher)?["event"] as? String == "edge.undrained")
        let stats = rig.call(watcher, #"{"id":6,"cmd":"stats"}"#)
        let control = try #require(stats?["control"] as? [String: Any])
        #expect(control["subscribers"] as? Int == 1 && control["events_published"] as? Int == 4)
    }

    /// A WebRTC session dropped before any check reached it: no worker ever had it, so the
    /// control thread writes its record (worker null), with the offer's model and subject.
    @Test func anOfferNobodyConnectedToEndsWithItsRecord() throws {
        let rig = try ControlRig(maxSessions: 4)
        defer { rig.shutdown() }
        let watcher = rig.connect()
        defer { close(watcher) }
        #expect(rig.call(watcher, #"{"id":1,"cmd":"subscribe","events":["session"]}"#)?["ok"] as? Bool == true)
        let fd = rig.connect()
        defer { close(fd) }
        let offer = try SessionOfferTests.offer("aiortc-1.16")
        let reply = rig.call(fd, SessionOfferTests.request(id: 2, sdp: offer, extra: #","model":"m-7","subject":"who""#))
        let id = try #require((reply?["session"] as? [String: Any])?["id"] as? UInt64, "\(reply ?? [:])")
        let created = try #require(Self.nextEvent(watcher))
        #expect(created["event"] as? String == "session.created" && created["kind"] as? String == "webrtc")
        #expect(created["model"] as? String == "m-7" && created["subject"] as? String == "who")
        #expect(rig.call(fd, #"{"id":3,"cmd":"session.drop","session":\#(id)}"#)?["ok"] as? Bool == true)
        let ended = try #require(Self.nextEvent(watcher))
        #expect(ended["event"] as? String == "session.ended" && ended["session"] as? UInt64 == id, "\(ended)")
        #expect(ended["worker"] is NSNull && ended["reason"] as? String == "dropped", "\(ended)")
        #expect(ended["kind"] as? String == "webrtc" && ended["model"] as? String == "m-7", "\(ended)")
        #expect(ended["profile"] == nil, "no media, no profile: \(ended)")
    }

    /// A session's record is read from its slot before the slot is reused: a create right
    /// after a drop (one slot) takes the slot the ended session's counters are in, and the
    /// record must still say what that session saw.
    @Test func aRecordIsWrittenBeforeItsSlotIsReused() throws {
        let rig = try ControlRig(maxSessions: 1)
        defer { rig.shutdown() }
        let watcher = rig.connect()
        defer { close(watcher) }
        #expect(rig.call(watcher, #"{"id":1,"cmd":"subscribe","events":["session"]}"#)?["ok"] as? Bool == true)
        let fd = rig.connect()
        defer { close(fd) }
        // The client: a UDP socket on 127.0.0.1, sending 30 SRTP packets under the session's key.
        let udp = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(udp) }
        var me = sockaddr_in()
        me.sin_family = sa_family_t(AF_INET)
        me.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        _ = withUnsafePointer(to: &me) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(udp, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &me) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(udp, $0, &length) } }
        let port = UInt16(bigEndian: me.sin_port)
        let created = rig.call(fd, #"{"id":2,"cmd":"session.create","client":"127.0.0.1:\#(port)","client_key":"\#(Self.key)"}"#)
        let id = try #require((created?["session"] as? [String: Any])?["id"] as? UInt64, "\(created ?? [:])")
        let keyBytes = [UInt8](Data(base64Encoded: Self.key)!)
        var sender = try SRTPContext(
            profile: .aes128CmHmacSha1_80, masterKey: Array(keyBytes[0..<16]), masterSalt: Array(keyBytes[16..<30]))
        var to = sockaddr_in()
        to.sin_family = sa_family_t(AF_INET)
        to.sin_port = rig.mediaPort.bigEndian
        to.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        for seq in 0..<30 {
            var packet: [UInt8] = [0x80, 111, 0, UInt8(seq), 0, 0, 0, UInt8(seq), 0xC0, 0, 0, 1] + [UInt8](repeating: 9, count: 40 + 16)
            var n = packet.count - 16
            let status = packet.withUnsafeMutableBytes { sender.protectRTP($0.baseAddress!, length: &n, capacity: $0.count) }
            #expect(status == .ok)
            _ = withUnsafePointer(to: &to) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(udp, packet, n, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        }
        func fromClient() -> Int {
            ((rig.call(fd, #"{"id":3,"cmd":"session.show","session":\#(id)}"#)?["session"] as? [String: Any])?["packets_from_client"]
                as? Int) ?? -1
        }
        for _ in 0..<300 where fromClient() < 30 { usleep(10_000) }
        #expect(fromClient() == 30)
        // Drop it, and at once create another until the one slot is free again.
        #expect(rig.call(fd, #"{"id":4,"cmd":"session.drop","session":\#(id)}"#)?["ok"] as? Bool == true)
        var next: [String: Any]? = nil
        for _ in 0..<2_000 {
            next = rig.call(fd, #"{"id":5,"cmd":"session.create","client":"127.0.0.1:5999","client_key":"\#(Self.key)"}"#)
            if next?["ok"] as? Bool == true { break }
            usleep(500)
        }
        #expect(next?["ok"] as? Bool == true, "\(next ?? [:])")
        var ended: [String: Any]? = nil
        while let event = Self.nextEvent(watcher) {
            if event["event"] as? String == "session.ended" {
                ended = event
                break
            }
        }
        #expect(ended?["session"] as? UInt64 == id && ended?["packets_from_client"] as? Int == 30, "\(ended ?? [:])")
    }

    @Test func aSubscriberGetsOnlyTheKindsItAskedFor() throws {
        let rig = try ControlRig(maxSessions: 4)
        defer { rig.shutdown() }
        let watcher = rig.connect()
        defer { close(watcher) }
        #expect(rig.call(watcher, #"{"id":1,"cmd":"subscribe","events":["edge"]}"#)?["ok"] as? Bool == true)
        let fd = rig.connect()
        defer { close(fd) }
        let created = rig.call(fd, #"{"id":2,"cmd":"session.create","client":"127.0.0.1:5000","client_key":"\#(Self.key)"}"#)
        #expect(created?["ok"] as? Bool == true)
        #expect(rig.call(fd, #"{"id":3,"cmd":"edge.drain"}"#)?["ok"] as? Bool == true)
        // The first event it sees is the drain: the session's creation was not for it.
        #expect(Self.nextEvent(watcher)?["event"] as? String == "edge.draining")
    }

    /// `voxedge ctl watch` prints one line per event as it comes, and refuses an unknown kind.
    @Test func ctlWatchPrintsEachEventAsItComes() throws {
        let rig = try ControlRig(maxSessions: 4)
        defer { rig.shutdown() }
        let p = Process()
        let out = Pipe()
        p.executableURL = URL(fileURLWithPath: DemoTests.voxedge)
        p.arguments = ["ctl", "watch", "--socket", rig.path, "--events", "session"]
        p.standardOutput = out
        p.standardError = out
        try p.run()
        defer { if p.isRunning { p.terminate() } }
        // Until it has subscribed (its first line), then a session made and dropped.
        let reader = out.fileHandleForReading
        var text = ""
        func readUntil(_ needle: String) {
            let deadline = Date().addingTimeInterval(10)
            while !text.contains(needle) && Date() < deadline {
                let chunk = reader.availableData
                if chunk.isEmpty { break }
                text += String(decoding: chunk, as: UTF8.self)
            }
        }
        readUntil("watching: session")
        let fd = rig.connect()
        defer { close(fd) }
        let created = rig.call(fd, #"{"id":1,"cmd":"session.create","client":"127.0.0.1:5000","client_key":"\#(Self.key)"}"#)
        let id = try #require((created?["session"] as? [String: Any])?["id"] as? UInt64)
        #expect(rig.call(fd, #"{"id":2,"cmd":"session.drop","session":\#(id)}"#)?["ok"] as? Bool == true)
        readUntil("session.ended")
        #expect(text.contains("session.created") && text.contains("session=\(id)") && text.contains("kind=static"), "\(text)")
        #expect(text.contains("session.ended") && text.contains("reason=dropped"), "\(text)")

        let bad = Process()
        let badOut = Pipe()
        bad.executableURL = URL(fileURLWithPath: DemoTests.voxedge)
        bad.arguments = ["ctl", "watch", "--socket", rig.path, "--events", "sessions"]
        bad.standardOutput = badOut
        bad.standardError = badOut
        try bad.run()
        bad.waitUntilExit()
        let badText = String(decoding: badOut.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(bad.terminationStatus != 0 && badText.contains("unknown kind 'sessions'"), "\(badText)")
    }

    @Test func badSubscriptionsAreRefusedWithTheReason() throws {
        let rig = try ControlRig(maxSessions: 2)
        defer { rig.shutdown() }
        let fd = rig.connect()
        defer { close(fd) }
        for text in [
            #"{"id":1,"cmd":"subscribe","events":["sessions"]}"#, #"{"id":2,"cmd":"subscribe","events":[]}"#,
            #"{"id":3,"cmd":"subscribe","events":"session"}"#, #"{"id":4,"cmd":"subscribe","events":[7]}"#,
            #"{"id":5,"cmd":"subscribe","events":{"session":true}}"#,
        ] {
            #expect(errorCode(rig.call(fd, text)) == "bad_argument", "\(text)")
        }
        // Refused, it is not subscribed: a session's creation reaches it as nothing but its reply.
        let created = rig.call(fd, #"{"id":6,"cmd":"session.create","client":"127.0.0.1:5000","client_key":"\#(Self.key)"}"#)
        #expect(created?["ok"] as? Bool == true)
        let stats = rig.call(fd, #"{"id":7,"cmd":"stats"}"#)
        #expect((stats?["control"] as? [String: Any])?["subscribers"] as? Int == 0)
        // Subscribing twice is the latest subscription, still one subscriber.
        #expect(rig.call(fd, #"{"id":8,"cmd":"subscribe","events":["session"]}"#)?["ok"] as? Bool == true)
        #expect(rig.call(fd, #"{"id":9,"cmd":"subscribe","events":["edge"]}"#)?["subscribed"] as? [String] == ["edge"])
        #expect((rig.call(fd, #"{"id":10,"cmd":"stats"}"#)?["control"] as? [String: Any])?["subscribers"] as? Int == 1)
    }

    /// A subscriber that never reads: its events pile up to the limit, then are dropped and
    /// counted; the engine answers everyone else meanwhile, and the subscriber is neither
    /// closed nor idled out. When it reads again it is told how many it lost.
    @Test func aSubscriberThatNeverReadsLosesEventsAndSlowsNothing() throws {
        var limits = ControlLimits()
        limits.maxQueuedEventBytes = 4096
        limits.idleTimeout = .seconds(1)
        let rig = try ControlRig(maxSessions: 8, limits: limits)
        defer { rig.shutdown() }
        let watcher = rig.connect()
        defer { close(watcher) }
        // A small receive buffer, so the kernel holds little for it.
        var size: Int32 = 4096
        setsockopt(watcher, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        #expect(rig.call(watcher, #"{"id":1,"cmd":"subscribe"}"#)?["ok"] as? Bool == true)
        let fd = rig.connect()
        defer { close(fd) }
        // 2,000 sessions made and dropped: 4,000 events, ≈ 500 KiB, far past what the kernel's
        // socket buffer (≈ 208 KiB) and the engine's limit hold.
        for i in 0..<2_000 {
            let created = rig.call(
                fd, #"{"id":\#(i),"cmd":"session.create","client":"127.0.0.1:\#(6000 + i)","client_key":"\#(Self.key)"}"#)
            guard let id = (created?["session"] as? [String: Any])?["id"] as? UInt64 else {
                Issue.record("create \(i): \(created ?? [:])")
                return
            }
            #expect(rig.call(fd, #"{"id":\#(i),"cmd":"session.drop","session":\#(id)}"#)?["ok"] as? Bool == true)
        }
        // Past the 1 s idle timeout: a subscriber waits for events, it is not idle.
        usleep(1_500_000)
        // (The other client, idle as long, was closed: it is a new one that asks.)
        let asker = rig.connect()
        defer { close(asker) }
        let control = try #require(rig.call(asker, #"{"id":9000,"cmd":"stats"}"#)?["control"] as? [String: Any])
        let lost = try #require(control["events_lost"] as? Int)
        #expect(lost > 0 && control["subscribers"] as? Int == 1, "\(control)")
        // It reads what fitted (until 5 s pass with nothing more), then the next event comes
        // after the count of those it lost.
        // (Room may have come back mid-run: a notice then already told some of the losses.)
        var seen = 0
        var told = 0
        while let e = Self.nextEvent(watcher) {
            if e["event"] as? String == "events.lost" { told += e["count"] as? Int ?? 0 } else { seen += 1 }
        }
        #expect(seen > 2 && seen + lost == 4_000, "\(seen) read, \(lost) lost")
        let another = rig.connect()  // the asker idled out meanwhile, too
        defer { close(another) }
        let created = rig.call(another, #"{"id":9001,"cmd":"session.create","client":"127.0.0.1:5999","client_key":"\#(Self.key)"}"#)
        #expect(created?["ok"] as? Bool == true)
        let notice = Self.nextEvent(watcher)
        #expect(notice?["event"] as? String == "events.lost" && notice?["count"] as? Int == lost - told, "\(notice ?? [:])")
        let next = Self.nextEvent(watcher)
        #expect(next?["event"] as? String == "session.created" && next?["client"] as? String == "127.0.0.1:5999")
    }
}
