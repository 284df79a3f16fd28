import VoxEngine
import VoxIO
import VoxMedia
import VoxRouting
import VoxTestKit
import VoxWire

/// A one-worker engine over the in-memory port, for the pipeline stages.
final class EngineRig {
    let port: InMemoryPort
    let store: SessionStore
    let backends: BackendDirectory
    let links: [WorkerLinks]
    let control: SessionControl
    var worker: Worker

    init(sessions: Int) throws {
        port = InMemoryPort(queues: 1, frameCount: 4096, ringSize: 1024)
        store = try SessionStore(capacity: sessions)
        backends = BackendDirectory(
            BackendTable([
                Backend(address: IPAddress("198.18.1.2")!, port: UDPPort(5004), mac: MACAddress(0x02, 0, 0, 0, 1, 1))
            ]), workers: 1)
        links = WorkerLinks.make(workers: 1, sessions: sessions, commandCapacity: sessions * 2)
        control = SessionControl(store: store, links: links)
        worker = Worker(
            configuration: WorkerConfiguration(
                id: 0, mediaAddress: IPAddress("198.18.0.1")!, mediaPort: UDPPort(40000),
                backendAddress: IPAddress("198.18.1.1")!, backendPortBase: 20000, edgeMAC: MicroBench.serverMAC),
            rings: port.rings(queue: 0), umem: port.umem, frameSize: port.frameSize,
            frames: port.initialFrames(queue: 0), store: store, backends: backends, links: links[0])
        _ = worker.runOnce(now: 0)
    }
}

