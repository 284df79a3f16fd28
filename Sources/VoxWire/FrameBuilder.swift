/// The addresses of an Ethernet/IP/UDP frame to write. IPv4 when both addresses are
/// IPv4-mapped, IPv6 otherwise.
public struct FrameAddresses: Sendable, Equatable {
    public var destinationMAC: MACAddress
    public var sourceMAC: MACAddress
    public var vlanID: UInt16?
    public var source: IPAddress
    public var destination: IPAddress
    public var sourcePort: UDPPort
    public var destinationPort: UDPPort

    @inlinable
    public init(
        destinationMAC: MACAddress, sourceMAC: MACAddress, vlanID: UInt16? = nil,
        source: IPAddress, sourcePort: UDPPort, destination: IPAddress, destinationPort: UDPPort
    ) {
        self.destinationMAC = destinationMAC
        self.sourceMAC = sourceMAC
        self.vlanID = vlanID
        self.source = source
        self.destination = destination
        self.sourcePort = sourcePort
        self.destinationPort = destinationPort
    }

    @inlinable
    public var isIPv6: Bool { !(source.isIPv4 && destination.isIPv4) }

    /// Bytes of Ethernet (+ tag), IP (no options) and UDP headers.
    @inlinable
    public var headerLength: Int { (vlanID == nil ? 14 : 18) + (isIPv6 ? 40 : 20) + 8 }
}

/// Writes headers in place in front of a payload already in the frame.
public enum FrameBuilder {
    /// Writes Ethernet, IPv4/IPv6 and UDP headers for a payload of `payloadLength` bytes
    /// that already sits at `addresses.headerLength`. The caller guarantees the frame holds
    /// `headerLength + payloadLength` bytes. Returns the frame as `ParsedFrame.parse` would.
    @inlinable
    public static func write(
        _ frame: UnsafeMutableRawPointer, _ addresses: FrameAddresses, payloadLength: Int,
        udpChecksum: Bool = true
    ) -> ParsedFrame {
        var parsed = ParsedFrame()
        addresses.destinationMAC.store(to: frame, at: 0)
        addresses.sourceMAC.store(to: frame, at: 6)
        var offset = 12
        if let vlan = addresses.vlanID {
            frame.storeBE16(EtherType.vlan, at: 12)
            frame.storeBE16(vlan & 0x0FFF, at: 14)
            offset = 16
        }
        parsed.vlanID = addresses.vlanID
        let udpLength = payloadLength + 8
        if addresses.isIPv6 {
            frame.storeBE16(EtherType.ipv6, at: offset)
            offset += 2
            parsed.l3Offset = offset
            frame.storeBE32(0x6000_0000, at: offset)  // version 6, traffic class 0, flow label 0
            frame.storeBE16(UInt16(truncatingIfNeeded: udpLength), at: offset + 4)
            frame.storeByte(IPProtocol.udp, at: offset + 6)
            frame.storeByte(64, at: offset + 7)
            addresses.source.storeIPv6(to: frame, at: offset + 8)
            addresses.destination.storeIPv6(to: frame, at: offset + 24)
            offset += 40
        } else {
            frame.storeBE16(EtherType.ipv4, at: offset)
            offset += 2
            parsed.l3Offset = offset
            frame.storeBE16(0x4500, at: offset)  // version 4, IHL 5, DSCP/ECN 0
            frame.storeBE16(UInt16(truncatingIfNeeded: udpLength + 20), at: offset + 2)
            frame.storeBE32(0x0000_4000, at: offset + 4)  // ID 0, DF
            frame.storeBE16(UInt16(64) << 8 | UInt16(IPProtocol.udp), at: offset + 8)
            frame.storeBE16(0, at: offset + 10)
            frame.storeBE32(addresses.source.ipv4, at: offset + 12)
            frame.storeBE32(addresses.destination.ipv4, at: offset + 16)
            frame.storeBE16(InternetChecksum.compute(frame + offset, count: 20), at: offset + 10)
            offset += 20
        }
        parsed.isIPv6 = addresses.isIPv6
        parsed.l4Offset = offset
        frame.storeBE16(addresses.sourcePort.rawValue, at: offset)
        frame.storeBE16(addresses.destinationPort.rawValue, at: offset + 2)
        frame.storeBE16(UInt16(truncatingIfNeeded: udpLength), at: offset + 4)
        frame.storeBE16(0, at: offset + 6)
        parsed.payloadOffset = offset + 8
        parsed.payloadLength = payloadLength
        parsed.source = addresses.source
        parsed.destination = addresses.destination
        parsed.sourcePort = addresses.sourcePort
        parsed.destinationPort = addresses.destinationPort
        if udpChecksum || addresses.isIPv6 {  // IPv6 forbids a zero UDP checksum
            UDPChecksum.fill(frame, parsed)
        }
        return parsed
    }

    /// Turns a received frame around in place: swaps MACs, addresses and ports, sets the
    /// payload length to `payloadLength` (the new payload is already at
    /// `parsed.payloadOffset`), drops IPv4 options and IPv6 extension headers, and fills
    /// the checksums. The caller guarantees room for the headers and payload.
    @inlinable
    public static func reply(_ frame: UnsafeMutableRawPointer, _ parsed: inout ParsedFrame, payloadLength: Int) {
        let addresses = FrameAddresses(
            destinationMAC: MACAddress.load(from: frame, at: 6), sourceMAC: MACAddress.load(from: frame, at: 0),
            vlanID: parsed.vlanID,
            source: parsed.destination, sourcePort: parsed.destinationPort,
            destination: parsed.source, destinationPort: parsed.sourcePort)
        let canonical = addresses.headerLength
        if parsed.payloadOffset != canonical {
            (frame + canonical).copyMemory(from: frame + parsed.payloadOffset, byteCount: payloadLength)
        }
        parsed = write(frame, addresses, payloadLength: payloadLength)
    }
}
