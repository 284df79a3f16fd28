import CVoxBPF
import CXDP
import Glibc

/// Sizes of the program's maps, fixed when the program is loaded.
public struct XDPLimits: Sendable, Equatable {
    /// Admitted 5-tuples (`vox_flows`): two per session (client and backend leg) plus rebinds.
    public var maxFlows: UInt32 = UInt32(VOX_DEFAULT_MAX_FLOWS)
    /// Blocklist prefixes (`vox_blocklist`).
    public var maxBlocklistEntries: UInt32 = UInt32(VOX_DEFAULT_MAX_BLOCKLIST)
    /// Sources with a STUN token bucket (`vox_stun`, least recently used evicted first).
    public var maxSTUNSources: UInt32 = UInt32(VOX_DEFAULT_MAX_STUN_SOURCES)
    /// NIC queues that can have an AF_XDP socket (`vox_xsks`).
    public var maxQueues: UInt32 = UInt32(VOX_DEFAULT_MAX_QUEUES)
    /// Slots of the flow filter (`vox_filter`, a power of two): nil sizes it from `maxFlows`
    /// (16 slots a flow, so at most 1 in 16 unadmitted 5-tuples shares a slot with an admitted
    /// one when the map is full; between 4,096 and `VOX_FILTER_SLOTS`); 0 turns it off and
    /// RTP, RTCP and the backend leg are looked up in `vox_flows` like DTLS.
    public var flowFilterSlots: UInt32? = nil

    /// The filter's slots as loaded: 0 (off) or a power of two in 4096...VOX_FILTER_SLOTS.
    var resolvedFilterSlots: UInt32 {
        if let slots = flowFilterSlots {
            guard slots > 0 else { return 0 }
            return max(4096, min(slots, VOX_FILTER_SLOTS).nextPowerOfTwo)
        }
        return min(max(4096, (UInt64(maxFlows) * 16).nextPowerOfTwo), UInt64(VOX_FILTER_SLOTS)).clamped
    }

    public init() {}
}

extension FixedWidthInteger {
    /// The smallest power of two not below this value (1 for 0).
    var nextPowerOfTwo: Self { self <= 1 ? 1 : 1 << (Self.bitWidth - (self - 1).leadingZeroBitCount) }
}

extension UInt64 {
    var clamped: UInt32 { UInt32(Swift.min(self, UInt64(UInt32.max))) }
}

/// What an XDP program returns (`enum xdp_action`).
public enum XDPAction: UInt32, Sendable, CustomStringConvertible {
    case aborted = 0
    case drop = 1
    case pass = 2
    case tx = 3
    case redirect = 4

    public var description: String {
        switch self {
        case .aborted: "XDP_ABORTED"
        case .drop: "XDP_DROP"
        case .pass: "XDP_PASS"
        case .tx: "XDP_TX"
        case .redirect: "XDP_REDIRECT"
        }
    }
}

/// The VoxEdge XDP program and its maps, loaded into the kernel (not attached anywhere).
///
/// Owns the libbpf object: closing it (deinit) unloads the program and the maps unless
/// something else still refers to them (an attachment's link, a map wrapper's fd). Loading
/// uses plain libbpf and pins nothing, so it needs no bpffs (absent in `ip netns exec`).
public struct XDPProgram: ~Copyable {
    /// `struct bpf_object *`.
    private let object: OpaquePointer
    /// The program's fd, owned by `object`.
    public let programFD: Int32
    /// Where the object was loaded from.
    public let objectPath: String
    /// The flow filter's mask (slots - 1; 0: off) and hash key, chosen at load.
    public let filterMask: UInt32
    public let filterSeed: UInt64

    /// Opens the compiled object (bpf/build.sh writes it), sizes the maps and loads
    /// everything into the kernel (the verifier runs here).
    /// The corresponding C functions are `bpf_object__open_file` and `bpf_object__load`.
    public init(objectPath: String, limits: XDPLimits = XDPLimits()) throws(XDPError) {
        guard access(objectPath, R_OK) == 0 else {
            throw XDPError(.objectNotFound, "BPF object \(objectPath) (build it with bpf/build.sh)", errno: errno)
        }
        guard let object = bpf_object__open_file(objectPath, nil) else {
            throw XDPError(.loadFailed, "cannot open BPF object \(objectPath)", errno: errno)
        }
        func fail(_ error: XDPError) -> XDPError {
            bpf_object__close(object)
            return error
        }
        let sizes: [(String, UInt32)] = [
            (VOX_MAP_FLOWS, limits.maxFlows), (VOX_MAP_BLOCKLIST, limits.maxBlocklistEntries),
            (VOX_MAP_STUN, limits.maxSTUNSources), (VOX_MAP_XSKS, limits.maxQueues),
        ]
        for (name, size) in sizes {
            guard let map = bpf_object__find_map_by_name(object, name) else {
                throw fail(XDPError(.loadFailed, "\(objectPath) has no map \(name): not a VoxEdge object"))
            }
            let status = bpf_map__set_max_entries(map, size)
            guard status == 0 else {
                throw fail(XDPError(.invalidArgument, "size \(size) for map \(name)", errno: -status))
            }
        }
        let status = bpf_object__load(object)
        guard status == 0 else {
            throw fail(
                XDPError(.loadFailed, "kernel refused \(objectPath) (libbpf printed the verifier log)", errno: -status)
            )
        }
        guard let program = bpf_object__find_program_by_name(object, VOX_PROG_NAME) else {
            throw fail(XDPError(.loadFailed, "\(objectPath) has no program \(VOX_PROG_NAME)"))
        }
        self.object = object
        self.programFD = bpf_program__fd(program)
        self.objectPath = objectPath
        let slots = limits.resolvedFilterSlots
        self.filterMask = slots == 0 ? 0 : slots - 1
        var rng = SystemRandomNumberGenerator()
        self.filterSeed = UInt64.random(in: 1...UInt64.max, using: &rng)
    }

