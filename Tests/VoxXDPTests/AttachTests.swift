import Glibc
import Testing
import VoxXDP

/// The loader on real interfaces: a veth pair between two namespaces this test creates,
/// the program held by a `voxedge xdp attach` child process run inside namespace A
/// (`ip netns exec`; this process never enters a namespace itself).
@Suite struct XDPAttachTests {
    /// Starts `voxedge xdp attach` on `interface` in namespace A and waits for its
    /// `attached` line; returns the child and that line.
    static func startEngine(_ pair: VethPair, interface: String? = nil, extra: [String] = []) throws -> (Child, String)
    {
        let child = try Child(
            pair.inA(
                [
                    try Paths.voxedge(), "xdp", "attach", "--interface", interface ?? pair.interfaceA,
                    "--object", try Paths.voxedgeObject(), "--media-port", "40000",
                ] + extra
            )
        )
        guard let line = child.readLine(), line.hasPrefix("attached") else {
            child.wait(timeout: 5)
            throw SetupFailure(description: "voxedge xdp attach did not attach: \(child.standardError())")
        }
        return (child, line)
    }

    /// `voxedge xdp show` in namespace A, polled until its output contains every one of
    /// `wanted` (veth hands frames to the receiver's NAPI, which may run a moment after the
    /// sender returned) or two seconds passed; returns the last output.
    static func show(_ pair: VethPair, until wanted: [String]) throws -> String {
        let show = pair.inA([try Paths.voxedge(), "xdp", "show", "--interface", pair.interfaceA])
        var output = ""
        for _ in 0..<100 {
            output = Command.run(show).output
            if wanted.allSatisfy(output.contains) { break }
            usleep(20_000)
        }
        return output
    }

