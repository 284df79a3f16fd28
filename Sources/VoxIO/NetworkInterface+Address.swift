import Glibc
import VoxWire

extension NetworkInterface {
    /// The interface that holds `address`, if any. The corresponding C function is `getifaddrs`.
    public static func name(holding address: IPAddress) -> String? {
        var list: UnsafeMutablePointer<ifaddrs>? = nil
        guard getifaddrs(&list) == 0 else { return nil }
        defer { freeifaddrs(list) }
        var entry = list
        while let e = entry {
            defer { entry = e.pointee.ifa_next }
            guard let sa = e.pointee.ifa_addr else { continue }
            let raw = UnsafeRawPointer(sa)
            let family = Int32(sa.pointee.sa_family)
            let found: IPAddress? =
                family == AF_INET
                ? IPAddress(ipv4: raw.loadBE32(at: 4))
                : family == AF_INET6 ? IPAddress.loadIPv6(from: raw, at: 8) : nil
            if found == address { return String(cString: e.pointee.ifa_name) }
        }
        return nil
    }
}
