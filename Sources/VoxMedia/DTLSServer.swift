import COpenSSL

extension SRTPProfile {
    /// The profile's name in OpenSSL's `use_srtp` list.
    public var openSSLName: String {
        switch self {
        case .aes128CmHmacSha1_80: return "SRTP_AES128_CM_SHA1_80"
        case .aes128CmHmacSha1_32: return "SRTP_AES128_CM_SHA1_32"
        case .aeadAes128Gcm: return "SRTP_AEAD_AES_128_GCM"
        case .aeadAes256Gcm: return "SRTP_AEAD_AES_256_GCM"
        }
    }
}

/// SRTP master keys exported from a finished DTLS-SRTP handshake (RFC 5764 §4.2): the
/// exporter's output `client key | server key | client salt | server salt`, split. The
/// client protects with the client key; we, the DTLS server, protect with the server key.
public struct SRTPKeyingMaterial: Equatable, Sendable {
    public var profile: SRTPProfile
    public var clientKey: [UInt8]
    public var clientSalt: [UInt8]
    public var serverKey: [UInt8]
    public var serverSalt: [UInt8]

    /// The RFC 5705 exporter label DTLS-SRTP uses.
    public static let exporterLabel = "EXTRACTOR-dtls_srtp"

    /// Splits the exporter's `2 * (key + salt)` bytes for `profile`.
    public init(profile: SRTPProfile, exported: [UInt8]) {
        let k = profile.masterKeyLength
        let s = profile.masterSaltLength
        precondition(exported.count == 2 * (k + s))
        self.profile = profile
        clientKey = Array(exported[0..<k])
        serverKey = Array(exported[k..<(2 * k)])
        clientSalt = Array(exported[(2 * k)..<(2 * k + s)])
        serverSalt = Array(exported[(2 * k + s)..<(2 * k + 2 * s)])
    }

    /// Overwrites the keys (call once they are installed in SRTP contexts).
    public mutating func wipe() {
        for i in clientKey.indices { clientKey[i] = 0 }
        for i in serverKey.indices { serverKey[i] = 0 }
        for i in clientSalt.indices { clientSalt[i] = 0 }
        for i in serverSalt.indices { serverSalt[i] = 0 }
    }
}

/// The shared half of the DTLS server: one SSL_CTX with our certificate, DTLS 1.2, the
/// SRTP profiles in our order of preference and the client-certificate policy. Built once
/// per process; `DTLSServer`s made from it cost only an SSL object each. SSL_CTX is safe to
/// share between handshake threads once set up, and nothing here changes it afterwards.
public final class DTLSServerContext: @unchecked Sendable {
    public struct Configuration: Sendable {
        /// Server preference: OpenSSL picks the first of these the client offers. AEAD
        /// first (one pass, 16-byte tag, no HMAC), then the profile every client has.
        public var profiles: [SRTPProfile]
        /// The largest datagram we send (a conservative path MTU for UDP over anything).
        public var mtu: Int
        /// The whole handshake must finish within this, from the first datagram.
        public var handshakeTimeout: UInt64
        /// The first retransmission of our flight; doubled each time (RFC 6347 §4.2.4.1).
        public var initialRetransmitTimeout: UInt64
        public var maxRetransmitTimeout: UInt64

        public init(
            profiles: [SRTPProfile] = [.aeadAes128Gcm, .aes128CmHmacSha1_80, .aeadAes256Gcm, .aes128CmHmacSha1_32],
            mtu: Int = 1200, handshakeTimeout: UInt64 = 10_000_000_000,
            initialRetransmitTimeout: UInt64 = 1_000_000_000, maxRetransmitTimeout: UInt64 = 8_000_000_000
        ) {
            self.profiles = profiles
            self.mtu = mtu
            self.handshakeTimeout = handshakeTimeout
            self.initialRetransmitTimeout = initialRetransmitTimeout
            self.maxRetransmitTimeout = maxRetransmitTimeout
        }
    }

    let ctx: OpaquePointer
    public let certificate: DTLSCertificate
    public let configuration: Configuration
    /// Our certificate's SHA-256 fingerprint, for `a=fingerprint` in the answer.
    public var fingerprint: CertificateFingerprint { certificate.fingerprint }

