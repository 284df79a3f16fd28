import VoxTestKit
import VoxWire


let clientMAC = MACAddress(0x02, 0, 0, 0, 0, 0x02)
let serverMAC = MACAddress(0x02, 0, 0, 0, 0, 0x01)

/// A frame of `payload` to 198.18.0.1:40000 from 198.18.0.2:10000 (or their IPv6 forms).
func makeFrame(payload: [UInt8], ipv6: Bool = false, vlan: UInt16? = nil, capacity: Int = 2048) -> (
    [UInt8], ParsedFrame
) {
    let addresses = FrameAddresses(
        destinationMAC: serverMAC, sourceMAC: clientMAC, vlanID: vlan,
        source: IPAddress(ipv6 ? "2001:db8::2" : "198.18.0.2")!, sourcePort: UDPPort(10000),
        destination: IPAddress(ipv6 ? "2001:db8::1" : "198.18.0.1")!, destinationPort: UDPPort(40000))
    var frame = [UInt8](repeating: 0, count: addresses.headerLength + payload.count)
    frame.replaceSubrange(addresses.headerLength..., with: payload)
    let parsed = frame.withUnsafeMutableBytes {
        FrameBuilder.write($0.baseAddress!, addresses, payloadLength: payload.count)
    }
    return (frame, parsed)
}

func parse(_ frame: [UInt8]) -> (WireVerdict, ParsedFrame) {
    var parsed = ParsedFrame()
    let verdict = frame.withUnsafeBytes { ParsedFrame.parse($0.baseAddress!, length: $0.count, into: &parsed) }
    return (verdict, parsed)
}
