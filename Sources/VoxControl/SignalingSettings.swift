import VoxEngine
import VoxSignaling

extension SignalingConfiguration {
    /// The configuration file's `signaling:` section over VoxSignaling's defaults.
    public init(_ s: EngineConfiguration.SignalingSettings) {
        self.init()
        if let v = s.address { address = v.description }
        if let v = s.port { port = Int(v) }
        if let v = s.tlsCertificateFile { tlsCertificateFile = v }
        if let v = s.tlsKeyFile { tlsKeyFile = v }
        if let v = s.plainHTTP { plainHTTP = v }
        if let v = s.audience { audience = v }
        if let v = s.tokenHS256SecretFile { tokenHS256SecretFile = v }
        if let v = s.tokenES256PublicKeyFile { tokenES256PublicKeyFile = v }
        if let v = s.tokenES256PrivateKeyFile { tokenES256PrivateKeyFile = v }
        if let v = s.tokenMaxLifetimeSeconds { tokenMaxLifetimeSeconds = v }
        if let v = s.maxSessionsPerSubject { maxSessionsPerSubject = v }
        if let v = s.rateLimitPerSecond { rateLimitPerSecond = v }
        if let v = s.rateLimitBurst { rateLimitBurst = v }
        if let v = s.maxConnections { maxConnections = v }
        if let v = s.maxConnectionsPerSource { maxConnectionsPerSource = v }
        if let v = s.tlsHandshakeTimeoutSeconds { tlsHandshakeTimeoutSeconds = v }
        if let v = s.headerTimeoutSeconds { headerTimeoutSeconds = v }
        if let v = s.bodyTimeoutSeconds { bodyTimeoutSeconds = v }
        if let v = s.idleTimeoutSeconds { idleTimeoutSeconds = v }
        if let v = s.maxHeaderBytes { maxHeaderBytes = v }
        if let v = s.corsOrigins { corsOrigins = v }
        if let v = s.retryAfterSeconds { retryAfterSeconds = v }
    }
}

extension EngineConfiguration {
    /// What is wrong with the `signaling:` section, by VoxSignaling's rules (empty when the
    /// section is absent): `voxedge run` refuses these with exit 64 like any other problem.
    public var signalingProblems: [String] {
        guard let signaling else { return [] }
        return SignalingConfiguration(signaling).problems()
    }
}
