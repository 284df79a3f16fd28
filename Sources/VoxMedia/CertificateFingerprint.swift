import COpenSSL

/// A certificate fingerprint as SDP carries it (`a=fingerprint:sha-256 8B:12:...`,
/// RFC 8122 §5): the hash of the DER certificate. DTLS-SRTP authenticates the peer by
/// comparing its certificate's hash with the one in its offer, since WebRTC certificates
/// are self-signed.
public struct CertificateFingerprint: Hashable, Sendable, CustomStringConvertible {
    public enum Algorithm: String, Sendable, CaseIterable {
        case sha1 = "sha-1"
        case sha256 = "sha-256"
        case sha384 = "sha-384"
        case sha512 = "sha-512"

        public var digestLength: Int {
            switch self {
            case .sha1: return 20
            case .sha256: return 32
            case .sha384: return 48
            case .sha512: return 64
            }
        }

        var evp: OpaquePointer? {
            switch self {
            case .sha1: return EVP_sha1()
            case .sha256: return EVP_sha256()
            case .sha384: return EVP_sha384()
            case .sha512: return EVP_sha512()
            }
        }
    }

    public var algorithm: Algorithm
    public var digest: [UInt8]

    public init(algorithm: Algorithm, digest: [UInt8]) {
        precondition(
            digest.count == algorithm.digestLength, "a \(algorithm.rawValue) digest has \(algorithm.digestLength) bytes"
        )
        self.algorithm = algorithm
        self.digest = digest
    }

    /// Parses the value of an `a=fingerprint` line. Hash names compare case-insensitively
    /// (RFC 8122 §5); nil for unknown hashes (sha-224, md5, ...) and malformed hex.
    public init?(sdpValue: String) {
        let parts = sdpValue.split(separator: " ", omittingEmptySubsequences: true)
        guard parts.count == 2, let algorithm = Algorithm(rawValue: parts[0].lowercased()) else { return nil }
        var digest: [UInt8] = []
        for pair in parts[1].split(separator: ":", omittingEmptySubsequences: false) {
            guard pair.utf8.count == 2, let byte = UInt8(pair, radix: 16) else { return nil }
            digest.append(byte)
        }
        guard digest.count == algorithm.digestLength else { return nil }
        self.algorithm = algorithm
        self.digest = digest
    }

    /// The value of an `a=fingerprint` line: upper-case hex pairs joined by colons.
    public var sdpValue: String {
        let hex = Array("0123456789ABCDEF".utf8)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(digest.count * 3)
        for (i, b) in digest.enumerated() {
            if i > 0 { bytes.append(UInt8(ascii: ":")) }
            bytes.append(hex[Int(b >> 4)])
            bytes.append(hex[Int(b & 15)])
        }
        return algorithm.rawValue + " " + String(decoding: bytes, as: UTF8.self)
    }

    public var description: String { sdpValue }
}
