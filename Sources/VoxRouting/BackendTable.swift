import VoxMedia
import VoxWire

/// An inference backend as the packet path sees it: where to send a session's audio.
public struct Backend: Sendable, Equatable {
    public enum State: UInt8, Sendable { case active, draining, down }
    public var address: IPAddress
    public var port: UDPPort
    /// The next hop's MAC (resolved by the control plane from the kernel's tables).
    public var mac: MACAddress
    public var state: State
    /// The backend protocol's shared key (docs/backend-protocol.md). A backend with a key gets
    /// start, end and keepalives, may flush, and has its audio paced toward the client; one
    /// without speaks plain RTP, forwarded as it arrives, and every control message from it
    /// is refused.
    public var key: HMACSHA1Key?

    public init(address: IPAddress, port: UDPPort, mac: MACAddress, state: State = .active, key: HMACSHA1Key? = nil) {
        self.address = address
        self.port = port
        self.mac = mac
        self.state = state
        self.key = key
    }
}

/// The backend table workers read: index → backend. Immutable once built; the routing
/// issue replaces it with snapshots of the same shape published by the control thread.
public final class BackendTable: @unchecked Sendable {
    public let count: Int
    public let entries: UnsafeMutablePointer<Backend>

    public init(_ backends: [Backend]) {
        count = backends.count
        entries = .allocate(capacity: max(1, backends.count))
        entries.initialize(from: backends, count: backends.count)
    }

    deinit {
        for i in 0..<count { entries[i].key?.wipe() }
        entries.deinitialize(count: count)
        entries.deallocate()
    }

    /// The backend at `index`, if there is one and it takes traffic.
    @inlinable
    public func usable(_ index: Int32) -> UnsafePointer<Backend>? {
        guard index >= 0, Int(index) < count, entries[Int(index)].state != .down else { return nil }
        return UnsafePointer(entries + Int(index))
    }

    public subscript(_ index: Int) -> Backend { entries[index] }
}

/// Where workers find the current `BackendTable`: the control side publishes a new table
/// (a backend added, drained, given a new next-hop MAC), workers pick it up at their next
/// burst.
public typealias BackendDirectory = SnapshotPublisher<BackendTable>

extension SnapshotPublisher where Snapshot == BackendTable {
    /// The table now (control side).
    public var table: BackendTable { snapshot }
}

extension FlowKey {
    /// The backend leg of session `slot` as the edge sees it: remote = the backend, local =
    /// the edge's address toward backends and the slot's reserved port (DESIGN §4).
    public static func backendLeg(_ backend: Backend, edge: IPAddress, portBase: UInt16, slot: Int) -> FlowKey {
        FlowKey(
            remoteAddress: backend.address, remotePort: backend.port, localAddress: edge,
            localPort: UDPPort(portBase &+ UInt16(truncatingIfNeeded: slot)))
    }
}
