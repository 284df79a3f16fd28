import COpenSSL

/// Why a DTLS context, certificate or handshake failed. `code` is stable (logs, metrics).
public struct DTLSError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable, CaseIterable {
        /// Key generation, certificate or SSL_CTX setup failed (OpenSSL's queue is in `message`).
        case setup
        /// A PEM key or certificate did not load, or they do not match.
        case badPEM
        /// The handshake did not finish by its deadline.
        case timeout
        /// The client's certificate matches none of the offer's fingerprints.
        case fingerprintMismatch
        /// OpenSSL ended the handshake (a bad message, an alert, no common SRTP profile, ...).
        case handshakeFailed
        /// The handshake finished without `use_srtp`, or the key export failed.
        case noSRTP
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// `message` plus whatever OpenSSL queued on this thread (and clears the queue).
    static func openSSL(_ code: Code, _ message: String) -> DTLSError {
        var reasons: [String] = []
        while true {
            let e = ERR_get_error()
            if e == 0 { break }
            var buffer = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(e, &buffer, buffer.count)
            reasons.append(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return DTLSError(code, reasons.isEmpty ? message : message + ": " + reasons.joined(separator: "; "))
    }

    public var description: String { "dtls \(code.rawValue): \(message)" }
}

/// The server's DTLS identity: an ECDSA P-256 key and a self-signed certificate, generated
/// once per process (or loaded from PEM so a fleet can pin it) and shared by every
/// handshake. WebRTC authenticates it by the SHA-256 fingerprint in our SDP answer, not by
/// a CA, so the subject and validity only need to be well-formed. P-256 because every
/// browser supports it and its signature is the cheapest part of our handshake (42 µs here).
public final class DTLSCertificate: @unchecked Sendable {
    /// EVP_PKEY and X509, owned; immutable after init (OpenSSL reference-counts them, and
    /// SSL_CTX_use_* takes its own references).
    let key: OpaquePointer
    let certificate: OpaquePointer
    /// What the SDP answer carries.
    public let fingerprint: CertificateFingerprint

    /// A new key and a certificate valid from a day ago (clock skew) for `validDays`.
    public convenience init(commonName: String = "VoxEdge", validDays: Int = 30) throws(DTLSError) {
        guard let key = vox_ec_p256_generate() else { throw .openSSL(.setup, "P-256 key generation") }
        guard let x509 = X509_new() else {
            EVP_PKEY_free(key)
            throw .openSSL(.setup, "X509_new")
        }
        var serial: UInt64 = 0
        _ = withUnsafeMutableBytes(of: &serial) { RAND_bytes($0.baseAddress!.assumingMemoryBound(to: UInt8.self), 8) }
        var ok = X509_set_version(x509, 2) == 1
        ok = ok && ASN1_INTEGER_set_uint64(X509_get_serialNumber(x509), serial >> 1) == 1
        ok = ok && X509_gmtime_adj(X509_getm_notBefore(x509), -86_400) != nil
        ok = ok && X509_gmtime_adj(X509_getm_notAfter(x509), validDays * 86_400) != nil
        ok = ok && X509_set_pubkey(x509, key) == 1
        let name = X509_get_subject_name(x509)
        ok = ok && X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, commonName, -1, -1, 0) == 1
        ok = ok && X509_set_issuer_name(x509, name) == 1
        ok = ok && X509_sign(x509, key, EVP_sha256()) > 0
        guard ok else {
            X509_free(x509)
            EVP_PKEY_free(key)
            throw .openSSL(.setup, "self-signed certificate")
        }
        self.init(owning: key, x509)
    }

    /// Loads a PEM private key and certificate (an operator's pinned identity).
    public convenience init(privateKeyPEM: String, certificatePEM: String) throws(DTLSError) {
        func bio(_ text: String) -> OpaquePointer? {
            var bytes = Array(text.utf8)
            return bytes.withUnsafeMutableBytes { b in
                guard let mem = BIO_new(BIO_s_mem()) else { return nil }
                _ = BIO_write(mem, b.baseAddress, Int32(b.count))
                return mem
            }
        }
        guard let kb = bio(privateKeyPEM), let cb = bio(certificatePEM) else { throw .openSSL(.setup, "BIO_new") }
        defer {
            BIO_free(kb)
            BIO_free(cb)
        }
        guard let key = PEM_read_bio_PrivateKey(kb, nil, nil, nil) else { throw .openSSL(.badPEM, "private key") }
        guard let x509 = PEM_read_bio_X509(cb, nil, nil, nil) else {
            EVP_PKEY_free(key)
            throw .openSSL(.badPEM, "certificate")
        }
        guard X509_check_private_key(x509, key) == 1 else {
            X509_free(x509)
            EVP_PKEY_free(key)
            throw .openSSL(.badPEM, "the key does not match the certificate")
        }
        self.init(owning: key, x509)
    }

    /// Takes ownership of a key and its certificate.
    private init(owning key: OpaquePointer, _ certificate: OpaquePointer) {
        self.key = key
        self.certificate = certificate
        self.fingerprint = Self.fingerprint(of: certificate, .sha256)
    }

    deinit {
        X509_free(certificate)
        EVP_PKEY_free(key)
    }

    /// The certificate in PEM, to save a generated identity.
    public var certificatePEM: String { Self.pem { PEM_write_bio_X509($0, certificate) } }
    /// The private key in PEM (unencrypted: protect the file).
    public var privateKeyPEM: String { Self.pem { PEM_write_bio_PrivateKey($0, key, nil, nil, 0, nil, nil) } }

    static func pem(_ write: (OpaquePointer) -> Int32) -> String {
        guard let mem = BIO_new(BIO_s_mem()) else { return "" }
        defer { BIO_free(mem) }
        guard write(mem) == 1 else { return "" }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1024)
        while true {
            let n = chunk.withUnsafeMutableBytes { BIO_read(mem, $0.baseAddress, Int32($0.count)) }
            if n <= 0 { break }
            out += chunk[0..<Int(n)]
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The hash of an X509's DER encoding.
    static func fingerprint(
        of x509: OpaquePointer, _ algorithm: CertificateFingerprint.Algorithm
    ) -> CertificateFingerprint {
        var digest = [UInt8](repeating: 0, count: 64)
        var length: UInt32 = 0
        let ok = digest.withUnsafeMutableBufferPointer { X509_digest(x509, algorithm.evp, $0.baseAddress, &length) }
        precondition(ok == 1 && Int(length) == algorithm.digestLength, "X509_digest failed")
        return CertificateFingerprint(algorithm: algorithm, digest: Array(digest.prefix(Int(length))))
    }
}
