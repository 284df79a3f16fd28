import CVoxBPF
import Testing
import VoxEngine
import VoxIO
import VoxMedia
import VoxRouting
import VoxWire
import VoxXDP

/// A client 5-tuple shared by SSRC-multiplexed sessions (issue 14, defect 4) in the XDP
/// program's `vox_flows`: admitted once, while any of its sessions lives, always under a live
/// one; removed with the last. A worker over the in-memory port admits into a real loaded
/// program's map, as the AF_XDP port's workers do. Root.
@Suite struct SharedFlowAdmissionTests {
    static let media = IPAddress("198.18.0.1")!
    static let backend = Backend(address: IPAddress("198.18.1.2")!, port: UDPPort(5004), mac: MACAddress(2, 0, 0, 0, 1, 1))
    static let key = (0..<30).map { UInt8($0) }

    static func flow(port: UInt16) -> FlowKey {
        FlowKey(remoteAddress: IPAddress("198.18.0.2")!, remotePort: UDPPort(port), localAddress: media, localPort: UDPPort(40000))
    }

    /// Client `flow`'s SRTP frame with `ssrc`, under session key `index`.
    static func frame(_ flow: FlowKey, ssrc: UInt32, key index: Int, seq: UInt16) throws -> [UInt8] {
        let k = key.map { $0 &+ UInt8(index) }
        var context = try SRTPContext(profile: .aes128CmHmacSha1_80, masterKey: Array(k[0..<16]), masterSalt: Array(k[16...]))
        var rtp: [UInt8] = [0x80, 111, UInt8(seq >> 8), UInt8(seq & 0xFF), 0, 0, 0, 0]
        rtp += [UInt8(ssrc >> 24), UInt8(ssrc >> 16 & 0xFF), UInt8(ssrc >> 8 & 0xFF), UInt8(ssrc & 0xFF), 1, 2, 3]
        rtp += [UInt8](repeating: 0, count: 16)
        var length = 15
        _ = rtp.withUnsafeMutableBytes { context.protectRTP($0.baseAddress!, length: &length, capacity: $0.count) }
        let a = FrameAddresses(
            destinationMAC: MACAddress(2, 0, 0, 0, 0, 1), sourceMAC: MACAddress(2, 0, 0, 0, 0, 2), source: flow.remoteAddress,
            sourcePort: flow.remotePort, destination: media, destinationPort: UDPPort(40000))
        var f = [UInt8](repeating: 0, count: a.headerLength) + rtp[0..<length]
        _ = f.withUnsafeMutableBytes { FrameBuilder.write($0.baseAddress!, a, payloadLength: length) }
        return f
    }

    @Test func aSharedFiveTupleStaysAdmittedWhileAnyOfItsSessionsLives() throws {
        try requirePrivileges("vox_flows admission tests")
        let program = try XDPProgram(objectPath: Paths.voxedgeObject())
        let flows = try program.admittedFlows()
        let port = InMemoryPort(queues: 1, frameCount: 1024)
        let store = try SessionStore(capacity: 8)
        let links = WorkerLinks.make(workers: 1, sessions: 8)
        let control = SessionControl(store: store, links: links)
        let box = WorkerBox(Worker(
            configuration: WorkerConfiguration(
                id: 0, mediaAddress: Self.media, mediaPort: UDPPort(40000), backendAddress: IPAddress("198.18.1.1")!,
                backendPortBase: 20000, edgeMAC: MACAddress(2, 0, 0, 0, 0, 1)),
            rings: port.rings(queue: 0), umem: port.umem, frameSize: port.frameSize, frames: port.initialFrames(queue: 0),
            store: store, backends: BackendDirectory(BackendTable([Self.backend]), workers: 1), links: links[0]))
        box.worker.portBinding = .xdp(try XDPAdmission(program: program, worker: 0))
        func run() { for _ in 0..<4 { _ = box.worker.runOnce(now: 1) } }
        run()
        let trunk = Self.flow(port: 5060)
        let alone = Self.flow(port: 7000)
        func create(_ flow: FlowKey, ssrc: UInt32?, key index: Int) throws -> Int32 {
            try control.create(on: 0) { c in
                let k = Self.key.map { $0 &+ UInt8(index) }
                c.clientKey = KeyMaterial(key: Array(k[0..<16]), salt: Array(k[16...]))!
                c.edgeKey = KeyMaterial(key: Array(k[16...]) + Array(k[0..<2]), salt: Array(k[2..<16]))!
                c.backend = 0
                c.flow = flow
                c.clientSSRC = ssrc
                c.clientMAC = MACAddress(2, 0, 0, 0, 0, 2)
            }
        }
        var trunkSessions: [(slot: Int32, ssrc: UInt32, key: Int)] = []
        for i in 0..<3 { trunkSessions.append((try create(trunk, ssrc: 100 + UInt32(i), key: i), 100 + UInt32(i), i)) }
        let single = try create(alone, ssrc: nil, key: 9)
        run()
        #expect(try flows.owner(of: trunk)?.session == UInt32(trunkSessions[0].slot))
        #expect(try flows.owner(of: alone)?.session == UInt32(single))
        var seq: UInt16 = 0
        /// Sends one packet of every live session; true when each reached the backend.
        func everyoneForwards() throws -> Bool {
            seq += 1
            for s in trunkSessions { port.deliver(try Self.frame(trunk, ssrc: s.ssrc, key: s.key, seq: seq), queue: 0) }
            port.deliver(try Self.frame(alone, ssrc: 7, key: 9, seq: seq), queue: 0)
            run()
            return port.discardTransmitted(queue: 0) == trunkSessions.count + 1
        }
        #expect(try everyoneForwards())
        // The first (the one vox_flows names) goes first: the entry stays, under a live one.
        while trunkSessions.count > 1 {
            try control.drop(trunkSessions.removeFirst().slot)
            run()
            let owner = try flows.owner(of: trunk)
            #expect(owner != nil, "the 5-tuple left vox_flows with \(trunkSessions.count) of its sessions alive")
            #expect(trunkSessions.contains { UInt32($0.slot) == owner?.session }, "\(String(describing: owner))")
            #expect(owner?.worker == 0)
            #expect(try everyoneForwards())
        }
        try control.drop(trunkSessions.removeFirst().slot)
        run()
        #expect(try flows.owner(of: trunk) == nil, "the last session's drop removes the 5-tuple")
        #expect(try flows.owner(of: alone)?.session == UInt32(single))
        #expect(try everyoneForwards())
        try control.drop(single)
        run()
        #expect(try flows.owner(of: alone) == nil)
    }
}

/// A worker in a box, so local functions can run it (workers are ~Copyable).
final class WorkerBox {
    var worker: Worker
    init(_ worker: consuming Worker) { self.worker = worker }
}