    deinit { bpf_object__close(object) }

    /// Where the object usually is, first match: `$VOXEDGE_BPF_OBJECT` (for voxedge.bpf.o);
    /// beside the executable; `.build/bpf/` of a SwiftPM build tree the executable runs
    /// from; `/usr/lib/voxedge/`.
    public static func defaultObjectPath(named name: String = "voxedge.bpf.o") -> String {
        if name == "voxedge.bpf.o", let path = getenv("VOXEDGE_BPF_OBJECT") { return String(cString: path) }
        var candidates: [String] = []
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let length = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        if length > 0 {
            let executable = String(decoding: buffer.prefix(length).map { UInt8(bitPattern: $0) }, as: UTF8.self)
            let directory = executable.split(separator: "/", omittingEmptySubsequences: false).dropLast()
                .joined(separator: "/")
            // .build/<triple>/<configuration>/voxedge → .build/bpf/<name>
            candidates += [directory + "/" + name, directory + "/../../bpf/" + name]
        }
        candidates.append("/usr/lib/voxedge/" + name)
        return candidates.first { access($0, R_OK) == 0 } ?? candidates.last!
    }

    private func mapFD(_ name: String) throws(XDPError) -> Int32 {
        let fd = bpf_object__find_map_fd_by_name(object, name)
        guard fd >= 0 else { throw XDPError(.loadFailed, "no map \(name) in \(objectPath)", errno: -fd) }
        return fd
    }

    public func admittedFlows() throws(XDPError) -> AdmittedFlows {
        try AdmittedFlows(fd: mapFD(VOX_MAP_FLOWS), filter: FlowFilter(fd: mapFD(VOX_MAP_FILTER), mask: filterMask, seed: filterSeed))
    }
    public func blocklist() throws(XDPError) -> Blocklist { try Blocklist(fd: mapFD(VOX_MAP_BLOCKLIST)) }
    public func counterMap() throws(XDPError) -> CounterMap { try CounterMap(fd: mapFD(VOX_MAP_COUNTERS)) }
    public func configMap() throws(XDPError) -> ConfigMap { try ConfigMap(fd: mapFD(VOX_MAP_CONFIG)) }
    public func socketMap() throws(XDPError) -> SocketMap { try SocketMap(fd: mapFD(VOX_MAP_XSKS)) }

    /// Writes the configuration, with the flow filter's mask and key; until then the program
    /// passes everything.
    public func configure(_ configuration: XDPConfiguration) throws(XDPError) {
        var value = try configuration.bpfValue()
        value.filter_mask = filterMask
        value.filter_seed = filterSeed
        try configMap().map.update(0, value)
    }

    /// The kernel's count of the program's runs and their total time since load — counted only
    /// while run-time statistics are on (`kernel.bpf_stats_enabled`, or an fd from
    /// `XDPProgram.enableRunTimeStatistics()` held open); zeros otherwise.
    /// The corresponding C function is `bpf_obj_get_info_by_fd`.
    public func runStatistics() -> (nanoseconds: UInt64, runs: UInt64) {
        var info = bpf_prog_info()
        var length = UInt32(MemoryLayout<bpf_prog_info>.size)
        guard bpf_obj_get_info_by_fd(programFD, &info, &length) == 0 else { return (0, 0) }
        return (info.run_time_ns, info.run_cnt)
    }

    /// Turns the kernel's run-time statistics of every BPF program on until the returned fd is
    /// closed (`BPF_ENABLE_STATS`: nothing to restore, even if the caller dies), or nil with
    /// the errno. The corresponding C function is `bpf_enable_stats`.
    public static func enableRunTimeStatistics() -> Result<Int32, XDPError> {
        let fd = bpf_enable_stats(BPF_STATS_RUN_TIME)
        guard fd >= 0 else { return .failure(XDPError(.invalidArgument, "BPF_ENABLE_STATS", errno: -fd)) }
        return .success(fd)
    }

    /// Every counter, summed over CPUs.
    public func counters() throws(XDPError) -> XDPCounters { try counterMap().read() }

    /// Runs the program over `frame` `repeat` times in the kernel without any interface
    /// (`BPF_PROG_TEST_RUN`, as Katran's BpfTester does) and returns the last verdict.
    /// Maps and counters are the real ones. The kernel requires at least an Ethernet
    /// header's 14 bytes. The corresponding C function is `bpf_prog_test_run_opts`.
    public func testRun(_ frame: [UInt8], repeat count: Int32 = 1) throws(XDPError) -> XDPAction {
        var retval: UInt32 = 0
        var duration: UInt32 = 0
        let status = frame.withUnsafeBytes {
            vox_bpf_prog_test_run(programFD, $0.baseAddress, UInt32($0.count), count, &retval, &duration)
        }
        guard status == 0 else {
            throw XDPError(.testRunFailed, "test run over a \(frame.count)-byte frame", errno: -status)
        }
        guard let action = XDPAction(rawValue: retval) else {
            throw XDPError(.testRunFailed, "program returned \(retval), not an XDP action")
        }
        return action
    }
}
