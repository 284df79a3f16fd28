// Test vectors transcribed from RFC 5769.
//
// RFC 5769, "Test Vectors for Session Traversal Utilities for NAT (STUN)",
// R. Denis-Courmont, April 2010. Section 2.
//
// Each message below is the complete datagram as printed in the RFC, written
// as lowercase hex with no spaces. The RFC pads the USERNAME in 2.1 and the
// SOFTWARE in 2.2 and 2.3 with 0x20 (space) bytes, not zeros. Those padding
// bytes are covered by MESSAGE-INTEGRITY and FINGERPRINT, so keep them as they are.
//
// Checked (python3, hashlib/hmac/zlib) against these exact strings:
//   - header length == total bytes - 20; type 0x0001 or 0x0101; cookie 2112a442
//   - 2.1-2.3: MESSAGE-INTEGRITY = HMAC-SHA1(password, ...) matches
//   - 2.1-2.3: FINGERPRINT = CRC-32 ^ 0x5354554e matches
//   - 2.4: MESSAGE-INTEGRITY = HMAC-SHA1(MD5(username ":" realm ":" "TheMatrIX"), ...) matches
//   - 2.2/2.3: XOR-MAPPED-ADDRESS decodes to 192.0.2.1:32853 and
//     [2001:db8:1234:5678:11:2233:4455:6677]:32853
//
// Errata: rfc-editor.org marks RFC 5769 as "Errata Exist". The 2.4 bytes here
// are as published, and their MESSAGE-INTEGRITY verifies with the long-term key
// derived from the RFC's parameters, so no byte correction was applied. (The
// verified erratum that corrects a long-term-auth sample's bytes, EID 6268, is
// for RFC 8489 Appendix B.1, the SHA-256 / USERHASH vector, not RFC 5769.)
enum RFC5769 {
    // MARK: - 2.1 Sample Request

    /// 2.1 Sample Request (108 bytes, message length 0x0058).
    /// Binding request: SOFTWARE, PRIORITY, ICE-CONTROLLED, USERNAME,
    /// MESSAGE-INTEGRITY, FINGERPRINT.
    static let sampleRequest: String =
        "000100582112a442b7e7a701bc34d686fa87dfae"   // header
        + "802200105354554e207465737420636c69656e74" // SOFTWARE "STUN test client"
        + "002400046e0001ff"                         // PRIORITY
        + "80290008932ff9b151263b36"                 // ICE-CONTROLLED
        + "000600096576746a3a68367659202020"         // USERNAME "evtj:h6vY" + 3 bytes 0x20 padding
        + "000800149aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a2" // MESSAGE-INTEGRITY
        + "80280004e57a3bcf"                         // FINGERPRINT
    static let sampleRequestPassword = "VOkJxbRl1RmTxUk/WvJxBt"
    static let sampleRequestUsername = "evtj:h6vY"
    static let sampleRequestSoftware = "STUN test client"
    static let sampleRequestPriority: UInt32 = 0x6e00_01ff
    /// ICE-CONTROLLED tie-breaker value.
    static let sampleRequestTiebreaker: UInt64 = 0x932f_f9b1_5126_3b36
    static let sampleRequestMessageIntegrity = "9aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a2"
    static let sampleRequestFingerprint: UInt32 = 0xe57a_3bcf

    // MARK: - 2.2 Sample IPv4 Response

    /// 2.2 Sample IPv4 Response (80 bytes, message length 0x003c).
    /// Binding success response: SOFTWARE, XOR-MAPPED-ADDRESS (IPv4),
    /// MESSAGE-INTEGRITY, FINGERPRINT.
    static let ipv4Response: String =
        "0101003c2112a442b7e7a701bc34d686fa87dfae"   // header
        + "8022000b7465737420766563746f7220"         // SOFTWARE "test vector" + 1 byte 0x20 padding
        + "002000080001a147e112a643"                 // XOR-MAPPED-ADDRESS
        + "000800142b91f599fd9e90c38c7489f92af9ba53f06be7d7" // MESSAGE-INTEGRITY
        + "80280004c07d4c96"                         // FINGERPRINT
    static let ipv4ResponsePassword = "VOkJxbRl1RmTxUk/WvJxBt"
    static let ipv4MappedAddress = "192.0.2.1"
    static let ipv4MappedPort: UInt16 = 32853
    static let responseSoftware = "test vector"
    static let ipv4ResponseMessageIntegrity = "2b91f599fd9e90c38c7489f92af9ba53f06be7d7"
    static let ipv4ResponseFingerprint: UInt32 = 0xc07d_4c96

