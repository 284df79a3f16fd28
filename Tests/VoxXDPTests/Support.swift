import Foundation
import Glibc
import Synchronization
import Testing
import VoxWire
import VoxXDP

// What every privileged test needs: the right to run, the compiled objects, the voxedge
// executable, child processes, and namespaces of its own.

/// Returns if this process may load BPF programs and create namespaces (root). Otherwise
/// it cancels the test — a skip, with the reason printed — except under CI=true, where it
/// throws, failing the test: CI runs as root, so a skip there would hide a broken setup.
func requirePrivileges(_ test: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
    if geteuid() == 0 { return }
    let reason = "\(test) need root (bpf(2), network namespaces); effective uid is \(geteuid())"
    if ProcessInfo.processInfo.environment["CI"] == "true" {
        throw SetupFailure(description: "CI=true, so not skipped: \(reason)")
    }
    print("skipping: \(reason)")
    try Test.cancel(Comment(rawValue: reason), sourceLocation: sourceLocation)
}

/// Paths of the repository, the compiled BPF objects and the voxedge executable.
enum Paths {
    static let repository: String = {
        // Tests/VoxXDPTests/Support.swift → the repository root.
        var parts = "\(#filePath)".split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3)
        return parts.joined(separator: "/")
    }()

    /// bpf/build.sh, run once per test process so the objects always match the sources
    /// (scripts/test runs it as well; it takes well under a second).
    private static let built: Result<String, BuildFailure> = {
        let output = repository + "/.build/bpf"
        let result = Command.run(["/bin/bash", repository + "/bpf/build.sh", output])
        return result.status == 0 ? .success(output) : .failure(BuildFailure(text: result.output + result.error))
    }()

    struct BuildFailure: Error, CustomStringConvertible {
        var text: String
        var description: String { "bpf/build.sh failed:\n\(text)" }
    }

    static func object(_ name: String) throws -> String { try built.get() + "/" + name }
    static func voxedgeObject() throws -> String { try object("voxedge.bpf.o") }
    static func foreignObject() throws -> String { try object("foreign.bpf.o") }

    /// The voxedge executable SwiftPM built beside this test bundle (`swift build` and
    /// `swift test` build every product).
    static func voxedge() throws -> String {
        let bundle = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        let candidate = bundle.deletingLastPathComponent().appendingPathComponent("voxedge").path
        guard FileManager.default.isExecutableFile(atPath: candidate) else {
            throw BuildFailure(text: "no voxedge executable at \(candidate): run `swift build` first")
        }
        return candidate
    }
}

/// Runs programs to completion (ip, ping) and collects their output.
enum Command {
    struct Result {
        var status: Int32
        var output: String
        var error: String
    }

    @discardableResult
    static func run(_ arguments: [String]) -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: arguments[0].hasPrefix("/") ? arguments[0] : "/usr/bin/env")
        process.arguments = arguments[0].hasPrefix("/") ? Array(arguments.dropFirst()) : arguments
        let output = Pipe()
        let error = Pipe()
        process.standardOutput = output
        process.standardError = error
        process.standardInput = FileHandle.nullDevice
        do { try process.run() } catch { return Result(status: -1, output: "", error: "\(error)") }
        // Read before waiting: a child blocked on a full pipe would never exit.
        let out = output.fileHandleForReading.readDataToEndOfFile()
        let err = error.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Result(
            status: process.terminationStatus,
            output: String(decoding: out, as: UTF8.self),
            error: String(decoding: err, as: UTF8.self)
        )
    }
}

/// A long-running child (`voxedge xdp attach`) whose stdout is read line by line.
final class Child {
    let process = Process()
    private let output = Pipe()
    private let error = Pipe()
    private var buffered: [UInt8] = []

