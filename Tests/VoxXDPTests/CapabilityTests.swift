import Foundation
import Glibc
import Testing

/// The systemd unit (docs/examples/voxedge.service) runs the engine as its own user with
/// the capabilities it lists instead of root. Here the engine runs as `nobody` with exactly
/// that set (setpriv, ambient capabilities) on AF_XDP — and with each one left out in turn,
/// it must fail: the set is what AF_XDP needs, and no more than it.
@Suite(.serialized) struct CapabilityTests {
    /// `AmbientCapabilities=` of the unit, as setpriv's `+bpf,+net_raw,…` names.
    static func unitCapabilities() throws -> [String] {
        let unit = try String(contentsOfFile: Paths.repository + "/docs/examples/voxedge.service", encoding: .utf8)
        let line = unit.split(separator: "\n").first { $0.hasPrefix("AmbientCapabilities=") } ?? ""
        return line.dropFirst("AmbientCapabilities=".count).split(separator: " ").map {
            "+" + $0.dropFirst("CAP_".count).lowercased()
        }
    }

    /// Starts `voxedge run --io xdp` in namespace A as nobody with `capabilities`; returns
    /// whether it said it started, and everything it logged.
    static func start(
        _ pair: VethPair,
        _ directory: String,
        capabilities: [String]
    ) throws -> (started: Bool, log: String) {
        let caps = capabilities.joined(separator: ",")
        let command = [
            "exec", "/usr/bin/setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--inh-caps=\(caps)",
            "--ambient-caps=\(caps)", "--bounding-set=-all,\(caps)", "/usr/bin/env",
            "VOXEDGE_BPF_OBJECT=\(directory)/voxedge.bpf.o", "\(directory)/voxedge", "run", "--io", "xdp",
            "--media-address", pair.addressA, "--backend-address", pair.addressA, "--backend", "\(pair.addressB):5004",
            "--control-socket", "\(directory)/control.sock", "--metrics", "127.0.0.1:0", "--max-sessions", "16", "2>&1",
        ].joined(separator: " ")
        // Its log (stderr) comes on stdout, line by line, until it starts or exits.
        let engine = try Child(pair.inA(["/bin/sh", "-c", command]))
        var log = ""
        var started = false
        while let line = engine.readLine(timeout: 15) {
            log += line + "\n"
            if line.contains("engine started") {
                started = true
                break
            }
        }
        engine.signal(SIGTERM)
        engine.wait()
        unlink("\(directory)/control.sock")
        return (started, log)
    }

    @Test func theUnitsCapabilitiesAreExactlyWhatAFXDPNeeds() throws {
        try requirePrivileges("capability tests")
        let capabilities = try Self.unitCapabilities()
        #expect(capabilities.count == 5, "\(capabilities)")
        // A directory nobody can read and write: the binary, the program, the control socket.
        let directory = "/tmp/voxedge-caps-\(getpid())"
        mkdir(directory, 0o777)
        chmod(directory, 0o777)
        defer { Command.run(["rm", "-rf", directory]) }
        for (source, name) in [(try Paths.voxedge(), "voxedge"), (try Paths.voxedgeObject(), "voxedge.bpf.o")] {
            #expect(Command.run(["cp", source, "\(directory)/\(name)"]).status == 0)
            chmod("\(directory)/\(name)", 0o755)
        }
        let pair = try VethPair()
        let full = try Self.start(pair, directory, capabilities: capabilities)
        #expect(full.started, "\(full.log)")
        #expect(full.log.contains("io=xdp"), "\(full.log)")
        #expect(pair.attachedProgram() == nil, "detached after SIGTERM")
        for missing in capabilities {
            let fewer = try Self.start(pair, directory, capabilities: capabilities.filter { $0 != missing })
            #expect(!fewer.started, "started without \(missing): the unit asks for more than it needs")
        }
    }
}
