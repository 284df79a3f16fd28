import Foundation
import Glibc
import Testing

/// Where the backend legs leave from on AF_XDP (issue 14, defect 6): `backend_address` used to
/// default to 127.0.0.1, so `--io xdp` sent every backend packet from loopback through the NIC
/// — lost on the far side while counted forwarded — and `--io auto` did not notice. Now the
/// default is the media address (on the AF_XDP interface), and an address the interface does
/// not hold is refused at start-up, naming the key and the interface. The real executable in
/// namespace A of a veth pair.
@Suite(.serialized) struct BackendAddressTests {
    /// `voxedge run --io IO` in namespace A, with `more` arguments; its output so far and, if it
    /// exited within 20 s, its status (else it is stopped after "engine started").
    static func run(_ pair: VethPair, io: String, _ more: [String]) throws -> (status: Int32?, log: String) {
        let socket = "/tmp/\(pair.namespaceA)-backend.sock"
        unlink(socket)
        defer { unlink(socket) }
        let command = [
            "exec", "/usr/bin/env", "VOXEDGE_BPF_OBJECT=\(try Paths.voxedgeObject())", try Paths.voxedge(), "run",
            "--io", io, "--media-address", pair.addressA, "--backend", "\(pair.addressB):5004",
            "--control-socket", socket, "--metrics", "127.0.0.1:0", "--max-sessions", "16",
        ] + more + ["2>&1"]
        let engine = try Child(pair.inA(["/bin/sh", "-c", command.joined(separator: " ")]))
        var log = ""
        while let line = engine.readLine(timeout: 20) {
            log += line + "\n"
            if line.contains("engine started") {
                engine.signal(SIGTERM)
                engine.wait()
                return (nil, log)
            }
        }
        return (engine.wait(), log)
    }

    @Test func byDefaultBackendLegsLeaveFromTheMediaAddressOnTheInterface() throws {
        try requirePrivileges("backend address tests")
        let pair = try VethPair()
        let (status, log) = try Self.run(pair, io: "xdp", [])
        #expect(status == nil, "it did not start: \(log)")
        let started = log.split(separator: "\n").first { $0.contains("engine started") } ?? ""
        #expect(started.contains("io=xdp") && started.contains("backend_address=\(pair.addressA)"), "\(log)")
    }

    @Test func anAddressTheInterfaceDoesNotHoldIsRefusedAtStartUp() throws {
        try requirePrivileges("backend address tests")
        let pair = try VethPair()
        // Not on the interface, and not this host's: on AF_XDP it would be a forged source.
        let (status, log) = try Self.run(pair, io: "xdp", ["--backend-address", "198.18.7.7"])
        #expect(status == 64, "\(log)")
        #expect(log.contains("backend_address 198.18.7.7") && log.contains(pair.interfaceA), "\(log)")
        #expect(!log.contains("engine started"), "\(log)")
    }

    /// `auto` says why AF_XDP was not used, and the socket port refuses the address too (the
    /// host holds no such address): it never runs sending from an address nothing answers.
    @Test func autoSaysWhyAndDoesNotRunWithSuchAnAddress() throws {
        try requirePrivileges("backend address tests")
        let pair = try VethPair()
        let (status, log) = try Self.run(pair, io: "auto", ["--backend-address", "198.18.7.7"])
        #expect(status == 64, "\(log)")
        #expect(log.contains("AF_XDP unavailable") && log.contains(pair.interfaceA), "\(log)")
        #expect(log.contains("backend_address 198.18.7.7 is not an address of this host"), "\(log)")
        #expect(!log.contains("engine started"), "\(log)")
    }
}
