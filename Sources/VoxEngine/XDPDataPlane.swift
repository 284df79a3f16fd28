import CVoxLinux
import CXDP
import Foundation
import Glibc
import Logging
import VoxIO
import VoxWire
import VoxXDP

/// Everything AF_XDP needs on one interface, set up in an order that never leaves media
/// unserved: load VoxEdge's XDP program and write its configuration, create the UMEM and
/// one socket per worker (queue w → worker w), put the sockets in the program's `vox_xsks`
/// map, and only then attach the program (through a `bpf_link`, so a crashed engine leaves
/// nothing attached). A kernel UDP socket keeps the media port reserved meanwhile.
///
/// `close()` detaches the program first, then closes the sockets and the UMEM.
public final class XDPDataPlane: @unchecked Sendable {
    public let interface: String
    public let ifindex: Int32
    /// The interface's own MAC: the source of every frame the workers send.
    public let edgeMAC: MACAddress
    public let sockets: XSKSet
    public private(set) var mode: XDPMode = .native
    var program: XDPProgram?
    var attachment: XDPAttachment?
    /// Holds the media port in the kernel's UDP table, so nothing else binds it.
    let reservation: Int32
    var closed = false
    let logger: Logger

    public init(configuration c: EngineConfiguration, logger: Logger) throws {
        self.logger = logger
        let media = c.mediaAddress
        if media.isLoopback {
            throw XSKError(
                code: "xsk.loopback",
                message: "media address \(c.mediaAddress) is on loopback, which AF_XDP cannot see"
            )
        }
        for b in c.backends where b.address.isLoopback {
            throw XSKError(
                code: "xsk.loopback",
                message:
                    "backend \(b.address):\(b.port) is on loopback; AF_XDP sends only through \(c.interface ?? "the NIC")"
            )
        }
        let name: String
        if let given = c.interface {
            name = given
        } else if let found = NetworkInterface.name(holding: media) {
            name = found
        } else {
            throw XSKError(code: "xsk.interface", message: "no interface holds \(c.mediaAddress); set `interface`")
        }
        interface = name
        let link = try NetworkInterface.named(name)
        // Backend legs leave through this interface with this source: an address it does not
        // hold (loopback, another NIC's) gets no answer, and every backend packet is lost.
        let backendSource = c.backendLegAddress
        guard link.addresses.contains(where: { $0.address == backendSource }) else {
            let held: [String] = link.addresses.filter { $0.address.isIPv4 == backendSource.isIPv4 }.map { "\($0.address)" }
            let choices: String = held.isEmpty ? "it has none of that family" : held.joined(separator: ", ")
            let problem: String = "\(c.backendAddressName) is not an address of \(name), the AF_XDP interface"
            let why: String = "backend packets would leave it with another host's source and never be answered"
            throw EngineError(
                code: "config.backend_address",
                message: "\(problem): \(why); set backend_address to one of \(name)'s addresses (\(choices))")
        }
        guard link.queueCount >= c.workers else {
            throw XSKError(
                code: "xsk.queues",
                message:
                    "\(name) has \(link.queueCount) queue(s) and \(c.workers) workers were asked for (one per queue); "
                    + "raise its channels (`ethtool -L \(name) combined \(c.workers)`) or lower `workers`"
            )
        }
        ifindex = link.index
        edgeMAC = link.mac

        // Reserve the media port first: if another process holds it, stop here.
        let reserved = try XDPDataPlane.reserve(media, UDPPort(c.mediaPort))
        reservation = reserved
        var opened = false
        defer { if !opened { Glibc.close(reserved) } }

        let object = c.xdp.object ?? XDPProgram.defaultObjectPath()
        var limits = XDPLimits()
        limits.maxFlows = UInt32(max(1024, c.maxSessions * 4))
        if !c.xdp.flowFilter { limits.flowFilterSlots = 0 }
        let program = try XDPProgram(objectPath: object, limits: limits)
        let lastBackendPort = Int(c.backendPortBase) + c.maxSessions - 1
        try program.configure(
            XDPConfiguration(
                mediaPorts: [UDPPort(c.mediaPort)],
                backendPorts: UDPPort(c.backendPortBase)...UDPPort(UInt16(min(lastBackendPort, 65535))),
                backendRequiresAdmission: true,
                stunRatePerSecond: c.xdp.stunRate,
                stunBurst: c.xdp.stunBurst
            )
        )
        sockets = try XSKSet(interface: name, queues: c.workers, configuration: c.xdp.sockets)
        let socketMap = try program.socketMap()
        for q in 0..<c.workers { try socketMap.insert(socket: sockets.socketFD(queue: q), queue: UInt32(q)) }
        let policy: XDPAttachPolicy =
            switch c.xdp.attach {
            case .native: .nativeOnly
            case .generic: .genericOnly
            case .auto: .nativeOrGeneric
            }
        let attachment = try program.attach(interface: name, policy: policy) { line in
            logger.info("\(line)")
        }
        mode = attachment.mode
        self.attachment = consume attachment
        self.program = consume program
        opened = true
    }