    init(_ arguments: [String]) throws {
        process.executableURL = URL(fileURLWithPath: arguments[0])
        process.arguments = Array(arguments.dropFirst())
        process.standardOutput = output
        process.standardError = error
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    var pid: Int32 { process.processIdentifier }

    /// The next line of stdout, or nil at end of file or after `timeout` seconds.
    func readLine(timeout: Double = 20) -> String? {
        let fd = output.fileHandleForReading.fileDescriptor
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            if let newline = buffered.firstIndex(of: 10) {
                let line = String(decoding: buffered[..<newline], as: UTF8.self)
                buffered.removeSubrange(...newline)
                return line
            }
            let remaining = deadline.timeIntervalSinceNow
            guard remaining > 0 else { return nil }
            var pollfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pollfd, 1, Int32(min(remaining, 1) * 1000)) >= 0 else { return nil }
            if pollfd.revents == 0 { continue }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let count = read(fd, &chunk, chunk.count)
            guard count > 0 else { return nil }
            buffered += chunk[..<count]
        }
    }

    /// Everything it wrote to stderr (call after it exited).
    func standardError() -> String {
        String(decoding: error.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    }

    func signal(_ number: Int32) { kill(pid, number) }

    /// Waits for exit, SIGKILLing it after `timeout` seconds; returns the exit status.
    @discardableResult
    func wait(timeout: Double = 20) -> Int32 {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning { kill(pid, SIGKILL) }
        process.waitUntilExit()
        return process.terminationStatus
    }

    deinit {
        if process.isRunning {
            kill(pid, SIGKILL)
            process.waitUntilExit()
        }
    }
}

/// Two network namespaces joined by a veth pair, named after this process and a counter
/// so tests running at the same time never share a name. Deleting the namespaces (deinit,
/// also after a failed expectation) removes the veth ends and anything attached to them.
///
///     netns A: ifA 198.18.0.1/30  <== veth ==>  netns B: ifB 198.18.0.2/30
final class VethPair {
    private static let counter = Atomic<Int>(0)
    private static let namePrefix = "vxt-"

    let namespaceA: String
    let namespaceB: String
    let interfaceA: String
    let interfaceB: String
    let addressA = "198.18.0.1"
    let addressB = "198.18.0.2"

    /// `queues`: RX and TX queues of each end (veth has one unless asked).
    init(queues: Int = 1) throws {
        Self.removeLeftovers()
        let n = Self.counter.wrappingAdd(1, ordering: .relaxed).newValue
        let pid = getpid()
        namespaceA = "\(Self.namePrefix)\(pid)-\(n)-a"
        namespaceB = "\(Self.namePrefix)\(pid)-\(n)-b"
        // Interface names have at most 15 characters: "vx" + pid (≤ 7 digits) + "x" + n + side.
        interfaceA = "vx\(pid)x\(n)a"
        interfaceB = "vx\(pid)x\(n)b"
        // A crashed run of a process that had this pid may have left these very names.
        delete()
        let steps: [[String]] = [
            ["ip", "netns", "add", namespaceA],
            ["ip", "netns", "add", namespaceB],
            ["ip", "link", "add", interfaceA] + Self.queueArguments(queues) + ["netns", namespaceA, "type", "veth"]
                + ["peer", "name", interfaceB] + Self.queueArguments(queues) + ["netns", namespaceB],
            ["ip", "-n", namespaceA, "address", "add", "\(addressA)/30", "dev", interfaceA],
            ["ip", "-n", namespaceB, "address", "add", "\(addressB)/30", "dev", interfaceB],
            ["ip", "-n", namespaceA, "link", "set", "dev", interfaceA, "up"],
            ["ip", "-n", namespaceB, "link", "set", "dev", interfaceB, "up"],
            ["ip", "-n", namespaceA, "link", "set", "dev", "lo", "up"],
            ["ip", "-n", namespaceB, "link", "set", "dev", "lo", "up"],
        ]
        for step in steps {
            let result = Command.run(step)
            guard result.status == 0 else {
                delete()
                throw SetupFailure(description: "\(step.joined(separator: " ")): \(result.error)")
            }
        }
    }

    deinit { delete() }

