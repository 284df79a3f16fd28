import Testing
import VoxEngine
import VoxMedia
import VoxTestKit
import VoxWire

/// The workers never send to the engine's own endpoints (issue 14, defect 8). The control side
/// refuses such clients; this is the data path's own guard, for a session whose client flow is
/// the engine's media address and port or one of its backend-leg ports anyway: its backend's
/// audio is dropped as `ownAddress` instead of looping back in.
@Suite struct OwnAddressTests {
    @Test func backendAudioIsNeverSentToTheEngineItself() throws {
        let h = try Harness(sessions: 8)
        var rng = SeededRandom(seed: 14)
        // An ordinary call first: its backend audio does reach its client.
        let call = try Call.start(h, profile: .aes128CmHmacSha1_80, index: 0, rng: &rng)
        h.run()
        #expect(h.port.deliver(call.backendFrame(from: 0, ssrc: 7, seq: 1, timestamp: 960, payload: [1, 2, 3]), queue: 0))
        h.run()
        #expect(h.transmitted().count == 1)
        let own: [(IPAddress, UDPPort)] = [
            (mediaAddress, mediaPort), (backendLegAddress, UDPPort(backendPortBase)),
            (backendLegAddress, UDPPort(backendPortBase + 7)),
        ]
        for (address, port) in own {
            let clientKey = randomKey(.aes128CmHmacSha1_80, &rng)
            let edgeKey = randomKey(.aes128CmHmacSha1_80, &rng)
            let slot = try h.control.create(on: 0) { c in
                c.profile = .aes128CmHmacSha1_80
                c.clientKey = KeyMaterial(key: clientKey.key, salt: clientKey.salt)!
                c.edgeKey = KeyMaterial(key: edgeKey.key, salt: edgeKey.salt)!
                c.backend = 0
                c.edgeSSRC = 0xE0
                c.flow = FlowKey(remoteAddress: address, remotePort: port, localAddress: mediaAddress, localPort: mediaPort)
                c.clientMAC = clientMAC
            }
            h.run()
            let before = h.workers[0].worker.counters[.ownAddress]
            let backend = backendList[0]
            let frame = Endpoint(mac: backend.mac, address: backend.address, port: backend.port).frame(
                to: backendLegAddress, UDPPort(backendPortBase + UInt16(slot)), mac: edgeMAC,
                payload: rtpPacket(ssrc: 7, seq: 1, timestamp: 960, payload: [1, 2, 3]))
            #expect(h.port.deliver(frame, queue: 0))
            h.run()
            #expect(h.transmitted().isEmpty, "sent to \(address):\(port)")
            #expect(h.workers[0].worker.counters[.ownAddress] == before + 1)
        }
    }
}
