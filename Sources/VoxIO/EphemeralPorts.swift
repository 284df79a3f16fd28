import Glibc

/// The kernel's ephemeral ports, as the calling thread's network namespace sees them: the
/// range it picks from when a socket binds port 0 or connects unbound
/// (`net.ipv4.ip_local_port_range`, IPv6 too), and the ports it must skip there
/// (`net.ipv4.ip_local_reserved_ports`). Both are per network namespace.
public enum EphemeralPorts {
    static let rangePath = "/proc/sys/net/ipv4/ip_local_port_range"
    static let reservedPath = "/proc/sys/net/ipv4/ip_local_reserved_ports"

    /// What `reserve` found or did.
    public enum Outcome: Equatable, Sendable {
        /// None of the ports lies in the ephemeral range: the kernel never hands them out.
        case outside(ephemeral: ClosedRange<Int>)
        /// Those in the ephemeral range (`ports`) were reserved already.
        case alreadyReserved(ports: ClosedRange<Int>, ephemeral: ClosedRange<Int>)
        /// Those in the ephemeral range (`ports`) are reserved now; the sysctl reads `list`.
        case reserved(ports: ClosedRange<Int>, ephemeral: ClosedRange<Int>, list: String)
    }

    /// A failure reading or writing the sysctls (writing needs CAP_NET_ADMIN in the
    /// namespace's owner; a read-only /proc/sys in containers).
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public var path: String
        public var errno: Int32
        public var description: String { "\(path): \(String(cString: strerror(errno)))" }
    }

    /// The ephemeral range (`ip_local_port_range`).
    public static func range() throws(Failure) -> ClosedRange<Int> {
        let numbers = try read(rangePath).split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).compactMap {
            Int($0)
        }
        guard numbers.count == 2, numbers[0] <= numbers[1] else { throw Failure(path: rangePath, errno: EINVAL) }
        return numbers[0]...numbers[1]
    }

    /// The reserved ports (`ip_local_reserved_ports`: `a-b,c,…`), sorted and merged.
    public static func reserved() throws(Failure) -> [ClosedRange<Int>] {
        try parse(read(reservedPath))
    }

    /// Reserves those of `ports` that lie in the ephemeral range, keeping every reservation
    /// already there; nothing is ever removed (a reservation outlives the process that made it).
    public static func reserve(_ ports: ClosedRange<Int>) throws(Failure) -> Outcome {
        let ephemeral = try range()
        guard ports.overlaps(ephemeral) else { return .outside(ephemeral: ephemeral) }
        let wanted = ports.clamped(to: ephemeral)
        let existing = try reserved()
        if existing.contains(where: { $0.contains(wanted.lowerBound) && $0.contains(wanted.upperBound) }) {
            return .alreadyReserved(ports: wanted, ephemeral: ephemeral)
        }
        let list = format(merge(existing + [wanted]))
        try write(reservedPath, list + "\n")
        return .reserved(ports: wanted, ephemeral: ephemeral, list: list)
    }

    /// `a-b,c,…` as ranges, sorted and merged; what does not parse is skipped.
    static func parse(_ text: String) -> [ClosedRange<Int>] {
        merge(
            text.split(whereSeparator: { $0 == "," || $0 == "\n" || $0 == " " }).compactMap { item in
                let bounds = item.split(separator: "-", maxSplits: 1).compactMap { Int($0) }
                switch bounds.count {
                case 1: return bounds[0]...bounds[0]
                case 2 where bounds[0] <= bounds[1]: return bounds[0]...bounds[1]
                default: return nil
                }
            })
    }

    static func merge(_ ranges: [ClosedRange<Int>]) -> [ClosedRange<Int>] {
        var out: [ClosedRange<Int>] = []
        for r in ranges.sorted(by: { $0.lowerBound < $1.lowerBound }) {
            if let last = out.last, r.lowerBound <= last.upperBound + 1 {
                out[out.count - 1] = last.lowerBound...max(last.upperBound, r.upperBound)
            } else {
                out.append(r)
            }
        }
        return out
    }

    /// `a-b,c,…`, the sysctl's own notation.
    public static func format(_ ranges: [ClosedRange<Int>]) -> String {
        ranges.map { $0.count == 1 ? "\($0.lowerBound)" : "\($0.lowerBound)-\($0.upperBound)" }.joined(separator: ",")
    }

    static func read(_ path: String) throws(Failure) -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Failure(path: path, errno: errno) }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = Glibc.read(fd, &chunk, chunk.count)
            guard n >= 0 else { throw Failure(path: path, errno: errno) }
            if n == 0 { break }
            bytes += chunk[..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    static func write(_ path: String, _ text: String) throws(Failure) {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Failure(path: path, errno: errno) }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        // A sysctl takes its value in one write.
        guard Glibc.write(fd, bytes, bytes.count) == bytes.count else { throw Failure(path: path, errno: errno) }
    }
}
