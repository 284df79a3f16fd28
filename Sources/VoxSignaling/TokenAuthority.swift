import Foundation
import JWTKit
import Synchronization

/// Who a verified token says is calling, and for what.
public struct TokenGrant: Sendable, Equatable {
    public var subject: String
    public var model: String
    public var expires: Date
}

/// Why a token was refused: the one-line reason of the `401`.
public struct TokenRejection: Error, Sendable, Equatable, CustomStringConvertible {
    public var reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}

/// The claims VoxEdge reads. Every one optional here, so that a missing one is refused with
/// its own reason by `TokenAuthority.check` rather than a decoding error.
struct TokenClaims: JWTPayload {
    var aud: AudienceClaim?
    var exp: ExpirationClaim?
    var iat: IssuedAtClaim?
    var nbf: NotBeforeClaim?
    var sub: SubjectClaim?
    var model: String?

    /// Nothing here: `TokenAuthority.check` verifies the claims against its own clock.
    func verify(using algorithm: some JWTAlgorithm) async throws {}
}

/// The token keys read from the configured files: one verifier per accepted algorithm, so a
/// token's `alg` chooses the key family and can never make an ES256 public key an HMAC secret.
struct TokenKeys: Sendable {
    var hs256: JWTKeyCollection?
    var es256: JWTKeyCollection?
    /// For minting only (`voxedge token`): the ES256 private key, when configured.
    var es256Signer: JWTKeyCollection?

    static let minimumSecretBytes = 32

    static func load(_ c: SignalingConfiguration) async throws(SignalingSetupError) -> TokenKeys {
        var keys = TokenKeys()
        if let path = c.tokenHS256SecretFile {
            var secret = try SignalingSetupError.readFile(path, what: "token_hs256_secret_file")
            if secret.last == UInt8(ascii: "\n") { secret.removeLast() }
            if secret.last == UInt8(ascii: "\r") { secret.removeLast() }
            guard secret.count >= minimumSecretBytes else {
                throw SignalingSetupError("token_hs256_secret_file \(path): \(secret.count) bytes; at least \(minimumSecretBytes) needed")
            }
            keys.hs256 = await hs256(secret)
        }
        if let path = c.tokenES256PublicKeyFile {
            let pem = try SignalingSetupError.readFile(path, what: "token_es256_public_key_file")
            do {
                let key = try ES256PublicKey(pem: pem)
                let collection = JWTKeyCollection()
                await collection.add(ecdsa: key)
                keys.es256 = collection
            } catch {
                throw SignalingSetupError("token_es256_public_key_file \(path): not a PEM P-256 public key (\(error))")
            }
        }
        if let path = c.tokenES256PrivateKeyFile {
            let pem = try SignalingSetupError.readFile(path, what: "token_es256_private_key_file")
            do {
                let key = try ES256PrivateKey(pem: pem)
                let collection = JWTKeyCollection()
                await collection.add(ecdsa: key)
                keys.es256Signer = collection
            } catch {
                throw SignalingSetupError("token_es256_private_key_file \(path): not a PEM P-256 private key (\(error))")
            }
        }
        return keys
    }

    /// A verifier (and signer) for HS256 with `secret`.
    static func hs256(_ secret: [UInt8]) async -> JWTKeyCollection {
        let collection = JWTKeyCollection()
        await collection.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
        return collection
    }
}

/// Verifies (and, for `voxedge token`, mints) the short-lived tokens of `Authorization: Bearer`.
/// Its keys are replaced whole by `reload`, so a request sees either the old keys or the new.
public final class TokenAuthority: Sendable {
    let audience: String
    let maxLifetime: Int
    private let keys: Mutex<TokenKeys>

    /// The longest token text looked at; longer ones are refused before any decoding.
    public static let maxTokenBytes = 4096

    init(configuration: SignalingConfiguration, keys: TokenKeys) {
        self.audience = configuration.audience
        self.maxLifetime = configuration.tokenMaxLifetimeSeconds
        self.keys = Mutex(keys)
    }

    /// Reads the configured key files. Throws naming the file when one cannot be used.
    public static func load(_ configuration: SignalingConfiguration) async throws(SignalingSetupError) -> TokenAuthority {
        TokenAuthority(configuration: configuration, keys: try await TokenKeys.load(configuration))
    }

    /// Re-reads the key files; on any failure the old keys stay and the error says why.
    public func reload(_ configuration: SignalingConfiguration) async throws(SignalingSetupError) {
        let fresh = try await TokenKeys.load(configuration)
        keys.withLock { $0 = fresh }
    }