    public init(certificate: DTLSCertificate, configuration: Configuration = .init()) throws(DTLSError) {
        guard !configuration.profiles.isEmpty else { throw DTLSError(.setup, "no SRTP profile") }
        guard let ctx = SSL_CTX_new(DTLS_server_method()) else { throw .openSSL(.setup, "SSL_CTX_new") }
        var ok = vox_ssl_ctx_set_dtls12_only(ctx) == 1
        _ = vox_ssl_ctx_set_dtls_options(ctx)
        ok = ok && SSL_CTX_use_certificate(ctx, certificate.certificate) == 1
        ok = ok && SSL_CTX_use_PrivateKey(ctx, certificate.key) == 1
        ok = ok && SSL_CTX_check_private_key(ctx) == 1
        // Our key is ECDSA: only ECDHE-ECDSA suites can be negotiated; AEAD ones first.
        ok =
            ok
            && SSL_CTX_set_cipher_list(
                ctx,
                "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:"
                    + "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA") == 1
        // Returns 0 on success, unlike its neighbours.
        ok =
            ok
            && SSL_CTX_set_tlsext_use_srtp(ctx, configuration.profiles.map(\.openSSLName).joined(separator: ":")) == 0
        guard ok else {
            SSL_CTX_free(ctx)
            throw .openSSL(.setup, "SSL_CTX setup")
        }
        // Ask for the client's certificate, and replace chain verification with the
        // fingerprint check: WebRTC certificates are self-signed, the SDP fingerprint is what
        // authenticates the client, and building a chain that cannot exist costs time.
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nil)
        SSL_CTX_set_cert_verify_callback(ctx, dtlsVerifyPeer, nil)
        self.ctx = ctx
        self.certificate = certificate
        self.configuration = configuration
    }

    deinit { SSL_CTX_free(ctx) }
}

/// Per-handshake state the OpenSSL verify callback reads and writes (through SSL app data).
final class DTLSPeerCheck {
    let expected: [CertificateFingerprint]
    var matched = false
    var mismatched = false
    init(expected: [CertificateFingerprint]) { self.expected = expected }
}

/// OpenSSL's certificate verification, replaced: the client's leaf certificate must hash to
/// one of the offer's fingerprints, in any algorithm the offer used.
private func dtlsVerifyPeer(_ store: OpaquePointer?, _ arg: UnsafeMutableRawPointer?) -> Int32 {
    guard let store, let cert = X509_STORE_CTX_get0_cert(store),
        let sslPointer = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()),
        let box = SSL_get_ex_data(OpaquePointer(sslPointer), 0)
    else { return 0 }
    let check = Unmanaged<DTLSPeerCheck>.fromOpaque(box).takeUnretainedValue()
    for f in check.expected where DTLSCertificate.fingerprint(of: cert, f.algorithm) == f {
        check.matched = true
        return 1
    }
    check.mismatched = true
    X509_STORE_CTX_set_error(store, X509_V_ERR_CERT_REJECTED)
    return 0
}

/// OpenSSL's own retransmission timer runs on its own clock (gettimeofday), which a
/// sans-IO core cannot drive. Its timer is set beyond any handshake deadline, so OpenSSL
/// never retransmits by itself; `DTLSServer` retransmits on the caller's clock instead.
private func dtlsTimerNever(_ ssl: OpaquePointer?, _ previous: UInt32) -> UInt32 { 3_600_000_000 }

public enum DTLSState: Sendable, Equatable {
    case handshaking
    /// Keys exported; the session carries SRTP now (and DTLS only for alerts).
    case connected
    case failed(DTLSError)
    /// close_notify sent or received.
    case closed
}

/// What one call returns: datagrams to send now, the time to call `handleTimeout` next, and
/// the handshake's outcome on the call that decides it.
public struct DTLSOutput: Sendable {
    public var datagrams: [[UInt8]] = []
    /// nil: no timer (connected, failed or closed).
    public var deadline: UInt64?
    /// Set on the call that finishes the handshake.
    public var keys: SRTPKeyingMaterial?
    /// Set on the call where the handshake fails.
    public var failure: DTLSError?
    /// Set on the call where close_notify arrives.
    public var closed = false

