import Foundation
import Glibc
import Testing

/// The socket port never loses a datagram silently (issue 14, defect 5): it used to take a
/// batch with recvmmsg and, finding the RX ring full, return without it, so a stall of the
/// worker lost thousands of datagrams with every counter at 0. Through the real
/// `voxedge run --io socket`: every datagram sent is received by the worker or counted.
@Suite(.serialized) struct SocketPortLossTests {
    typealias Engine = DrainTests.Engine

    /// Worker 0's `received` and its socket port drops, from `voxedge ctl stats`' JSON.
    static func counts(_ engine: Engine) -> (received: Int, drops: [String: Int]) {
        let workers = engine.call(#"{"id":"s","cmd":"stats"}"#)?["workers"] as? [[String: Any]] ?? []
        let worker = workers.first ?? [:]
        let drops = (worker["socket_drops"] as? [String: Any] ?? [:]).mapValues { ($0 as? NSNumber)?.intValue ?? 0 }
        return ((worker["received"] as? NSNumber)?.intValue ?? 0, drops)
    }

    /// The engine is stopped (SIGSTOP) while a backlog of datagrams several times its RX ring
    /// (1,024) piles up in its media socket, then continued: it reads them a ring's worth at a
    /// time as the worker frees room. Datagrams too large for a frame are counted as
    /// `rx_oversize`; a full socket buffer would be counted as `rx_buffer_full`.
    ///
    /// With a receive buffer too small for the backlog (64 KiB), the kernel drops the rest at
    /// the socket, and the engine counts that too.
    @Test(arguments: [nil, 65_536])
    func everyDatagramIsReceivedOrCountedAfterAStall(receiveBuffer: Int?) throws {
        let base = UInt16(20_000 + Int(getpid() % 100) * 20 + (receiveBuffer == nil ? 0 : 10))
        var arguments: [String] = []
        let config = NSTemporaryDirectory() + "voxedge-loss-\(getpid())-\(base).yaml"
        defer { unlink(config) }
        if let receiveBuffer {
            try "socket_receive_buffer: \(receiveBuffer)\n".write(toFile: config, atomically: true, encoding: .utf8)
            arguments = ["--config", config]
        }
        let engine = try Engine(tag: 0, drainTimeout: 1, base: base, arguments: arguments)
        #expect(engine.call(#"{"id":1,"cmd":"stats"}"#)?["ok"] as? Bool == true, "the engine is up")
        let stranger = Engine.udp(bind: base + 9)
        defer { close(stranger) }
        var to = sockaddr_in()
        to.sin_family = sa_family_t(AF_INET)
        to.sin_port = engine.mediaPort.bigEndian
        to.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        func send(_ bytes: [UInt8]) -> Bool {
            withUnsafePointer(to: &to) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(stranger, bytes, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == bytes.count
                }
            }
        }
        let small = 4_000
        let oversize = 3

        kill(engine.process.processIdentifier, SIGSTOP)
        var sent = 0
        // The large ones first, so that even the small buffer holds them.
        for _ in 0..<oversize where send([UInt8](repeating: 0x80, count: 1_900)) { sent += 1 }
        for i in 0..<small where send([0x80, 0, UInt8(i >> 8), UInt8(i & 0xFF)] + [UInt8](repeating: 7, count: 96)) {
            sent += 1
        }
        kill(engine.process.processIdentifier, SIGCONT)
        #expect(sent == small + oversize)

        // The worker samples the kernel's drop counts every 100 ms; wait for the sum to settle.
        var (received, drops) = Self.counts(engine)
        for _ in 0..<500 where received + drops.values.reduce(0, +) < sent {
            usleep(10_000)
            (received, drops) = Self.counts(engine)
        }
        #expect(received + drops.values.reduce(0, +) == sent, "received \(received), drops \(drops), sent \(sent)")
        #expect(drops["rx_oversize"] == oversize, "\(drops)")
        #expect(Set(drops.keys) == ["rx_buffer_full", "rx_oversize", "tx_failed", "tx_no_socket"])
        if receiveBuffer == nil {
            // The engine's own buffer (8 MiB) holds this backlog: nothing was lost at all.
            #expect(received == small, "received \(received) of \(small): \(drops)")
        } else {
            #expect(drops["rx_buffer_full", default: 0] > 0, "\(drops)")
        }
        // /metrics shows the same counts.
        let metrics = HTTP.get(engine.metricsPort, "/metrics").body
        let line = metrics.split(separator: "\n").first {
            $0.hasPrefix("voxedge_socket_drops_total{") && $0.contains(#"reason="rx_oversize""#)
        }
        #expect(line?.hasSuffix(" \(oversize)") == true, "\(metrics)")
        // And calls still go through.
        #expect(engine.createCall(id: 2)?["ok"] as? Bool == true)
        #expect(engine.audioGoesThrough())
    }
}