    @Test func attachPingSteerAndDetach() throws {
        try requirePrivileges("XDP attach tests")
        let pair = try VethPair()
        let (engine, line) = try Self.startEngine(pair)
        #expect(line.contains("mode=native"), "veth runs XDP natively: \(line)")
        #expect(line.contains("pid=\(engine.pid)"), "the child itself holds the link: \(line)")
        #expect(pair.attachedProgram()?.name == "voxedge_xdp")

        // ARP and ICMP are not ours: they pass, so the host stays reachable.
        #expect(pair.pingAFromB(), "ping across the veth with the program attached")
        // Media from B: unadmitted RTP is dropped in XDP, new-flow STUN is steered (no
        // AF_XDP socket here, so it reaches the kernel), other ports pass.
        let send = [
            #"printf '\x80\x6f\x00\x01' > /dev/udp/198.18.0.1/40000"#,  // RTP
            #"printf '\x00\x01\x00\x00' > /dev/udp/198.18.0.1/40000"#,  // STUN
            "printf x > /dev/udp/198.18.0.1/5353",
        ].joined(separator: "; ")
        #expect(Command.run(pair.inB(["/bin/bash", "-c", send])).status == 0)
        let live = try Self.show(pair, until: ["drop_unadmitted=1", "pass_no_socket=1", "pass_other_port=1"])
        #expect(live.contains("drop_unadmitted=1") && live.contains("pass_no_socket=1"), "\(live)")

        engine.signal(SIGTERM)
        let counters = engine.readLine() ?? ""
        let detached = engine.readLine() ?? ""
        #expect(engine.wait() == 0)
        #expect(
            counters.hasPrefix("counters") && counters.contains("drop_unadmitted=1")
                && counters.contains("pass_no_socket=1"),
            "\(counters)"
        )
        #expect(counters.contains("pass_other_port=1") && counters.contains("pass_not_udp="), "\(counters)")
        #expect(detached.hasPrefix("detached"))
        #expect(pair.attachedProgram() == nil, "detach leaves nothing attached")
        #expect(pair.pingAFromB(), "ping after detach")
    }

    @Test func sigkilledEngineLeavesNoProgram() throws {
        try requirePrivileges("XDP attach tests")
        let pair = try VethPair()
        let (engine, _) = try Self.startEngine(pair)
        let attached = pair.attachedProgram()
        #expect(attached?.name == "voxedge_xdp")
        engine.signal(SIGKILL)
        engine.wait()
        #expect(engine.process.terminationReason == .uncaughtSignal)
        // The kernel detaches when the killed process's last fd to the link closes, which
        // happens before it is reaped; poll briefly anyway rather than trust timing.
        var remaining = pair.attachedProgram()
        for _ in 0..<50 where remaining != nil {
            usleep(20_000)
            remaining = pair.attachedProgram()
        }
        #expect(remaining == nil, "still attached after SIGKILL: \(String(describing: remaining))")
        #expect(pair.pingAFromB())
        // And the interface is free for the next engine.
        let (next, _) = try Self.startEngine(pair)
        next.signal(SIGTERM)
        #expect(next.wait() == 0)
    }

    @Test func foreignProgramIsRefusedAndLeftInPlace() throws {
        try requirePrivileges("XDP attach tests")
        let pair = try VethPair()
        // Someone else's program, attached the plain netlink way (as `ip` does).
        let attach = Command.run([
            "ip", "-n", pair.namespaceA, "link", "set", "dev", pair.interfaceA, "xdpdrv", "obj",
            try Paths.foreignObject(), "sec", "xdp",
        ])
        try #require(attach.status == 0, "ip link set xdpdrv: \(attach.error)")
        let foreign = try #require(pair.attachedProgram())
        #expect(foreign.name == "not_voxedge")

        let engine = try Child(
            pair.inA([
                try Paths.voxedge(), "xdp", "attach", "--interface", pair.interfaceA, "--object",
                try Paths.voxedgeObject(),
            ])
        )
        #expect(engine.readLine() == nil, "no 'attached' line")
        #expect(engine.wait() == 1)
        let error = engine.standardError()
        #expect(
            error.contains("foreignProgram") && error.contains("'not_voxedge'") && error.contains("id \(foreign.id)"),
            "\(error)"
        )

        let after = pair.attachedProgram()
        #expect(
            after?.name == "not_voxedge" && after?.id == foreign.id,
            "the foreign program is still there, unchanged"
        )
        #expect(pair.pingAFromB())
    }

    @Test func secondEngineIsRefused() throws {
        try requirePrivileges("XDP attach tests")
        let pair = try VethPair()
        let (first, _) = try Self.startEngine(pair)
        let id = pair.attachedProgram()?.id
        let second = try Child(
            pair.inA([
                try Paths.voxedge(), "xdp", "attach", "--interface", pair.interfaceA, "--object",
                try Paths.voxedgeObject(),
            ])
        )
        #expect(second.wait() == 1)
        let error = second.standardError()
        #expect(error.contains("'voxedge_xdp'") && error.contains("another VoxEdge engine"), "\(error)")
        #expect(pair.attachedProgram()?.id == id, "the first engine's program is untouched")
        first.signal(SIGTERM)
        #expect(first.wait() == 0)
        #expect(pair.attachedProgram() == nil)
    }

    /// Loopback has no native XDP: the loader falls back to generic mode and says so.
    @Test func genericFallbackIsLogged() throws {
        try requirePrivileges("XDP attach tests")
        let pair = try VethPair()
        let (engine, line) = try Self.startEngine(pair, interface: "lo")
        #expect(line.contains("mode=generic"), "\(line)")
        #expect(pair.attachedProgram(interface: "lo")?.name == "voxedge_xdp")
        #expect(Command.run(pair.inA(["ping", "-c", "1", "-W", "2", "127.0.0.1"])).status == 0)
        engine.signal(SIGTERM)
        #expect(engine.wait() == 0)
        let log = engine.standardError()
        #expect(log.contains("native mode failed on lo") && log.contains("using generic mode"), "\(log)")
        #expect(pair.attachedProgram(interface: "lo") == nil)
    }

    /// `voxedge xdp show` names what is attached and, for VoxEdge's program, reads its counters.
    @Test func showNamesTheAttachedProgram() throws {
        try requirePrivileges("XDP attach tests")
        let pair = try VethPair()
        let show = [try Paths.voxedge(), "xdp", "show", "--interface", pair.interfaceA]
        #expect(Command.run(pair.inA(show)).output == "\(pair.interfaceA): none\n")
        let (engine, _) = try Self.startEngine(pair)
        let send = #"printf '\x80' > /dev/udp/198.18.0.1/40000; printf '\x80' > /dev/udp/198.18.0.1/40000"#
        #expect(Command.run(pair.inB(["/bin/bash", "-c", send])).status == 0)
        let shown = try Self.show(pair, until: ["drop_unadmitted=2"])
        #expect(
            shown.contains("'voxedge_xdp'") && shown.contains("native mode") && shown.contains("(VoxEdge)"),
            "\(shown)"
        )
        // Another process reads the engine's counters through the program's map ids.
        #expect(shown.contains("\ncounters ") && shown.contains("drop_unadmitted=2"), "\(shown)")
        engine.signal(SIGINT)
        #expect(engine.wait() == 0)
    }
}
