import Testing
import VoxEngine
import VoxMedia
import VoxRouting
import VoxSRTPReference
import VoxTestKit
import VoxWire

/// The burst pipeline over the in-memory port, with libsrtp2 as every client.
@Suite struct PipelineTests {
    @Test(arguments: SRTPProfile.allCases)
    func mediaFlowsBothWaysForManySessions(profile: SRTPProfile) throws {
        let h = try Harness(sessions: 64)
        var rng = SeededRandom(seed: 40 + UInt64(profile.rawValue))
        let calls = try (0..<24).map { try Call.start(h, profile: profile, index: $0, backend: Int32($0 % 2), rng: &rng) }
        h.run()
        for round in 0..<20 {
            // Client → backend.
            for call in calls {
                let audio = (0..<(40 + round * 7)).map { UInt8(truncatingIfNeeded: $0 &+ Int(call.slot) &* 3 &+ round) }
                #expect(h.port.deliver(call.srtpFrame(seq: UInt16(100 + round), payload: audio), queue: 0))
            }
            h.run()
            let toBackends = h.transmitted()
            #expect(toBackends.count == calls.count)
            for frame in toBackends {
                guard let (parsed, rtp) = parseFrame(frame) else {
                    Issue.record("unparsable frame")
                    continue
                }
                frame.withUnsafeBytes { #expect(UDPChecksum.verify($0.baseAddress!, parsed)) }
                #expect(parsed.source == backendLegAddress)
                let slot = Int(parsed.sourcePort.rawValue - backendPortBase)
                guard let call = calls.first(where: { Int($0.slot) == slot }) else {
                    Issue.record("no call on slot \(slot)")
                    continue
                }
                let backend = backendList[calls.firstIndex { $0.slot == call.slot }! % 2]
                #expect(parsed.destination == backend.address && parsed.destinationPort == backend.port)
                frame.withUnsafeBytes {
                    #expect(MACAddress.load(from: $0.baseAddress!, at: 0) == backend.mac)
                    #expect(MACAddress.load(from: $0.baseAddress!, at: 6) == edgeMAC)
                }
                #expect(be32(rtp, 8) == call.clientSSRC && be16(rtp, 2) == UInt16(100 + round))
                let audio = (0..<(40 + round * 7)).map { UInt8(truncatingIfNeeded: $0 &+ Int(call.slot) &* 3 &+ round) }
                #expect(Array(rtp[12...]) == audio)
            }
            // Backend → client, in the client leg's own stream.
            for (i, call) in calls.enumerated() {
                let answer = (0..<(60 + round)).map { UInt8(truncatingIfNeeded: $0 ^ i) }
                #expect(h.port.deliver(call.backendFrame(from: i % 2, ssrc: 0xB0B0, seq: UInt16(7 + round), timestamp: UInt32(round) * 960, payload: answer), queue: 0))
            }
            h.run()
            let toClients = h.transmitted()
            #expect(toClients.count == calls.count)
            for frame in toClients {
                guard let (parsed, srtp) = parseFrame(frame) else { continue }
                frame.withUnsafeBytes { #expect(UDPChecksum.verify($0.baseAddress!, parsed)) }
                #expect(parsed.source == mediaAddress && parsed.sourcePort == mediaPort)
                guard let i = calls.firstIndex(where: { $0.client.port == parsed.destinationPort }) else {
                    Issue.record("frame to an unknown client")
                    continue
                }
                let call = calls[i]
                guard let rtp = call.receive(srtp) else {
                    Issue.record("libsrtp2 refused the client leg (\(profile), call \(i), round \(round))")
                    continue
                }
                #expect(be32(rtp, 8) == call.edgeSSRC)
                #expect(be16(rtp, 2) == UInt16(truncatingIfNeeded: 65_000 + i * 7 + round))
                #expect(be32(rtp, 4) == 123_456 &+ UInt32(round) &* 960)
                #expect(Array(rtp[12...]) == (0..<(60 + round)).map { UInt8(truncatingIfNeeded: $0 ^ i) })
            }
        }
        // Every session is found by its client's 5-tuple and its client's SSRC.
        for call in calls {
            let flow = FlowKey(remoteAddress: call.client.address, remotePort: call.client.port, localAddress: mediaAddress, localPort: mediaPort)
            #expect(h.workers[0].worker.slot(forClient: flow) == call.slot)
            #expect(h.workers[0].worker.slot(forClientSSRC: call.clientSSRC) == call.slot)
            h.workers[0].worker.withSession(Int(call.slot)) { s in
                #expect(s.packetsFromClient == 20 && s.packetsToClient == 20 && s.clientSSRC == call.clientSSRC)
                // Sequence 100...119, none lost; the first two are the new source's probation.
                #expect(s.clientStats.isValid && s.clientStats.cumulativeLost == 0)
                #expect(s.clientStats.extendedHighestSequence == 119 && s.clientStats.received == 19)
            }
        }
        let counters = h.workers[0].worker.counters
        #expect(counters[.toBackend] == 20 * 24 && counters[.toClient] == 20 * 24 && counters[.dropped] == 0)
    }
}