    // MARK: - 2.3 Sample IPv6 Response

    /// 2.3 Sample IPv6 Response (92 bytes, message length 0x0048).
    /// Binding success response: SOFTWARE, XOR-MAPPED-ADDRESS (IPv6),
    /// MESSAGE-INTEGRITY, FINGERPRINT.
    static let ipv6Response: String =
        "010100482112a442b7e7a701bc34d686fa87dfae"   // header
        + "8022000b7465737420766563746f7220"         // SOFTWARE "test vector" + 1 byte 0x20 padding
        + "002000140002a1470113a9faa5d3f179bc25f4b5bed2b9d9" // XOR-MAPPED-ADDRESS
        + "00080014a382954e4be67bf11784c97c8292c275bfe3ed41" // MESSAGE-INTEGRITY
        + "80280004c8fb0b4c"                         // FINGERPRINT
    static let ipv6ResponsePassword = "VOkJxbRl1RmTxUk/WvJxBt"
    static let ipv6MappedAddress = "2001:db8:1234:5678:11:2233:4455:6677"
    static let ipv6MappedPort: UInt16 = 32853
    static let ipv6ResponseMessageIntegrity = "a382954e4be67bf11784c97c8292c275bfe3ed41"
    static let ipv6ResponseFingerprint: UInt32 = 0xc8fb_0b4c

    // MARK: - 2.4 Sample Request with Long-Term Authentication

    /// 2.4 Sample Request with Long-Term Authentication (116 bytes, message
    /// length 0x0060). Binding request: USERNAME, NONCE, REALM,
    /// MESSAGE-INTEGRITY. It has no FINGERPRINT.
    static let longTermRequest: String =
        "000100602112a44278ad3433c6ad72c029da412e"   // header
        + "00060012e3839ee38388e383aae38383e382afe382b90000" // USERNAME (18 bytes) + 2 bytes 0x00 padding
        + "0015001c662f2f3439396b39353464364f4c33346f4c39465354767936347341" // NONCE (28 bytes)
        + "0014000b6578616d706c652e6f726700"         // REALM "example.org" + 1 byte 0x00 padding
        + "00080014f67024656dd64a3e02b8e0712e85c9a28ca89666" // MESSAGE-INTEGRITY
    /// "<U+30DE><U+30C8><U+30EA><U+30C3><U+30AF><U+30B9>" (マトリックス), unaffected by SASLprep.
    static let longTermUsername = "\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}"
    /// UTF-8 bytes of `longTermUsername`, as on the wire.
    static let longTermUsernameUTF8 = "e3839ee38388e383aae38383e382afe382b9"
    /// Password after SASLprep (RFC 4013). This is the form used in the key.
    static let longTermPassword = "TheMatrIX"
    /// Password as the RFC gives it before SASLprep: "The<U+00AD>M<U+00AA>tr<U+2168>".
    static let longTermPasswordBeforeSASLprep = "The\u{00AD}M\u{00AA}tr\u{2168}"
    static let longTermRealm = "example.org"
    static let longTermNonce = "f//499k954d6OL34oL9FSTvy64sA"
    /// Long-term key MD5(username ":" realm ":" SASLprep(password)). Not printed in
    /// the RFC. Computed here, and the 2.4 MESSAGE-INTEGRITY verifies with it.
    static let longTermKey = "e8ca7ad59d5eb0518e312911d2dab2a9"
    static let longTermMessageIntegrity = "f67024656dd64a3e02b8e0712e85c9a28ca89666"

    // MARK: - Transaction IDs (12 bytes, hex)

    /// Shared by 2.1, 2.2 and 2.3.
    static let sampleRequestTransactionID = "b7e7a701bc34d686fa87dfae"
    static let ipv4ResponseTransactionID = "b7e7a701bc34d686fa87dfae"
    static let ipv6ResponseTransactionID = "b7e7a701bc34d686fa87dfae"
    /// 2.4.
    static let longTermRequestTransactionID = "78ad3433c6ad72c029da412e"

    static let magicCookie: UInt32 = 0x2112_a442
}
