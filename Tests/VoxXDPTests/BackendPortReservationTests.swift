import Foundation
import Glibc
import Testing

/// The backend-leg ports and the kernel's ephemeral range (issue 14, defect 7): the engine
/// reserves those of its ports that lie in `ip_local_port_range` in
/// `ip_local_reserved_ports` at start-up, says so, and never touches a reservation it did not
/// make. Both sysctls are per network namespace: the engine runs in namespace A of a veth pair.
@Suite(.serialized) struct BackendPortReservationTests {
    static let reservedPath = "/proc/sys/net/ipv4/ip_local_reserved_ports"

    static func reserved(_ pair: VethPair) -> String {
        Command.run(pair.inA(["/bin/cat", reservedPath])).output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Starts `voxedge run --io socket` in namespace A with `more`; returns its log up to
    /// "engine started" (nil if it never started), then stops it.
    static func start(_ pair: VethPair, _ more: [String]) throws -> String? {
        let socket = "/tmp/\(pair.namespaceA)-reserve.sock"
        unlink(socket)
        defer { unlink(socket) }
        let command = [
            "exec", try Paths.voxedge(), "run", "--io", "socket", "--media-address", "127.0.0.1",
            "--backend", "127.0.0.1:5004", "--control-socket", socket, "--metrics", "127.0.0.1:0",
            "--max-sessions", "16",
        ] + more + ["2>&1"]
        let engine = try Child(pair.inA(["/bin/sh", "-c", command.joined(separator: " ")]))
        defer {
            engine.signal(SIGTERM)
            engine.wait()
        }
        var log = ""
        while let line = engine.readLine(timeout: 20) {
            log += line + "\n"
            if line.contains("engine started") { return log }
        }
        Issue.record("the engine did not start: \(log)")
        return nil
    }

    @Test func portsInTheEphemeralRangeAreReservedAndOthersLeftAlone() throws {
        try requirePrivileges("port reservation tests")
        let pair = try VethPair()
        // Someone else's reservation, which the engine must keep.
        let preset = Command.run(pair.inA(["/bin/sh", "-c", "echo 50000 > \(Self.reservedPath)"]))
        try #require(preset.status == 0, "\(preset.error)")
        #expect(Self.reserved(pair) == "50000")

        // The default range (20000-20015 here) lies below the ephemeral range: nothing to do.
        let outside = try #require(try Self.start(pair, []))
        #expect(outside.contains("outside the kernel's ephemeral range") && outside.contains("ports=20000-20015"), "\(outside)")
        #expect(Self.reserved(pair) == "50000")

        // The old default, inside it: reserved, logged, and kept after exit, beside the preset.
        let inside = try #require(try Self.start(pair, ["--backend-port-base", "41000"]))
        #expect(inside.contains("reserved the backend-leg ports") && inside.contains("reserved=41000-41015"), "\(inside)")
        #expect(Self.reserved(pair) == "41000-41015,50000")

        // Again: found reserved, nothing written.
        let again = try #require(try Self.start(pair, ["--backend-port-base", "41000"]))
        #expect(again.contains("reserved already"), "\(again)")
        #expect(Self.reserved(pair) == "41000-41015,50000")

        // And the kernel skips them: an unbound connect in namespace A never gets one.
        let range = Command.run(pair.inA(["/bin/sh", "-c", "echo 41000 41020 > /proc/sys/net/ipv4/ip_local_port_range"]))
        try #require(range.status == 0, "\(range.error)")
        let ports = Command.run(
            pair.inA([
                "/usr/bin/python3", "-c",
                "import socket\nfor _ in range(4):\n s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.connect(('127.0.0.1',9)); print(s.getsockname()[1])",
            ]))
        #expect(ports.status == 0, "\(ports.error)")
        let given = ports.output.split(separator: "\n").compactMap { Int($0) }
        #expect(given.count == 4, "\(ports.output)")
        for port in given {
            #expect(port > 41015, "the kernel handed out reserved port \(port)")
        }
    }
}
