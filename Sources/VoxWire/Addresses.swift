/// A 48-bit Ethernet address, kept in the low 48 bits of a `UInt64` in network order
/// (the first byte on the wire is bits 40...47).
public struct MACAddress: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64

    @inlinable
    public init(rawValue: UInt64) { self.rawValue = rawValue & 0xFFFF_FFFF_FFFF }

    public init(_ b0: UInt8, _ b1: UInt8, _ b2: UInt8, _ b3: UInt8, _ b4: UInt8, _ b5: UInt8) {
        self.init(rawValue: [b0, b1, b2, b3, b4, b5].reduce(0) { $0 << 8 | UInt64($1) })
    }

    /// Parses `aa:bb:cc:dd:ee:ff`.
    public init?(_ text: String) {
        let parts = text.split(separator: ":")
        guard parts.count == 6 else { return nil }
        var value: UInt64 = 0
        for part in parts {
            guard part.count == 2, let byte = UInt8(part, radix: 16) else { return nil }
            value = value << 8 | UInt64(byte)
        }
        self.init(rawValue: value)
    }

    public static let zero = MACAddress(rawValue: 0)
    public static let broadcast = MACAddress(rawValue: 0xFFFF_FFFF_FFFF)

    @inlinable
    public static func load(from p: UnsafeRawPointer, at offset: Int) -> MACAddress {
        MACAddress(rawValue: UInt64(p.loadBE32(at: offset)) << 16 | UInt64(p.loadBE16(at: offset + 4)))
    }

    @inlinable
    public func store(to p: UnsafeMutableRawPointer, at offset: Int) {
        p.storeBE32(UInt32(truncatingIfNeeded: rawValue >> 16), at: offset)
        p.storeBE16(UInt16(truncatingIfNeeded: rawValue), at: offset + 4)
    }

    public var description: String {
        (0..<6).map { i in
            let byte = UInt8(truncatingIfNeeded: rawValue >> (40 - 8 * UInt64(i)))
            return (byte < 16 ? "0" : "") + String(byte, radix: 16)
        }.joined(separator: ":")
    }
}

/// An IPv4 or IPv6 address in one 128-bit form: IPv4 is held IPv4-mapped
/// (`::ffff:a.b.c.d`, RFC 4291 §2.5.5.2) so flow keys need no enum.
public struct IPAddress: Hashable, Sendable, CustomStringConvertible {
    /// Bytes 0...7 of the IPv6 form, big-endian.
    public var high: UInt64
    /// Bytes 8...15 of the IPv6 form, big-endian.
    public var low: UInt64

    @inlinable
    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    @inlinable
    public init(ipv4 value: UInt32) {
        self.high = 0
        self.low = 0x0000_FFFF_0000_0000 | UInt64(value)
    }

    /// 127.0.0.1.
    public static let loopbackV4 = IPAddress(ipv4: 0x7F00_0001)

    @inlinable
    public var isIPv4: Bool { high == 0 && low >> 32 == 0x0000_FFFF }

    /// 127.0.0.0/8 or ::1: traffic that never crosses a NIC.
    public var isLoopback: Bool { isIPv4 ? ipv4 >> 24 == 127 : (high == 0 && low == 1) }

    /// 0.0.0.0 or `::`: "any address", which names no peer.
    public var isUnspecified: Bool { isIPv4 ? ipv4 == 0 : (high == 0 && low == 0) }

    /// 224.0.0.0/4 or ff00::/8: a group, not a peer.
    public var isMulticast: Bool { isIPv4 ? ipv4 >> 28 == 0xE : high >> 56 == 0xFF }

    /// 255.255.255.255 (the limited broadcast; a subnet's directed broadcast needs its prefix
    /// to be told apart and is left to the kernel's routes).
    public var isBroadcast: Bool { isIPv4 && ipv4 == 0xFFFF_FFFF }

    /// Why this address cannot be one peer's (a client's or a backend's): unspecified,
    /// multicast or broadcast. Nil for a unicast address.
    public var notUnicastReason: String? {
        if isUnspecified { return "\(self) is the unspecified address" }
        if isMulticast { return "\(self) is a multicast address" }
        if isBroadcast { return "\(self) is the broadcast address" }
        return nil
    }

    /// The IPv4 address, valid when `isIPv4`.
    @inlinable
    public var ipv4: UInt32 { UInt32(truncatingIfNeeded: low) }

