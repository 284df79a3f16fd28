import ArgumentParser
import Glibc
import VoxWire
import VoxXDP

struct XDPCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "xdp",
        abstract: "The XDP program that steers media flows (bpf/).",
        subcommands: [XDPAttachCommand.self, XDPShowCommand.self]
    )
}

/// Holds the program on an interface the way the engine will: through a bpf_link owned by
/// this process, so it is gone when the process is, however it ends.
struct XDPAttachCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "attach",
        abstract: "Load the XDP program, attach it to an interface and hold it until SIGINT or SIGTERM.",
        discussion: """
            Prints one line starting with `attached` once the program is attached, then waits. \
            On SIGINT or SIGTERM it prints the verdict counters, detaches and exits 0. If it is \
            killed, the kernel detaches the program when the link's last fd closes. It refuses \
            (exit 1, naming the program) when an XDP program is already attached to the interface.
            """
    )

    @Option(help: "The interface to attach to (in this network namespace).")
    var interface: String

    @Option(help: "The compiled program (default: $VOXEDGE_BPF_OBJECT, then beside this executable, then .build/bpf/).")
    var object: String?

    @Option(name: .customLong("media-port"), help: "A media port (repeatable, at most 8).")
    var mediaPorts: [UInt16] = [40000]

    @Option(help: "The reserved backend-leg port range, as LOW-HIGH.")
    var backendPorts: String?

    @Option(help: "New-flow STUN packets per second per source address (0: no limit).")
    var stunRate: UInt32 = 50

    @Option(help: "New-flow STUN burst per source address.")
    var stunBurst: UInt32 = 100

    @Option(help: "A source prefix to drop on the media ports (repeatable), e.g. 198.18.0.0/24.")
    var block: [String] = []

    @Flag(help: "Attach in generic (skb) mode instead of trying native mode first.")
    var generic = false

    func run() throws {
        // Signals are taken with sigwait on this thread, so block them before anything else.
        var signals = sigset_t()
        sigemptyset(&signals)
        sigaddset(&signals, SIGINT)
        sigaddset(&signals, SIGTERM)
        pthread_sigmask(SIG_BLOCK, &signals, nil)

        var backendRange: ClosedRange<UDPPort>?
        if let text = backendPorts {
            let parts = text.split(separator: "-").compactMap { UInt16($0) }
            guard parts.count == 2, parts[0] > 0, parts[0] <= parts[1] else {
                throw ValidationError("--backend-ports takes LOW-HIGH, got \(text)")
            }
            backendRange = UDPPort(parts[0])...UDPPort(parts[1])
        }
        let configuration = XDPConfiguration(
            mediaPorts: mediaPorts.map { UDPPort($0) },
            backendPorts: backendRange,
            stunRatePerSecond: stunRate,
            stunBurst: stunBurst
        )

        do {
            let program = try XDPProgram(objectPath: object ?? XDPProgram.defaultObjectPath())
            try program.configure(configuration)
            let blocklist = try program.blocklist()
            for text in block { try blocklist.add(try IPPrefix(text)) }
            let attachment = try program.attach(interface: interface, policy: generic ? .genericOnly : .nativeOrGeneric)
            emit("attached interface=\(interface) mode=\(attachment.mode) pid=\(getpid())")

            var received: Int32 = 0
            sigwait(&signals, &received)
            emit("counters \(try program.counters())")
            try attachment.detach()
            emit("detached interface=\(interface)")
        } catch {
            XDPLog.standardError("voxedge: error: \(error)")
            throw ExitCode(1)
        }
    }
}

/// Reports what is attached to an interface.
struct XDPShowCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Print the XDP program attached to an interface, or `none`; for VoxEdge's, its counters."
    )

    @Option(help: "The interface (in this network namespace).")
    var interface: String

    func run() throws {
        let ifindex = Int32(bitPattern: if_nametoindex(interface))
        guard ifindex != 0 else { throw ValidationError("no interface \(interface)") }
        do {
            if let present = try AttachedXDPProgram.query(ifindex: ifindex, interface: interface) {
                emit("\(interface): \(present)\(present.isVoxEdge ? " (VoxEdge)" : "")")
                if present.isVoxEdge { emit("counters \(try present.counterMap().read())") }
            } else {
                emit("\(interface): none")
            }
        } catch {
            XDPLog.standardError("voxedge: error: \(error)")
            throw ExitCode(1)
        }
    }
}

/// One line to stdout, written at once: a parent reading the pipe sees it immediately
/// (stdio would hold it in a buffer until exit).
private func emit(_ line: String) {
    var text = line
    text.append("\n")
    text.withUTF8 { bytes in _ = write(1, bytes.baseAddress, bytes.count) }
}
