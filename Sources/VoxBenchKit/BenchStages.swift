import CVoxCryptoRef
import VoxMedia
import VoxSRTPReference
import VoxTestKit
import VoxWire

/// Packets laid out back to back at a fixed stride, with the arrays the C loop takes.
final class PacketSet {
    static let stride = 256
    let count: Int
    let base: UnsafeMutableRawPointer
    let lengths: UnsafeMutableBufferPointer<Int32>
    let pointers: UnsafeMutableBufferPointer<UnsafePointer<UInt8>?>
    let flows: UnsafeMutableBufferPointer<Int32>

    /// Packet i belongs to session `flows[i]`. In each round of `sessions` packets every
    /// session sends one, in a seeded random order: real callers interleave arbitrarily,
    /// and walking sessions in memory order would flatter whichever side keeps its
    /// per-session state in one contiguous array.
    init(count: Int, sessions: Int) {
        self.count = count
        base = .allocate(byteCount: count * PacketSet.stride, alignment: 64)
        base.initializeMemory(as: UInt8.self, repeating: 0, count: count * PacketSet.stride)
        lengths = .allocate(capacity: count)
        lengths.initialize(repeating: 0)
        pointers = .allocate(capacity: count)
        flows = .allocate(capacity: count)
        var rng = SeededRandom(seed: 0x0D0E)
        var order = Array(0..<sessions)
        for i in 0..<count {
            if i % sessions == 0 { order.shuffle(using: &rng) }
            pointers[i] = UnsafePointer((base + i * PacketSet.stride).assumingMemoryBound(to: UInt8.self))
            flows[i] = Int32(order[i % sessions])
        }
    }

    deinit {
        base.deallocate()
        lengths.deallocate()
        pointers.deallocate()
        flows.deallocate()
    }

    func packet(_ i: Int) -> UnsafeMutableRawPointer { base + i * PacketSet.stride }

    func set(_ i: Int, _ bytes: UnsafeRawBufferPointer) {
        precondition(bytes.count <= PacketSet.stride)
        packet(i).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        lengths[i] = Int32(bytes.count)
    }
}

/// `count` SRTP contexts in one allocation (they are ~Copyable: no Array).
final class ContextTable {
    let contexts: UnsafeMutablePointer<SRTPContext>
    let count: Int

    init(profile: SRTPProfile, keys: [(key: [UInt8], salt: [UInt8])]) throws {
        count = keys.count
        contexts = .allocate(capacity: count)
        for (i, k) in keys.enumerated() {
            (contexts + i).initialize(to: try SRTPContext(profile: profile, masterKey: k.key, masterSalt: k.salt))
        }
    }

    /// Puts every context back where its stream (SSRC `firstSSRC + i`) stood before the
    /// first packet: known, ROC 0, nothing received. Steady state, not a new stream per pass.
    func restart(firstSSRC: UInt32) {
        for i in 0..<count {
            contexts[i].resetStreams()
            _ = contexts[i].setRolloverCounter(0, sequence: 0, ssrc: firstSSRC &+ UInt32(i))
        }
    }

    deinit {
        contexts.deinitialize(count: count)
        contexts.deallocate()
    }
}

/// A scratch frame buffer the stages copy each packet into, as a NIC would deliver it.
final class WorkBuffer {
    static let capacity = 2048
    let pointer = UnsafeMutableRawPointer.allocate(byteCount: WorkBuffer.capacity, alignment: 64)
    deinit { pointer.deallocate() }
}

/// The stages of the micro benchmark: fixtures built once, then closures that run one
/// timed pass each. Shared by `voxedge bench micro` and the package-benchmark suite in
/// Benchmarks/, so both measure the same code on the same packets.
public enum MicroBench {
    public struct Configuration: Sendable {
        public var sessions: Int
        public var packetsPerSession: Int
        public var packets: Int { sessions * packetsPerSession }
        public init(sessions: Int, packetsPerSession: Int) {
            self.sessions = sessions
            self.packetsPerSession = packetsPerSession
        }
    }

    /// One measured stage. `setup` runs untimed before every timed `body` (fresh receiver
    /// state, so replay windows accept the same packets again); `body` handles `packets`
    /// packets and returns how many succeeded, which must be all of them.
    public struct Stage {
        public var name: String
        /// Our per-packet path: gated on zero allocations.
        public var perPacketPath: Bool
        public var packets: Int
        /// The stage this one is compared with as "libsrtp2" and as "C loop".
        public var libsrtp2Twin: String? = nil
        public var cLoopTwin: String? = nil
        /// For whole-packet stages: the SRTP stage alone, to see what the rest of the path adds.
        public var srtpTwin: String? = nil
        public var setup: () -> Void = {}
        public var body: () -> Int
        /// A part of `body` that times itself (the server's side of a DTLS handshake, beside
        /// its client): its name and the time it spent in the last pass, reported as a stage.
        public var part: (name: String, elapsed: () -> Duration)? = nil
    }

