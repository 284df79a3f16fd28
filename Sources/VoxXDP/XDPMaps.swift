import CVoxBPF
import CXDP
import Glibc
import VoxWire

// Typed views of the program's maps (bpf/voxedge.bpf.c has a comment on each). Each owns
// a dup of the map's fd, so a worker can keep its own and outlive the loader's handle.

/// `vox_flows`: the 5-tuples workers have admitted. DTLS and RTP from any other 5-tuple are
/// dropped in XDP; STUN from one is rate-limited.
public struct AdmittedFlows: ~Copyable, Sendable {
    public let map: BPFMap<vox_flow_key, vox_flow_value>

    init(fd: Int32) throws(XDPError) { map = try BPFMap(duplicating: fd, name: VOX_MAP_FLOWS) }

    /// Lets DTLS and SRTP of `flow` through to the sockets. Idempotent (rebinding updates
    /// the owner). Fails with `mapOperationFailed` (E2BIG) when the map is full.
    public func admit(_ flow: FlowKey, session: UInt32, worker: UInt32) throws(XDPError) {
        try map.update(flow.bpfKey, vox_flow_value(session: session, worker: worker))
    }

    /// Stops admitting `flow`; false if it was not admitted.
    @discardableResult
    public func forget(_ flow: FlowKey) throws(XDPError) -> Bool { try map.delete(flow.bpfKey) }

    /// Who admitted `flow`, if anyone.
    public func owner(of flow: FlowKey) throws(XDPError) -> vox_flow_value? { try map.lookup(flow.bpfKey) }
}

/// `vox_blocklist`: source prefixes dropped on the engine's ports (never on other ports,
/// so a wrong entry cannot cut SSH or signaling).
public struct Blocklist: ~Copyable, Sendable {
    public let map: BPFMap<vox_lpm_key, UInt32>

    init(fd: Int32) throws(XDPError) { map = try BPFMap(duplicating: fd, name: VOX_MAP_BLOCKLIST) }

    /// Drops traffic from `prefix` from now on. `reason` is free for the operator (shown by bpftool).
    public func add(_ prefix: IPPrefix, reason: UInt32 = 0) throws(XDPError) { try map.update(prefix.bpfKey, reason) }

    /// Removes exactly this prefix (not longer or shorter ones); false if it was not there.
    @discardableResult
    public func remove(_ prefix: IPPrefix) throws(XDPError) -> Bool { try map.delete(prefix.bpfKey) }

    /// Whether exactly this prefix is in the list.
    public func contains(_ prefix: IPPrefix) throws(XDPError) -> Bool {
        // A lookup answers for the longest covering prefix, not for this one: walk the keys.
        let wanted = prefix.bpfKey
        var key = vox_lpm_key()
        var next = vox_lpm_key()
        var status = bpf_map_get_next_key(map.fd, nil, &next)
        while status == 0 {
            if next.prefix_len == wanted.prefix_len && next.addr.ipAddress == wanted.addr.ipAddress { return true }
            key = next
            status = bpf_map_get_next_key(map.fd, &key, &next)
        }
        guard status == -ENOENT else { throw XDPError(.mapOperationFailed, "walk of map \(map.name)", errno: -status) }
        return false
    }

    /// Whether traffic from `address` is dropped (some prefix in the list covers it).
    public func covers(_ address: IPAddress) throws(XDPError) -> Bool {
        try map.lookup(vox_lpm_key(prefix_len: 128, addr: vox_addr(address))) != nil
    }
}

/// `vox_counters`: one per-CPU counter per verdict and reason.
public struct CounterMap: ~Copyable, Sendable {
    public let map: BPFMap<UInt32, UInt64>

    init(fd: Int32) throws(XDPError) { map = try BPFMap(duplicating: fd, name: VOX_MAP_COUNTERS) }

    /// Every counter, summed over CPUs. Counters only grow; take differences for rates.
    public func read() throws(XDPError) -> XDPCounters {
        var counters = XDPCounters()
        for counter in XDPCounter.allCases {
            counters[counter] = (try map.lookupPerCPU(counter.rawValue) ?? []).reduce(0, &+)
        }
        return counters
    }
}

/// `vox_config`: ports and STUN rate (struct vox_config).
public struct ConfigMap: ~Copyable, Sendable {
    public let map: BPFMap<UInt32, vox_config>

    init(fd: Int32) throws(XDPError) { map = try BPFMap(duplicating: fd, name: VOX_MAP_CONFIG) }

    /// Takes effect for the next packet (the program reads the entry per packet).
    public func write(_ configuration: XDPConfiguration) throws(XDPError) {
        try map.update(0, try configuration.bpfValue())
    }

    public func read() throws(XDPError) -> vox_config { try map.lookup(0) ?? vox_config() }
}

/// `vox_xsks`: the AF_XDP socket of each NIC queue.
public struct SocketMap: ~Copyable, Sendable {
    public let map: BPFMap<UInt32, UInt32>

    init(fd: Int32) throws(XDPError) { map = try BPFMap(duplicating: fd, name: VOX_MAP_XSKS) }

    /// Steers queue `queue`'s media to the AF_XDP socket `socketFD`.
    public func insert(socket socketFD: Int32, queue: UInt32) throws(XDPError) {
        try map.update(queue, UInt32(bitPattern: socketFD))
    }

    /// Media on `queue` goes to the kernel socket again.
    @discardableResult
    public func remove(queue: UInt32) throws(XDPError) -> Bool { try map.delete(queue) }
}