extension MicroBench {
    /// Whole packets through the worker's burst pipeline, and the session lookup.
    static func engineStages(_ c: Configuration) throws -> [Stage] {
        let sessions = c.sessions
        let n = c.packets
        let profile = SRTPProfile.aes128CmHmacSha1_80
        let keys = masterKeys(profile, sessions: sessions)
        let rig = try EngineRig(sessions: sessions)
        let client = IPAddress("198.18.0.2")!
        let flows = (0..<sessions).map {
            FlowKey(remoteAddress: client, remotePort: UDPPort(UInt16(10000 + $0)), localAddress: IPAddress("198.18.0.1")!,
                localPort: UDPPort(40000))
        }
        var slots: [Int32] = []
        func createAll() throws {
            rig.control.reclaim()
            for (s, k) in keys.enumerated() {
                let slot = try rig.control.create(on: 0) { command in
                    command.profile = profile
                    command.clientKey = KeyMaterial(key: k.key, salt: k.salt)!
                    command.edgeKey = KeyMaterial(key: k.key, salt: k.salt)!
                    command.backend = 0
                    command.flow = flows[s]
                    command.clientMAC = clientMAC
                    command.edgeSSRC = 0xE000_0000 + UInt32(s)
                }
                slots.append(slot)
            }
            _ = rig.worker.runOnce(now: 0)
        }
        try createAll()
        /// Re-creates every session with the same keys: fresh replay windows for the next pass.
        func recreate() {
            for slot in slots { try? rig.control.drop(slot) }
            _ = rig.worker.runOnce(now: 0)
            slots.removeAll(keepingCapacity: true)
            try? createAll()
        }

        // Client frames: SRTP from each session's client, in the shuffled order.
        let senders = try ContextTable(profile: profile, keys: keys)
        let clientFrames = PacketSet(count: n, sessions: sessions)
        let backendFrames = PacketSet(count: n, sessions: sessions)
        let toEdge = FrameAddresses(
            destinationMAC: serverMAC, sourceMAC: clientMAC, source: client, sourcePort: UDPPort(0),
            destination: IPAddress("198.18.0.1")!, destinationPort: UDPPort(40000))
        for i in 0..<n {
            let s = Int(clientFrames.flows[i])
            let f = clientFrames.packet(i)
            var length = writeRTP(f + toEdge.headerLength, session: s, round: i / sessions)
            _ = senders.contexts[s].protectRTP(f + toEdge.headerLength, length: &length, capacity: 200)
            var a = toEdge
            a.sourcePort = flows[s].remotePort
            _ = FrameBuilder.write(f, a, payloadLength: length)
            clientFrames.lengths[i] = Int32(toEdge.headerLength + length)
            // The backend's answer for the same session.
            let b = backendFrames.packet(i)
            let fromBackend = FrameAddresses(
                destinationMAC: serverMAC, sourceMAC: MACAddress(0x02, 0, 0, 0, 1, 1), source: IPAddress("198.18.1.2")!,
                sourcePort: UDPPort(5004), destination: IPAddress("198.18.1.1")!,
                destinationPort: UDPPort(20000 + UInt16(slots[s])))
            let rtpLength = writeRTP(b + fromBackend.headerLength, session: s, round: i / sessions)
            _ = FrameBuilder.write(b, fromBackend, payloadLength: rtpLength)
            backendFrames.lengths[i] = Int32(fromBackend.headerLength + rtpLength)
        }

        func pass(_ frames: PacketSet, through target: EngineRig) -> Int {
            var forwarded = 0
            var i = 0
            while i < n {
                let end = min(i + 64, n)
                while i < end {
                    target.port.deliver(frames.packet(i), length: Int(frames.lengths[i]), queue: 0)
                    i += 1
                }
                _ = target.worker.runOnce(now: 0)
                forwarded += target.port.discardTransmitted(queue: 0)
            }
            return forwarded
        }

        // The same sessions, keys and packets, multiplexed on one client 5-tuple (a SIP trunk):
        // each session named its client's SSRC, and the worker finds it by (5-tuple, SSRC).
        let shared = try EngineRig(sessions: sessions)
        let sharedFlow = FlowKey(
            remoteAddress: client, remotePort: UDPPort(5060), localAddress: IPAddress("198.18.0.1")!,
            localPort: UDPPort(40000))
        var sharedSlots: [Int32] = []
        func recreateShared() {
            for slot in sharedSlots { try? shared.control.drop(slot) }
            _ = shared.worker.runOnce(now: 0)
            sharedSlots.removeAll(keepingCapacity: true)
            shared.control.reclaim()
            for (s, k) in keys.enumerated() {
                guard let slot = try? shared.control.create(on: 0, { command in
                    command.profile = profile
                    command.clientKey = KeyMaterial(key: k.key, salt: k.salt)!
                    command.edgeKey = KeyMaterial(key: k.key, salt: k.salt)!
                    command.backend = 0
                    command.flow = sharedFlow
                    command.clientSSRC = firstSSRC &+ UInt32(s)
                    command.clientMAC = clientMAC
                    command.edgeSSRC = 0xE000_0000 + UInt32(s)
                }) else { continue }
                sharedSlots.append(slot)
            }
            _ = shared.worker.runOnce(now: 0)
        }
        recreateShared()
        let sharedFrames = PacketSet(count: n, sessions: sessions)
        for i in 0..<n {
            // SRTP does not cover the UDP header: the same protected packets, from one port.
            let length = Int(clientFrames.lengths[i])
            sharedFrames.packet(i).copyMemory(from: clientFrames.packet(i), byteCount: length)
            var a = toEdge
            a.sourcePort = sharedFlow.remotePort
            _ = FrameBuilder.write(sharedFrames.packet(i), a, payloadLength: length - toEdge.headerLength)
            sharedFrames.lengths[i] = Int32(length)
        }

        // Session lookup over 10,000 client 5-tuples, in random order.
        let lookupCount = 10_000
        var index = FixedIndex<FlowKey>(capacity: lookupCount, placeholder: flows[0])
        var lookupKeys: [FlowKey] = []
        var rng = SeededRandom(seed: 0x10_0000)
        for i in 0..<lookupCount {
            let k = FlowKey(
                remoteAddress: IPAddress(ipv4: 0x6440_0000 | UInt32.random(in: 0..<0x3F_FFFF, using: &rng)),
                remotePort: UDPPort(UInt16(1024 + i % 60000)), localAddress: IPAddress("198.18.0.1")!,
                localPort: UDPPort(40000))
            if index.insert(k, Int32(i)) { lookupKeys.append(k) }
        }
        lookupKeys.shuffle(using: &rng)
        let lookups = LookupRig(index: index, keys: lookupKeys)

        return [
            Stage(
                name: "session.lookup (10,000 sessions)", perPacketPath: true, packets: lookups.keys.count,
                body: { lookups.run() }),
            Stage(
                name: "pipeline.client→backend \(profile)", perPacketPath: true, packets: n,
                srtpTwin: "srtp.unprotect \(profile)",
                setup: { recreate() },
                body: { pass(clientFrames, through: rig) }),
            Stage(
                name: "pipeline.client→backend \(profile), \(sessions) SSRCs on one 5-tuple", perPacketPath: true,
                packets: n, srtpTwin: "srtp.unprotect \(profile)",
                setup: { recreateShared() },
                body: { pass(sharedFrames, through: shared) }),
            Stage(
                name: "pipeline.backend→client \(profile)", perPacketPath: true, packets: n,
                srtpTwin: "srtp.protect \(profile)",
                body: { pass(backendFrames, through: rig) }),
        ]
    }
}

/// The lookup stage's index and keys (the index is ~Copyable: a class holds it).
final class LookupRig {
    var index: FixedIndex<FlowKey>
    let keys: [FlowKey]

    init(index: consuming FixedIndex<FlowKey>, keys: [FlowKey]) {
        self.index = index
        self.keys = keys
    }

    func run() -> Int {
        var found = 0
        keys.withUnsafeBufferPointer { k in
            for key in k where index.find(key) != nil { found += 1 }
        }
        return found
    }
}
