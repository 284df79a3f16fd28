import CVoxBPF
import Glibc
import Testing
import VoxWire
import VoxXDP

/// The XDP program's verdicts, proven by running fixture frames through the real program
/// in the kernel with `BPF_PROG_TEST_RUN` (Katran's BpfTester does the same). Each test
/// loads its own copy of the program, so its maps and counters are its own and tests can
/// run concurrently. Every check also asserts which counter moved: exactly one per packet.
///
/// "Steered" means `bpf_redirect_map(vox_xsks, rx_queue, XDP_PASS)` was called. With an
/// AF_XDP socket in the queue's slot it returns XDP_REDIRECT (counter `redirect`); with the
/// slot empty it returns XDP_PASS (counter `pass_no_socket`) so media reaches the kernel
/// UDP socket. Tests put a real AF_XDP socket in slot 0 (the queue test runs use) to see
/// the redirect itself, and leave it empty to see the fallback.
@Suite struct XDPProgramTests {
    static let configuration = XDPConfiguration(
        mediaPorts: [Fixture.mediaPort],
        backendPorts: UDPPort(41000)...UDPPort(41999),
        stunRatePerSecond: 1,
        stunBurst: 4
    )

    /// A fresh program with `configuration` written to its config map.
    static func load(_ configuration: XDPConfiguration? = Self.configuration) throws -> XDPProgram {
        let program = try XDPProgram(objectPath: Paths.voxedgeObject())
        if let configuration { try program.configure(configuration) }
        return program
    }

    /// Runs `frame` `count` times; expects the last verdict to be `action` and `counter`,
    /// and only it, to have grown by `count`.
    static func expect(
        _ program: borrowing XDPProgram,
        _ frame: [UInt8],
        _ action: XDPAction,
        _ counter: XDPCounter,
        repeat count: Int32 = 1,
        _ comment: Comment? = nil,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let before = try program.counters()
        let verdict = try program.testRun(frame, repeat: count)
        let delta = try program.counters().since(before)
        #expect(verdict == action, comment, sourceLocation: sourceLocation)
        #expect(delta[counter] == UInt64(count), "\(counter): \(delta)", sourceLocation: sourceLocation)
        #expect(delta.total == UInt64(count), "one counter per packet: \(delta)", sourceLocation: sourceLocation)
    }

    /// An unbound AF_XDP socket: enough for the XSKMAP and for a test run to return XDP_REDIRECT.
    static func xdpSocket() throws -> Int32 {
        let fd = socket(AF_XDP, Int32(SOCK_RAW.rawValue), 0)
        guard fd >= 0 else { throw SetupFailure(description: "socket(AF_XDP): \(String(cString: strerror(errno)))") }
        return fd
    }

    @Test func unconfiguredProgramPassesEverything() throws {
        try requirePrivileges("BPF program tests")
        let program = try Self.load(nil)
        let flows = try program.admittedFlows()
        try flows.admit(Fixture.flow(), session: 1, worker: 0)
        try Self.expect(program, Fixture.udp(payload: Fixture.rtp), .pass, .passOtherPort)
        try Self.expect(program, Fixture.udp(payload: Fixture.stun), .pass, .passOtherPort)
    }

