/// The Internet checksum (RFC 1071): full computation over bytes, the UDP
/// pseudo-headers, and incremental updates (RFC 1624) for rewritten fields.
///
/// Partial sums are plain `UInt64` accumulators of big-endian 16/32-bit words; they
/// can be added together before folding, as long as each part starts at an even
/// offset of the checksummed data.
public enum InternetChecksum {
    /// Adds `count` bytes at `p` to a partial sum.
    @inlinable
    public static func add(_ p: UnsafeRawPointer, count: Int, to initial: UInt64 = 0) -> UInt64 {
        // Eight bytes at a time in native order with end-around carry, folded to 16 bits
        // and byte-swapped at the end: the one's complement sum does not care about byte
        // order (RFC 1071 §2B), and this halves the work of 4-byte big-endian loads.
        var native: UInt64 = 0
        var i = 0
        while i + 8 <= count {
            let (s, overflow) = native.addingReportingOverflow(p.loadUnaligned(fromByteOffset: i, as: UInt64.self))
            native = s &+ (overflow ? 1 : 0)
            i += 8
        }
        // 2^16 ≡ 1 (mod 2^16 - 1): folding high bits onto low keeps the sum.
        var folded = (native & 0xFFFF_FFFF) &+ (native >> 32)
        folded = (folded & 0xFFFF) &+ (folded >> 16)
        folded = (folded & 0xFFFF) &+ (folded >> 16)
        folded = (folded & 0xFFFF) &+ (folded >> 16)
        var sum = initial &+ UInt64(UInt16(truncatingIfNeeded: folded).bigEndian)
        if i + 4 <= count {
            sum &+= UInt64(p.loadBE32(at: i))
            i += 4
        }
        if i + 2 <= count {
            sum &+= UInt64(p.loadBE16(at: i))
            i += 2
        }
        if i < count {
            sum &+= UInt64(p.loadByte(at: i)) << 8
        }
        return sum
    }

    /// Folds a partial sum to 16 bits and complements it: the value for the header field.
    @inlinable
    public static func finish(_ sum: UInt64) -> UInt16 {
        var s = sum
        s = (s & 0xFFFF_FFFF) &+ (s >> 32)
        s = (s & 0xFFFF_FFFF) &+ (s >> 32)
        s = (s & 0xFFFF) &+ (s >> 16)
        s = (s & 0xFFFF) &+ (s >> 16)
        return ~UInt16(truncatingIfNeeded: s)
    }

    /// The checksum of `count` bytes at `p`.
    @inlinable
    public static func compute(_ p: UnsafeRawPointer, count: Int) -> UInt16 {
        finish(add(p, count: count))
    }

    /// The partial sum of the IPv4 UDP pseudo-header (RFC 768).
    @inlinable
    public static func pseudoHeaderIPv4(source: UInt32, destination: UInt32, udpLength: Int) -> UInt64 {
        UInt64(source >> 16) &+ UInt64(source & 0xFFFF) &+ UInt64(destination >> 16)
            &+ UInt64(destination & 0xFFFF) &+ UInt64(IPProtocol.udp) &+ UInt64(udpLength)
    }

    /// The partial sum of the IPv6 UDP pseudo-header (RFC 8200 §8.1).
    @inlinable
    public static func pseudoHeaderIPv6(source: IPAddress, destination: IPAddress, udpLength: Int) -> UInt64 {
        func words(_ v: UInt64) -> UInt64 { (v >> 32) &+ (v & 0xFFFF_FFFF) }
        return words(source.high) &+ words(source.low) &+ words(destination.high) &+ words(destination.low)
            &+ UInt64(IPProtocol.udp) &+ UInt64(udpLength)
    }

    /// RFC 1624 eqn. 3: the new checksum after a 16-bit field changed from `old` to `new`.
    @inlinable
    public static func update(_ checksum: UInt16, old: UInt16, new: UInt16) -> UInt16 {
        let sum = UInt64(~checksum) &+ UInt64(~old) &+ UInt64(new)
        return finish(sum)
    }

    /// RFC 1624 for a 32-bit field (an IPv4 address).
    @inlinable
    public static func update(_ checksum: UInt16, old: UInt32, new: UInt32) -> UInt16 {
        let sum = UInt64(~checksum) &+ UInt64(~UInt16(truncatingIfNeeded: old >> 16))
            &+ UInt64(~UInt16(truncatingIfNeeded: old)) &+ UInt64(new >> 16) &+ UInt64(new & 0xFFFF)
        return finish(sum)
    }
}

/// IP protocol numbers used here.
public enum IPProtocol {
    public static let hopByHop: UInt8 = 0
    public static let icmp: UInt8 = 1
    public static let tcp: UInt8 = 6
    public static let udp: UInt8 = 17
    public static let ipv6Routing: UInt8 = 43
    public static let ipv6Fragment: UInt8 = 44
    public static let icmpv6: UInt8 = 58
    public static let ipv6NoNext: UInt8 = 59
    public static let ipv6DestinationOptions: UInt8 = 60
}

/// EtherType values used here.
public enum EtherType {
    public static let ipv4: UInt16 = 0x0800
    public static let arp: UInt16 = 0x0806
    public static let vlan: UInt16 = 0x8100
    public static let qinq: UInt16 = 0x88A8
    public static let ipv6: UInt16 = 0x86DD
}