    /// Session s sends SSRC firstSSRC + s.
    static let firstSSRC: UInt32 = 0x1000_0000
    static let rtpPayloadLength = 160  // 20 ms of G.711-sized audio: a 182-byte SRTP packet with an 80-bit tag
    static let serverMAC = MACAddress(0x02, 0, 0, 0, 0, 0x01)
    static let clientMAC = MACAddress(0x02, 0, 0, 0, 0, 0x02)


    public static func stages(_ c: Configuration) throws -> [Stage] {
        var stages: [Stage] = []
        let (parse, stun) = try wireStages(c)
        stages.append(parse)
        stages.append(stun)
        for profile in SRTPProfile.allCases {
            stages += try srtpStages(c, profile)
        }
        stages += try engineStages(c)
        stages += try webRTCStages(c)
        stages += try backendStages(c)
        return stages
    }

    /// The plaintext RTP packet of session `s`, round `r`.
    static func writeRTP(_ p: UnsafeMutableRawPointer, session s: Int, round r: Int) -> Int {
        let seq = UInt16(truncatingIfNeeded: 1 + r)
        p.storeBE16(0x8000 | 111, at: 0)
        p.storeBE16(seq, at: 2)
        p.storeBE32(UInt32(truncatingIfNeeded: r * 960), at: 4)
        p.storeBE32(firstSSRC &+ UInt32(s), at: 8)
        for i in 0..<rtpPayloadLength { p.storeByte(UInt8(truncatingIfNeeded: 0xD5 ^ (i * 13 + s + r)), at: 12 + i) }
        return 12 + rtpPayloadLength
    }

    static func masterKeys(_ profile: SRTPProfile, sessions: Int) -> [(key: [UInt8], salt: [UInt8])] {
        var rng = SeededRandom(seed: 0xB0B0 + UInt64(profile.rawValue))
        return (0..<sessions).map { _ in
            (
                (0..<profile.masterKeyLength).map { _ in UInt8.random(in: 0...255, using: &rng) },
                (0..<profile.masterSaltLength).map { _ in UInt8.random(in: 0...255, using: &rng) }
            )
        }
    }

