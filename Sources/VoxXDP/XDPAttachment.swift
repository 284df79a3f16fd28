import CVoxBPF
import CXDP
import Glibc

/// How an XDP program runs on an interface.
public enum XDPMode: String, Sendable {
    /// In the driver, before an skb exists (what AF_XDP wants).
    case native
    /// After the kernel built an skb ("generic" or "skb" mode): works on any device, slower.
    case generic
    /// On the NIC itself.
    case offloaded
}

/// Which modes `attach` may use.
public enum XDPAttachPolicy: Sendable {
    /// Native, or generic with a log line when the driver cannot run XDP natively.
    case nativeOrGeneric
    /// Native only: fail rather than fall back.
    case nativeOnly
    /// Generic only (tests, devices whose native XDP is known to be broken).
    case genericOnly
}

/// An XDP program attached to an interface, as the kernel reports it.
public struct AttachedXDPProgram: Sendable, Equatable, CustomStringConvertible {
    public var id: UInt32
    /// The program's name as loaded (at most 15 characters); empty if the kernel would not say.
    public var name: String
    public var mode: XDPMode

    public var isVoxEdge: Bool { name == VOX_PROG_NAME }

    public var description: String { "'\(name.isEmpty ? "?" : name)' (id \(id), \(mode) mode)" }

    /// The program attached to interface `ifindex` of this thread's network namespace, if any.
    /// The corresponding C functions are `bpf_xdp_query` and `bpf_obj_get_info_by_fd`.
    public static func query(ifindex: Int32, interface: String) throws(XDPError) -> AttachedXDPProgram? {
        var native: UInt32 = 0
        var generic: UInt32 = 0
        var offloaded: UInt32 = 0
        var attachMode: UInt8 = 0
        let status = vox_bpf_xdp_query(ifindex, &native, &generic, &offloaded, &attachMode)
        guard status == 0 else { throw XDPError(.queryFailed, "XDP query on \(interface)", errno: -status) }
        let found: (UInt32, XDPMode)? =
            native != 0
            ? (native, .native) : generic != 0 ? (generic, .generic) : offloaded != 0 ? (offloaded, .offloaded) : nil
        guard let (id, mode) = found else { return nil }
        return AttachedXDPProgram(id: id, name: programName(id: id), mode: mode)
    }

    /// The counters of this program, when it is VoxEdge's, from any process: the map is
    /// found through the program's map ids (what `bpftool prog show` lists), no bpffs needed.
    /// The corresponding C functions are `bpf_prog_get_fd_by_id` and `bpf_map_get_fd_by_id`.
    public func counterMap() throws(XDPError) -> CounterMap {
        let programFD = bpf_prog_get_fd_by_id(id)
        guard programFD >= 0 else { throw XDPError(.queryFailed, "program id \(id)", errno: -programFD) }
        defer { close(programFD) }
        var info = bpf_prog_info()
        var length = UInt32(MemoryLayout<bpf_prog_info>.size)
        guard bpf_obj_get_info_by_fd(programFD, &info, &length) == 0 else {
            throw XDPError(.queryFailed, "info of program id \(id)", errno: errno)
        }
        var mapIDs = [UInt32](repeating: 0, count: Int(info.nr_map_ids))
        let count = info.nr_map_ids
        info = bpf_prog_info()
        info.nr_map_ids = count
        let status = mapIDs.withUnsafeMutableBufferPointer { ids in
            info.map_ids = UInt64(UInt(bitPattern: ids.baseAddress))
            return bpf_obj_get_info_by_fd(programFD, &info, &length)
        }
        guard status == 0 else { throw XDPError(.queryFailed, "map ids of program id \(id)", errno: errno) }
        for mapID in mapIDs.prefix(Int(min(count, info.nr_map_ids))) {
            let mapFD = bpf_map_get_fd_by_id(mapID)
            guard mapFD >= 0 else { continue }
            defer { close(mapFD) }
            var mapInfo = bpf_map_info()
            var mapLength = UInt32(MemoryLayout<bpf_map_info>.size)
            guard bpf_obj_get_info_by_fd(mapFD, &mapInfo, &mapLength) == 0 else { continue }
            let name = withUnsafeBytes(of: mapInfo.name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name == VOX_MAP_COUNTERS { return try CounterMap(fd: mapFD) }
        }
        throw XDPError(.queryFailed, "program \(self) has no \(VOX_MAP_COUNTERS) map: not VoxEdge's")
    }

    private static func programName(id: UInt32) -> String {
        let fd = bpf_prog_get_fd_by_id(id)
        guard fd >= 0 else { return "" }
        defer { close(fd) }
        var info = bpf_prog_info()
        var length = UInt32(MemoryLayout<bpf_prog_info>.size)
        guard bpf_obj_get_info_by_fd(fd, &info, &length) == 0 else { return "" }
        return withUnsafeBytes(of: info.name) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
    }
}

/// The program attached to one interface through a `bpf_link`.
///
/// Owns the link's file descriptor. The kernel detaches the program when the last fd to
/// the link closes — at `deinit`, at `detach()`, or when the process dies, even by SIGKILL —
/// so a crashed engine never leaves its program behind (a netlink attachment would stay).
public struct XDPAttachment: ~Copyable {
    public let interface: String
    public let ifindex: Int32
    public let mode: XDPMode
    /// The link's fd (`bpftool link show` lists it).
    public let linkFD: Int32

