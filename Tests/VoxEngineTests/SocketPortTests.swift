import Glibc
import Testing
import VoxEngine
import VoxIO
import VoxMedia
import VoxRouting
import VoxSRTPReference
import VoxTestKit
import VoxWire

/// The worker's pipeline over real kernel UDP sockets on loopback: the client (libsrtp2)
/// and the backend are plain sockets of this test; the engine's media socket and each
/// session's backend-leg socket are the socket port's.
@Suite(.serialized) struct SocketPortTests {
    static func udpSocket(port: UInt16) -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = port.bigEndian
        a.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        _ = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        return fd
    }

    static func send(_ fd: Int32, _ bytes: [UInt8], to port: UInt16) {
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = port.bigEndian
        a.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        _ = bytes.withUnsafeBytes { b in
            withUnsafePointer(to: &a) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, b.baseAddress, b.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        }
    }

    /// A datagram and its source port, or nil after the 2 s receive timeout.
    static func receive(_ fd: Int32) -> ([UInt8], UInt16)? {
        var buffer = [UInt8](repeating: 0, count: 2048)
        var from = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let n = buffer.withUnsafeMutableBytes { b in
            withUnsafeMutablePointer(to: &from) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(fd, b.baseAddress, b.count, 0, $0, &length) }
            }
        }
        guard n >= 0 else { return nil }
        return (Array(buffer[0..<n]), UInt16(bigEndian: from.sin_port))
    }

    @Test(arguments: [SRTPProfile.aes128CmHmacSha1_80, .aeadAes256Gcm])
    func callsFlowThroughKernelSockets(profile: SRTPProfile) throws {
        // Fixed ports below Linux's ephemeral range (32768+), so no socket bound to port 0
        // elsewhere can hold them; apart from ControlRig's (10000-19999).
        let pid = UInt16(getpid() % 250)
        let mediaPort = UInt16(22_000) + pid * 8 + UInt16(profile.rawValue)
        let backendBase = UInt16(24_100) + pid * 32 + UInt16(profile.rawValue) * 4
        let loopback = IPAddress("127.0.0.1")!
        let port = InMemoryPort(queues: 1, frameCount: 1024)
        let store = try SessionStore(capacity: 4)
        let backendSocket = Self.udpSocket(port: 0)
        var bound = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &bound) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(backendSocket, $0, &length) } }
        let backendPort = UInt16(bigEndian: bound.sin_port)
        defer { close(backendSocket) }
        let backends = BackendDirectory(
            BackendTable([Backend(address: loopback, port: UDPPort(backendPort), mac: .zero)]), workers: 1)
        let links = WorkerLinks.make(workers: 1, sessions: 4)
        let control = SessionControl(store: store, links: links)
        let sockets = try SocketQueue(
            port: port, queue: 0, mediaAddress: loopback, mediaPort: UDPPort(mediaPort), backendAddress: loopback,
            backendPortBase: backendBase, backendPortCount: 4)
        var worker = Worker(
            configuration: WorkerConfiguration(
                id: 0, mediaAddress: loopback, mediaPort: UDPPort(mediaPort), backendAddress: loopback,
                backendPortBase: backendBase, edgeMAC: .zero),
            rings: port.rings(queue: 0), umem: port.umem, frameSize: port.frameSize, frames: port.initialFrames(queue: 0),
            store: store, backends: backends, links: links[0])
        worker.portBinding = .socket(sockets)
        /// Runs the port and the worker until neither has anything to do (loopback delivers
        /// what the test sent before this is called; 10 ms of patience for the first read).
        func pump() {
            var timeout: Int32 = 10
            while true {
                let received = sockets.receive(timeout: timeout)
                let handled = worker.runOnce(now: 1)
                let sent = sockets.transmit()
                timeout = 0
                if received + handled + sent == 0 { break }
            }
        }
        var rng = SeededRandom(seed: 3)
        let clientKey = randomKey(profile, &rng)
        let edgeKey = randomKey(profile, &rng)
        let client = Self.udpSocket(port: 0)
        defer { close(client) }
        var clientAddress = sockaddr_in()
        length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &clientAddress) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(client, $0, &length) } }
        let slot = try control.create(on: 0) { c in
            c.profile = profile
            c.clientKey = KeyMaterial(key: clientKey.key, salt: clientKey.salt)!
            c.edgeKey = KeyMaterial(key: edgeKey.key, salt: edgeKey.salt)!
            c.backend = 0
            c.edgeSSRC = 0xABCD
            c.flow = FlowKey(
                remoteAddress: loopback, remotePort: UDPPort(UInt16(bigEndian: clientAddress.sin_port)),
                localAddress: loopback, localPort: UDPPort(mediaPort))
        }
        pump()
        let sender = LibSRTPSession(profile: profile, masterKey: clientKey.key, masterSalt: clientKey.salt, direction: .outbound)!
        let receiver = LibSRTPSession(profile: profile, masterKey: edgeKey.key, masterSalt: edgeKey.salt, direction: .inbound)!
        for seq in UInt16(1)...20 {
            let audio = (0..<160).map { UInt8(truncatingIfNeeded: $0 &+ Int(seq)) }
            var packet = rtpPacket(ssrc: 0x1111, seq: seq, timestamp: UInt32(seq) * 960, payload: audio) + [UInt8](repeating: 0, count: 32)
            var n = packet.count - 32
            _ = packet.withUnsafeMutableBytes { sender.protect($0.baseAddress!, length: &n) }
            Self.send(client, Array(packet[0..<n]), to: mediaPort)
            pump()
            // The backend gets plain RTP from the session's own backend-leg port, and echoes it.
            guard let (rtp, from) = Self.receive(backendSocket) else {
                Issue.record("backend received nothing for seq \(seq)")
                return
            }
            #expect(from == backendBase + UInt16(slot))
            #expect(Array(rtp[12...]) == audio && be16(rtp, 2) == seq)
            Self.send(backendSocket, rtp, to: from)
            pump()
            guard let (srtp, source) = Self.receive(client) else {
                Issue.record("client received nothing for seq \(seq)")
                return
            }
            #expect(source == mediaPort)
            var answer = srtp
            var m = answer.count
            #expect(answer.withUnsafeMutableBytes { receiver.unprotect($0.baseAddress!, length: &m) } == 0)
            #expect(Array(answer[12..<m]) == audio && be32(answer, 8) == 0xABCD)
        }
        #expect(worker.counters[.toBackend] == 20 && worker.counters[.toClient] == 20 && worker.counters[.dropped] == 0)
        // Dropping the session closes its backend-leg socket: the port is free again.
        try control.drop(slot)
        pump()
        let rebound = Self.udpSocket(port: backendBase + UInt16(slot))
        #expect(rebound >= 0)
        var check = sockaddr_in()
        length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &check) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(rebound, $0, &length) } }
        #expect(UInt16(bigEndian: check.sin_port) == backendBase + UInt16(slot))
        close(rebound)
    }

    /// A keyed backend hears a session's start and, when the session is dropped, its end with
    /// the reason — both from the session's backend-leg socket, which closes with the
    /// session: the end must leave before it does (it used to be dropped, sent from no socket).
    @Test(arguments: [WorkerCommand.EndReason.clientLeft, .none])
    func aSessionsEndReachesItsBackendBeforeItsSocketCloses(reason: WorkerCommand.EndReason) throws {
        let pid = UInt16(getpid() % 250)
        let mediaPort = UInt16(22_000) + pid * 8 + 4 + (reason == .none ? 1 : 0)
        let backendBase = UInt16(24_100) + pid * 32 + 16 + (reason == .none ? 4 : 0)
        let loopback = IPAddress("127.0.0.1")!
        let port = InMemoryPort(queues: 1, frameCount: 1024)
        let store = try SessionStore(capacity: 4)
        let backendSocket = Self.udpSocket(port: 0)
        defer { close(backendSocket) }
        var bound = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &bound) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(backendSocket, $0, &length) } }
        let keyBytes = Array("backend-shared-key-0123456789abcdef".utf8)
        let key = keyBytes.withUnsafeBytes { HMACSHA1Key(key: $0) }
        let backends = BackendDirectory(
            BackendTable([Backend(address: loopback, port: UDPPort(UInt16(bigEndian: bound.sin_port)), mac: .zero, key: key)]),
            workers: 1)
        let links = WorkerLinks.make(workers: 1, sessions: 4)
        let control = SessionControl(store: store, links: links)
        let sockets = try SocketQueue(
            port: port, queue: 0, mediaAddress: loopback, mediaPort: UDPPort(mediaPort), backendAddress: loopback,
            backendPortBase: backendBase, backendPortCount: 4)
        var worker = Worker(
            configuration: WorkerConfiguration(
                id: 0, mediaAddress: loopback, mediaPort: UDPPort(mediaPort), backendAddress: loopback,
                backendPortBase: backendBase, edgeMAC: .zero),
            rings: port.rings(queue: 0), umem: port.umem, frameSize: port.frameSize, frames: port.initialFrames(queue: 0),
            store: store, backends: backends, links: links[0])
        worker.portBinding = .socket(sockets)
        func pump() {
            var timeout: Int32 = 10
            while true {
                let received = sockets.receive(timeout: timeout)
                let handled = worker.runOnce(now: 1)
                let sent = sockets.transmit()
                timeout = 0
                if received + handled + sent == 0 { break }
            }
        }
        var rng = SeededRandom(seed: 5)
        let clientKey = randomKey(.aes128CmHmacSha1_80, &rng)
        let edgeKey = randomKey(.aes128CmHmacSha1_80, &rng)
        let slot = try control.create(on: 0) { c in
            c.profile = .aes128CmHmacSha1_80
            c.clientKey = KeyMaterial(key: clientKey.key, salt: clientKey.salt)!
            c.edgeKey = KeyMaterial(key: edgeKey.key, salt: edgeKey.salt)!
            c.backend = 0
            c.edgeSSRC = 0xABCD
            c.flow = FlowKey(
                remoteAddress: loopback, remotePort: UDPPort(40_000), localAddress: loopback, localPort: UDPPort(mediaPort))
        }
        pump()
        func message(_ what: String) -> BackendMessage? {
            guard let (bytes, from) = Self.receive(backendSocket) else {
                Issue.record("the backend received no \(what)")
                return nil
            }
            #expect(from == backendBase + UInt16(slot), "\(what) from port \(from)")
            var m = BackendMessage()
            #expect(bytes.withUnsafeBytes { BackendMessage.parse($0, key: key, into: &m) } == .ok)
            return m
        }
        guard let start = message("start") else { return }
        #expect(start.body.type == .start)
        try control.drop(slot, reason: reason)
        pump()
        guard let end = message("end") else { return }
        #expect(end.body == .end(reason == .clientLeft ? .clientLeft : .dropped))
        #expect(end.sessionID == start.sessionID)
    }
}
