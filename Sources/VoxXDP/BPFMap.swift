import CXDP
import Glibc

/// A BPF map this value holds open, typed by its C key and value layouts.
///
/// It owns its file descriptor: a `dup` of the loaded object's, so the map stays valid as
/// long as this value lives (a map lives while any fd refers to it) and can be handed to
/// another thread. Map operations are system calls: fine per session, never per packet.
public struct BPFMap<Key: BitwiseCopyable, Value: BitwiseCopyable>: ~Copyable, Sendable {
    public let fd: Int32
    /// The map's name in the object (`bpftool map show name …`).
    public let name: String

    init(duplicating source: Int32, name: String) throws(XDPError) {
        let fd = fcntl(source, F_DUPFD_CLOEXEC, 0)
        guard fd >= 0 else { throw XDPError(.mapOperationFailed, "dup of map \(name)", errno: errno) }
        self.fd = fd
        self.name = name
    }

    deinit { close(fd) }

    /// Inserts or replaces (`flags`: `BPF_ANY`, `BPF_NOEXIST`, `BPF_EXIST`).
    /// The corresponding C function is `bpf_map_update_elem`.
    public func update(_ key: Key, _ value: Value, flags: UInt64 = UInt64(BPF_ANY)) throws(XDPError) {
        var key = key
        var value = value
        let status = bpf_map_update_elem(fd, &key, &value, flags)
        guard status == 0 else { throw XDPError(.mapOperationFailed, "update of map \(name)", errno: -status) }
    }

    /// The value under `key`, or nil. The corresponding C function is `bpf_map_lookup_elem`.
    public func lookup(_ key: Key) throws(XDPError) -> Value? {
        var key = key
        return try withUnsafeTemporaryAllocation(of: Value.self, capacity: 1) { (buffer) throws(XDPError) -> Value? in
            let status = bpf_map_lookup_elem(fd, &key, buffer.baseAddress!)
            if status == -ENOENT { return nil }
            guard status == 0 else { throw XDPError(.mapOperationFailed, "lookup in map \(name)", errno: -status) }
            return buffer[0]
        }
    }

    /// Removes `key`; false if it was not there. The corresponding C function is `bpf_map_delete_elem`.
    @discardableResult
    /// Inserts `key` unless it is there (`BPF_NOEXIST`): true when this call inserted it.
    public func insertIfAbsent(_ key: Key, _ value: Value) throws(XDPError) -> Bool {
        var key = key
        var value = value
        let status = bpf_map_update_elem(fd, &key, &value, UInt64(BPF_NOEXIST))
        if status == -EEXIST { return false }
        guard status == 0 else { throw XDPError(.mapOperationFailed, "insert into map \(name)", errno: -status) }
        return true
    }

    public func delete(_ key: Key) throws(XDPError) -> Bool {
        var key = key
        let status = bpf_map_delete_elem(fd, &key)
        if status == -ENOENT { return false }
        guard status == 0 else { throw XDPError(.mapOperationFailed, "delete from map \(name)", errno: -status) }
        return true
    }

    /// For per-CPU maps: one value per possible CPU, each padded to 8 bytes as the kernel
    /// lays them out. The corresponding C function is `bpf_map_lookup_elem`.
    public func lookupPerCPU(_ key: Key) throws(XDPError) -> [Value]? {
        let cpus = Int(libbpf_num_possible_cpus())
        guard cpus > 0 else { throw XDPError(.mapOperationFailed, "cannot count possible CPUs", errno: -Int32(cpus)) }
        let stride = (MemoryLayout<Value>.size + 7) & ~7
        var key = key
        var bytes = [UInt8](repeating: 0, count: stride * cpus)
        let status = bytes.withUnsafeMutableBytes { bpf_map_lookup_elem(fd, &key, $0.baseAddress!) }
        if status == -ENOENT { return nil }
        guard status == 0 else { throw XDPError(.mapOperationFailed, "lookup in map \(name)", errno: -status) }
        return bytes.withUnsafeBytes { raw in
            (0..<cpus).map { raw.loadUnaligned(fromByteOffset: $0 * stride, as: Value.self) }
        }
    }
}