    /// The grant a token carries, or why it is refused. `now` is the verifier's clock.
    public func verify(_ token: String, now: Date = Date()) async throws(TokenRejection) -> TokenGrant {
        guard token.utf8.count <= Self.maxTokenBytes else { throw TokenRejection("token longer than \(Self.maxTokenBytes) bytes") }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, !parts[1].isEmpty else {
            throw TokenRejection("token is not a signed JWT (header.payload.signature)")
        }
        guard let headerBytes = Self.base64URLDecode(parts[0]),
            let header = try? JSONDecoder().decode(Header.self, from: Data(headerBytes))
        else { throw TokenRejection("token header is not base64url JSON with an alg") }
        let current = keys.withLock { $0 }
        let collection: JWTKeyCollection?
        switch header.alg {
        case "HS256": collection = current.hs256
        case "ES256": collection = current.es256
        default: throw TokenRejection("token alg \(Self.printable(header.alg)) not accepted (HS256 or ES256)")
        }
        guard let collection else { throw TokenRejection("token alg \(header.alg) has no key configured") }
        guard header.crit == nil else { throw TokenRejection("token header has crit extensions, none understood") }
        let claims: TokenClaims
        do {
            claims = try await collection.verify(token, as: TokenClaims.self)
        } catch let error as JWTError where error.errorType == .signatureVerificationFailed {
            throw TokenRejection("token signature does not verify")
        } catch {
            throw TokenRejection("token does not verify or its claims are malformed")
        }
        return try check(claims, now: now)
    }

    /// The claims' rules: audience, expiry within the maximum lifetime, not-before, subject, model.
    func check(_ claims: TokenClaims, now: Date) throws(TokenRejection) -> TokenGrant {
        guard let aud = claims.aud else { throw TokenRejection("token has no aud") }
        guard aud.value.contains(audience) else { throw TokenRejection("token aud is not \(audience)") }
        guard let exp = claims.exp?.value else { throw TokenRejection("token has no exp") }
        guard exp > now else { throw TokenRejection("token expired") }
        let limit = TimeInterval(maxLifetime)
        if exp.timeIntervalSince(now) > limit {
            throw TokenRejection("token lives past the maximum lifetime of \(maxLifetime) s")
        }
        if let iat = claims.iat?.value, exp.timeIntervalSince(iat) > limit {
            throw TokenRejection("token exp - iat passes the maximum lifetime of \(maxLifetime) s")
        }
        if let nbf = claims.nbf?.value, nbf > now { throw TokenRejection("token not valid yet (nbf)") }
        guard let sub = claims.sub?.value, !sub.isEmpty, sub.utf8.count <= 256 else {
            throw TokenRejection("token has no sub (1 to 256 bytes)")
        }
        guard let model = claims.model, !model.isEmpty, model.utf8.count <= 256 else {
            throw TokenRejection("token has no model (1 to 256 bytes)")
        }
        return TokenGrant(subject: sub, model: model, expires: exp)
    }

    /// Mints a token: ES256 when the private key is configured, else HS256 with the secret.
    public func mint(subject: String, model: String, lifetime: Int, audience: String? = nil, now: Date = Date())
        async throws(SignalingSetupError) -> String
    {
        let current = keys.withLock { $0 }
        guard let signer = current.es256Signer ?? current.hs256 else {
            throw SignalingSetupError("no signing key: configure token_es256_private_key_file or token_hs256_secret_file")
        }
        let claims = TokenClaims(
            aud: AudienceClaim(value: [audience ?? self.audience]),
            exp: ExpirationClaim(value: now.addingTimeInterval(TimeInterval(lifetime))),
            iat: IssuedAtClaim(value: now), nbf: nil,
            sub: SubjectClaim(value: subject), model: model)
        do {
            return try await signer.sign(claims)
        } catch {
            throw SignalingSetupError("signing failed: \(error)")
        }
    }

    struct Header: Decodable {
        var alg: String
        var crit: [String]?
    }

    /// An algorithm name as it may appear in a reason: at most 16 printable ASCII characters.
    static func printable(_ text: String) -> String {
        let kept = text.unicodeScalars.prefix(16).map { $0.isASCII && $0.value >= 0x20 && $0.value < 0x7f ? Character($0) : "?" }
        return "'\(String(kept))'"
    }

    static func base64URLDecode(_ text: Substring) -> [UInt8]? {
        var s = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        guard !s.contains("=") else { return nil }
        while s.utf8.count % 4 != 0 { s += "=" }
        return Data(base64Encoded: s).map { [UInt8]($0) }
    }
}

/// A setup failure of the signaling listener (a key or certificate file that cannot be used,
/// a port that cannot be bound): one sentence naming the file or key.
public struct SignalingSetupError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }

    static func readFile(_ path: String, what: String) throws(SignalingSetupError) -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw SignalingSetupError("\(what) \(path): cannot be read")
        }
        return [UInt8](data)
    }
}
