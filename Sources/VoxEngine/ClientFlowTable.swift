import VoxRouting
import VoxWire

/// Every client 5-tuple the control side has placed, and its session slot: how a worker
/// finds the owner of a client flow that arrives on its queue but belongs to another
/// worker. A kernel's RSS (AF_XDP) or SO_REUSEPORT hash (sockets) picks the queue a client
/// lands on, and the control side cannot know it when it places a static-key session, so
/// a worker that misses in its own index looks here, then hands the frame to the owner.
/// Immutable once built; published through a `SnapshotPublisher`.
public final class ClientFlowTable: @unchecked Sendable {
    let index: FixedIndex<FlowKey>

    public init(_ flows: [FlowKey: Int32]) {
        var index = FixedIndex<FlowKey>(
            capacity: max(16, flows.count),
            placeholder: FlowKey(
                remoteAddress: IPAddress(ipv4: 0),
                remotePort: UDPPort(0),
                localAddress: IPAddress(ipv4: 0),
                localPort: UDPPort(0)
            )
        )
        for (flow, slot) in flows { _ = index.insert(flow, slot) }
        self.index = index
    }

    public var count: Int { index.count }

    /// The slot of the session placed at `flow`, if any.
    public func slot(of flow: FlowKey) -> Int32? { index.find(flow) }
}

public typealias ClientFlowDirectory = SnapshotPublisher<ClientFlowTable>
