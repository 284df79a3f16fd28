import Logging
import VoxIO
import VoxWire

/// The control thread's routing (DESIGN §3): the backend registry, and the table of it the
/// workers read, republished through `directory` whenever what workers see changes — a backend
/// added, removed, drained or undrained, down or up, a next-hop MAC. Load reports change only
/// placement (the control thread's), so they publish nothing.
public final class RouteTable {
    public var registry: BackendRegistry
    public let directory: BackendDirectory
    /// AF_XDP only: the backends' next-hop MACs, kept fresh from the kernel.
    var nextHops: BackendNextHops?
    /// Tables published: for tests and `stats`.
    public private(set) var publications = 0

    public init(registry: BackendRegistry, workers: Int) {
        self.registry = registry
        directory = BackendDirectory(registry.table(mac: { _ in .zero }), workers: workers)
    }

    /// From now on backends' MACs come from the kernel's tables for interface `index` (AF_XDP).
    public func resolveNextHops(interfaceIndex: Int32, logger: Logger) throws {
        let hops = try BackendNextHops(interfaceIndex: interfaceIndex, logger: logger)
        for e in registry.all { hops.watch(e.spec.address) }
        nextHops = hops
        refreshLiveness()
        publish()
    }

    /// Back to kernel-routed sockets (`io: auto` fell back): no MACs to resolve.
    public func forgetNextHops() {
        nextHops = nil
        for e in registry.all where e.down?.hasPrefix("next hop") == true { registry.setDown(e.index, nil) }
        publish()
    }

    public func publish() {
        let hops = nextHops
        directory.publish(registry.table(mac: { address in hops.map { $0.mac(for: address) } ?? .zero }))
        publications += 1
    }

    /// Adds or updates a backend and publishes the table.
    @discardableResult
    public func upsert(_ spec: BackendSpec, draining: Bool? = nil, now: UInt64?) throws(RoutingError)
        -> BackendRegistry.UpsertResult
    {
        let old = registry[id: spec.id]?.spec.address
        let result = try registry.upsert(spec, draining: draining, now: now)
        if let hops = nextHops {
            hops.watch(spec.address)
            if let old, old != spec.address, !registry.all.contains(where: { $0.spec.address == old }) {
                hops.unwatch(old)
            }
            refreshLiveness()
        }
        publish()
        return result
    }

    @discardableResult
    public func remove(_ id: String) throws(RoutingError) -> RegisteredBackend {
        let gone = try registry.remove(id)
        if let hops = nextHops, !registry.all.contains(where: { $0.spec.address == gone.spec.address }) {
            hops.unwatch(gone.spec.address)
        }
        publish()
        return gone
    }

    public func setDraining(_ index: Int32, _ draining: Bool) {
        guard registry[index]?.draining != draining else { return }
        registry.setDraining(index, draining)
        publish()
    }

    /// The control thread's periodic work: next-hop changes republish the table.
    public func tick() {
        guard let hops = nextHops, hops.poll() else { return }
        refreshLiveness()
        publish()
    }

    /// A backend whose next hop is unusable is down, and up again when it is usable.
    func refreshLiveness() {
        guard let hops = nextHops else { return }
        for e in registry.all {
            let problem = hops.problem(for: e.spec.address)
            if problem != nil || e.down?.hasPrefix("next hop") == true {
                registry.setDown(e.index, problem)
            }
        }
    }
}