    static func srtpStages(_ c: Configuration, _ profile: SRTPProfile) throws -> [Stage] {
        let n = c.packets
        let sessions = c.sessions
        let keys = masterKeys(profile, sessions: sessions)
        let plain = PacketSet(count: n, sessions: sessions)
        let protected = PacketSet(count: n, sessions: sessions)
        let senders = try ContextTable(profile: profile, keys: keys)
        for i in 0..<n {
            let p = plain.packet(i)
            let length = writeRTP(p, session: Int(plain.flows[i]), round: i / sessions)
            plain.lengths[i] = Int32(length)
            let q = protected.packet(i)
            q.copyMemory(from: p, byteCount: length)
            var m = length
            let status = senders.contexts[Int(plain.flows[i])].protectRTP(q, length: &m, capacity: PacketSet.stride)
            guard status == .ok else { throw BenchError.setup("protect \(profile): \(status)") }
            protected.lengths[i] = Int32(m)
        }
        let receivers = try ContextTable(profile: profile, keys: keys)
        // Closures hold `work` itself, never just its pointer: the buffer must outlive them.
        let work = WorkBuffer()
        let libsrtp = LibSRTPPool(profile: profile, keys: keys)
        guard let cref = vox_cref_create(Int32(profile.rawValue), Int32(sessions), keys.flatMap(\.key), keys.flatMap(\.salt))
        else { throw BenchError.setup("C loop refused \(profile)") }
        let crefHolder = CRefHolder(cref)

        let name = profile.description
        return [
            Stage(
                name: "srtp.unprotect \(name)", perPacketPath: true, packets: n,
                libsrtp2Twin: "libsrtp2.unprotect \(name)", cLoopTwin: "c-loop.unprotect \(name)",
                setup: { receivers.restart(firstSSRC: firstSSRC) },
                body: {
                    let w = work.pointer
                    var ok = 0
                    let ctx = receivers.contexts
                    for i in 0..<n {
                        let length = Int(protected.lengths[i])
                        w.copyMemory(from: protected.packet(i), byteCount: length)
                        var m = length
                        if ctx[Int(protected.flows[i])].unprotectRTP(w, length: &m) == .ok { ok += 1 }
                    }
                    return ok
                }),
            Stage(
                name: "srtp.protect \(name)", perPacketPath: true, packets: n,
                libsrtp2Twin: "libsrtp2.protect \(name)", cLoopTwin: "c-loop.protect \(name)",
                setup: { senders.restart(firstSSRC: firstSSRC) },
                body: {
                    let w = work.pointer
                    var ok = 0
                    let ctx = senders.contexts
                    for i in 0..<n {
                        let length = Int(plain.lengths[i])
                        w.copyMemory(from: plain.packet(i), byteCount: length)
                        var m = length
                        if ctx[Int(plain.flows[i])].protectRTP(w, length: &m, capacity: WorkBuffer.capacity) == .ok {
                            ok += 1
                        }
                    }
                    return ok
                }),
            Stage(
                name: "libsrtp2.unprotect \(name)", perPacketPath: false, packets: n,
                setup: { libsrtp.reset(.inbound) },
                body: {
                    let w = work.pointer
                    var ok = 0
                    for i in 0..<n {
                        let length = Int(protected.lengths[i])
                        w.copyMemory(from: protected.packet(i), byteCount: length)
                        var m = length
                        if libsrtp.sessions[Int(protected.flows[i])].unprotect(w, length: &m) == 0 { ok += 1 }
                    }
                    return ok
                }),
            Stage(
                name: "libsrtp2.protect \(name)", perPacketPath: false, packets: n,
                setup: { libsrtp.reset(.outbound) },
                body: {
                    let w = work.pointer
                    var ok = 0
                    for i in 0..<n {
                        let length = Int(plain.lengths[i])
                        w.copyMemory(from: plain.packet(i), byteCount: length)
                        var m = length
                        if libsrtp.sessions[Int(plain.flows[i])].protect(w, length: &m) == 0 { ok += 1 }
                    }
                    return ok
                }),
            Stage(
                name: "c-loop.unprotect \(name)", perPacketPath: false, packets: n,
                body: {
                    let w = work.pointer
                    return Int(
                        vox_cref_unprotect_batch(
                            crefHolder.ref, protected.pointers.baseAddress, protected.lengths.baseAddress,
                            protected.flows.baseAddress, n, w.assumingMemoryBound(to: UInt8.self)))
                }),
            Stage(
                name: "c-loop.protect \(name)", perPacketPath: false, packets: n,
                body: {
                    let w = work.pointer
                    return Int(
                        vox_cref_protect_batch(
                            crefHolder.ref, plain.pointers.baseAddress, plain.lengths.baseAddress,
                            plain.flows.baseAddress, n, w.assumingMemoryBound(to: UInt8.self)))
                }),
        ]
    }

    /// A connectivity check as a controlling client writes it (USERNAME, PRIORITY,
    /// ICE-CONTROLLING, USE-CANDIDATE, MESSAGE-INTEGRITY, FINGERPRINT) at `p`; its length.
    static func writeCheck(
        _ p: UnsafeMutableRawPointer, capacity: Int, username: String, authenticator: STUNAuthenticator,
        using rng: inout SeededRandom
    ) throws -> Int {
        guard var writer = STUNWriter(p, capacity: capacity, type: STUN.bindingRequest) else {
            throw BenchError.setup("no room for a STUN request")
        }
        for i in 0..<12 { p.storeByte(UInt8.random(in: 0...255, using: &rng), at: 8 + i) }
        var user = Array(username.utf8)
        _ = user.withUnsafeMutableBytes { writer.append(type: STUN.Attribute.username, value: UnsafeRawBufferPointer($0)) }
        _ = writer.appendUInt32(type: STUN.Attribute.priority, 0x6E00_1EFF)
        _ = writer.appendUInt64(type: STUN.Attribute.iceControlling, rng.next())
        _ = writer.reserve(type: STUN.Attribute.useCandidate, valueLength: 0)
        guard authenticator.sign(&writer) else { throw BenchError.setup("STUN request too long") }
        return writer.length
    }