    private static func queueArguments(_ queues: Int) -> [String] {
        queues == 1 ? [] : ["numtxqueues", "\(queues)", "numrxqueues", "\(queues)"]
    }

    private func delete() {
        Self.delete(namespace: namespaceA)
        Self.delete(namespace: namespaceB)
    }

    /// Kills what still runs in `namespace` (an engine orphaned by a killed test process
    /// would keep the namespace, its veth and its XDP link alive after `ip netns delete`),
    /// then deletes it.
    private static func delete(namespace: String) {
        for pid in Command.run(["ip", "netns", "pids", namespace]).output.split(separator: "\n").compactMap({
            Int32($0)
        }) {
            kill(pid, SIGKILL)
        }
        Command.run(["ip", "netns", "delete", namespace])
    }

    /// Deletes test namespaces whose creating process is gone (a crashed or killed run).
    private static func removeLeftovers() {
        for line in Command.run(["ip", "netns", "list"]).output.split(separator: "\n") {
            let name = String(line.split(separator: " ").first ?? "")
            guard name.hasPrefix(namePrefix),
                let pid = Int32(name.dropFirst(namePrefix.count).split(separator: "-").first ?? "")
            else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH { delete(namespace: name) }
        }
    }

    /// `ip netns exec NS` + arguments: what must live in a namespace runs as a child.
    func inA(_ arguments: [String]) -> [String] { ["/usr/sbin/ip", "netns", "exec", namespaceA] + arguments }
    func inB(_ arguments: [String]) -> [String] { ["/usr/sbin/ip", "netns", "exec", namespaceB] + arguments }

    /// The XDP program attached to an interface of namespace A, from `ip -j link show`.
    func attachedProgram(interface: String? = nil) -> (name: String, id: Int)? {
        let result = Command.run(["ip", "-n", namespaceA, "-j", "link", "show", "dev", interface ?? interfaceA])
        guard result.status == 0,
            let links = try? JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [[String: Any]],
            let xdp = links.first?["xdp"] as? [String: Any], let program = xdp["prog"] as? [String: Any],
            let name = program["name"] as? String, let id = program["id"] as? Int
        else { return nil }
        return (name, id)
    }

    /// Whether namespace B reaches namespace A by ping (ARP, then ICMP both ways).
    func pingAFromB() -> Bool {
        Command.run(inB(["ping", "-c", "2", "-i", "0.2", "-W", "2", addressA])).status == 0
    }
}

struct SetupFailure: Error, CustomStringConvertible {
    var description: String
}

// Frames for BPF_PROG_TEST_RUN, built with VoxWire's FrameBuilder like the engine's own.

enum Fixture {
    static let serverMAC = MACAddress(0x02, 0, 0, 0, 0, 0x01)
    static let clientMAC = MACAddress(0x02, 0, 0, 0, 0, 0x02)
    static let server4 = IPAddress("198.18.0.1")!
    static let client4 = IPAddress("198.18.1.2")!
    static let server6 = IPAddress("2001:db8::1")!
    static let client6 = IPAddress("2001:db8:1::2")!
    static let mediaPort = UDPPort(40000)
    static let clientPort = UDPPort(50000)

    /// A STUN Binding request header (RFC 8489): first byte 0x00.
    static let stun: [UInt8] = [0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42] + Array(repeating: 7, count: 12)
    /// A DTLS 1.2 handshake record header: first byte 22.
    static let dtls: [UInt8] = [0x16, 0xFE, 0xFD, 0, 0, 0, 0, 0, 0, 0, 1, 0, 4, 1, 2, 3, 4]
    /// An RTP header (version 2, Opus payload type 111) and some payload: first byte 0x80.
    static let rtp: [UInt8] =
        [0x80, 0x6F, 0x00, 0x01, 0, 0, 0, 160, 0x12, 0x34, 0x56, 0x78] + Array(repeating: 0xAB, count: 40)