    public init() {}
}

/// A handshake is owned by one thread at a time: being ~Copyable, handing it over moves it.
extension DTLSServer: @unchecked Sendable {}

/// One DTLS 1.2 server handshake (RFC 6347, RFC 5764) as a sans-IO core: OpenSSL over
/// memory BIOs, driven by `handle(now:datagram:)` and `handleTimeout(now:)`. It owns its SSL
/// object and nothing else: no socket, no thread, no clock.
///
/// - Client hellos split over several datagrams and retransmitted first flights are
///   normal (Chromium, GStreamer): OpenSSL reassembles fragments; a repeated ClientHello
///   after our reply makes us resend our flight at once (RFC 6347 §4.2.4).
/// - A DTLS 1.3 ClientHello is answered with DTLS 1.2 (the context allows only 1.2).
/// - Our flight (ServerHello ... ServerHelloDone) is resent at `initialRetransmitTimeout`,
///   doubling, until anything of the client's next flight arrives; the resend rewrites
///   the plaintext (epoch 0) record sequence numbers so the client's replay window takes it.
/// - The handshake fails at `handshakeTimeout` after the server was created.
/// - The client certificate must match one of the offer's fingerprints.
public struct DTLSServer: ~Copyable {
    let ssl: OpaquePointer
    let rbio: OpaquePointer
    let wbio: OpaquePointer
    let context: DTLSServerContext
    let check: DTLSPeerCheck
    public private(set) var state: DTLSState = .handshaking
    public private(set) var keys: SRTPKeyingMaterial?
    let handshakeDeadline: UInt64
    var retransmitDeadline: UInt64? = nil
    var retransmitTimeout: UInt64
    /// Our last flight while the client has not answered it: records, to resend.
    var flight: [UInt8] = []
    /// The next epoch-0 record sequence number we send (we number them, not OpenSSL).
    var epoch0Sequence: UInt64 = 0
    /// How many times our flight was resent (timer or repeated ClientHello).
    public private(set) var retransmissions = 0

    /// `remoteFingerprints` are the offer's `a=fingerprint` values; `now` starts the
    /// handshake deadline.
    public init(context: DTLSServerContext, remoteFingerprints: [CertificateFingerprint], now: UInt64) throws(DTLSError)
    {
        guard !remoteFingerprints.isEmpty else { throw DTLSError(.setup, "no fingerprint to check the client against") }
        guard let ssl = SSL_new(context.ctx) else { throw .openSSL(.setup, "SSL_new") }
        guard let rbio = BIO_new(BIO_s_mem()), let wbio = BIO_new(BIO_s_mem()) else {
            SSL_free(ssl)
            throw .openSSL(.setup, "BIO_new")
        }
        _ = vox_bio_set_mem_eof_return(rbio, -1)
        _ = vox_bio_set_mem_eof_return(wbio, -1)
        SSL_set_bio(ssl, rbio, wbio)
        SSL_set_accept_state(ssl)
        _ = vox_ssl_set_mtu(ssl, context.configuration.mtu - 28)  // IPv4 + UDP headers
        DTLS_set_timer_cb(ssl, dtlsTimerNever)
        check = DTLSPeerCheck(expected: remoteFingerprints)
        SSL_set_ex_data(ssl, 0, Unmanaged.passUnretained(check).toOpaque())
        self.ssl = ssl
        self.rbio = rbio
        self.wbio = wbio
        self.context = context
        handshakeDeadline = now &+ context.configuration.handshakeTimeout
        retransmitTimeout = context.configuration.initialRetransmitTimeout
    }

    deinit { SSL_free(ssl) }

    /// When `handleTimeout` must be called next; nil when no timer runs.
    public var deadline: UInt64? {
        guard state == .handshaking else { return nil }
        return min(handshakeDeadline, retransmitDeadline ?? .max)
    }

