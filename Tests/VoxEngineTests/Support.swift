import VoxEngine
import VoxIO
import VoxMedia
import VoxRouting
import VoxSRTPReference
import VoxTestKit
import VoxWire



let edgeMAC = MACAddress(0x02, 0, 0, 0, 0, 0x01)
let clientMAC = MACAddress(0x02, 0, 0, 0, 0, 0x02)
let backendMACs = [MACAddress(0x02, 0, 0, 0, 1, 0x01), MACAddress(0x02, 0, 0, 0, 1, 0x02)]
let mediaAddress = IPAddress("198.18.0.1")!
let mediaPort = UDPPort(40000)
let backendLegAddress = IPAddress("198.18.1.1")!
let backendPortBase: UInt16 = 20000
let backendList = [
    Backend(address: IPAddress("198.18.1.2")!, port: UDPPort(5004), mac: backendMACs[0]),
    Backend(address: IPAddress("198.18.1.3")!, port: UDPPort(5004), mac: backendMACs[1]),
]

/// A worker in a box, so tests can keep several (workers are ~Copyable).
final class WorkerBox {
    var worker: Worker
    init(_ worker: consuming Worker) { self.worker = worker }
}

/// An engine of `workers` workers over the in-memory port (kernel-layout UMEM and rings).
final class Harness {
    let port: InMemoryPort
    let store: SessionStore
    let backends: BackendDirectory
    let links: [WorkerLinks]
    let control: SessionControl
    var workers: [WorkerBox] = []
    var now: UInt64 = 1_000_000_000

    init(
        workers: Int = 1, sessions: Int = 64, frames: Int = 4096, backends list: [Backend] = backendList,
        pacing: PacingConfiguration = PacingConfiguration(), policing: (rate: Int, burst: Int)? = nil
    ) throws {
        port = InMemoryPort(queues: workers, frameCount: frames)
        store = try SessionStore(capacity: sessions, pacing: pacing)
        backends = BackendDirectory(BackendTable(list), workers: workers)
        links = WorkerLinks.make(workers: workers, sessions: sessions)
        control = SessionControl(store: store, links: links)
        for w in 0..<workers {
            var configuration = WorkerConfiguration(
                id: w, mediaAddress: mediaAddress, mediaPort: mediaPort, backendAddress: backendLegAddress,
                backendPortBase: backendPortBase, edgeMAC: edgeMAC)
            if let policing { configuration.policing(rate: policing.rate, burst: policing.burst) }
            self.workers.append(
                WorkerBox(
                    Worker(
                        configuration: configuration, rings: port.rings(queue: w), umem: port.umem,
                        frameSize: port.frameSize, frames: port.initialFrames(queue: w), store: store,
                        backends: backends, links: links[w])))
        }
        run()
    }

    /// Runs every worker until none has anything left to do.
    @discardableResult
    func run() -> Int {
        var total = 0
        var idle = 0
        while idle < 2 {
            var handled = 0
            for box in workers { handled += box.worker.runOnce(now: now) }
            total += handled
            idle = handled == 0 ? idle + 1 : 0
        }
        return total
    }

    func transmitted(queue: Int = 0) -> [[UInt8]] { port.collectTransmitted(queue: queue) }
}

/// A client or backend endpoint that sends and receives frames.
struct Endpoint {
    var mac: MACAddress
    var address: IPAddress
    var port: UDPPort

    func frame(to destination: IPAddress, _ destinationPort: UDPPort, mac destinationMAC: MACAddress, payload: [UInt8])
        -> [UInt8]
    {
        let a = FrameAddresses(
            destinationMAC: destinationMAC, sourceMAC: mac, source: address, sourcePort: port,
            destination: destination, destinationPort: destinationPort)
        var f = [UInt8](repeating: 0, count: a.headerLength) + payload
        _ = f.withUnsafeMutableBytes { FrameBuilder.write($0.baseAddress!, a, payloadLength: payload.count) }
        return f
    }
}

func parseFrame(_ f: [UInt8]) -> (ParsedFrame, [UInt8])? {
    var p = ParsedFrame()
    guard f.withUnsafeBytes({ ParsedFrame.parse($0.baseAddress!, length: $0.count, into: &p) }) == .ok else { return nil }
    return (p, Array(f[p.payloadOffset..<(p.payloadOffset + p.payloadLength)]))
}

func rtpPacket(ssrc: UInt32, seq: UInt16, timestamp: UInt32, payload: [UInt8], pt: UInt8 = 111) -> [UInt8] {
    var p: [UInt8] = [0x80, pt, UInt8(seq >> 8), UInt8(seq & 0xFF)]
    p += [UInt8(timestamp >> 24), UInt8(timestamp >> 16 & 0xFF), UInt8(timestamp >> 8 & 0xFF), UInt8(timestamp & 0xFF)]
    p += [UInt8(ssrc >> 24), UInt8(ssrc >> 16 & 0xFF), UInt8(ssrc >> 8 & 0xFF), UInt8(ssrc & 0xFF)]
    return p + payload
}

func be16(_ b: [UInt8], _ o: Int) -> UInt16 { UInt16(b[o]) << 8 | UInt16(b[o + 1]) }
func be32(_ b: [UInt8], _ o: Int) -> UInt32 { UInt32(be16(b, o)) << 16 | UInt32(be16(b, o + 2)) }

func randomKey(_ profile: SRTPProfile, _ rng: inout SeededRandom) -> (key: [UInt8], salt: [UInt8]) {
    ((0..<profile.masterKeyLength).map { _ in UInt8.random(in: 0...255, using: &rng) },
        (0..<profile.masterSaltLength).map { _ in UInt8.random(in: 0...255, using: &rng) })
}