    /// Frame parse + demux, and a STUN connectivity check verified and answered in place.
    static func wireStages(_ c: Configuration) throws -> (Stage, Stage) {
        let n = c.packets
        let sessions = c.sessions
        let server = FrameAddresses(
            destinationMAC: serverMAC, sourceMAC: clientMAC, source: IPAddress("198.18.0.2")!,
            sourcePort: UDPPort(10000), destination: IPAddress("198.18.0.1")!, destinationPort: UDPPort(40000))
        let profile = SRTPProfile.aes128CmHmacSha1_80
        let keys = masterKeys(profile, sessions: sessions)
        let senders = try ContextTable(profile: profile, keys: keys)
        let frames = PacketSet(count: sessions, sessions: sessions)
        for s in 0..<sessions {
            let f = frames.packet(s)
            var length = writeRTP(f + server.headerLength, session: s, round: 0)
            _ = senders.contexts[s].protectRTP(f + server.headerLength, length: &length, capacity: 200)
            var addresses = server
            addresses.sourcePort = UDPPort(UInt16(10000 + s % 50000))
            _ = FrameBuilder.write(f, addresses, payloadLength: length)
            frames.lengths[s] = Int32(server.headerLength + length)
        }
        let parse = Stage(
            name: "frame.parse+demux", perPacketPath: true, packets: n,
            body: {
                var ok = 0
                var parsed = ParsedFrame()
                for i in 0..<n {
                    let f = frames.packet(i % sessions)
                    if ParsedFrame.parse(f, length: Int(frames.lengths[i % sessions]), into: &parsed) == .ok,
                        PayloadClass.classify(f + parsed.payloadOffset, length: parsed.payloadLength) == .rtp
                    {
                        ok += 1
                    }
                }
                return ok
            })

        var rng = SeededRandom(seed: 0x57A)
        let alphabet = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/".utf8)
        let authenticators: [STUNAuthenticator] = (0..<sessions).map { _ in
            STUNAuthenticator(password: String(decoding: (0..<22).map { _ in alphabet.randomElement(using: &rng)! }, as: UTF8.self))
        }
        let requests = PacketSet(count: sessions, sessions: sessions)
        for s in 0..<sessions {
            let f = requests.packet(s)
            let payload = f + server.headerLength
            let length = try writeCheck(
                payload, capacity: PacketSet.stride - server.headerLength, username: "vx1s\(s)r8Kq:cl\(s)",
                authenticator: authenticators[s], using: &rng)
            _ = FrameBuilder.write(f, server, payloadLength: length)
            requests.lengths[s] = Int32(server.headerLength + length)
        }
        // Closures hold `work` itself, never just its pointer: the buffer must outlive them.
        let work = WorkBuffer()
        let stun = Stage(
            name: "stun.check+answer", perPacketPath: true, packets: n,
            body: {
                let w = work.pointer
                var ok = 0
                var parsed = ParsedFrame()
                var request = STUNMessage()
                authenticators.withUnsafeBufferPointer { auth in
                    for i in 0..<n {
                        let s = i % sessions
                        let length = Int(requests.lengths[s])
                        w.copyMemory(from: requests.packet(s), byteCount: length)
                        guard ParsedFrame.parse(w, length: length, into: &parsed) == .ok,
                            PayloadClass.classify(w + parsed.payloadOffset, length: parsed.payloadLength) == .stun
                        else { continue }
                        var responseLength = 0
                        let verdict = auth[s].answerBindingRequest(
                            w + parsed.payloadOffset, length: parsed.payloadLength,
                            capacity: WorkBuffer.capacity - parsed.payloadOffset,
                            remote: parsed.source, remotePort: parsed.sourcePort,
                            request: &request, responseLength: &responseLength)
                        guard verdict == .answered else { continue }
                        FrameBuilder.reply(w, &parsed, payloadLength: responseLength)
                        ok += 1
                    }
                }
                return ok
            })
        _ = senders
        return (parse, stun)
    }
}

/// libsrtp2 sessions, created anew before each timed pass (its replay state cannot be reset).
final class LibSRTPPool {
    let profile: SRTPProfile
    let keys: [(key: [UInt8], salt: [UInt8])]
    var sessions: [LibSRTPSession] = []

    init(profile: SRTPProfile, keys: [(key: [UInt8], salt: [UInt8])]) {
        self.profile = profile
        self.keys = keys
    }

    func reset(_ direction: LibSRTPSession.Direction) {
        sessions = []
        sessions = keys.map {
            LibSRTPSession(profile: profile, masterKey: $0.key, masterSalt: $0.salt, direction: direction)!
        }
    }
}

final class CRefHolder {
    let ref: OpaquePointer
    init(_ ref: OpaquePointer) { self.ref = ref }
    deinit { vox_cref_free(ref) }
}

enum BenchError: Error, CustomStringConvertible {
    case setup(String)
    var description: String {
        switch self {
        case .setup(let s): return "benchmark setup failed: \(s)"
        }
    }
}
