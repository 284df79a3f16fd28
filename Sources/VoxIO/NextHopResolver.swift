import Glibc
import VoxWire

/// Where the engine sends a frame for one destination: out of `interfaceIndex`, to `mac`.
/// `gateway` is the router the route names (nil when the destination is on-link) and
/// `source` the kernel's preferred source address for the destination.
public struct NextHop: Hashable, Sendable, CustomStringConvertible {
    public var interfaceIndex: Int32
    public var mac: MACAddress
    public var gateway: IPAddress?
    public var source: IPAddress?

    public init(interfaceIndex: Int32, mac: MACAddress, gateway: IPAddress? = nil, source: IPAddress? = nil) {
        self.interfaceIndex = interfaceIndex
        self.mac = mac
        self.gateway = gateway
        self.source = source
    }

    public var description: String {
        "dev \(interfaceIndex) lladdr \(mac)" + (gateway.map { " via \($0)" } ?? "") + (source.map { " src \($0)" } ?? "")
    }
}

/// The answer for one destination.
public enum NextHopState: Hashable, Sendable, CustomStringConvertible {
    /// Frames can be written: the kernel has a usable neighbour entry.
    case resolved(NextHop)
    /// The route is known but the kernel is still asking for `address`'s MAC (ARP or
    /// neighbour discovery on `interfaceIndex`); a neighbour event follows either way.
    case pending(interfaceIndex: Int32, address: IPAddress)
    case unreachable(Reason)

    public enum Reason: Hashable, Sendable {
        /// The FIB has no usable route: `errno` is the kernel's (ENETUNREACH: no route;
        /// EHOSTUNREACH, EACCES, EINVAL: an IPv4 unreachable, prohibit or blackhole route).
        case noRoute(errno: Int32)
        /// An IPv6 route of a type that carries no traffic (RTN_UNREACHABLE 7,
        /// RTN_BLACKHOLE 6, RTN_PROHIBIT 8, …).
        case rejected(routeType: UInt8)
        /// The destination is an address of this host.
        case local
        /// Nobody answered ARP/neighbour discovery for `address` (NUD_FAILED).
        case neighbourFailed(interfaceIndex: Int32, address: IPAddress)
    }

    public var nextHop: NextHop? {
        if case .resolved(let nextHop) = self { return nextHop }
        return nil
    }

    public var description: String {
        switch self {
        case .resolved(let nextHop): "resolved(\(nextHop))"
        case .pending(let index, let address): "pending(\(address) dev \(index))"
        case .unreachable(let reason): "unreachable(\(reason))"
        }
    }
}

/// A watched destination whose next hop changed.
public struct NextHopChange: Hashable, Sendable, CustomStringConvertible {
    public var destination: IPAddress
    public var old: NextHopState
    public var new: NextHopState
    public var description: String { "\(destination): \(old) -> \(new)" }
}

struct Route {
    var index: Int32
    var gateway: IPAddress?
    var source: IPAddress?
}

enum RouteLookup {
    case found(Route)
    case unreachable(NextHopState.Reason)
}

struct NeighbourKey: Hashable {
    var index: Int32
    var address: IPAddress
}

/// Resolves destinations to next hops from the kernel's FIB and neighbour tables, and keeps
/// the watched ones fresh. It runs on the control thread, never per packet, in the network
/// namespace of the thread that created it (netlink sockets belong to it).
///
/// Owns two NETLINK_ROUTE sockets: one for requests (route and neighbour lookups, probes)
/// and `fd`, non-blocking, subscribed to neighbour, route, address and link events.
/// Integration: poll `fd` for input and call `handleReadable()` when it is readable; call
/// `refresh()` every `refreshInterval` seconds. Both return the watched destinations whose
/// state changed; the engine publishes new MACs to its workers from there.
///
/// Invariant: `watched[d]` is the state last reported for `d` (by `watch` or in a change).
/// `Sendable` so it can be moved into the control thread; it is used by one thread at a time.
public struct NextHopResolver: ~Copyable, Sendable {
    /// How often to call `refresh()`. It re-asks the kernel for every watched destination
    /// and makes it re-confirm stale neighbours: frames sent through AF_XDP bypass the
    /// kernel's stack, so without this nothing would ever confirm a neighbour again.
    public static let refreshInterval = 5

