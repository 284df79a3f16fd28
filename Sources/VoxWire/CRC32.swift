/// CRC-32 (ISO-HDLC, the one zlib and STUN FINGERPRINT use), table-driven.
public enum CRC32 {
    @usableFromInline
    static let table: [UInt32] = (0..<256).map { n -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    /// The CRC-32 of `count` bytes at `p`.
    @inlinable
    public static func checksum(_ p: UnsafeRawPointer, count: Int) -> UInt32 {
        table.withUnsafeBufferPointer { t in
            var c: UInt32 = 0xFFFF_FFFF
            for i in 0..<count {
                c = t[Int((c ^ UInt32(p.loadByte(at: i))) & 0xFF)] ^ (c >> 8)
            }
            return ~c
        }
    }
}