    init(interface: String, ifindex: Int32, mode: XDPMode, linkFD: Int32) {
        self.interface = interface
        self.ifindex = ifindex
        self.mode = mode
        self.linkFD = linkFD
    }

    deinit { close(linkFD) }

    /// Detaches now, even if a forked child still holds a copy of the link's fd.
    /// The corresponding C function is `bpf_link_detach`.
    public consuming func detach() throws(XDPError) {
        let status = bpf_link_detach(linkFD)
        guard status == 0 else { throw XDPError(.attachFailed, "detach from \(interface)", errno: -status) }
    }
}

extension XDPProgram {
    /// Attaches the program to `interface` (of this thread's network namespace) through a
    /// bpf_link: native mode first, generic mode if the driver cannot and `policy` allows,
    /// saying which in a line to `log`.
    ///
    /// Refuses with `foreignProgram`, naming it, when any XDP program is already attached —
    /// someone else's or another engine's — and leaves it in place.
    /// The corresponding C function is `bpf_link_create`.
    public func attach(
        interface: String,
        policy: XDPAttachPolicy = .nativeOrGeneric,
        log: (String) -> Void = { XDPLog.standardError("voxedge: " + $0) }
    ) throws(XDPError) -> XDPAttachment {
        let ifindex = Int32(bitPattern: if_nametoindex(interface))
        guard ifindex != 0 else { throw XDPError(.interfaceNotFound, "no interface \(interface)", errno: errno) }
        try Self.refuseIfOccupied(ifindex: ifindex, interface: interface)

        var modes: [(XDPMode, UInt32)] = []
        if policy != .genericOnly { modes.append((.native, UInt32(XDP_FLAGS_DRV_MODE))) }
        if policy != .nativeOnly { modes.append((.generic, UInt32(XDP_FLAGS_SKB_MODE))) }
        var failures: [String] = []
        var lastErrno: Int32 = 0
        for (mode, flags) in modes {
            let fd = vox_bpf_link_create_xdp(programFD, ifindex, flags)
            if fd >= 0 {
                if !failures.isEmpty {
                    let reasons = failures.joined(separator: "; ")
                    log("XDP: native mode failed on \(interface) (\(reasons)), using generic mode")
                }
                log("XDP: attached \(VOX_PROG_NAME) to \(interface) in \(mode) mode through a bpf_link")
                return XDPAttachment(interface: interface, ifindex: ifindex, mode: mode, linkFD: fd)
            }
            lastErrno = -fd
            // EBUSY/EEXIST: someone attached between the query and now. Never retry over them.
            if lastErrno == EBUSY || lastErrno == EEXIST {
                try Self.refuseIfOccupied(ifindex: ifindex, interface: interface)
                throw XDPError(.attachFailed, "\(interface) is busy with another XDP attachment", errno: lastErrno)
            }
            failures.append("\(mode): \(XDPError.errnoText(lastErrno))")
        }
        throw XDPError(
            .attachFailed,
            "cannot attach to \(interface) (\(failures.joined(separator: "; ")))",
            errno: lastErrno
        )
    }

    private static func refuseIfOccupied(ifindex: Int32, interface: String) throws(XDPError) {
        guard let present = try AttachedXDPProgram.query(ifindex: ifindex, interface: interface) else { return }
        let whose =
            present.isVoxEdge
            ? "another VoxEdge engine holds it" : "VoxEdge never replaces an XDP program it did not attach"
        throw XDPError(
            .foreignProgram,
            "\(interface) already has XDP program \(present) attached; \(whose). "
                + "Detach it first (`ip link set dev \(interface) xdp off`, or stop the process holding its bpf_link)"
        )
    }
}

/// Where the loader's log lines go when the caller gives no logger.
public enum XDPLog {
    /// Writes `line` and a newline to fd 2 with one `write` (no stdio, no Foundation).
    public static func standardError(_ line: String) {
        var text = line
        text.append("\n")
        text.withUTF8 { bytes in _ = write(2, bytes.baseAddress, bytes.count) }
    }
}
