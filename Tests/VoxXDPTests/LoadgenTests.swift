import Foundation
import Glibc
import Testing

/// `voxedge loadgen` against `voxedge run --io socket` over a veth pair this test makes:
/// every SRTP packet the generator sends comes back, decrypted, to the "backend" address
/// that lives behind the generator's veth, where the return counter sees it. At 2k pps
/// nothing may legitimately be lost, so the check is exact — through either transmit path
/// (AF_XDP's TX ring, or a packet socket). Root; skipped with the reason without it, except
/// under CI=true.
@Suite(.serialized) struct LoadgenTests {
    @Test(arguments: ["xdp", "packet"])
    func everyPacketSentComesBackDecrypted(tx: String) throws {
        try requirePrivileges("loadgen tests")
        let voxedge = try Paths.voxedge()
        let object = try Paths.object("voxedge_loadgen.bpf.o")
        let pair = try VethPair()
        // A: the engine. B: the generator, and the backend 198.18.1.3 behind it (A routes
        // 198.18.1.0/24 to B's MAC, as afxdp-ref does for its backend).
        let macA = "02:00:00:00:00:01"
        let macB = "02:00:00:00:00:02"
        for step in [
            ["ip", "-n", pair.namespaceA, "link", "set", pair.interfaceA, "address", macA],
            ["ip", "-n", pair.namespaceB, "link", "set", pair.interfaceB, "address", macB],
            ["ip", "-n", pair.namespaceA, "route", "add", "198.18.1.0/24", "dev", pair.interfaceA],
            ["ip", "-n", pair.namespaceA, "neigh", "replace", "198.18.1.3", "lladdr", macB, "dev", pair.interfaceA, "nud", "permanent"],
            ["ip", "-n", pair.namespaceA, "neigh", "replace", pair.addressB, "lladdr", macB, "dev", pair.interfaceA, "nud", "permanent"],
        ] {
            let result = Command.run(step)
            try #require(result.status == 0, "\(step.joined(separator: " ")): \(result.error)")
        }
        let socket = "/tmp/\(pair.namespaceA).sock"
        unlink(socket)
        defer { unlink(socket) }
        let engine = try Child(
            pair.inA([
                voxedge, "run", "--io", "socket", "--media-address", pair.addressA, "--media-port", "40000",
                "--backend-address", pair.addressA, "--backend-port-base", "41000", "--backend", "198.18.1.3:5004",
                "--control-socket", socket, "--metrics", "127.0.0.1:0", "--max-sessions", "64", "--log-level", "warning",
            ]))
        defer {
            engine.signal(SIGTERM)
            engine.wait()
        }
        for _ in 0..<200 where access(socket, F_OK) != 0 { usleep(50_000) }
        try #require(access(socket, F_OK) == 0, "the engine's control socket never appeared: \(engine.standardError())")

        let run = Command.run(
            pair.inB([
                voxedge, "loadgen", "--control-socket", socket, "--interface", pair.interfaceB, "--object", object,
                "--sessions", "20", "--rate", "2000", "--seconds", "2", "--source", pair.addressB,
                "--engine", "\(pair.addressA):40000", "--engine-mac", macA, "--backend-address", "198.18.1.3",
                "--backend-ports", "5004-5004", "--tx", tx, "--json",
            ]))
        try #require(run.status == 0, "loadgen failed: \(run.output)\(run.error)")
        let line = run.output.split(separator: "\n").last { $0.hasPrefix("{") } ?? ""
        let report = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(run.output)")
        func count(_ key: String) -> Int { (report[key] as? NSNumber)?.intValue ?? -1 }
        // rate × seconds, every one taken by the kernel, forwarded by the engine, and
        // decrypted to the payload the generator wrote (RTP v2, magic, length).
        #expect(count("sent") == 4000, "\(run.output)")
        #expect(count("refused") == 0, "\(run.output)")
        #expect(count("protect_failures") == 0)
        #expect(count("returned") == count("sent"), "\(run.output)")
        #expect(count("verified") == count("sent"), "\(run.output)")
        #expect(count("return_bytes") == 172 * count("sent"))
        // The send loop works in preallocated memory: nothing allocated per packet. (A release
        // build counts 0; a debug build makes a few one-time allocations on first use.)
        let allocations = count("send_loop_allocations")
        #expect(allocations >= 0 && allocations < count("sent") / 100, "\(run.output)")
        // The per-second lines and the summary line a person reads.
        #expect(run.output.contains("summary: sent=4000 returned=4000 verified=4000"), "\(run.output)")

        // The engine saw the same: every packet to the backend, nothing dropped, and the
        // generator dropped its sessions at the end.
        let stats = Command.run([voxedge, "ctl", "stats", "--socket", socket, "--json"])
        let reply = try #require(try JSONSerialization.jsonObject(with: Data(stats.output.utf8)) as? [String: Any], "\(stats.output)")
        let workers = reply["workers"] as? [[String: Any]] ?? []
        let toBackend = workers.reduce(0) { total, w in
            total + (((w["verdicts"] as? [String: Any])?["toBackend"] as? NSNumber)?.intValue ?? 0)
        }
        #expect(toBackend == 4000, "\(stats.output)")
        #expect(workers.allSatisfy { ($0["drops"] as? [String: Any] ?? [:]).isEmpty }, "\(stats.output)")
        #expect((reply["sessions"] as? NSNumber)?.intValue == 0, "\(stats.output)")
        // The return counter's bpf_link went with the generator.
        #expect(pair.attachedProgram() == nil)
        let attachedB = Command.run(["ip", "-n", pair.namespaceB, "-j", "link", "show", "dev", pair.interfaceB])
        #expect(!attachedB.output.contains("\"xdp\""), "\(attachedB.output)")
    }

    /// `voxedge bench e2e` end to end at a low fixed rate: it builds its network, runs the
    /// engine and the generator, reports every packet forwarded, and leaves nothing behind.
    /// (Its figures are timings, so only the counts are checked.)
    @Test func benchRunsAndCleansUp() throws {
        try requirePrivileges("loadgen tests")
        let voxedge = try Paths.voxedge()
        _ = try Paths.object("voxedge_loadgen.bpf.o")  // bpf/build.sh has run
        let run = Command.run([
            voxedge, "bench", "e2e", "--no-search", "--repetitions", "1", "--seconds", "1", "--sessions", "20",
            "--rate", "2000", "--json",
        ])
        try #require(run.status == 0, "bench failed: \(run.output)\(run.error)")
        let line = run.output.split(separator: "\n").last { $0.hasPrefix("{") } ?? ""
        let report = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(run.output)")
        let trial = try #require((report["trials"] as? [[String: Any]])?.first, "\(run.output)")
        func count(_ key: String) -> Int { (trial[key] as? NSNumber)?.intValue ?? -1 }
        #expect(count("sent") == 2000, "\(run.output)")
        #expect(count("returned") == 2000, "\(run.output)")
        #expect(count("verified") == 2000, "\(run.output)")
        #expect(report["io"] as? String == "socket")
        // Its namespaces (it names them in its first line) are gone.
        let first = run.output.split(separator: "\n").first { $0.hasPrefix("namespaces ") } ?? ""
        let made = first.split(separator: " ").filter { $0.hasPrefix("vxd") }
        #expect(made.count == 2, "\(run.output)")
        let namespaces = Command.run(["ip", "netns", "list"]).output
        let leftovers = made.filter { name in namespaces.split(separator: "\n").contains { $0.split(separator: " ").first == name } }
        #expect(leftovers.isEmpty, "\(namespaces)")
    }
}