    /// One datagram from the client (first byte 20...63, RFC 7983).
    public mutating func handle(now: UInt64, datagram: UnsafeRawBufferPointer) -> DTLSOutput {
        var out = DTLSOutput()
        switch state {
        case .failed, .closed:
            return out
        case .handshaking:
            if now >= handshakeDeadline { return fail(DTLSError(.timeout, "no handshake by its deadline"), &out) }
        case .connected:
            break
        }
        guard let records = DTLSRecord.split(datagram) else { return finish(&out) }  // not DTLS: ignored
        var repeatedHello = false
        if state == .handshaking && !flight.isEmpty {
            // A ClientHello again: our flight was lost. Anything else: the client has it.
            let hellos = records.map { DTLSRecord.handshakeFragment(datagram, record: $0) }
            if hellos.allSatisfy({ $0?.type == DTLSRecord.clientHello }) {
                repeatedHello = hellos.contains { $0?.offset == 0 }
            } else {
                flight = []
                retransmitDeadline = nil
            }
        }
        _ = BIO_write(rbio, datagram.baseAddress, Int32(datagram.count))
        ERR_clear_error()
        if state == .handshaking {
            let r = SSL_do_handshake(ssl)
            if r == 1 {
                connected(&out)
            } else {
                let e = SSL_get_error(ssl, r)
                if e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE {
                    let error =
                        check.mismatched
                        ? DTLSError(.fingerprintMismatch, "the client certificate matches no offered fingerprint")
                        : DTLSError.openSSL(.handshakeFailed, "SSL_do_handshake")
                    return fail(error, &out)
                }
            }
        } else {
            readAfterHandshake(&out)
        }
        let sent = drain()
        if state == .handshaking && !sent.isEmpty {
            // A new flight of ours: keep it until the client answers.
            flight = sent
            retransmitTimeout = context.configuration.initialRetransmitTimeout
            retransmitDeadline = now &+ retransmitTimeout
            out.datagrams = packetize(sent)
        } else if !sent.isEmpty {
            out.datagrams = packetize(sent)
        } else if repeatedHello {
            out.datagrams = resendFlight()
        }
        return finish(&out)
    }

    /// Timers: resends our flight when its timer is due, fails the handshake at its deadline.
    public mutating func handleTimeout(now: UInt64) -> DTLSOutput {
        var out = DTLSOutput()
        guard state == .handshaking else { return out }
        if now >= handshakeDeadline { return fail(DTLSError(.timeout, "no handshake by its deadline"), &out) }
        if let due = retransmitDeadline, now >= due, !flight.isEmpty {
            out.datagrams = resendFlight()
            retransmitTimeout = min(retransmitTimeout * 2, context.configuration.maxRetransmitTimeout)
            retransmitDeadline = now &+ retransmitTimeout
        }
        return finish(&out)
    }

    /// Sends close_notify (RFC 5246 §7.2.1) when connected; the session is over either way.
    public mutating func close() -> DTLSOutput {
        var out = DTLSOutput()
        if state == .connected {
            ERR_clear_error()
            _ = SSL_shutdown(ssl)
            out.datagrams = packetize(drain())
        }
        if case .failed = state {} else { state = .closed }
        return finish(&out)
    }

    // MARK: - Internals

    mutating func connected(_ out: inout DTLSOutput) {
        flight = []
        retransmitDeadline = nil
        guard check.matched else {
            refuse(DTLSError(.fingerprintMismatch, "no client certificate was checked"), &out)
            return
        }
        // A client without use_srtp (or none of our profiles: OpenSSL then goes on without
        // the extension) finishes the handshake, but there are no keys for it.
        guard let selected = SSL_get_selected_srtp_profile(ssl),
            let profile = SRTPProfile(rawValue: UInt16(truncatingIfNeeded: selected.pointee.id))
        else {
            refuse(DTLSError(.noSRTP, "no SRTP profile in common with the client"), &out)
            return
        }
        var exported = [UInt8](repeating: 0, count: 2 * (profile.masterKeyLength + profile.masterSaltLength))
        let label = SRTPKeyingMaterial.exporterLabel
        let ok = exported.withUnsafeMutableBufferPointer { o in
            SSL_export_keying_material(ssl, o.baseAddress, o.count, label, label.utf8.count, nil, 0, 0)
        }
        guard ok == 1 else {
            refuse(.openSSL(.noSRTP, "SSL_export_keying_material"), &out)
            return
        }
        let material = SRTPKeyingMaterial(profile: profile, exported: exported)
        for i in exported.indices { exported[i] = 0 }
        keys = material
        out.keys = material
        state = .connected
    }