    private var requests: NetlinkSocket
    private var events: NetlinkSocket
    private var watched: [IPAddress: NextHopState] = [:]
    /// Set when events were lost or a re-resolution failed: the next call re-resolves all.
    private var needsFullResolve = false

    /// Opens both sockets in the calling thread's network namespace.
    public init() throws(NetlinkError) {
        let requests = try NetlinkSocket()
        let events = try NetlinkSocket(
            groups: RTNL.groupNeighbour | RTNL.groupIPv4Route | RTNL.groupIPv6Route | RTNL.groupLink
                | RTNL.groupIPv4Address | RTNL.groupIPv6Address
        )
        self.requests = requests
        self.events = events
    }

    /// The descriptor to poll for input (the event socket).
    public var fd: Int32 { events.fd }

    /// The destinations being watched and their last reported state.
    public var watchedStates: [IPAddress: NextHopState] { watched }

    // MARK: - Resolution

    /// The next hop for `destination` now. When the kernel has no usable neighbour entry it
    /// is asked to resolve one (see `probe`) and the answer is `.pending`; the result of
    /// that resolution arrives as a neighbour event (`watch` to be told).
    public mutating func resolve(_ destination: IPAddress) throws(NetlinkError) -> NextHopState {
        let route: Route
        switch try lookupRoute(destination) {
        case .found(let found): route = found
        case .unreachable(let reason): return .unreachable(reason)
        }
        let target = route.gateway ?? destination
        guard let entry = try lookupNeighbour(target, on: route.index) else {
            try probe(target, on: route.index)
            return .pending(interfaceIndex: route.index, address: target)
        }
        if entry.state & NUD.usable != 0, let mac = entry.mac {
            return .resolved(NextHop(interfaceIndex: route.index, mac: mac, gateway: route.gateway, source: route.source))
        }
        switch entry.state {
        case 0x20:  // NUD_FAILED: re-probed by `refresh`, not here, or each failure would start the next probe
            return .unreachable(.neighbourFailed(interfaceIndex: route.index, address: target))
        case 0x01:  // NUD_INCOMPLETE: the kernel is already asking
            return .pending(interfaceIndex: route.index, address: target)
        default:  // NUD_NONE: created but never used
            try probe(target, on: route.index)
            return .pending(interfaceIndex: route.index, address: target)
        }
    }

    // MARK: - Watching

    /// Resolves `destination` and reports its future changes from `handleReadable` and
    /// `refresh`. Returns the current state.
    @discardableResult
    public mutating func watch(_ destination: IPAddress) throws(NetlinkError) -> NextHopState {
        let state = try resolve(destination)
        watched[destination] = state
        return state
    }

    public mutating func unwatch(_ destination: IPAddress) {
        watched[destination] = nil
    }

    /// Reads every queued event and re-resolves the watched destinations they concern:
    /// a neighbour event those whose next hop it names; a route, address or link event (or
    /// lost events) all of them. Returns the destinations whose state changed. Call it when
    /// `fd` is readable; it does not block.
    public mutating func handleReadable() throws(NetlinkError) -> [NextHopChange] {
        var neighbours: Set<NeighbourKey> = []
        var all = needsFullResolve
        while true {
            let messages: [NetlinkMessage]
            do {
                messages = try events.receive()
            } catch where error.code == "netlink.overrun" {
                all = true
                continue
            }
            if messages.isEmpty { break }
            for message in messages {
                switch message.type {
                case RTNL.newNeighbour, RTNL.deleteNeighbour:
                    guard message.payload.count >= 12,
                        let raw = message.attributes(after: 12)[RTNL.neighbourDestination],
                        let address = IPAddress(kernelBytes: raw)
                    else { continue }
                    neighbours.insert(NeighbourKey(index: message.payload.load(Int32.self, at: 4), address: address))
                default:
                    all = true
                }
            }
        }
        if !all && neighbours.isEmpty { return [] }
        return try reresolve { destination, state in
            all || state.neighbour(for: destination).map(neighbours.contains) == true
        }
    }

