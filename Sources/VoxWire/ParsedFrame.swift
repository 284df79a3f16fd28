/// Where the headers of one Ethernet/IP/UDP frame are, found by `ParsedFrame.parse`.
///
/// ```
///  0        l3Offset            l4Offset     payloadOffset        payloadOffset + payloadLength
///  | Ethernet [802.1Q] | IPv4 [options] or IPv6 [ext] | UDP 8 | payload ...       | (padding) |
/// ```
/// Offsets are from the start of the frame. `parse` checks every length once;
/// code holding a `.ok` result may then read any header field without checks.
public struct ParsedFrame: Sendable {
    /// The 802.1Q VLAN ID, or `nil` without a tag.
    public var vlanID: UInt16?
    public var l3Offset: Int = 0
    public var l4Offset: Int = 0
    public var payloadOffset: Int = 0
    public var payloadLength: Int = 0
    public var isIPv6: Bool = false
    public var source = IPAddress(high: 0, low: 0)
    public var destination = IPAddress(high: 0, low: 0)
    public var sourcePort = UDPPort(0)
    public var destinationPort = UDPPort(0)

    @inlinable
    public init() {}

    /// The 5-tuple, seen from the receiver (remote = source).
    @inlinable
    public var flowKey: FlowKey {
        FlowKey(remoteAddress: source, remotePort: sourcePort, localAddress: destination, localPort: destinationPort)
    }
}

/// Why a frame is not a well-formed IPv4/IPv6 UDP datagram.
public enum WireVerdict: UInt8, Sendable, CaseIterable {
    case ok
    /// Shorter than the headers it announces.
    case truncated
    /// Neither IPv4 nor IPv6 (ARP, LLDP, …): the kernel's business.
    case notIP
    /// IP but not UDP (ICMP, TCP, …): the kernel's business.
    case notUDP
    /// Bad version, header length, total length or header checksum.
    case malformedIP
    /// A fragment: media datagrams are never fragmented; reassembly is the kernel's.
    case fragment
    /// UDP length disagrees with the IP length.
    case malformedUDP
}

