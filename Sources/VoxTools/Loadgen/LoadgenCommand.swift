import ArgumentParser
import CVoxAllocCounter
import VoxControl
import VoxIO
import CVoxLinux
import Foundation
import Glibc
import Synchronization
import VoxMedia
import VoxWire
import VoxXDP

/// `voxedge loadgen`: N static-key sessions created over the engine's control socket, SRTP
/// for all of them at a fixed rate from this namespace's interface, and a count of the
/// decrypted RTP the engine forwards to the backend address — which lives behind this same
/// interface (afxdp-ref's layout), where an XDP program counts and drops it.
public struct LoadgenCommand: ParsableCommand {
    /// SIGINT/SIGTERM: stop sending and print what was sent.
    static let interrupted = Atomic<Bool>(false)

    public static let configuration = CommandConfiguration(
        commandName: "loadgen",
        abstract: "Send SRTP for N static-key sessions at a fixed rate and count what the engine forwards.",
        discussion: """
            Run it in the generator's namespace, whose interface faces the engine. Sessions are \
            created over --control-socket (client addresses --source:--source-port-base+i, \
            backend index --backend-index) and dropped at the end. Packets: 12-byte RTP + \
            160-byte payload + tag, protected as they are sent (sequence numbers never repeat, \
            as the engine's replay window requires), sent as whole frames in batches through \
            AF_XDP (--tx xdp, the default) or a packet socket (--tx packet). Returns: UDP to --backend-address on ports --backend-ports, \
            counted (and their payload checked) by an XDP program on --interface. Needs root. \
            See docs/benchmarks.md.
            """
    )

    @Option(help: "The engine's control socket.") var controlSocket: String
    @Option(help: "The interface toward the engine (in this namespace).") var interface: String
    @Option(help: "Sessions.") var sessions = 1000
    @Option(help: "Packets per second in all (0: as fast as possible).") var rate: Double = 100_000
    @Option(help: "Seconds of sending (it sends rate × seconds packets, or stops at the deadline).") var seconds: Double = 5
    @Option(help: "SRTP profile.") var profile = "AES_CM_128_HMAC_SHA1_80"
    @Option(help: "The sessions' client address (on --interface).") var source = "198.18.0.2"
    @Option(help: "Client port of session 0; session i uses base + i.") var sourcePortBase: UInt16 = 20000
    @Option(help: "The engine's media address:port.") var engine = "198.18.0.1:40000"
    @Option(help: "The engine's MAC (default: from this namespace's neighbour table).") var engineMac: String?
    @Option(help: "Where the engine forwards decrypted RTP (an address behind --interface).") var backendAddress = "198.18.0.3"
    @Option(help: "Backend ports counted as returns, low-high.") var backendPorts = "1-65535"
    @Option(help: "The engine's backend index for the sessions.") var backendIndex = 0
    @Option(help: "Transmit path: xdp (AF_XDP TX ring, copy mode on veth) or packet (AF_PACKET sendmmsg).")
    var tx = "xdp"
    @Option(help: "Frames per batch (TX ring post or sendmmsg).") var batch = 64
    @Option(help: "The return counter's BPF object (default: beside the executable, .build/bpf/, /usr/lib/voxedge/).")
    var object: String?
    @Option(help: "Milliseconds to wait for returns in flight after the last packet.") var drainMs = 300
    @Flag(help: "Print a JSON summary as the last line.") var json = false
    @Flag(help: "No per-second lines.") var quiet = false

    public init() {}

