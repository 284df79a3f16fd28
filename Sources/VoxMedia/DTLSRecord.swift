/// The DTLS record layer as far as the handshake driver needs it (RFC 6347 §4.1): record
/// boundaries, epochs and sequence numbers, and the first handshake fragment's header.
///
/// ```
///  0      1         3       5                11       13
///  | type | version | epoch | sequence (48)  | length | fragment ...
/// ```
/// Epoch 0 records are plaintext: their sequence numbers can be rewritten, which is how
/// `DTLSServer` retransmits its flight with fresh numbers without OpenSSL's help.
public enum DTLSRecord {
    public static let headerLength = 13
    public static let changeCipherSpec: UInt8 = 20
    public static let alert: UInt8 = 21
    public static let handshake: UInt8 = 22
    public static let applicationData: UInt8 = 23
    /// The record version DTLS 1.2 writes (RFC 6347 §4.1: 1's complement of 1.2).
    public static let version12: UInt16 = 0xFEFD
    public static let clientHello: UInt8 = 1

    /// The records in `bytes`, each as the range it covers (header included); nil when a
    /// record runs past the end or the bytes are not DTLS (content type outside 20...63).
    public static func split(_ bytes: UnsafeRawBufferPointer) -> [Range<Int>]? {
        var out: [Range<Int>] = []
        var offset = 0
        while offset < bytes.count {
            guard bytes.count - offset >= headerLength, (20...63).contains(bytes[offset]) else { return nil }
            let length = Int(bytes[offset + 11]) << 8 | Int(bytes[offset + 12])
            guard bytes.count - offset - headerLength >= length else { return nil }
            out.append(offset..<(offset + headerLength + length))
            offset += headerLength + length
        }
        return out
    }

    public static func epoch(_ bytes: UnsafeRawBufferPointer, record: Range<Int>) -> UInt16 {
        UInt16(bytes[record.lowerBound + 3]) << 8 | UInt16(bytes[record.lowerBound + 4])
    }

    public static func version(_ bytes: UnsafeRawBufferPointer, record: Range<Int>) -> UInt16 {
        UInt16(bytes[record.lowerBound + 1]) << 8 | UInt16(bytes[record.lowerBound + 2])
    }

    /// Writes a 48-bit record sequence number.
    public static func setSequence(_ bytes: UnsafeMutableRawBufferPointer, record: Range<Int>, _ sequence: UInt64) {
        for i in 0..<6 { bytes[record.lowerBound + 5 + i] = UInt8(truncatingIfNeeded: sequence >> (40 - 8 * i)) }
    }

    /// For a plaintext handshake record: (message type, fragment offset). nil otherwise.
    public static func handshakeFragment(
        _ bytes: UnsafeRawBufferPointer, record: Range<Int>
    ) -> (type: UInt8, offset: Int)? {
        let body = record.lowerBound + headerLength
        guard bytes[record.lowerBound] == handshake, epoch(bytes, record: record) == 0, record.upperBound - body >= 12
        else { return nil }
        return (bytes[body], Int(bytes[body + 6]) << 16 | Int(bytes[body + 7]) << 8 | Int(bytes[body + 8]))
    }
}