    @Test(arguments: [
        ("IPv4", Fixture.client4, Fixture.server4, UInt16?.none),
        ("IPv6", Fixture.client6, Fixture.server6, UInt16?.none),
        ("IPv4 in VLAN 42", Fixture.client4, Fixture.server4, UInt16?.some(42)),
        ("IPv6 in VLAN 4094", Fixture.client6, Fixture.server6, UInt16?.some(4094)),
    ])
    func admittedMediaIsRedirected(family: String, client: IPAddress, server: IPAddress, vlan: UInt16?) throws {
        try requirePrivileges("BPF program tests")
        let program = try Self.load()
        let flows = try program.admittedFlows()
        try flows.admit(Fixture.flow(from: client, to: server), session: 7, worker: 0)
        for (name, payload) in [("STUN", Fixture.stun), ("DTLS", Fixture.dtls), ("RTP", Fixture.rtp)] {
            let frame = Fixture.udp(from: client, to: server, payload: payload, vlan: vlan)
            try Self.expect(program, frame, .pass, .passNoSocket, "\(family) \(name), no socket on the queue")
        }
        let socket = try Self.xdpSocket()
        defer { close(socket) }
        let sockets = try program.socketMap()
        try sockets.insert(socket: socket, queue: 0)
        for (name, payload) in [("STUN", Fixture.stun), ("DTLS", Fixture.dtls), ("RTP", Fixture.rtp)] {
            let frame = Fixture.udp(from: client, to: server, payload: payload, vlan: vlan)
            try Self.expect(program, frame, .redirect, .redirect, "\(family) \(name), socket on queue 0")
        }
        // IPv6 extension headers before UDP are walked.
        if !client.isIPv4 {
            for header: UInt8 in [0, 43, 60] {
                let frame = Fixture.withIPv6Extension(
                    Fixture.udp(from: client, to: server, payload: Fixture.rtp, vlan: vlan),
                    header: header
                )
                try Self.expect(program, frame, .redirect, .redirect, "\(family) RTP behind extension header \(header)")
            }
        }
        #expect(try sockets.remove(queue: 0))
        try Self.expect(
            program,
            Fixture.udp(from: client, to: server, payload: Fixture.rtp, vlan: vlan),
            .pass,
            .passNoSocket
        )
    }

    @Test func dtlsAndRTPNeedAnAdmittedFiveTuple() throws {
        try requirePrivileges("BPF program tests")
        let program = try Self.load()
        let flows = try program.admittedFlows()
        let admitted = Fixture.flow()
        try flows.admit(admitted, session: 3, worker: 1)
        #expect(try flows.owner(of: admitted)?.session == 3)
        let payloads: [[UInt8]] = [
            Fixture.dtls, Fixture.rtp, [0xBF] + Fixture.rtp.dropFirst(), [20, 0xFE, 0xFD], [63, 1],
        ]
        for payload in payloads {
            try Self.expect(
                program,
                Fixture.udp(payload: payload),
                .pass,
                .passNoSocket,
                "admitted, first byte \(payload[0])"
            )
            // Every other member of the 5-tuple matters: another source port, source
            // address, or local address is another flow.
            try Self.expect(program, Fixture.udp(sourcePort: UDPPort(50001), payload: payload), .drop, .dropUnadmitted)
            try Self.expect(
                program,
                Fixture.udp(from: IPAddress("198.18.1.3")!, payload: payload),
                .drop,
                .dropUnadmitted
            )
            try Self.expect(
                program,
                Fixture.udp(to: IPAddress("198.18.0.9")!, payload: payload),
                .drop,
                .dropUnadmitted
            )
            try Self.expect(
                program,
                Fixture.udp(from: Fixture.client6, to: Fixture.server6, payload: payload),
                .drop,
                .dropUnadmitted
            )
        }
        #expect(try flows.forget(admitted))
        #expect(try !flows.forget(admitted))
        try Self.expect(program, Fixture.udp(payload: Fixture.rtp), .drop, .dropUnadmitted, "forgotten")
        try Self.expect(program, Fixture.udp(payload: Fixture.dtls), .drop, .dropUnadmitted, "forgotten")
    }

