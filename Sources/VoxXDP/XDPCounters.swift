import CVoxBPF

/// One of the program's verdict counters (`enum vox_counter` in bpf/voxedge_shared.h);
/// the values come from the C header, so they cannot drift.
public struct XDPCounter: RawRepresentable, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    init(_ value: vox_counter) { self.rawValue = value.rawValue }

    public static let passNotIP = XDPCounter(VOX_CNT_PASS_NOT_IP)
    public static let passNotUDP = XDPCounter(VOX_CNT_PASS_NOT_UDP)
    public static let passOtherPort = XDPCounter(VOX_CNT_PASS_OTHER_PORT)
    public static let passTruncated = XDPCounter(VOX_CNT_PASS_TRUNCATED)
    public static let passFragment = XDPCounter(VOX_CNT_PASS_FRAGMENT)
    public static let passNoSocket = XDPCounter(VOX_CNT_PASS_NO_SOCKET)
    public static let redirect = XDPCounter(VOX_CNT_REDIRECT)
    public static let dropBlocklist = XDPCounter(VOX_CNT_DROP_BLOCKLIST)
    public static let dropUnadmitted = XDPCounter(VOX_CNT_DROP_UNADMITTED)
    public static let dropSTUNRate = XDPCounter(VOX_CNT_DROP_STUN_RATE)
    public static let dropInvalid = XDPCounter(VOX_CNT_DROP_INVALID)

    public static let count = Int(VOX_CNT__COUNT.rawValue)
    public static let allCases: [XDPCounter] = (0..<UInt32(count)).map(XDPCounter.init(rawValue:))

    /// The name used in logs, CLI output and metrics.
    public var description: String {
        switch self {
        case .passNotIP: "pass_not_ip"
        case .passNotUDP: "pass_not_udp"
        case .passOtherPort: "pass_other_port"
        case .passTruncated: "pass_truncated"
        case .passFragment: "pass_fragment"
        case .passNoSocket: "pass_no_socket"
        case .redirect: "redirect"
        case .dropBlocklist: "drop_blocklist"
        case .dropUnadmitted: "drop_unadmitted"
        case .dropSTUNRate: "drop_stun_rate"
        case .dropInvalid: "drop_invalid"
        default: "counter_\(rawValue)"
        }
    }
}

/// A snapshot of every counter, summed over CPUs.
public struct XDPCounters: Sendable, Equatable, CustomStringConvertible {
    public var values: [UInt64]

    public init(values: [UInt64] = Array(repeating: 0, count: XDPCounter.count)) { self.values = values }

    public subscript(counter: XDPCounter) -> UInt64 {
        get { values[Int(counter.rawValue)] }
        set { values[Int(counter.rawValue)] = newValue }
    }

    /// Packets the program has seen: every packet increments exactly one counter.
    public var total: UInt64 { values.reduce(0, &+) }

    /// What happened between `earlier` and this snapshot.
    public func since(_ earlier: XDPCounters) -> XDPCounters {
        XDPCounters(values: zip(values, earlier.values).map { $0 &- $1 })
    }

    /// `name=value` pairs, nonzero counters only, in counter order.
    public var description: String {
        let parts = XDPCounter.allCases.filter { self[$0] != 0 }.map { "\($0)=\(self[$0])" }
        return parts.isEmpty ? "(no packets)" : parts.joined(separator: " ")
    }
}