    /// After the handshake only alerts (close_notify) and a repeated client flight arrive;
    /// OpenSSL answers the latter by resending our last flight itself.
    mutating func readAfterHandshake(_ out: inout DTLSOutput) {
        var scratch = [UInt8](repeating: 0, count: 2048)
        while true {
            let n = scratch.withUnsafeMutableBytes { SSL_read(ssl, $0.baseAddress, Int32($0.count)) }
            if n > 0 { continue }  // DTLS-SRTP carries no application data: discarded.
            let e = SSL_get_error(ssl, n)
            if e == SSL_ERROR_ZERO_RETURN {
                state = .closed
                out.closed = true
            } else if e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE {
                state = .failed(.openSSL(.handshakeFailed, "SSL_read after the handshake"))
            }
            return
        }
    }

    /// A handshake OpenSSL finished but we cannot use: our last flight goes out followed by
    /// close_notify (which the client can only read once it has our CCS and Finished), so
    /// the client stops at once instead of waiting for media.
    mutating func refuse(_ error: DTLSError, _ out: inout DTLSOutput) {
        ERR_clear_error()
        _ = SSL_shutdown(ssl)
        _ = fail(error, &out)
    }

    mutating func fail(_ error: DTLSError, _ out: inout DTLSOutput) -> DTLSOutput {
        state = .failed(error)
        out.failure = error
        flight = []
        retransmitDeadline = nil
        out.datagrams = packetize(drain())  // OpenSSL's alert, if it wrote one
        return finish(&out)
    }

    func finish(_ out: inout DTLSOutput) -> DTLSOutput {
        out.deadline = deadline
        return out
    }

    /// Everything OpenSSL wrote since the last call, records renumbered.
    mutating func drain() -> [UInt8] {
        let pending = Int(BIO_ctrl_pending(wbio))
        guard pending > 0 else { return [] }
        var bytes = [UInt8](repeating: 0, count: pending)
        let n = bytes.withUnsafeMutableBytes { BIO_read(wbio, $0.baseAddress, Int32(pending)) }
        if Int(n) < pending { bytes.removeLast(pending - max(0, Int(n))) }
        renumber(&bytes)
        return bytes
    }

    /// Gives every epoch-0 record the next sequence number of ours.
    mutating func renumber(_ bytes: inout [UInt8]) {
        var next = epoch0Sequence
        bytes.withUnsafeMutableBytes { b in
            for r in DTLSRecord.split(UnsafeRawBufferPointer(b)) ?? []
            where DTLSRecord.epoch(UnsafeRawBufferPointer(b), record: r) == 0 {
                DTLSRecord.setSequence(b, record: r, next)
                next += 1
            }
        }
        epoch0Sequence = next
    }

    mutating func resendFlight() -> [[UInt8]] {
        guard !flight.isEmpty else { return [] }
        retransmissions += 1
        var records = flight
        renumber(&records)
        flight = records
        return packetize(records)
    }

    /// Packs whole records into datagrams of at most the MTU (RFC 6347 §4.1.1 allows
    /// several records per datagram; OpenSSL sizes each record to fit one).
    func packetize(_ bytes: [UInt8]) -> [[UInt8]] {
        let limit = context.configuration.mtu - 28
        var out: [[UInt8]] = []
        bytes.withUnsafeBytes { b in
            var current: [UInt8] = []
            for r in DTLSRecord.split(b) ?? [0..<b.count] {
                if !current.isEmpty && current.count + r.count > limit {
                    out.append(current)
                    current = []
                }
                current += b[r]
            }
            if !current.isEmpty { out.append(current) }
        }
        return out
    }
}