/// A static-key (SDES-style) call: libsrtp2 plays the client.
struct Call {
    var slot: Int32
    var profile: SRTPProfile
    var client: Endpoint
    var clientSSRC: UInt32
    var edgeSSRC: UInt32
    var clientSender: LibSRTPSession
    var clientReceiver: LibSRTPSession
    var ufrag: IceUfrag
    var password: String

    static func start(
        _ h: Harness, on worker: Int = 0, profile: SRTPProfile, index: Int, backend: Int32 = 0,
        bindFlow: Bool = true, rng: inout SeededRandom
    ) throws -> Call {
        try make(
            profile: profile, clientPort: UInt16(30000 + index), password: "pwd\(index)abcdefghijklmnopqrst",
            ufragRandom: "R\(index)x9", edgeSSRC: 0xE000_0000 + UInt32(index), clientSSRC: 0xC000_0000 + UInt32(index),
            rng: &rng, place: { try h.control.create(on: worker, $0) }
        ) { c, client in
            c.backend = backend
            c.firstSequence = UInt16(truncatingIfNeeded: 65_000 + index * 7)
            c.firstTimestamp = 123_456
            if bindFlow {
                c.flow = FlowKey(remoteAddress: client.address, remotePort: client.port, localAddress: mediaAddress, localPort: mediaPort)
                c.clientMAC = clientMAC
            }
        }
    }

    /// What every test call shares: its keys, its ICE credentials (the client's ufrag is
    /// `cli9`) and libsrtp2 playing its client; `place` puts the session in a slot (a create
    /// or a hold) with the command `configure` finished.
    static func make(
        profile: SRTPProfile, clientPort: UInt16, password: String, ufragRandom: String, edgeSSRC: UInt32,
        clientSSRC: UInt32, rng: inout SeededRandom,
        place: ((inout WorkerCommand) -> Void) throws -> Int32,
        configure: @escaping (inout WorkerCommand, Endpoint) -> Void
    ) throws -> Call {
        let clientKey = randomKey(profile, &rng)
        let edgeKey = randomKey(profile, &rng)
        let client = Endpoint(mac: clientMAC, address: IPAddress("198.18.0.2")!, port: UDPPort(clientPort))
        var ufrag = IceUfrag()
        let slot = try place { c in
            c.profile = profile
            c.clientKey = KeyMaterial(key: clientKey.key, salt: clientKey.salt)!
            c.edgeKey = KeyMaterial(key: edgeKey.key, salt: edgeKey.salt)!
            c.edgeSSRC = edgeSSRC
            ufrag = IceUfrag.make(slot: Int(c.slot), random: ufragRandom)!
            c.ufrag = ufrag
            c.remoteUfrag = IceUfrag("cli9")!
            c.icePassword = IcePassword(password)!
            configure(&c, client)
        }
        return Call(
            slot: slot, profile: profile, client: client, clientSSRC: clientSSRC, edgeSSRC: edgeSSRC,
            clientSender: LibSRTPSession(profile: profile, masterKey: clientKey.key, masterSalt: clientKey.salt, direction: .outbound)!,
            clientReceiver: LibSRTPSession(profile: profile, masterKey: edgeKey.key, masterSalt: edgeKey.salt, direction: .inbound)!,
            ufrag: ufrag, password: password)
    }

    /// The client's connectivity check, as a frame to the media port (`stunCheck`).
    func checkFrame(password: String? = nil, useCandidate: Bool = true, remoteUfrag: String = "cli9", id: UInt8 = 0)
        -> [UInt8]
    {
        client.frame(
            to: mediaAddress, mediaPort, mac: edgeMAC,
            payload: stunCheck(self, password: password ?? self.password, useCandidate: useCandidate, remoteUfrag: remoteUfrag, id: id))
    }

    /// The client's SRTP frame for RTP (seq, payload).
    func srtpFrame(seq: UInt16, payload: [UInt8]) -> [UInt8] {
        var p = rtpPacket(ssrc: clientSSRC, seq: seq, timestamp: UInt32(seq) &* 960, payload: payload) + [UInt8](repeating: 0, count: 32)
        var n = p.count - 32
        precondition(p.withUnsafeMutableBytes { clientSender.protect($0.baseAddress!, length: &n) } == 0)
        return client.frame(to: mediaAddress, mediaPort, mac: edgeMAC, payload: Array(p[0..<n]))
    }

    var backendLegPort: UDPPort { UDPPort(backendPortBase + UInt16(slot)) }

    /// A backend's RTP frame for this session.
    func backendFrame(from backend: Int, ssrc: UInt32, seq: UInt16, timestamp: UInt32, payload: [UInt8]) -> [UInt8] {
        let b = backendList[backend]
        let e = Endpoint(mac: b.mac, address: b.address, port: b.port)
        return e.frame(to: backendLegAddress, backendLegPort, mac: edgeMAC,
            payload: rtpPacket(ssrc: ssrc, seq: seq, timestamp: timestamp, payload: payload))
    }

    /// Unprotects what the edge sent the client; nil if libsrtp2 refuses it.
    func receive(_ payload: [UInt8]) -> [UInt8]? {
        var b = payload
        var n = b.count
        guard b.withUnsafeMutableBytes({ clientReceiver.unprotect($0.baseAddress!, length: &n) }) == 0 else { return nil }
        return Array(b[0..<n])
    }
}
