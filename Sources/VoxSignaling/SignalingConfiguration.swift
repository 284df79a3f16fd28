/// What the public signaling listener is told. Every value has a default; the configuration
/// file's `signaling:` section (docs/operations.md) fills it through VoxControl.
public struct SignalingConfiguration: Sendable, Equatable {
    /// The address and TCP port of the public listener (port 0: the kernel picks one, for tests).
    public var address: String = "0.0.0.0"
    public var port: Int = 8443

    /// HTTPS from these PEM files; when both are nil, a self-signed P-256 pair generated at
    /// start-up (its SHA-256 fingerprint is `SignalingServer.certificateFingerprint`).
    public var tlsCertificateFile: String? = nil
    public var tlsKeyFile: String? = nil
    /// Plain HTTP instead of HTTPS (only behind a TLS-terminating proxy, or for tests).
    public var plainHTTP: Bool = false

    /// The `aud` every token must carry.
    public var audience: String = "voxedge"
    /// HS256: a file holding the shared secret (its bytes, one trailing newline ignored; at
    /// least 32 bytes).
    public var tokenHS256SecretFile: String? = nil
    /// ES256: a PEM file with the P-256 public key that verifies tokens.
    public var tokenES256PublicKeyFile: String? = nil
    /// ES256: the matching private key, used only by `voxedge token` to mint.
    public var tokenES256PrivateKeyFile: String? = nil
    /// The longest a token may live: `exp - now` and, when `iat` is present, `exp - iat`.
    public var tokenMaxLifetimeSeconds: Int = 900

    /// Live sessions one subject (`sub`) may hold at once; one more POST is refused with 403.
    public var maxSessionsPerSubject: Int = 4
    /// The per-source-address token bucket: requests per second, and the burst it allows.
    public var rateLimitPerSecond: Double = 5
    public var rateLimitBurst: Int = 20
    /// Connections open at once on the listener, and from one source address.
    public var maxConnections: Int = 1024
    public var maxConnectionsPerSource: Int = 32
    /// Seconds from accept to a finished TLS handshake.
    public var tlsHandshakeTimeoutSeconds: Double = 5
    /// Seconds from accept (or the end of the previous response) to a request's complete head.
    public var headerTimeoutSeconds: Double = 10
    /// Seconds from a request's head to the end of its body.
    public var bodyTimeoutSeconds: Double = 10
    /// Seconds a kept-alive connection may wait, idle, for its next request.
    public var idleTimeoutSeconds: Double = 30
    /// The request head's size (request line and header fields), in bytes.
    public var maxHeaderBytes: Int = 16384
    /// Origins allowed by CORS; `*` allows any page.
    public var corsOrigins: [String] = ["*"]
    /// The `Retry-After` of a `503` (full or draining).
    public var retryAfterSeconds: Int = 5

    public init() {}

    /// The largest offer accepted (64 KiB); one byte more is a `413`.
    public static let maxOfferBytes = 65536

    /// Every problem with these values, as sentences; empty when the listener can start.
    public func problems() -> [String] {
        var out: [String] = []
        if !(0...65535).contains(port) { out.append("signaling.port must be 0...65535") }
        if (tlsCertificateFile == nil) != (tlsKeyFile == nil) {
            out.append("signaling.tls_certificate_file and signaling.tls_key_file go together: give both or neither")
        }
        if audience.isEmpty { out.append("signaling.audience must not be empty") }
        if tokenHS256SecretFile == nil && tokenES256PublicKeyFile == nil {
            out.append("signaling needs a token key: token_hs256_secret_file or token_es256_public_key_file")
        }
        if tokenMaxLifetimeSeconds < 1 { out.append("signaling.token_max_lifetime_seconds must be at least 1") }
        if maxSessionsPerSubject < 1 { out.append("signaling.max_sessions_per_subject must be at least 1") }
        if !(rateLimitPerSecond > 0) { out.append("signaling.rate_limit_per_second must be more than 0") }
        if rateLimitBurst < 1 { out.append("signaling.rate_limit_burst must be at least 1") }
        if maxConnections < 1 { out.append("signaling.max_connections must be at least 1") }
        if maxConnectionsPerSource < 1 { out.append("signaling.max_connections_per_source must be at least 1") }
        for (key, value) in [
            ("tls_handshake_timeout_seconds", tlsHandshakeTimeoutSeconds), ("header_timeout_seconds", headerTimeoutSeconds),
            ("body_timeout_seconds", bodyTimeoutSeconds), ("idle_timeout_seconds", idleTimeoutSeconds),
        ] where !(value > 0 && value <= 3600) {
            out.append("signaling.\(key) must be more than 0 and at most 3600")
        }
        if !(1024...1_048_576).contains(maxHeaderBytes) { out.append("signaling.max_header_bytes must be 1024...1048576") }
        if corsOrigins.isEmpty { out.append("signaling.cors_origins must list at least one origin (or \"*\")") }
        if retryAfterSeconds < 1 { out.append("signaling.retry_after_seconds must be at least 1") }
        return out
    }
}
