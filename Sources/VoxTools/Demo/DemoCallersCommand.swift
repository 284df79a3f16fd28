import ArgumentParser
import CVoxLinux
import Foundation
import Glibc
import VoxControl
import VoxMedia
import VoxSRTPReference

/// The demo's callers (run by `voxedge demo` inside the callers' namespace): each call is a
/// static-key session created over the control socket, a UDP socket, and libsrtp2 on both
/// directions. 50 packets a second per call; every echo is decrypted and compared with
/// what was sent.
public struct DemoCallersCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "demo-callers", abstract: "The demo's SRTP callers (used by `voxedge demo`).", shouldDisplay: false)

    @Option var socket: String
    @Option var sessions = 20
    @Option var seconds = 5
    @Option var profile = "AES_CM_128_HMAC_SHA1_80"
    /// Halfway: drop the first call (its audio must stop coming back) and start a new one
    /// (its audio must start).
    @Flag var midStreamChanges = false
    /// Place every call on this worker (the one whose queue the callers' packets arrive on).
    @Option var worker: Int?

    struct Call {
        var id: UInt64
        var fd: Int32
        var sender: LibSRTPSession
        var receiver: LibSRTPSession
        var sequence: UInt16 = 0
        /// Dropped over the control socket at this time: echoes after it (plus 100 ms for
        /// what was in flight) would be forwarding that should have stopped.
        var droppedAt: Date? = nil
        var echoesAfterDrop = 0
        var verified = 0
        var sentAfterDrop = 0
    }

    public init() {}

    public func run() throws {
        vox_unblock_all_signals()  // a parent that blocks signals must not take SIGTERM/SIGCHLD from us
        let profile = SRTPProfile(name: self.profile)!
        var calls: [Call] = []
        var rng = SystemRandomNumberGenerator()
        func makeCall(_ i: Int) throws -> Call {
            let port = UInt16(20_000 + i)
            let fd = Glibc.socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            var a = DemoCallersCommand.address("198.18.0.2", port)
            guard withUnsafePointer(to: &a, { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }) == 0
            else { throw ValidationError("cannot bind 198.18.0.2:\(port)") }
            let material = (0..<(profile.masterKeyLength + profile.masterSaltLength)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            var request: [String: Any] = [
                "cmd": "session.create", "client": "198.18.0.2:\(port)", "profile": profile.description,
                "client_key": Data(material).base64EncodedString(),
            ]
            if let worker { request["worker"] = worker }
            let reply = try ControlClient.call(socket, request)
            guard reply["ok"] as? Bool == true, let session = reply["session"] as? [String: Any],
                let edgeKey = (session["edge_key"] as? String).flatMap({ Data(base64Encoded: $0) }),
                let id = (session["id"] as? NSNumber)?.uint64Value
            else { throw ValidationError("session.create failed: \(reply)") }
            let k = profile.masterKeyLength
            return Call(
                id: id, fd: fd,
                sender: LibSRTPSession(profile: profile, masterKey: Array(material[..<k]), masterSalt: Array(material[k...]), direction: .outbound)!,
                receiver: LibSRTPSession(profile: profile, masterKey: Array(edgeKey[..<k]), masterSalt: Array(edgeKey[k...]), direction: .inbound)!)
        }
        for i in 0..<sessions { calls.append(try makeCall(i)) }
        var changesDone = !midStreamChanges
        print("\(sessions) calls set up over the control socket (\(profile)); sending 50 packets/s each for \(seconds) s")
        fflush(nil)
        var media = DemoCallersCommand.address("198.18.0.1", 40000)
        var sent = 0
        var verified = 0
        var refused = 0
        var lastSent = 0
        var lastVerified = 0
        let start = Date()
        var nextTick = start
        var nextReport = start.addingTimeInterval(1)
        var buffer = [UInt8](repeating: 0, count: 2048)
        while Date().timeIntervalSince(start) < Double(seconds) + 0.5 {
            if !changesDone && Date().timeIntervalSince(start) >= Double(seconds) / 2 {
                changesDone = true
                let drop = try ControlClient.call(socket, ["cmd": "session.drop", "session": calls[0].id])
                guard drop["ok"] as? Bool == true else { throw ValidationError("session.drop failed: \(drop)") }
                calls[0].droppedAt = Date()
                calls.append(try makeCall(sessions))
                print("mid-stream: dropped call 0 (still sending), started call \(sessions)")
                fflush(nil)
            }
            if Date() >= nextTick && Date().timeIntervalSince(start) < Double(seconds) {
                for i in calls.indices {
                    // After its drop, a call pauses 200 ms (the worker applies the drop at its
                    // next burst, within ~10 ms), then sends on to show nothing comes back.
                    if let dropped = calls[i].droppedAt, Date().timeIntervalSince(dropped) < 0.2 { continue }
                    calls[i].sequence &+= 1
                    let payload = DemoCallersCommand.audio(call: i, sequence: calls[i].sequence)
                    var packet: [UInt8] = [0x80, 111, UInt8(calls[i].sequence >> 8), UInt8(calls[i].sequence & 0xFF)]
                    let ts = UInt32(calls[i].sequence) &* 960
                    packet += [UInt8(ts >> 24), UInt8(ts >> 16 & 0xFF), UInt8(ts >> 8 & 0xFF), UInt8(ts & 0xFF), 0xCA, 0x11, 0, UInt8(i & 0xFF)]
                    packet += payload + [UInt8](repeating: 0, count: 32)
                    var n = packet.count - 32
                    _ = packet.withUnsafeMutableBytes { calls[i].sender.protect($0.baseAddress!, length: &n) }
                    _ = packet.withUnsafeBytes { b in
                        withUnsafePointer(to: &media) {
                            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                                sendto(calls[i].fd, b.baseAddress, n, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                            }
                        }
                    }
                    if calls[i].droppedAt == nil { sent += 1 } else { calls[i].sentAfterDrop += 1 }
                }
                nextTick = nextTick.addingTimeInterval(0.02)
            }
            for i in calls.indices {
                while true {
                    let n = buffer.withUnsafeMutableBytes { recv(calls[i].fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
                    guard n > 0 else { break }
                    var m = n
                    let status = buffer.withUnsafeMutableBytes { calls[i].receiver.unprotect($0.baseAddress!, length: &m) }
                    let sequenceSent = UInt16(buffer[14]) << 8 | UInt16(buffer[15])  // first payload bytes carry it
                    if let dropped = calls[i].droppedAt, Date().timeIntervalSince(dropped) > 0.1 {
                        calls[i].echoesAfterDrop += 1
                    } else if status == 0 && m > 12 && Array(buffer[12..<m]) == DemoCallersCommand.audio(call: i, sequence: sequenceSent) {
                        verified += 1
                        calls[i].verified += 1
                    } else {
                        refused += 1
                    }
                }
            }
            if Date() >= nextReport {
                let t = Int(Date().timeIntervalSince(start).rounded())
                print("t=\(t)s calls=\(calls.count) sent=\(sent) (\(sent - lastSent) pps) echoed+verified=\(verified) (\(verified - lastVerified) pps) refused=\(refused)")
                fflush(nil)
                lastSent = sent
                lastVerified = verified
                nextReport = nextReport.addingTimeInterval(1)
            }
            usleep(1000)
        }
        for call in calls where call.droppedAt == nil {
            _ = try? ControlClient.call(socket, ["cmd": "session.drop", "session": call.id])
        }
        let stats = try ControlClient.call(socket, ["cmd": "stats"])
        let drops = ((stats["workers"] as? [[String: Any]]) ?? []).compactMap { $0["drops"] as? [String: Any] }.filter { !$0.isEmpty }
        print("summary: sent=\(sent) echoed_and_verified=\(verified) refused=\(refused) engine_drops=\(drops.isEmpty ? "none" : "\(drops)")")
        if midStreamChanges {
            let newCall = calls[calls.count - 1]
            print("mid-stream: dropped call sent \(calls[0].sentAfterDrop) after its drop, \(calls[0].echoesAfterDrop) came back; new call verified \(newCall.verified)")
            guard calls[0].sentAfterDrop > 0, calls[0].echoesAfterDrop == 0, newCall.verified > 0 else { throw ExitCode(1) }
        }
        // Allow what was still in flight when the callers stopped listening.
        guard sent > 0, refused == 0, Double(verified) >= 0.98 * Double(sent) else { throw ExitCode(1) }
    }

    /// 20 ms of "audio": the call and sequence number, then a pattern.
    static func audio(call: Int, sequence: UInt16) -> [UInt8] {
        [UInt8(call & 0xFF), UInt8(call >> 8 & 0xFF), UInt8(sequence >> 8), UInt8(sequence & 0xFF)]
            + (0..<156).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ call &+ Int(sequence)) }
    }

    static func address(_ ip: String, _ port: UInt16) -> sockaddr_in {
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = port.bigEndian
        inet_pton(AF_INET, ip, &a.sin_addr)
        return a
    }
}
