import Glibc
import Logging
import VoxIO
import VoxWire

/// Keeps the backends' next-hop MACs as the kernel knows them (AF_XDP only: frames leave
/// through the workers' TX rings, so the engine writes the Ethernet header itself, and the
/// kernel's routes and neighbours say what goes in it). Runs on the control thread, owned by
/// `RouteTable`, which watches each backend address while a backend has it.
///
/// Whenever the kernel's answer for a watched address changes (a neighbour event, a route
/// change, the periodic refresh that also makes the kernel re-confirm neighbours the engine's
/// own traffic never confirms) `poll` says so, and the route table publishes a new table. A
/// backend whose next hop is pending, unreachable, or out of another interface than the
/// engine's is `down` in the table: its packets are dropped and counted as
/// `backendUnavailable` rather than sent to a wrong or zero MAC, and no call is placed on it.
public final class BackendNextHops {
    var resolver: NextHopResolver
    let interfaceIndex: Int32
    let logger: Logger
    var states: [IPAddress: NextHopState] = [:]
    var lastRefresh: UInt64

    public init(interfaceIndex: Int32, logger: Logger) throws {
        resolver = try NextHopResolver()
        self.interfaceIndex = interfaceIndex
        self.logger = logger
        lastRefresh = MonotonicClock.now()
    }

    /// Starts following `address` (a no-op if it is followed already).
    public func watch(_ address: IPAddress) {
        guard states[address] == nil else { return }
        do {
            states[address] = try resolver.watch(address)
        } catch {
            states[address] = .unreachable(.noRoute(errno: 0))
            logger.warning("next-hop lookup failed", metadata: ["address": "\(address)", "error": "\(error)"])
        }
        logger.info("backend next hop", metadata: ["address": "\(address)", "state": "\(describe(states[address]!))"])
    }

    public func unwatch(_ address: IPAddress) {
        resolver.unwatch(address)
        states[address] = nil
    }

    /// The MAC to send `address`'s frames to, or nil when its next hop is not usable.
    public func mac(for address: IPAddress) -> MACAddress? {
        guard let hop = states[address]?.nextHop, hop.interfaceIndex == interfaceIndex else { return nil }
        return hop.mac
    }

    /// Why `address` cannot be sent to (nil when it can): for the registry's `down`.
    public func problem(for address: IPAddress) -> String? {
        guard let state = states[address] else { return "next hop not known" }
        return mac(for: address) == nil ? "next hop \(describe(state))" : nil
    }

    /// Reads the kernel's events (without blocking) and refreshes every few seconds. True
    /// when a watched address's next hop changed.
    public func poll() -> Bool {
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
            return false
        }
        var changed = false
        for change in changes where states[change.destination] != nil && states[change.destination] != change.new {
            states[change.destination] = change.new
            changed = true
            logger.info(
                "backend next hop changed",
                metadata: [
                    "address": "\(change.destination)", "from": "\(describe(change.old))", "to": "\(describe(change.new))",
                ]
            )
        }
        return changed
    }

    func describe(_ s: NextHopState) -> String {
        guard let hop = s.nextHop else { return "\(s)" }
        return hop.interfaceIndex == interfaceIndex ? "\(hop.mac)" : "\(hop) (not the engine's interface)"
    }
}