    /// What worker `w` tells the XDP program about its sessions' 5-tuples.
    func admission(worker w: Int) throws -> XDPAdmission {
        switch program {
        case .some(let loaded):
            return XDPAdmission(flows: try loaded.admittedFlows(), worker: UInt32(w), logger: logger)
        case .none:
            throw XSKError(code: "xsk.closed", message: "the XDP program is unloaded")
        }
    }

    /// The XDP program's runs and their total time (while the kernel counts them).
    public func programRunStatistics() -> (nanoseconds: UInt64, runs: UInt64)? {
        switch program {
        case .some(let loaded): return loaded.runStatistics()
        case .none: return nil
        }
    }

    /// The XDP program's counters, summed over CPUs.
    public func programCounters() -> XDPCounters? {
        switch program {
        case .some(let loaded): return try? loaded.counters()
        case .none: return nil
        }
    }

    deinit { close() }

    /// Detaches the program, then frees the sockets (their deinit) and the port reservation.
    public func close() {
        guard !closed else { return }
        closed = true
        if let attachment = attachment.take() {
            do { try attachment.detach() } catch { logger.warning("XDP detach", metadata: ["error": "\(error)"]) }
        }
        program = nil
        Glibc.close(reservation)
    }

    /// A UDP socket bound to the media port, never read: it keeps the port in the kernel's table.
    static func reserve(_ address: IPAddress, _ port: UDPPort) throws(XSKError) -> Int32 {
        do {
            return try SocketQueue.bind(address, port, reusePort: false)
        } catch {
            throw XSKError(code: "xsk.reserve", message: "media port \(address):\(port) is taken", errno: error.errno)
        }
    }
}

/// Admits and forgets a worker's 5-tuples in `vox_flows` as its sessions bind, move and end
/// (the worker calls it applying commands, or when a valid STUN check moves a session: per
/// session, a map update each — never per packet).
public final class XDPAdmission: @unchecked Sendable {
    let flows: AdmittedFlows
    let worker: UInt32
    let logger: Logger

    init(flows: consuming AdmittedFlows, worker: UInt32, logger: Logger) {
        self.flows = flows
        self.worker = worker
        self.logger = logger
    }

    /// Worker `worker`'s admissions into `program`'s `vox_flows` (tests drive a worker over the
    /// in-memory port against a loaded program this way).
    public convenience init(program: borrowing XDPProgram, worker: Int, logger: Logger = Logger(label: "voxedge.xdp"))
        throws(XDPError)
    {
        self.init(flows: try program.admittedFlows(), worker: UInt32(worker), logger: logger)
    }

    func change(_ slot: Int, _ from: FlowKey?, _ to: FlowKey?) {
        do {
            if let from, from != to { try flows.forget(from) }
            if let to { try flows.admit(to, session: UInt32(slot), worker: worker) }
        } catch {
            failed(slot, error)
        }
    }

    func failed(_ slot: Int, _ error: XDPError) {
        logger.warning("vox_flows update failed", metadata: ["slot": "\(slot)", "error": "\(error)"])
    }
}