extension ParsedFrame {
    /// Parses Ethernet (one optional 802.1Q tag), IPv4 (with options) or IPv6 (with
    /// hop-by-hop, routing and destination-options headers), and UDP, from the `length`
    /// bytes at `frame`. The IPv4 header checksum is verified; the UDP checksum is not
    /// (SRTP and STUN authenticate what matters; see `UDPChecksum.verify`).
    @inlinable
    public static func parse(_ frame: UnsafeRawPointer, length: Int, into out: inout ParsedFrame) -> WireVerdict {
        guard length >= 14 else { return .truncated }
        var offset = 12
        var etherType = frame.loadBE16(at: offset)
        out.vlanID = nil
        if etherType == EtherType.vlan || etherType == EtherType.qinq {
            guard length >= 18 else { return .truncated }
            out.vlanID = frame.loadBE16(at: 14) & 0x0FFF
            etherType = frame.loadBE16(at: 16)
            offset = 18
        } else {
            offset = 14
        }
        out.l3Offset = offset
        let ipEnd: Int
        if etherType == EtherType.ipv4 {
            guard length >= offset + 20 else { return .truncated }
            let versionIHL = frame.loadByte(at: offset)
            let headerLength = Int(versionIHL & 0x0F) * 4
            guard versionIHL >> 4 == 4, headerLength >= 20 else { return .malformedIP }
            guard length >= offset + headerLength else { return .truncated }
            let totalLength = Int(frame.loadBE16(at: offset + 2))
            guard totalLength >= headerLength else { return .malformedIP }
            guard length >= offset + totalLength else { return .truncated }
            guard InternetChecksum.finish(InternetChecksum.add(frame + offset, count: headerLength)) == 0 else {
                return .malformedIP
            }
            if frame.loadByte(at: offset + 9) != IPProtocol.udp { return .notUDP }
            // More-fragments flag or a fragment offset.
            if frame.loadBE16(at: offset + 6) & 0x3FFF != 0 { return .fragment }
            out.isIPv6 = false
            out.source = IPAddress(ipv4: frame.loadBE32(at: offset + 12))
            out.destination = IPAddress(ipv4: frame.loadBE32(at: offset + 16))
            ipEnd = offset + totalLength
            offset += headerLength
        } else if etherType == EtherType.ipv6 {
            guard length >= offset + 40 else { return .truncated }
            guard frame.loadByte(at: offset) >> 4 == 6 else { return .malformedIP }
            let payloadLength = Int(frame.loadBE16(at: offset + 4))
            guard length >= offset + 40 + payloadLength else { return .truncated }
            ipEnd = offset + 40 + payloadLength
            out.isIPv6 = true
            out.source = IPAddress.loadIPv6(from: frame, at: offset + 8)
            out.destination = IPAddress.loadIPv6(from: frame, at: offset + 24)
            var next = frame.loadByte(at: offset + 6)
            offset += 40
            // At most a few extension headers before UDP; anything deeper is not media.
            var hops = 0
            while next != IPProtocol.udp {
                switch next {
                case IPProtocol.hopByHop, IPProtocol.ipv6Routing, IPProtocol.ipv6DestinationOptions:
                    guard hops < 4 else { return .notUDP }
                    guard ipEnd >= offset + 8 else { return .truncated }
                    let extLength = (Int(frame.loadByte(at: offset + 1)) + 1) * 8
                    guard ipEnd >= offset + extLength else { return .truncated }
                    next = frame.loadByte(at: offset)
                    offset += extLength
                    hops += 1
                case IPProtocol.ipv6Fragment:
                    return .fragment
                default:
                    return .notUDP
                }
            }
        } else {
            return .notIP
        }
        out.l4Offset = offset
        guard ipEnd >= offset + 8 else { return .truncated }
        let udpLength = Int(frame.loadBE16(at: offset + 4))
        guard udpLength >= 8, offset + udpLength <= ipEnd else { return .malformedUDP }
        out.sourcePort = UDPPort(frame.loadBE16(at: offset))
        out.destinationPort = UDPPort(frame.loadBE16(at: offset + 2))
        out.payloadOffset = offset + 8
        out.payloadLength = udpLength - 8
        return .ok
    }
}

/// UDP checksum over IPv4 or IPv6, for a frame `ParsedFrame.parse` accepted.
public enum UDPChecksum {
    /// The checksum the UDP header should carry (0 is sent as 0xFFFF, RFC 768).
    @inlinable
    public static func compute(_ frame: UnsafeRawPointer, _ parsed: ParsedFrame) -> UInt16 {
        let udpLength = parsed.payloadLength + 8
        var sum: UInt64
        if parsed.isIPv6 {
            sum = InternetChecksum.pseudoHeaderIPv6(
                source: parsed.source, destination: parsed.destination, udpLength: udpLength)
        } else {
            sum = InternetChecksum.pseudoHeaderIPv4(
                source: parsed.source.ipv4, destination: parsed.destination.ipv4, udpLength: udpLength)
        }
        // The checksum field itself counts as zero.
        sum = InternetChecksum.add(frame + parsed.l4Offset, count: 6, to: sum)
        sum = InternetChecksum.add(frame + parsed.payloadOffset, count: parsed.payloadLength, to: sum)
        let c = InternetChecksum.finish(sum)
        return c == 0 ? 0xFFFF : c
    }

    /// True when the checksum field is right, or is 0 (none) over IPv4.
    @inlinable
    public static func verify(_ frame: UnsafeRawPointer, _ parsed: ParsedFrame) -> Bool {
        let field = frame.loadBE16(at: parsed.l4Offset + 6)
        if field == 0 { return !parsed.isIPv6 }
        return field == compute(frame, parsed)
    }

    /// Writes the right checksum into the UDP header.
    @inlinable
    public static func fill(_ frame: UnsafeMutableRawPointer, _ parsed: ParsedFrame) {
        frame.storeBE16(compute(UnsafeRawPointer(frame), parsed), at: parsed.l4Offset + 6)
    }
}