    @inlinable
    public static func loadIPv6(from p: UnsafeRawPointer, at offset: Int) -> IPAddress {
        IPAddress(high: p.loadBE64(at: offset), low: p.loadBE64(at: offset + 8))
    }

    @inlinable
    public func storeIPv6(to p: UnsafeMutableRawPointer, at offset: Int) {
        p.storeBE64(high, at: offset)
        p.storeBE64(low, at: offset + 8)
    }

    /// Parses dotted IPv4 or RFC 4291 IPv6 text (with `::` compression).
    public init?(_ text: String) {
        if !text.contains(":") {
            let parts = text.split(separator: ".", omittingEmptySubsequences: false)
            guard parts.count == 4 else { return nil }
            var value: UInt32 = 0
            for part in parts {
                guard !part.isEmpty, part.count <= 3, let octet = UInt8(part) else { return nil }
                value = value << 8 | UInt32(octet)
            }
            self.init(ipv4: value)
            return
        }
        let halves = text.split(separator: "::", omittingEmptySubsequences: false).map(String.init)
        guard halves.count <= 2 else { return nil }
        func groups(_ s: String) -> [UInt16]? {
            if s.isEmpty { return [] }
            var out: [UInt16] = []
            for g in s.split(separator: ":", omittingEmptySubsequences: false) {
                guard !g.isEmpty, g.count <= 4, let v = UInt16(g, radix: 16) else { return nil }
                out.append(v)
            }
            return out
        }
        guard let head = groups(halves[0]) else { return nil }
        var all = head
        if halves.count == 2 {
            guard let tail = groups(halves[1]), head.count + tail.count <= 7 else { return nil }
            all += Array(repeating: 0, count: 8 - head.count - tail.count) + tail
        }
        guard all.count == 8 else { return nil }
        let high = all[0..<4].reduce(UInt64(0)) { $0 << 16 | UInt64($1) }
        let low = all[4..<8].reduce(UInt64(0)) { $0 << 16 | UInt64($1) }
        self.init(high: high, low: low)
    }

    public var description: String {
        if isIPv4 {
            let v = ipv4
            return "\(v >> 24).\(v >> 16 & 0xFF).\(v >> 8 & 0xFF).\(v & 0xFF)"
        }
        let groups = (0..<8).map { i -> UInt16 in
            let word = i < 4 ? high : low
            return UInt16(truncatingIfNeeded: word >> (48 - 16 * UInt64(i % 4)))
        }
        // Compress the longest run of two or more zero groups (RFC 5952).
        var bestStart = -1
        var bestLength = 1
        var i = 0
        while i < 8 {
            if groups[i] == 0 {
                var j = i
                while j < 8 && groups[j] == 0 { j += 1 }
                if j - i > bestLength { (bestStart, bestLength) = (i, j - i) }
                i = j
            } else {
                i += 1
            }
        }
        func hex(_ range: Range<Int>) -> String { range.map { String(groups[$0], radix: 16) }.joined(separator: ":") }
        if bestStart < 0 { return hex(0..<8) }
        return hex(0..<bestStart) + "::" + hex((bestStart + bestLength)..<8)
    }
}

/// A UDP port. A distinct type so a port is never passed where an SSRC is expected.
public struct UDPPort: RawRepresentable, Hashable, Sendable, Comparable, CustomStringConvertible {
    public var rawValue: UInt16
    @inlinable public init(rawValue: UInt16) { self.rawValue = rawValue }
    @inlinable public init(_ value: UInt16) { self.rawValue = value }
    @inlinable public static func < (a: UDPPort, b: UDPPort) -> Bool { a.rawValue < b.rawValue }
    public var description: String { String(rawValue) }
}

/// A UDP 5-tuple as seen from the engine: the remote peer and our local address.
public struct FlowKey: Hashable, Sendable {
    public var remoteAddress: IPAddress
    public var localAddress: IPAddress
    public var remotePort: UDPPort
    public var localPort: UDPPort

    @inlinable
    public init(remoteAddress: IPAddress, remotePort: UDPPort, localAddress: IPAddress, localPort: UDPPort) {
        self.remoteAddress = remoteAddress
        self.localAddress = localAddress
        self.remotePort = remotePort
        self.localPort = localPort
    }
}

// Plain values carried through the engine's lock-free rings.
extension MACAddress: BitwiseCopyable {}
extension IPAddress: BitwiseCopyable {}
extension UDPPort: BitwiseCopyable {}
extension FlowKey: BitwiseCopyable {}
