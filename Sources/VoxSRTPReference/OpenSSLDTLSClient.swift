import COpenSSL
import VoxMedia

/// OpenSSL's own DTLS client over memory BIOs: the peer `DTLSServer` is tested and
/// benchmarked against (as libsrtp2 is for SRTP). It is plain OpenSSL (connect state,
/// use_srtp, a client certificate) on the C API, sharing nothing with the server beyond the
/// certificate generator. Timers are OpenSSL's own; tests and benchmarks finish well within them.
public final class OpenSSLDTLSClient {
    let ctx: OpaquePointer
    let ssl: OpaquePointer
    let rbio: OpaquePointer
    let wbio: OpaquePointer
    public let certificate: DTLSCertificate
    let mtu: Int
    /// Each record its own datagram (GStreamer's OpenSSL), rather than packed up to the MTU.
    public var recordPerDatagram = false
    /// Record sequence numbers for records this helper re-fragments.
    var extraSequence: UInt64 = 40

    public init(profiles: [SRTPProfile], mtu: Int = 1200, certificate: DTLSCertificate? = nil) throws {
        let cert = try certificate ?? DTLSCertificate(commonName: "client")
        self.certificate = cert
        self.mtu = mtu
        ctx = SSL_CTX_new(DTLS_client_method())!
        precondition(vox_ssl_ctx_set_dtls12_only(ctx) == 1)
        func pemBIO(_ s: String) -> OpaquePointer {
            let b = BIO_new(BIO_s_mem())!
            var bytes = Array(s.utf8)
            _ = bytes.withUnsafeMutableBytes { BIO_write(b, $0.baseAddress, Int32($0.count)) }
            return b
        }
        let kb = pemBIO(cert.privateKeyPEM)
        let cb = pemBIO(cert.certificatePEM)
        let key = PEM_read_bio_PrivateKey(kb, nil, nil, nil)!
        let x509 = PEM_read_bio_X509(cb, nil, nil, nil)!
        precondition(SSL_CTX_use_certificate(ctx, x509) == 1 && SSL_CTX_use_PrivateKey(ctx, key) == 1)
        X509_free(x509)
        EVP_PKEY_free(key)
        BIO_free(kb)
        BIO_free(cb)
        precondition(SSL_CTX_set_tlsext_use_srtp(ctx, profiles.map(\.openSSLName).joined(separator: ":")) == 0)
        // The server's certificate is self-signed; the test compares its fingerprint itself.
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, { _, _ in 1 })
        ssl = SSL_new(ctx)!
        rbio = BIO_new(BIO_s_mem())!
        wbio = BIO_new(BIO_s_mem())!
        _ = vox_bio_set_mem_eof_return(rbio, -1)
        SSL_set_bio(ssl, rbio, wbio)
        SSL_set_connect_state(ssl)
        _ = vox_ssl_set_mtu(ssl, mtu - 28)
    }

    deinit {
        SSL_free(ssl)
        SSL_CTX_free(ctx)
    }

    public var isConnected: Bool { SSL_is_init_finished(ssl) == 1 }

    /// The first flight (ClientHello).
    public func start() -> [[UInt8]] {
        _ = SSL_do_handshake(ssl)
        return drain()
    }

    /// A datagram from the server; returns what the client sends in reply.
    public func receive(_ datagram: [UInt8]) -> [[UInt8]] {
        _ = datagram.withUnsafeBytes { BIO_write(rbio, $0.baseAddress, Int32($0.count)) }
        if !isConnected { _ = SSL_do_handshake(ssl) }
        // Then whatever followed the handshake in the same datagram (close_notify, alerts).
        if isConnected {
            var scratch = [UInt8](repeating: 0, count: 2048)
            _ = scratch.withUnsafeMutableBytes { SSL_read(ssl, $0.baseAddress, Int32($0.count)) }
        }
        return drain()
    }

    /// OpenSSL's client times retransmissions on the real clock, 1 s at first: this makes
    /// it 20 ms, so a test can have the client repeat a flight after a short sleep.
    public func useShortRetransmitTimer() {
        DTLS_set_timer_cb(ssl) { _, _ in 20_000 }
    }

    /// Runs the client's retransmission timer; returns the flight it resent, if it was due.
    public func retransmit() -> [[UInt8]] {
        _ = vox_dtls_handle_timeout(ssl)
        return drain()
    }

    /// True once close_notify has been read.
    public var receivedCloseNotify: Bool { SSL_get_shutdown(ssl) & SSL_RECEIVED_SHUTDOWN != 0 }

    public func close() -> [[UInt8]] {
        _ = SSL_shutdown(ssl)
        return drain()
    }

    public var selectedProfile: SRTPProfile? {
        SSL_get_selected_srtp_profile(ssl).flatMap { SRTPProfile(rawValue: UInt16(truncatingIfNeeded: $0.pointee.id)) }
    }

    public func exportedKeys() -> SRTPKeyingMaterial? {
        guard let profile = selectedProfile else { return nil }
        var out = [UInt8](repeating: 0, count: 2 * (profile.masterKeyLength + profile.masterSaltLength))
        let label = SRTPKeyingMaterial.exporterLabel
        let ok = out.withUnsafeMutableBufferPointer {
            SSL_export_keying_material(ssl, $0.baseAddress, $0.count, label, label.utf8.count, nil, 0, 0)
        }
        return ok == 1 ? SRTPKeyingMaterial(profile: profile, exported: out) : nil
    }

    /// The server certificate's SHA-256 fingerprint as the client saw it.
    public var serverFingerprint: String? {
        guard let x509 = SSL_get1_peer_certificate(ssl) else { return nil }
        defer { X509_free(x509) }
        var digest = [UInt8](repeating: 0, count: 32)
        var n: UInt32 = 0
        _ = digest.withUnsafeMutableBufferPointer { X509_digest(x509, EVP_sha256(), $0.baseAddress, &n) }
        return CertificateFingerprint(algorithm: .sha256, digest: digest).sdpValue
    }

    /// What OpenSSL wrote, cut into datagrams of whole records of at most the MTU.
    func drain() -> [[UInt8]] {
        let pending = Int(BIO_ctrl_pending(wbio))
        guard pending > 0 else { return [] }
        var bytes = [UInt8](repeating: 0, count: pending)
        _ = bytes.withUnsafeMutableBytes { BIO_read(wbio, $0.baseAddress, Int32(pending)) }
        var out: [[UInt8]] = []
        var current: [UInt8] = []
        bytes.withUnsafeBytes { b in
            for r in DTLSRecord.split(b)! {
                if !current.isEmpty && (recordPerDatagram || current.count + r.count > mtu - 28) {
                    out.append(current)
                    current = []
                }
                current += b[r]
            }
        }
        if !current.isEmpty { out.append(current) }
        return out
    }

    /// Splits the one handshake message in `datagram` into two fragments at `at` bytes of
    /// its body, each in its own datagram (Chromium's 1413-byte hello arrives as 1200 + 263).
    public func split(_ datagram: [UInt8], at fraction: Double) -> [[UInt8]] {
        let header = DTLSRecord.headerLength
        let body = Array(datagram[(header + 12)...])
        let cut = max(1, Int(Double(body.count) * fraction))
        func record(_ offset: Int, _ part: ArraySlice<UInt8>, sequence: UInt64?) -> [UInt8] {
            var r = Array(datagram[0..<header]) + Array(datagram[header..<(header + 6)])
            r += [UInt8(offset >> 16), UInt8(offset >> 8 & 0xFF), UInt8(offset & 0xFF)]
            r += [UInt8(part.count >> 16), UInt8(part.count >> 8 & 0xFF), UInt8(part.count & 0xFF)]
            r += part
            let length = r.count - header
            r[11] = UInt8(length >> 8)
            r[12] = UInt8(length & 0xFF)
            if let sequence {
                let all = 0..<r.count
                r.withUnsafeMutableBytes { DTLSRecord.setSequence($0, record: all, sequence) }
            }
            return r
        }
        extraSequence += 1
        return [record(0, body[0..<cut], sequence: nil), record(cut, body[cut...], sequence: extraSequence)]
    }
}