    /// An Ethernet/IP/UDP frame; IPv6 when either address is not IPv4-mapped.
    static func udp(
        from source: IPAddress = client4,
        sourcePort: UDPPort = clientPort,
        to destination: IPAddress = server4,
        port destinationPort: UDPPort = mediaPort,
        payload: [UInt8],
        vlan: UInt16? = nil
    ) -> [UInt8] {
        let addresses = FrameAddresses(
            destinationMAC: serverMAC,
            sourceMAC: clientMAC,
            vlanID: vlan,
            source: source,
            sourcePort: sourcePort,
            destination: destination,
            destinationPort: destinationPort
        )
        var frame = [UInt8](repeating: 0, count: addresses.headerLength + payload.count)
        frame.replaceSubrange(addresses.headerLength..., with: payload)
        _ = frame.withUnsafeMutableBytes {
            FrameBuilder.write($0.baseAddress!, addresses, payloadLength: payload.count)
        }
        return frame
    }

    /// The flow key the engine would admit for a frame built by `udp` with the same arguments.
    static func flow(
        from source: IPAddress = client4,
        sourcePort: UDPPort = clientPort,
        to destination: IPAddress = server4,
        port destinationPort: UDPPort = mediaPort
    ) -> FlowKey {
        FlowKey(remoteAddress: source, remotePort: sourcePort, localAddress: destination, localPort: destinationPort)
    }

    /// Offset of the IP header (after Ethernet and an optional tag).
    static func l3Offset(_ frame: [UInt8]) -> Int { frame[12] == 0x81 || frame[12] == 0x88 ? 18 : 14 }

    /// The same frame with its IP protocol / next header changed (ICMP, TCP, …).
    static func withProtocol(_ frame: [UInt8], _ proto: UInt8) -> [UInt8] {
        var frame = frame
        let l3 = l3Offset(frame)
        frame[frame[l3] >> 4 == 6 ? l3 + 6 : l3 + 9] = proto
        return frame
    }

    /// An IPv4 frame with the more-fragments flag set (a first fragment).
    static func fragmented(_ frame: [UInt8]) -> [UInt8] {
        var frame = frame
        frame[l3Offset(frame) + 6] |= 0x20
        return frame
    }

    /// An IPv6 frame with one extension header of type `header` (hop-by-hop 0, routing 43,
    /// fragment 44, destination options 60) inserted before the UDP header.
    static func withIPv6Extension(_ frame: [UInt8], header: UInt8 = 0) -> [UInt8] {
        var frame = frame
        let l3 = l3Offset(frame)
        let nextHeader = frame[l3 + 6]
        frame[l3 + 6] = header
        let payloadLength = Int(frame[l3 + 4]) << 8 | Int(frame[l3 + 5]) + 8
        frame[l3 + 4] = UInt8(payloadLength >> 8)
        frame[l3 + 5] = UInt8(payloadLength & 0xFF)
        // Next header, length 0 (8 bytes), then PadN covering the remaining 6 bytes.
        frame.insert(contentsOf: [nextHeader, 0, 1, 4, 0, 0, 0, 0], at: l3 + 40)
        return frame
    }

    /// An ARP request for the server's address.
    static let arp: [UInt8] = {
        var frame = [UInt8](repeating: 0xFF, count: 6) + [0x02, 0, 0, 0, 0, 0x02] + [0x08, 0x06]
        frame += [0, 1, 0x08, 0, 6, 4, 0, 1, 0x02, 0, 0, 0, 0, 0x02, 198, 18, 1, 2, 0, 0, 0, 0, 0, 0, 198, 18, 0, 1]
        return frame
    }()

    /// Offset just past the UDP header of a frame built by `udp` (possibly with an IPv6
    /// extension header): where the payload starts.
    static func payloadOffset(_ frame: [UInt8]) -> Int {
        let l3 = l3Offset(frame)
        if frame[l3] >> 4 == 4 { return l3 + Int(frame[l3] & 0x0F) * 4 + 8 }
        return l3 + 40 + (frame[l3 + 6] == 17 ? 0 : 8) + 8
    }
}
