import CVoxBPF
import CXDP
import Glibc
import VoxWire

// Typed views of the program's maps (bpf/voxedge.bpf.c has a comment on each). Each owns
// a dup of the map's fd, so a worker can keep its own and outlive the loader's handle.

/// `vox_flows`: the 5-tuples workers have admitted, and `vox_filter`, which counts them by
/// keyed hash. DTLS from any other 5-tuple is dropped in XDP (exact lookup), RTP and RTCP
/// unless they share a filter slot with an admitted one (the worker drops those); STUN from
/// one is rate-limited. The filter follows the map exactly: a count goes up when a 5-tuple
/// is inserted and down when it is deleted, never on an update.
public struct AdmittedFlows: ~Copyable, Sendable {
    public let map: BPFMap<vox_flow_key, vox_flow_value>
    public let filter: FlowFilter

    init(fd: Int32, filter: consuming FlowFilter) throws(XDPError) {
        map = try BPFMap(duplicating: fd, name: VOX_MAP_FLOWS)
        self.filter = filter
    }

    /// Lets DTLS and SRTP of `flow` through to the sockets. Idempotent (rebinding updates
    /// the owner). Fails with `mapOperationFailed` (E2BIG) when the map is full.
    public func admit(_ flow: FlowKey, session: UInt32, worker: UInt32) throws(XDPError) {
        let key = flow.bpfKey
        let value = vox_flow_value(session: session, worker: worker)
        if try map.insertIfAbsent(key, value) {
            filter.count(key, up: true)
        } else {
            try map.update(key, value, flags: UInt64(BPF_EXIST))
        }
    }

    /// Stops admitting `flow`; false if it was not admitted.
    @discardableResult
    public func forget(_ flow: FlowKey) throws(XDPError) -> Bool {
        let key = flow.bpfKey
        guard try map.delete(key) else { return false }
        filter.count(key, up: false)
        return true
    }

    /// Who admitted `flow`, if anyone.
    public func owner(of flow: FlowKey) throws(XDPError) -> vox_flow_value? { try map.lookup(flow.bpfKey) }
}

/// The engine's mapping of `vox_filter`: admitted 5-tuples counted by keyed hash, and the
/// bit per slot the program reads, written in place with atomics (several workers admit at
/// once; no system call per admission).
public struct FlowFilter: ~Copyable, Sendable {
    nonisolated(unsafe) let filter: UnsafeMutablePointer<vox_filter>
    public let mask: UInt32
    public let seed: UInt64
    static let size = MemoryLayout<vox_filter>.size

    init(fd: Int32, mask: UInt32, seed: UInt64) throws(XDPError) {
        let mapped = mmap(nil, Self.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        guard let mapped, mapped != MAP_FAILED else {
            throw XDPError(.mapOperationFailed, "mmap of map \(VOX_MAP_FILTER)", errno: errno)
        }
        filter = mapped.assumingMemoryBound(to: vox_filter.self)
        self.mask = mask
        self.seed = seed
    }

    deinit { munmap(filter, Self.size) }

    /// The slot of `key` (the program computes the same, `vox_flow_filter_slot`).
    public func slot(_ key: vox_flow_key) -> Int {
        withUnsafePointer(to: key) { Int(vox_flow_filter_slot($0, seed, mask)) }
    }

    /// How many admitted 5-tuples share `key`'s slot, and whether its bit is set (clear: the
    /// program drops the RTP of `key`).
    public func state(of key: vox_flow_key) -> (count: UInt8, bit: Bool) {
        var bit: Int32 = 0
        let count = vox_filter_read(filter, UInt32(slot(key)), &bit)
        return (count, bit != 0)
    }

    func count(_ key: vox_flow_key, up: Bool) {
        vox_filter_count(filter, UInt32(slot(key)), up ? 1 : 0)
    }
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

    /// Takes effect for the next packet (the program reads the entry per packet). The flow
    /// filter's mask and key are kept as they are (`XDPProgram.configure` sets them once).
    public func write(_ configuration: XDPConfiguration) throws(XDPError) {
        var value = try configuration.bpfValue()
        let current = try read()
        value.filter_mask = current.filter_mask
        value.filter_seed = current.filter_seed
        try map.update(0, value)
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
