import CVoxBPF
import CXDP
import Glibc
import VoxWire

/// The load generator's return counter (bpf/voxedge_loadgen.bpf.c), loaded and attached to
/// the generator's interface through a bpf_link: it counts and drops the RTP the engine
/// forwards to the generator-side "backend" address, and passes everything else.
///
/// Owns the libbpf object and the link; both go when this value does (or the process dies),
/// so nothing stays attached.
public struct ReturnCounter: ~Copyable {
    /// What the program counts, summed over CPUs.
    public struct Counts: Sendable, Equatable {
        /// UDP datagrams to the backend address and port range (dropped).
        public var returned: UInt64 = 0
        /// Those that were RTP whose payload starts with the magic, at the expected length.
        public var verified: UInt64 = 0
        /// Their UDP payload bytes.
        public var bytes: UInt64 = 0
        /// Everything else, passed to the kernel.
        public var passed: UInt64 = 0

        public init() {}
    }

    private let object: OpaquePointer
    /// The counters map's fd, owned by `object`.
    private let countersFD: Int32
    /// The bpf_link's fd: the program is detached when it closes.
    private let linkFD: Int32
    /// How the program runs on the interface.
    public let mode: XDPMode

    /// Loads the object, writes its configuration and attaches it natively to `interface`
    /// of this thread's network namespace (generic mode only if the driver cannot).
    /// The corresponding C functions are `bpf_object__open_file`, `bpf_object__load` and
    /// `bpf_link_create`.
    public init(
        objectPath: String = XDPProgram.defaultObjectPath(named: "voxedge_loadgen.bpf.o"),
        interface: String, backend: IPAddress, ports: ClosedRange<UInt16>, magic: UInt32, payloadLength: Int
    ) throws(XDPError) {
        guard backend.isIPv4 else { throw XDPError(.invalidArgument, "the return counter takes an IPv4 backend") }
        guard access(objectPath, R_OK) == 0 else {
            throw XDPError(.objectNotFound, "BPF object \(objectPath) (build it with bpf/build.sh)", errno: errno)
        }
        let ifindex = Int32(bitPattern: if_nametoindex(interface))
        guard ifindex != 0 else { throw XDPError(.interfaceNotFound, "no interface \(interface)", errno: errno) }
        guard let object = bpf_object__open_file(objectPath, nil) else {
            throw XDPError(.loadFailed, "cannot open BPF object \(objectPath)", errno: errno)
        }
        func fail(_ error: XDPError) -> XDPError {
            bpf_object__close(object)
            return error
        }
        let status = bpf_object__load(object)
        guard status == 0 else { throw fail(XDPError(.loadFailed, "kernel refused \(objectPath)", errno: -status)) }
        guard let program = bpf_object__find_program_by_name(object, VOX_LG_PROG_NAME) else {
            throw fail(XDPError(.loadFailed, "\(objectPath) has no program \(VOX_LG_PROG_NAME)"))
        }
        let configFD = bpf_object__find_map_fd_by_name(object, VOX_LG_MAP_CONFIG)
        let countersFD = bpf_object__find_map_fd_by_name(object, VOX_LG_MAP_COUNTERS)
        guard configFD >= 0, countersFD >= 0 else { throw fail(XDPError(.loadFailed, "\(objectPath) lacks its maps")) }
        var key: UInt32 = 0
        var config = vox_lg_config()
        config.backend_addr = backend.ipv4.bigEndian
        config.port_low = ports.lowerBound
        config.port_high = ports.upperBound
        config.magic = magic.bigEndian
        config.payload_length = UInt32(payloadLength)
        let updated = bpf_map_update_elem(configFD, &key, &config, UInt64(BPF_ANY))
        guard updated == 0 else { throw fail(XDPError(.mapOperationFailed, "configuring \(VOX_LG_MAP_CONFIG)", errno: -updated)) }
        var failures: [String] = []
        for (mode, flags) in [(XDPMode.native, UInt32(XDP_FLAGS_DRV_MODE)), (.generic, UInt32(XDP_FLAGS_SKB_MODE))] {
            let fd = vox_bpf_link_create_xdp(bpf_program__fd(program), ifindex, flags)
            if fd >= 0 {
                self.object = object
                self.countersFD = countersFD
                self.linkFD = fd
                self.mode = mode
                return
            }
            failures.append("\(mode): \(XDPError.errnoText(-fd))")
        }
        throw fail(XDPError(.attachFailed, "cannot attach \(VOX_LG_PROG_NAME) to \(interface) (\(failures.joined(separator: "; ")))"))
    }

    deinit {
        close(linkFD)
        bpf_object__close(object)
    }

    /// The counters now, summed over CPUs (a system call per counter: once a second, not
    /// per packet). The corresponding C function is `bpf_map_lookup_elem`.
    public func read() throws(XDPError) -> Counts {
        let cpus = Int(libbpf_num_possible_cpus())
        guard cpus > 0 else { throw XDPError(.mapOperationFailed, "cannot count possible CPUs", errno: -Int32(cpus)) }
        var values = [UInt64](repeating: 0, count: cpus)
        func sum(_ index: vox_lg_counter) throws(XDPError) -> UInt64 {
            var key = index.rawValue
            let status = values.withUnsafeMutableBytes { bpf_map_lookup_elem(countersFD, &key, $0.baseAddress!) }
            guard status == 0 else { throw XDPError(.mapOperationFailed, "lookup in \(VOX_LG_MAP_COUNTERS)", errno: -status) }
            return values.reduce(0, &+)
        }
        var counts = Counts()
        counts.returned = try sum(VOX_LG_RETURNED)
        counts.verified = try sum(VOX_LG_VERIFIED)
        counts.bytes = try sum(VOX_LG_BYTES)
        counts.passed = try sum(VOX_LG_PASSED)
        return counts
    }
}