    public func run() throws {
        vox_unblock_all_signals()  // a parent that blocks signals must not take SIGTERM/SIGCHLD from us
        guard getuid() == 0 else { throw ValidationError("loadgen opens a packet socket and loads XDP: run it as root") }
        guard let srtpProfile = SRTPProfile(name: profile) else { throw ValidationError("unknown profile \(profile)") }
        guard sessions > 0, Int(sourcePortBase) + sessions <= 65536 else { throw ValidationError("--sessions out of range") }
        guard (1...1024).contains(batch) else { throw ValidationError("--batch must be 1...1024") }
        guard tx == "xdp" || tx == "packet" else { throw ValidationError("--tx: xdp or packet") }
        guard let (engineIP, enginePort) = EngineController.parseEndpoint(engine), engineIP.isIPv4 else {
            throw ValidationError("--engine: '\(engine)' is not ipv4:port")
        }
        guard let sourceIP = IPAddress(source), sourceIP.isIPv4 else { throw ValidationError("--source: not IPv4") }
        guard let backendIP = IPAddress(backendAddress), backendIP.isIPv4 else { throw ValidationError("--backend-address: not IPv4") }
        let portBounds = backendPorts.split(separator: "-").compactMap { UInt16($0) }
        guard portBounds.count == 2, portBounds[0] <= portBounds[1] else { throw ValidationError("--backend-ports: low-high") }
        let ifindex = Int32(bitPattern: if_nametoindex(interface))
        guard ifindex != 0 else { throw ValidationError("no interface \(interface) in this namespace") }
        guard let ownMAC = LoadgenCommand.interfaceMAC(interface) else { throw ValidationError("no MAC for \(interface)") }
        let engineMAC: MACAddress
        if let engineMac {
            guard let mac = MACAddress(engineMac) else { throw ValidationError("--engine-mac: '\(engineMac)'") }
            engineMAC = mac
        } else {
            guard let mac = LoadgenCommand.neighbourMAC("\(engineIP)", interface: interface) else {
                throw ValidationError("no neighbour entry for \(engineIP) on \(interface): give --engine-mac")
            }
            engineMAC = mac
        }

        // Returns are counted from before the first session exists.
        let counter: Returns
        do {
            counter = Returns(
                try ReturnCounter(
                    objectPath: object ?? XDPProgram.defaultObjectPath(named: "voxedge_loadgen.bpf.o"),
                    interface: interface, backend: backendIP, ports: portBounds[0]...portBounds[1],
                    magic: PacketGenerator.magic, payloadLength: PacketGenerator.payloadLength))
        } catch { throw ValidationError("return counter: \(error)") }

        let control = try ControlConnection(path: controlSocket)
        var created: [UInt64] = []
        func dropAll() {
            for id in created { _ = try? control.call(["cmd": "session.drop", "session": NSNumber(value: id)]) }
            created.removeAll()
        }
        defer { dropAll() }
        // SIGINT/SIGTERM: stop sending, still drop the sessions and report.
        signal(SIGINT) { _ in LoadgenCommand.interrupted.store(true, ordering: .relaxed) }
        signal(SIGTERM) { _ in LoadgenCommand.interrupted.store(true, ordering: .relaxed) }

        // Sessions: random keys, created over the control socket, and our own SRTP context each.
        var rng = SystemRandomNumberGenerator()
        var table: [GeneratedSession] = []
        let contexts = UnsafeMutablePointer<SRTPContext>.allocate(capacity: sessions)
        let setupStart = Date()
        for i in 0..<sessions {
            let keyLength = srtpProfile.masterKeyLength
            let material = (0..<(keyLength + srtpProfile.masterSaltLength)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let port = sourcePortBase + UInt16(i)
            let reply = try control.call([
                "cmd": "session.create", "client": "\(sourceIP):\(port)", "profile": srtpProfile.description,
                "client_key": Data(material).base64EncodedString(), "backend": backendIndex,
            ])
            guard reply["ok"] as? Bool == true, let session = reply["session"] as? [String: Any],
                let id = (session["id"] as? NSNumber)?.uint64Value
            else {
                contexts.deinitialize(count: i)
                contexts.deallocate()
                throw ValidationError("session.create \(i) failed: \(reply)")
            }
            created.append(id)
            (contexts + i).initialize(
                to: try SRTPContext(
                    profile: srtpProfile, masterKey: Array(material[..<keyLength]), masterSalt: Array(material[keyLength...]),
                    maxStreams: 1))
            table.append(
                GeneratedSession(
                    addresses: FrameAddresses(
                        destinationMAC: engineMAC, sourceMAC: ownMAC, source: sourceIP, sourcePort: UDPPort(port),
                        destination: engineIP, destinationPort: enginePort),
                    ssrc: UInt32.random(in: 1...UInt32.max, using: &rng),
                    sequence: UInt16.random(in: 0...UInt16.max, using: &rng),
                    timestamp: UInt32.random(in: 0...UInt32.max, using: &rng)))
        }
        let setupSeconds = Date().timeIntervalSince(setupStart)
        var xsk: XSKSet? = nil
        var fd: Int32 = -1
        if tx == "xdp" {
            var c = XSKConfiguration()
            c.bindMode = .copy  // veth has no zero-copy; asking for it falls back silently (FINDINGS)
            c.hugePages = false
            do {
                xsk = try XSKSet(interface: interface, queues: 1, configuration: c)
            } catch {
                contexts.deinitialize(count: sessions)
                contexts.deallocate()
                throw ValidationError("AF_XDP socket on \(interface): \(error) (--tx packet works without AF_XDP)")
            }
        } else {
            fd = vox_packet_tx_socket(ifindex)
            guard fd >= 0 else {
                contexts.deinitialize(count: sessions)
                contexts.deallocate()
                throw ValidationError("packet socket on \(interface): \(String(cString: strerror(-fd)))")
            }
        }
        var generator = PacketGenerator(fd: fd, xsk: xsk, batch: batch, sessions: table, contexts: contexts)

        if !quiet {
            let pace = rate > 0 ? "\(Int(rate)) pps" : "as fast as possible"
            let path = tx == "xdp" ? "AF_XDP" : "packet socket"
            print(
                "\(sessions) sessions created in \(String(format: "%.2f", setupSeconds)) s (\(srtpProfile)); sending \(pace)"
                    + " for \(seconds) s on \(interface) by \(path) (return counter: \(counter.mode) mode)")
        }
        // `voxedge bench e2e` samples the engine's CPU time at "sending" and "drained", so the
        // figure covers the packets and not the sessions' creation.
        print("sending")
        fflush(nil)
        let base = try counter.read()
        let total = rate > 0 ? Int(rate * seconds) : 0
        let start = MonotonicClock.now()
        var last = (sent: 0, returned: UInt64(0))
        var second = 0
        let quiet = self.quiet
        // Allocations of the send loop, less those of the once-a-second ticks: the loop's own
        // must be 0 (the per-packet path works in preallocated memory only).
        var tickAllocations: UInt64 = 0
        let allocationsBefore = vox_thread_alloc_count()
        generator.run(
            // A paced run ends when it has sent rate × seconds (2 s of grace if it falls behind).
            rate: rate, total: total, deadline: start + UInt64((seconds + (total > 0 ? 2 : 0)) * 1e9),
            stop: { LoadgenCommand.interrupted.load(ordering: .relaxed) },
            tick: { g in
                let tickStart = vox_thread_alloc_count()
                defer { tickAllocations += vox_thread_alloc_count() - tickStart }
                second += 1
                guard !quiet, let now = try? counter.read() else { return }
                let returned = now.returned - base.returned
                print(
                    "t=\(second)s sent=\(g.sent) (\(g.sent - last.sent) pps) returned=\(returned)"
                        + " (\(returned - last.returned) pps) verified=\(now.verified - base.verified) refused=\(g.refused)")
                fflush(nil)
                last = (g.sent, returned)
            })
        let elapsed = Double(MonotonicClock.now() - start) / 1e9
        let sendLoopAllocations = vox_thread_alloc_count() - allocationsBefore - tickAllocations
        print("sent")
        fflush(nil)
        usleep(UInt32(drainMs) * 1000)
        let end = try counter.read()
        let returned = end.returned - base.returned
        let verified = end.verified - base.verified
        print("drained")
        fflush(nil)
        dropAll()
        let sent = generator.sent
        // What the kernel refused (the engine's veth ring full: the engine not keeping up) was
        // offered and never forwarded: loss, as on a NIC that drops.
        let offered = sent + generator.refused
        let loss = offered > 0 ? max(0, Double(offered) - Double(returned)) / Double(offered) : 1
        let summary: [String: Any] = [
            "sessions": sessions, "profile": srtpProfile.description, "rate": rate, "seconds": elapsed,
            "sent": sent, "refused": generator.refused, "protect_failures": generator.protectFailures,
            "returned": returned, "verified": verified, "return_bytes": end.bytes - base.bytes,
            "offered": offered, "offered_pps": Double(offered) / elapsed, "sent_pps": Double(sent) / elapsed,
            "returned_pps": Double(returned) / elapsed, "loss": loss, "setup_seconds": setupSeconds,
            "send_loop_allocations": sendLoopAllocations, "counter_mode": "\(counter.mode)",
            "tx": tx == "xdp" ? "af_xdp" : "packet-socket",
        ]
        if !quiet {
            print(
                "summary: sent=\(sent) returned=\(returned) verified=\(verified) refused=\(generator.refused)"
                    + " loss=\(String(format: "%.4f", loss * 100))% sent_pps=\(Int(Double(sent) / elapsed))"
                    + " returned_pps=\(Int(Double(returned) / elapsed))")
        }
        if json {
            let data = try JSONSerialization.data(withJSONObject: summary, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        }
        fflush(nil)
    }

    /// The interface's MAC (/sys is this namespace's under `ip netns exec`).
    static func interfaceMAC(_ interface: String) -> MACAddress? {
        (try? String(contentsOfFile: "/sys/class/net/\(interface)/address", encoding: .utf8))
            .flatMap { MACAddress($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    /// The neighbour entry for `ip` on `interface`, from /proc/net/arp (this namespace's).
    static func neighbourMAC(_ ip: String, interface: String) -> MACAddress? {
        let text = (try? String(contentsOfFile: "/proc/net/arp", encoding: .utf8)) ?? ""
        for line in text.split(separator: "\n").dropFirst() {
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            if f.count >= 6, f[0] == ip, f[5] == interface, let mac = MACAddress(String(f[3])), mac.rawValue != 0 { return mac }
        }
        return nil
    }
}

/// The return counter, shared by the per-second tick and the summary.
final class Returns {
    let counter: ReturnCounter
    init(_ counter: consuming ReturnCounter) { self.counter = counter }
    var mode: XDPMode { counter.mode }
    func read() throws -> ReturnCounter.Counts { try counter.read() }
}
