import CVoxBPF
import VoxWire

/// An address prefix for the blocklist, in the 128-bit form the LPM trie matches on:
/// an IPv4 prefix of length n is the IPv4-mapped address with length 96 + n.
public struct IPPrefix: Hashable, Sendable, CustomStringConvertible {
    /// The address with every bit past `length` cleared.
    public let address: IPAddress
    /// Prefix length over the 128-bit form (0...128).
    public let length: Int

    /// A prefix of `length` bits of `address`, counted in the address's own family
    /// (0...32 for IPv4, 0...128 for IPv6). Host bits are cleared.
    public init(_ address: IPAddress, length: Int) throws(XDPError) {
        let mappedLength = address.isIPv4 ? 96 + length : length
        guard length >= 0, length <= (address.isIPv4 ? 32 : 128) else {
            throw XDPError(.invalidArgument, "prefix length \(length) out of range for \(address)")
        }
        self.length = mappedLength
        let highBits = min(mappedLength, 64)
        let lowBits = max(mappedLength - 64, 0)
        self.address = IPAddress(
            high: highBits == 0 ? 0 : address.high & (UInt64.max << UInt64(64 - highBits)),
            low: lowBits == 0 ? 0 : address.low & (UInt64.max << UInt64(64 - lowBits))
        )
    }

    /// Parses `198.18.0.0/15`, `2001:db8::/32`, or a bare address (a host prefix).
    public init(_ text: String) throws(XDPError) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let address = IPAddress(String(parts[0])) else {
            throw XDPError(.invalidArgument, "not an address prefix: \(text)")
        }
        let length: Int
        if parts.count == 2 {
            guard let n = Int(parts[1]) else { throw XDPError(.invalidArgument, "not an address prefix: \(text)") }
            length = n
        } else {
            length = address.isIPv4 ? 32 : 128
        }
        try self.init(address, length: length)
    }

    /// The key of the `vox_blocklist` map.
    public var bpfKey: vox_lpm_key {
        vox_lpm_key(prefix_len: UInt32(length), addr: vox_addr(address))
    }

    public var description: String {
        address.isIPv4 && length >= 96 ? "\(address)/\(length - 96)" : "\(address)/\(length)"
    }
}