    /// Re-resolves every watched destination and asks the kernel to re-confirm the
    /// neighbours it resolves dynamically (stale ones are probed, failed ones probed again).
    /// Static entries — an operator's `nud permanent`, a NOARP interface's — are read, never
    /// written: the probe is an `RTM_NEWNEIGH` with state 0, which the kernel applies to them
    /// too, turning a permanent entry incomplete, then failed. Returns the destinations whose
    /// state changed. Call it every `refreshInterval` seconds.
    public mutating func refresh() throws(NetlinkError) -> [NextHopChange] {
        var probed: Set<NeighbourKey> = []
        for (destination, state) in watched {
            guard let key = state.neighbour(for: destination), probed.insert(key).inserted else { continue }
            if let entry = try lookupNeighbour(key.address, on: key.index), entry.state & NUD.staticEntry != 0 { continue }
            try probe(key.address, on: key.index)
        }
        return try reresolve { _, _ in true }
    }

    private mutating func reresolve(
        _ selected: (IPAddress, NextHopState) -> Bool
    ) throws(NetlinkError) -> [NextHopChange] {
        needsFullResolve = true
        var changes: [NextHopChange] = []
        for (destination, old) in watched where selected(destination, old) {
            let new = try resolve(destination)
            if new != old {
                watched[destination] = new
                changes.append(NextHopChange(destination: destination, old: old, new: new))
            }
        }
        needsFullResolve = false
        return changes
    }

    // MARK: - Kernel requests

    /// `RTM_GETROUTE` for `destination`: the route the kernel would use to send to it.
    mutating func lookupRoute(
        _ destination: IPAddress
    ) throws(NetlinkError) -> RouteLookup {
        var request = NetlinkRequest(type: RTNL.getRoute, flags: RTNL.request)
        request.append(destination.family)
        request.append(UInt8(destination.isIPv4 ? 32 : 128))  // destination prefix length
        request.append(UInt8(0))  // source prefix length
        request.append(UInt8(0))  // tos
        request.append(UInt8(0))  // table
        request.append(UInt8(0))  // protocol
        request.append(UInt8(0))  // scope
        request.append(UInt8(0))  // type
        request.append(UInt32(0))  // flags
        request.attribute(RTNL.routeDestination, destination.kernelBytes)
        let replies: [NetlinkMessage]
        do {
            replies = try requests.request(request)
        } catch where [ENETUNREACH, EHOSTUNREACH, EACCES, EINVAL, EPERM].contains(error.errno) && error.code == "netlink.request" {
            return .unreachable(.noRoute(errno: error.errno))
        }
        guard let route = replies.first(where: { $0.type == RTNL.newRoute }), route.payload.count >= 12 else {
            throw NetlinkError(code: "netlink.malformed", message: "no RTM_NEWROUTE for \(destination)", errno: 0)
        }
        let type = route.payload[7]
        if type == RTNL.routeLocal { return .unreachable(.local) }
        guard type == RTNL.routeUnicast else { return .unreachable(.rejected(routeType: type)) }
        let attributes = route.attributes(after: 12)
        guard let index = attributes[RTNL.routeOutputInterface]?.load(Int32.self) else {
            throw NetlinkError(code: "netlink.malformed", message: "route to \(destination) has no interface", errno: 0)
        }
        var gateway = attributes[RTNL.routeGateway].flatMap(IPAddress.init(kernelBytes:))
        if gateway == nil, let via = attributes[RTNL.routeVia], via.count > 2 {
            gateway = IPAddress(kernelBytes: via.dropFirst(2))  // struct rtvia: family, then the address
        }
        let source = attributes[RTNL.routePreferredSource].flatMap(IPAddress.init(kernelBytes:))
        return .found(Route(index: index, gateway: gateway, source: source))
    }

