import Glibc
import Logging
import VoxIO
import VoxWire

/// Keeps the backend table's next-hop MACs as the kernel knows them (AF_XDP only: frames
/// leave through the workers' TX rings, so the engine writes the Ethernet header itself,
/// and the kernel's routes and neighbours say what goes in it). Runs on the control thread.
///
/// At start every backend address is watched; whenever the kernel's answer for one changes
/// (a neighbour event, a route change, the periodic refresh that also makes the kernel
/// re-confirm neighbours the engine's own traffic never confirms) a new table is published
/// to the workers. A backend whose next hop is pending, unreachable, or out of another
/// interface than the engine's is `down` in the table: its packets are dropped and counted
/// as `backendUnavailable` rather than sent to a wrong or zero MAC.
public final class BackendNextHops {
    var resolver: NextHopResolver
    let backends: [Backend]
    let interfaceIndex: Int32
    let directory: BackendDirectory
    let logger: Logger
    var states: [NextHopState]
    var lastRefresh: UInt64

    public init(backends: [Backend], interfaceIndex: Int32, directory: BackendDirectory, logger: Logger) throws {
        resolver = try NextHopResolver()
        self.backends = backends
        self.interfaceIndex = interfaceIndex
        self.directory = directory
        self.logger = logger
        states = []
        for b in backends { states.append(try resolver.watch(b.address)) }
        lastRefresh = MonotonicClock.now()
        for (b, s) in zip(backends, states) {
            logger.info("backend next hop", metadata: ["backend": "\(b.address):\(b.port)", "state": "\(describe(s))"])
        }
        publish()
    }

    /// Reads the kernel's events (without blocking) and refreshes every few seconds;
    /// publishes a new table when a backend's next hop changed.
    public func poll() {
        var changes: [NextHopChange] = []
        do {
            var p = pollfd(fd: resolver.fd, events: Int16(POLLIN), revents: 0)
            if Glibc.poll(&p, 1, 0) > 0 { changes += try resolver.handleReadable() }
            let now = MonotonicClock.now()
            if now &- lastRefresh >= UInt64(NextHopResolver.refreshInterval) * 1_000_000_000 {
                lastRefresh = now
                changes += try resolver.refresh()
            }
        } catch {
            logger.warning("next-hop lookup failed", metadata: ["error": "\(error)"])
            return
        }
        guard !changes.isEmpty else { return }
        var changed = false
        for change in changes {
            for (i, b) in backends.enumerated() where b.address == change.destination && states[i] != change.new {
                states[i] = change.new
                changed = true
                logger.info(
                    "backend next hop changed",
                    metadata: [
                        "backend": "\(b.address):\(b.port)", "from": "\(describe(change.old))",
                        "to": "\(describe(change.new))",
                    ]
                )
            }
        }
        if changed { publish() }
    }

    func describe(_ s: NextHopState) -> String {
        guard let hop = s.nextHop else { return "\(s)" }
        return hop.interfaceIndex == interfaceIndex ? "\(hop.mac)" : "\(hop) (not the engine's interface)"
    }

    func publish() {
        var table: [Backend] = []
        for (b, s) in zip(backends, states) {
            var entry = b
            if let hop = s.nextHop, hop.interfaceIndex == interfaceIndex {
                entry.mac = hop.mac
            } else {
                entry.mac = .zero
                entry.state = .down
            }
            table.append(entry)
        }
        directory.publish(BackendTable(table))
    }
}
