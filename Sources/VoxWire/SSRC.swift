/// An RTP synchronization or contributing source identifier (RFC 3550 §3). A distinct
/// type because SSRCs sit next to timestamps, sequence numbers and NTP fractions in RTP
/// and RTCP, all of them 32-bit numbers that are easy to pass in the wrong place.
public struct SSRC: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }
    @inlinable public init(_ value: UInt32) { self.rawValue = value }

    /// Eight hex digits, as Wireshark and browser stats pages show SSRCs.
    public var description: String {
        let hex = String(rawValue, radix: 16)
        return "0x" + String(repeating: "0", count: 8 - hex.count) + hex
    }
}