    /// `RTM_GETNEIGH` for `address` on `index`: its NUD state and MAC, or nil without an entry.
    mutating func lookupNeighbour(
        _ address: IPAddress, on index: Int32
    ) throws(NetlinkError) -> (state: UInt16, mac: MACAddress?)? {
        var request = NetlinkRequest(type: RTNL.getNeighbour, flags: RTNL.request)
        Self.appendNeighbourHeader(&request, address, index, flags: 0)
        request.attribute(RTNL.neighbourDestination, address.kernelBytes)
        let replies: [NetlinkMessage]
        do {
            replies = try requests.request(request)
        } catch where error.errno == ENOENT && error.code == "netlink.request" {
            return nil
        }
        guard let entry = replies.first(where: { $0.type == RTNL.newNeighbour }), entry.payload.count >= 12 else {
            return nil
        }
        let mac = entry.attributes(after: 12)[RTNL.neighbourLinkAddress].flatMap(MACAddress.init(kernelBytes:))
        return (entry.payload.load(UInt16.self, at: 8), mac)
    }

    /// Asks the kernel to resolve (or re-confirm) `address` on `index`: `RTM_NEWNEIGH` with
    /// `NTF_USE`, creating the entry if needed. The kernel then does what a packet sent to
    /// that neighbour would trigger (`neigh_event_send`: INCOMPLETE and an ARP/NS for a new
    /// entry, DELAY then a unicast probe for a stale one), with no socket or packet of ours.
    mutating func probe(_ address: IPAddress, on index: Int32) throws(NetlinkError) {
        var request = NetlinkRequest(type: RTNL.newNeighbour, flags: RTNL.request | RTNL.create)
        Self.appendNeighbourHeader(&request, address, index, flags: RTNL.neighbourUse)
        request.attribute(RTNL.neighbourDestination, address.kernelBytes)
        _ = try requests.request(request)
    }

    /// struct ndmsg: family, 3 bytes of padding, ifindex, state (NUD_NONE), flags, type.
    private static func appendNeighbourHeader(
        _ request: inout NetlinkRequest, _ address: IPAddress, _ index: Int32, flags: UInt8
    ) {
        request.append(address.family)
        request.append(UInt8(0))
        request.append(UInt16(0))
        request.append(index)
        request.append(UInt16(0))
        request.append(flags)
        request.append(UInt8(0))
    }
}

/// Neighbour (NUD) states, `include/uapi/linux/neighbour.h`.
enum NUD {
    static let noARP: UInt16 = 0x40
    static let permanent: UInt16 = 0x80
    /// Entries the kernel does not resolve and the engine must not write.
    static let staticEntry: UInt16 = noARP | permanent
    /// Entries with a MAC frames can be sent to: REACHABLE, STALE, DELAY, PROBE and the static ones.
    static let usable: UInt16 = 0x02 | 0x04 | 0x08 | 0x10 | staticEntry
}

extension NextHopState {
    /// The neighbour `destination`'s state depends on, if any.
    func neighbour(for destination: IPAddress) -> NeighbourKey? {
        switch self {
        case .resolved(let hop): NeighbourKey(index: hop.interfaceIndex, address: hop.gateway ?? destination)
        case .pending(let index, let address): NeighbourKey(index: index, address: address)
        case .unreachable(.neighbourFailed(let index, let address)): NeighbourKey(index: index, address: address)
        case .unreachable: nil
        }
    }
}
