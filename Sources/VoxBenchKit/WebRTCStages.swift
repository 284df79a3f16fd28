import Glibc
import VoxMedia
import VoxSRTPReference
import VoxTestKit
import VoxWire

/// Chromium 156's offer (Tests/Fixtures/webrtc/chromium-156/offer.sdp), the richest of the
/// three clients', kept here so the binary needs no fixture files.
let chromiumOffer = """
    v=0\r
    o=- 3664777523681453175 2 IN IP4 127.0.0.1\r
    s=-\r
    t=0 0\r
    a=group:BUNDLE 0\r
    a=extmap-allow-mixed\r
    a=msid-semantic: WMS b07b1b01-b26f-411f-a7af-cbdbceb95add\r
    m=audio 60812 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r
    c=IN IP4 198.18.0.2\r
    a=rtcp:9 IN IP4 0.0.0.0\r
    a=candidate:837129548 1 udp 2122260223 198.18.0.2 60812 typ host generation 0 network-id 1\r
    a=candidate:3478077912 1 tcp 1518280447 198.18.0.2 9 typ host tcptype active generation 0 network-id 1\r
    a=ice-ufrag:/XoV\r
    a=ice-pwd:Whhuk5TkLzcB0WjjuPoDgVk5\r
    a=ice-options:trickle\r
    a=fingerprint:sha-256 8B:12:B3:17:C8:7D:EB:38:58:25:65:CC:DB:07:FE:68:38:B5:D0:27:4C:90:21:D6:E1:27:7D:33:A8:AC:F1:C1\r
    a=setup:actpass\r
    a=mid:0\r
    a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r
    a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r
    a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r
    a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r
    a=sendrecv\r
    a=msid:b07b1b01-b26f-411f-a7af-cbdbceb95add 72b8c9b3-1dda-4600-bcb8-638f8be0ec32\r
    a=rtcp-mux\r
    a=rtcp-rsize\r
    a=rtcp-xr:rcvr-rtt=all\r
    a=rtpmap:111 opus/48000/2\r
    a=rtcp-fb:111 transport-cc\r
    a=fmtp:111 minptime=10;useinbandfec=1\r
    a=rtpmap:63 red/48000/2\r
    a=fmtp:63 111/111\r
    a=rtpmap:9 G722/8000\r
    a=rtpmap:0 PCMU/8000\r
    a=rtpmap:8 PCMA/8000\r
    a=rtpmap:13 CN/8000\r
    a=rtpmap:110 telephone-event/48000\r
    a=rtpmap:126 telephone-event/8000\r
    a=ssrc:2864822761 cname:b/7UPXAq4TydvSVP\r
    a=ssrc:2864822761 msid:b07b1b01-b26f-411f-a7af-cbdbceb95add 72b8c9b3-1dda-4600-bcb8-638f8be0ec32\r

    """

/// ICE-lite agents, one per session, mutated in place by the timed pass.
final class AgentTable {
    var agents: [ICELiteAgent]
    init(_ agents: [ICELiteAgent]) { self.agents = agents }
}

/// CPU time this thread spent inside the DTLS server's calls during one pass: thread CPU
/// rather than wall time, so other work on a shared machine does not count.
final class Stopwatch {
    var elapsed: Duration = .zero

    /// This thread's CPU time.
    static func now() -> Duration {
        var t = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t)
        return .seconds(t.tv_sec) + .nanoseconds(t.tv_nsec)
    }
}

extension MicroBench {
    /// The session set-up path, per session rather than per packet: an SDP offer read and
    /// answered, a connectivity check through the ICE-lite agent, a whole DTLS handshake.
    static func webRTCStages(_ c: Configuration) throws -> [Stage] {
        let certificate = try DTLSCertificate()
        let context = try DTLSServerContext(certificate: certificate)
        var rng = SeededRandom(seed: 0x8)
        let parameters = SDPAnswer.Parameters(
            credentials: ICECredentials.make(slot: 1, using: &rng), fingerprint: context.fingerprint,
            address: IPAddress("198.18.0.1")!, port: UDPPort(40000), sessionID: 1)
        let offers = 200
        let sdp = Stage(
            name: "sdp.parse+answer", perPacketPath: false, packets: offers,
            body: {
                var ok = 0
                for _ in 0..<offers {
                    guard let offer = try? WebRTCOffer(chromiumOffer) else { continue }
                    if SDPAnswer.build(for: offer, parameters).utf8.count > 500 { ok += 1 }
                }
                return ok
            })

        // One agent and one signed check (USE-CANDIDATE) per session.
        let sessions = c.sessions
        let n = c.packets
        var agents: [ICELiteAgent] = []
        let requests = PacketSet(count: sessions, sessions: sessions)
        for s in 0..<sessions {
            let local = ICECredentials.make(slot: s, using: &rng)
            agents.append(ICELiteAgent(local: local, remoteUfrag: "client\(s)", now: 0)!)
            let length = try writeCheck(
                requests.packet(s), capacity: PacketSet.stride, username: "\(local.ufrag):client\(s)",
                authenticator: STUNAuthenticator(password: local.password), using: &rng)
            requests.lengths[s] = Int32(length)
        }
        let table = AgentTable(agents)
        let work = WorkBuffer()
        let flow = FlowKey(
            remoteAddress: IPAddress("198.18.0.2")!, remotePort: UDPPort(50000), localAddress: IPAddress("198.18.0.1")!,
            localPort: UDPPort(40000))
        let ice = Stage(
            name: "ice.check (agent)", perPacketPath: true, packets: n,
            body: {
                var ok = 0
                for i in 0..<n {
                    let s = i % sessions
                    let length = Int(requests.lengths[s])
                    work.pointer.copyMemory(from: requests.packet(s), byteCount: length)
                    let r = table.agents[s].handle(
                        now: 1_000_000, work.pointer, length: length, capacity: WorkBuffer.capacity, from: flow)
                    if r.verdict == .answered { ok += 1 }
                }
                return ok
            })

        // Whole handshakes against OpenSSL's client; the server's calls are timed apart.
        let handshakes = 20
        let clientCertificate = try DTLSCertificate(commonName: "bench client")
        let serverTime = Stopwatch()
        var dtls = Stage(
            name: "dtls.handshake client+server", perPacketPath: false, packets: handshakes,
            body: {
                var ok = 0
                serverTime.elapsed = .zero
                for _ in 0..<handshakes {
                    let client: OpenSSLDTLSClient
                    do {
                        client = try OpenSSLDTLSClient(profiles: SRTPProfile.allCases, certificate: clientCertificate)
                    } catch {
                        continue
                    }
                    var start = Stopwatch.now()
                    var server: DTLSServer
                    do {
                        server = try DTLSServer(
                            context: context, remoteFingerprints: [clientCertificate.fingerprint], now: 0)
                    } catch { continue }
                    serverTime.elapsed += Stopwatch.now() - start
                    var toServer = client.start()
                    for _ in 0..<8 where !toServer.isEmpty {
                        var toClient: [[UInt8]] = []
                        for d in toServer {
                            start = Stopwatch.now()
                            toClient += d.withUnsafeBytes { server.handle(now: 1, datagram: $0) }.datagrams
                            serverTime.elapsed += Stopwatch.now() - start
                        }
                        toServer = toClient.flatMap { client.receive($0) }
                    }
                    if server.state == .connected && client.isConnected { ok += 1 }
                }
                return ok
            })
        dtls.part = ("dtls.handshake server side (CPU)", { serverTime.elapsed })
        return [sdp, ice, dtls]
    }
}
