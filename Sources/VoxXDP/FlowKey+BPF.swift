import CVoxBPF
import VoxWire

// Conversions between the engine's types (VoxWire) and the layouts in bpf/voxedge_shared.h.
// The C structs hold addresses and key ports in network byte order; VoxWire holds them as
// numbers. `.bigEndian` turns a number into its network-order memory image on any host.

extension vox_addr {
    /// The 16-byte network-order form of `address` (IPv4 stays IPv4-mapped, as in VoxWire).
    @inlinable
    public init(_ address: IPAddress) {
        self.init(
            words: (
                UInt32(truncatingIfNeeded: address.high >> 32).bigEndian,
                UInt32(truncatingIfNeeded: address.high).bigEndian,
                UInt32(truncatingIfNeeded: address.low >> 32).bigEndian,
                UInt32(truncatingIfNeeded: address.low).bigEndian
            )
        )
    }

    @inlinable
    public var ipAddress: IPAddress {
        IPAddress(
            high: UInt64(UInt32(bigEndian: words.0)) << 32 | UInt64(UInt32(bigEndian: words.1)),
            low: UInt64(UInt32(bigEndian: words.2)) << 32 | UInt64(UInt32(bigEndian: words.3))
        )
    }
}

extension vox_flow_key {
    /// The key the XDP program builds for a datagram of `flow` (remote = its source).
    @inlinable
    public init(_ flow: FlowKey) {
        self.init(
            remote_addr: vox_addr(flow.remoteAddress),
            local_addr: vox_addr(flow.localAddress),
            remote_port: flow.remotePort.rawValue.bigEndian,
            local_port: flow.localPort.rawValue.bigEndian
        )
    }

    @inlinable
    public var flowKey: FlowKey {
        FlowKey(
            remoteAddress: remote_addr.ipAddress,
            remotePort: UDPPort(UInt16(bigEndian: remote_port)),
            localAddress: local_addr.ipAddress,
            localPort: UDPPort(UInt16(bigEndian: local_port))
        )
    }
}

extension FlowKey {
    /// This 5-tuple in the layout of the `vox_flows` map's key.
    @inlinable
    public var bpfKey: vox_flow_key { vox_flow_key(self) }
}