    /// RTP and RTCP are checked against the flow filter (one byte per keyed-hash slot, the
    /// count of admitted 5-tuples there); DTLS against the exact map. A 5-tuple sharing an
    /// admitted one's slot gets its RTP through (the worker's exact lookup drops it) and its
    /// DTLS dropped. The counts follow the map, not the calls: admitting twice and forgetting
    /// once leaves nothing.
    @Test func rtpGoesByTheFlowFilterAndDTLSByTheExactMap() throws {
        try requirePrivileges("BPF program tests")
        var limits = XDPLimits()
        limits.maxFlows = 64  // the smallest filter: 4,096 slots
        let program = try XDPProgram(objectPath: Paths.voxedgeObject(), limits: limits)
        try program.configure(Self.configuration)
        #expect(program.filterMask == 4095)
        #expect(try program.configMap().read().filter_mask == 4095)
        let flows = try program.admittedFlows()
        let admitted = Fixture.flow()
        try Self.expect(program, Fixture.udp(payload: Fixture.rtp), .drop, .dropUnadmitted, "not admitted yet")
        try flows.admit(admitted, session: 1, worker: 0)
        try flows.admit(admitted, session: 2, worker: 0)  // a rebind: the owner changes, not the count
        #expect(try flows.owner(of: admitted)?.session == 2)
        #expect(flows.filter.state(of: admitted.bpfKey) == (1, true))
        try Self.expect(program, Fixture.udp(payload: Fixture.rtp), .pass, .passNoSocket)
        // Another source port whose slot is the admitted one's, found with the program's key.
        let slot = flows.filter.slot(admitted.bpfKey)
        let twinPort = (1...UInt16.max).first { (port: UInt16) -> Bool in
            port != Fixture.clientPort.rawValue && flows.filter.slot(Fixture.flow(sourcePort: UDPPort(port)).bpfKey) == slot
        }
        let twin = UDPPort(try #require(twinPort))
        try Self.expect(program, Fixture.udp(sourcePort: twin, payload: Fixture.rtp), .pass, .passNoSocket, "shares the slot")
        try Self.expect(program, Fixture.udp(sourcePort: twin, payload: Fixture.dtls), .drop, .dropUnadmitted, "DTLS: exact")
        #expect(try flows.forget(admitted))
        #expect(flows.filter.state(of: admitted.bpfKey) == (0, false))
        try Self.expect(program, Fixture.udp(payload: Fixture.rtp), .drop, .dropUnadmitted, "forgotten")
        try Self.expect(program, Fixture.udp(sourcePort: twin, payload: Fixture.rtp), .drop, .dropUnadmitted, "forgotten")
    }

    /// With the filter off (0 slots), RTP is looked up in the exact map like DTLS.
    @Test func withTheFilterOffRTPIsLookedUpExactly() throws {
        try requirePrivileges("BPF program tests")
        var limits = XDPLimits()
        limits.flowFilterSlots = 0
        let program = try XDPProgram(objectPath: Paths.voxedgeObject(), limits: limits)
        try program.configure(Self.configuration)
        #expect(program.filterMask == 0)
        let flows = try program.admittedFlows()
        try flows.admit(Fixture.flow(), session: 1, worker: 0)
        try Self.expect(program, Fixture.udp(payload: Fixture.rtp), .pass, .passNoSocket)
        try Self.expect(program, Fixture.udp(sourcePort: UDPPort(50001), payload: Fixture.rtp), .drop, .dropUnadmitted)
    }

    @Test func newFlowSTUNIsRateLimitedPerSource() throws {
        try requirePrivileges("BPF program tests")
        let program = try Self.load()  // 1 per second, burst 4
        let first = Fixture.udp(payload: Fixture.stun)
        // Ten in one run (microseconds apart): the burst of four passes, six are dropped.
        let before = try program.counters()
        #expect(try program.testRun(first, repeat: 10) == .drop)
        let delta = try program.counters().since(before)
        #expect(delta[.passNoSocket] == 4 && delta[.dropSTUNRate] == 6 && delta.total == 10, "\(delta)")
        // Another source has its own bucket, whatever port it uses.
        try Self.expect(
            program,
            Fixture.udp(from: IPAddress("198.18.1.4")!, payload: Fixture.stun),
            .pass,
            .passNoSocket
        )
        try Self.expect(
            program,
            Fixture.udp(from: Fixture.client6, to: Fixture.server6, payload: Fixture.stun),
            .pass,
            .passNoSocket
        )
        // An admitted flow's STUN (consent freshness) is never limited.
        try program.admittedFlows().admit(Fixture.flow(), session: 1, worker: 0)
        try Self.expect(program, first, .pass, .passNoSocket, repeat: 20, "admitted STUN")
        // The limiter never admits DTLS or RTP.
        try Self.expect(
            program,
            Fixture.udp(from: IPAddress("198.18.1.5")!, payload: Fixture.rtp),
            .drop,
            .dropUnadmitted
        )
    }

    @Test func stunLimiterOffAtRateZero() throws {
        try requirePrivileges("BPF program tests")
        var configuration = Self.configuration
        configuration.stunRatePerSecond = 0
        let program = try Self.load(configuration)
        try Self.expect(program, Fixture.udp(payload: Fixture.stun), .pass, .passNoSocket, repeat: 50)
    }

    @Test func whatIsNotOursPasses() throws {
        try requirePrivileges("BPF program tests")
        let program = try Self.load()
        let udp4 = Fixture.udp(payload: Fixture.rtp)
        let udp6 = Fixture.udp(from: Fixture.client6, to: Fixture.server6, payload: Fixture.rtp)
        try Self.expect(program, Fixture.arp, .pass, .passNotIP, "ARP")
        try Self.expect(program, Fixture.withProtocol(udp4, 1), .pass, .passNotUDP, "ICMP")
        try Self.expect(program, Fixture.withProtocol(udp4, 6), .pass, .passNotUDP, "TCP to the media port number")
        try Self.expect(program, Fixture.withProtocol(udp6, 58), .pass, .passNotUDP, "ICMPv6")
        try Self.expect(program, Fixture.withProtocol(udp6, 6), .pass, .passNotUDP, "TCP over IPv6")
        try Self.expect(
            program,
            Fixture.withProtocol(Fixture.udp(payload: Fixture.rtp, vlan: 5), 6),
            .pass,
            .passNotUDP,
            "TCP in a VLAN"
        )
        try Self.expect(program, Fixture.udp(port: UDPPort(22), payload: Fixture.rtp), .pass, .passOtherPort)
        for port: UInt16 in [53, 443, 8443, 39999, 40001, 40999, 42000] {
            try Self.expect(
                program,
                Fixture.udp(port: UDPPort(port), payload: Fixture.rtp),
                .pass,
                .passOtherPort,
                "UDP to \(port)"
            )
            try Self.expect(
                program,
                Fixture.udp(from: Fixture.client6, to: Fixture.server6, port: UDPPort(port), payload: Fixture.dtls),
                .pass,
                .passOtherPort
            )
        }
        try Self.expect(program, Fixture.fragmented(udp4), .pass, .passFragment, "IPv4 first fragment")
        try Self.expect(
            program,
            Fixture.withIPv6Extension(udp6, header: 44),
            .pass,
            .passFragment,
            "IPv6 fragment header"
        )
        // Double-tagged (QinQ) frames are not parsed past the first tag.
        var qinq = Fixture.udp(payload: Fixture.rtp, vlan: 7)
        qinq.insert(contentsOf: [0x81, 0x00, 0x00, 0x08], at: 16)
        try Self.expect(program, qinq, .pass, .passNotIP, "two VLAN tags")
    }

    @Test func invalidPayloadOnTheMediaPortIsDropped() throws {
        try requirePrivileges("BPF program tests")
        let program = try Self.load()
        try program.admittedFlows().admit(Fixture.flow(), session: 1, worker: 0)
        for first: UInt8 in [4, 19, 64, 79, 127, 192, 255] {
            try Self.expect(
                program,
                Fixture.udp(payload: [first, 0, 0, 0]),
                .drop,
                .dropInvalid,
                "first byte \(first)"
            )
        }
        try Self.expect(program, Fixture.udp(payload: []), .drop, .dropInvalid, "empty datagram")
    }

    @Test func backendLegNeedsAdmissionUnlessConfiguredOtherwise() throws {
        try requirePrivileges("BPF program tests")
        let program = try Self.load()
        let backend = IPAddress("198.18.5.10")!
        let leg = Fixture.flow(from: backend, sourcePort: UDPPort(30000), port: UDPPort(41000))
        try program.admittedFlows().admit(leg, session: 9, worker: 1)
        // Any first byte: the backend protocol is not RFC 7983-classified.
        for payload: [UInt8] in [Fixture.rtp, [0x42, 1, 2], []] {
            try Self.expect(
                program,
                Fixture.udp(from: backend, sourcePort: UDPPort(30000), port: UDPPort(41000), payload: payload),
                .pass,
                .passNoSocket
            )
        }
        try Self.expect(
            program,
            Fixture.udp(from: backend, sourcePort: UDPPort(30000), port: UDPPort(41999), payload: Fixture.rtp),
            .drop,
            .dropUnadmitted
        )
        try Self.expect(
            program,
            Fixture.udp(from: backend, sourcePort: UDPPort(30000), port: UDPPort(42000), payload: Fixture.rtp),
            .pass,
            .passOtherPort
        )

        var open = Self.configuration
        open.backendRequiresAdmission = false
        try program.configure(open)
        try Self.expect(
            program,
            Fixture.udp(from: backend, sourcePort: UDPPort(30000), port: UDPPort(41999), payload: Fixture.rtp),
            .pass,
            .passNoSocket
        )
    }

    @Test func blocklistedSourcesAreDroppedOnOurPortsOnly() throws {
        try requirePrivileges("BPF program tests")
        let program = try Self.load()
        let flows = try program.admittedFlows()
        let blocklist = try program.blocklist()
        let bad4 = IPAddress("198.18.7.9")!
        let bad6 = IPAddress("2001:db8:bad:1::5")!
        try flows.admit(Fixture.flow(from: bad4), session: 1, worker: 0)
        try flows.admit(Fixture.flow(from: bad6, to: Fixture.server6), session: 2, worker: 0)
        let prefix4 = try IPPrefix("198.18.7.0/24")
        let prefix6 = try IPPrefix("2001:db8:bad::/48")
        try blocklist.add(prefix4)
        try blocklist.add(prefix6, reason: 2)
        #expect(try blocklist.contains(prefix4) && blocklist.contains(prefix6))
        #expect(try !blocklist.contains(IPPrefix("198.18.7.0/25")))
        #expect(try blocklist.covers(bad4) && blocklist.covers(bad6) && !blocklist.covers(Fixture.client4))

        for payload in [Fixture.stun, Fixture.dtls, Fixture.rtp] {
            try Self.expect(
                program,
                Fixture.udp(from: bad4, payload: payload),
                .drop,
                .dropBlocklist,
                "admitted but blocked"
            )
            try Self.expect(
                program,
                Fixture.udp(from: bad6, to: Fixture.server6, payload: payload, vlan: 3),
                .drop,
                .dropBlocklist
            )
        }
        try Self.expect(
            program,
            Fixture.udp(from: bad4, sourcePort: UDPPort(1), port: UDPPort(41500), payload: Fixture.rtp),
            .drop,
            .dropBlocklist,
            "backend range"
        )
        try Self.expect(
            program,
            Fixture.udp(from: IPAddress("198.18.8.9")!, payload: Fixture.stun),
            .pass,
            .passNoSocket,
            "next /24"
        )
        // Not our ports: a wrong entry can never cut SSH, signaling or ICMP.
        try Self.expect(
            program,
            Fixture.withProtocol(Fixture.udp(from: bad4, port: UDPPort(22), payload: []), 6),
            .pass,
            .passNotUDP
        )
        try Self.expect(
            program,
            Fixture.udp(from: bad4, port: UDPPort(443), payload: Fixture.rtp),
            .pass,
            .passOtherPort
        )

        #expect(try blocklist.remove(prefix4))
        #expect(try !blocklist.remove(prefix4))
        try Self.expect(program, Fixture.udp(from: bad4, payload: Fixture.rtp), .pass, .passNoSocket, "unblocked")
        try Self.expect(
            program,
            Fixture.udp(from: bad6, to: Fixture.server6, payload: Fixture.rtp),
            .drop,
            .dropBlocklist
        )
    }

    /// Every truncation of every kind of header: the verifier has proven no read goes past
    /// the end; this proves what the verdicts are. A frame cut inside its headers passes
    /// (the kernel's stack discards it); cut right after the UDP header it is an empty
    /// datagram on the media port (dropped); anything longer behaves like the whole frame.
    @Test func truncatedFramesAtEveryOffset() throws {
        try requirePrivileges("BPF program tests")
        let program = try Self.load()
        let flows = try program.admittedFlows()
        try flows.admit(Fixture.flow(), session: 1, worker: 0)
        try flows.admit(Fixture.flow(from: Fixture.client6, to: Fixture.server6), session: 2, worker: 0)
        let frames: [(String, [UInt8])] = [
            ("IPv4 RTP", Fixture.udp(payload: Fixture.rtp)),
            ("IPv4 STUN in a VLAN", Fixture.udp(payload: Fixture.stun, vlan: 9)),
            ("IPv6 DTLS", Fixture.udp(from: Fixture.client6, to: Fixture.server6, payload: Fixture.dtls)),
            (
                "IPv6 RTP behind hop-by-hop in a VLAN",
                Fixture.withIPv6Extension(
                    Fixture.udp(from: Fixture.client6, to: Fixture.server6, payload: Fixture.rtp, vlan: 9)
                )
            ),
        ]
        for (name, frame) in frames {
            let headersEnd = Fixture.payloadOffset(frame)
            for length in 14..<frame.count {
                let cut = Array(frame[..<length])
                if length < headersEnd {
                    try Self.expect(program, cut, .pass, .passTruncated, "\(name) cut at \(length)")
                } else if length == headersEnd {
                    try Self.expect(program, cut, .drop, .dropInvalid, "\(name) cut at \(length): no payload")
                } else {
                    try Self.expect(program, cut, .pass, .passNoSocket, "\(name) cut at \(length)")
                }
            }
            // Below an Ethernet header the kernel refuses the test run itself (EINVAL);
            // no NIC hands XDP such a frame.
            for length in 0..<14 {
                #expect(throws: XDPError.self) { try program.testRun(Array(frame[..<length])) }
            }
        }
        // Headers that announce more than the frame holds.
        var longIHL = Fixture.udp(payload: Fixture.rtp)
        longIHL[14] = 0x4F  // 60-byte IPv4 header: UDP then starts inside the RTP payload
        try Self.expect(program, Array(longIHL[..<(14 + 60 + 4)]), .pass, .passTruncated, "IHL past the end")
        var shortIHL = Fixture.udp(payload: Fixture.rtp)
        shortIHL[14] = 0x44
        try Self.expect(program, shortIHL, .pass, .passTruncated, "IHL below 5")
        var hugeExtension = Fixture.withIPv6Extension(
            Fixture.udp(from: Fixture.client6, to: Fixture.server6, payload: Fixture.rtp)
        )
        hugeExtension[14 + 40 + 1] = 255  // 2 KB extension header in a short frame
        try Self.expect(program, hugeExtension, .pass, .passTruncated, "extension header past the end")
    }

    /// A mixed batch: the counters say exactly what was sent, nothing more.
    @Test func countersMatchWhatWasSent() throws {
        try requirePrivileges("BPF program tests")
        let program = try Self.load()
        try program.admittedFlows().admit(Fixture.flow(), session: 1, worker: 0)
        try program.blocklist().add(IPPrefix("198.18.9.0/24"))
        let batch: [([UInt8], Int32)] = [
            (Fixture.arp, 3),
            (Fixture.withProtocol(Fixture.udp(payload: []), 1), 2),
            (Fixture.udp(port: UDPPort(53), payload: Fixture.rtp), 5),
            (Array(Fixture.udp(payload: Fixture.rtp)[..<30]), 1),
            (Fixture.fragmented(Fixture.udp(payload: Fixture.rtp)), 1),
            (Fixture.udp(payload: Fixture.rtp), 7),
            (Fixture.udp(from: IPAddress("198.18.9.1")!, payload: Fixture.rtp), 4),
            (Fixture.udp(sourcePort: UDPPort(1), payload: Fixture.dtls), 6),
            (Fixture.udp(from: IPAddress("198.18.1.77")!, payload: Fixture.stun), 9),
            (Fixture.udp(payload: [99]), 2),
        ]
        for (frame, count) in batch { _ = try program.testRun(frame, repeat: count) }
        var expected = XDPCounters()
        expected[.passNotIP] = 3
        expected[.passNotUDP] = 2
        expected[.passOtherPort] = 5
        expected[.passTruncated] = 1
        expected[.passFragment] = 1
        expected[.passNoSocket] = 7 + 4  // admitted RTP, then the STUN burst
        expected[.dropBlocklist] = 4
        expected[.dropUnadmitted] = 6
        expected[.dropSTUNRate] = 5
        expected[.dropInvalid] = 2
        let counters = try program.counters()
        #expect(counters == expected, "\(counters)")
        #expect(counters.total == UInt64(batch.map(\.1).reduce(0, +)))
        #expect(counters[.redirect] == 0)
    }
}
