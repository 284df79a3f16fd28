/// The DTLS-SRTP protection profiles VoxEdge speaks (RFC 5764 §4.1.2, RFC 7714 §14.2).
/// Raw values are the profile identifiers in the DTLS `use_srtp` extension.
public enum SRTPProfile: UInt16, CaseIterable, Sendable, CustomStringConvertible {
    case aes128CmHmacSha1_80 = 0x0001
    case aes128CmHmacSha1_32 = 0x0002
    case aeadAes128Gcm = 0x0007
    case aeadAes256Gcm = 0x0008

    public var isAEAD: Bool { self == .aeadAes128Gcm || self == .aeadAes256Gcm }
    public var masterKeyLength: Int { self == .aeadAes256Gcm ? 32 : 16 }
    public var masterSaltLength: Int { isAEAD ? 12 : 14 }
    /// Authentication tag on SRTP packets.
    public var rtpTagLength: Int {
        switch self {
        case .aes128CmHmacSha1_80: return 10
        case .aes128CmHmacSha1_32: return 4
        case .aeadAes128Gcm, .aeadAes256Gcm: return 16
        }
    }
    /// Authentication tag on SRTCP packets: `_32` still uses 80 bits for RTCP (RFC 5764 §4.1.2).
    public var rtcpTagLength: Int { isAEAD ? 16 : 10 }

    /// The name in SDES `a=crypto` and in the DTLS `use_srtp` profile list.
    public var description: String {
        switch self {
        case .aes128CmHmacSha1_80: return "AES_CM_128_HMAC_SHA1_80"
        case .aes128CmHmacSha1_32: return "AES_CM_128_HMAC_SHA1_32"
        case .aeadAes128Gcm: return "AEAD_AES_128_GCM"
        case .aeadAes256Gcm: return "AEAD_AES_256_GCM"
        }
    }

    public init?(name: String) {
        guard let p = Self.allCases.first(where: { $0.description == name || "SRTP_\($0.description)" == name })
        else { return nil }
        self = p
    }
}

/// The outcome of protecting or unprotecting one packet. Anything but `.ok` is a
/// counted drop; the packet bytes are then unspecified.
public enum SRTPStatus: UInt8, Sendable, CaseIterable {
    case ok
    /// Shorter than a header plus tag.
    case tooShort
    /// Not RTP/RTCP version 2, or header fields that run past the packet.
    case malformed
    /// The tag does not verify.
    case authenticationFailed
    /// Already received (or, protecting, already sent) under this key.
    case replayed
    /// Older than the replay window.
    case tooOld
    /// No room after the packet for the tag and trailer.
    case noRoom
    /// A new SSRC, and this context already tracks its maximum.
    case tooManyStreams
    /// The SRTCP index space is used up: the key must be changed.
    case indexExhausted
    /// libcrypto refused an operation (should not happen with valid state).
    case cryptoFailure
}

extension SRTPProfile: BitwiseCopyable {}
extension SRTPStatus: BitwiseCopyable {}
