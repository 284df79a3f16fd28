import CSRTP
import VoxMedia

/// libsrtp2 as an independent SRTP implementation: the interoperability oracle in tests
/// and the baseline in benchmarks. Never on the packet path (FINDINGS: Debian's build
/// costs 5-20 µs a packet).
public final class LibSRTPSession {
    public enum Direction: Sendable { case inbound, outbound }

    private var session: srtp_t?
    public let profile: SRTPProfile

    private static let initialized: Bool = srtp_init() == srtp_err_status_ok

    /// A session for any SSRC in one direction, keyed with `masterKey || masterSalt`.
    public init?(profile: SRTPProfile, masterKey: [UInt8], masterSalt: [UInt8], direction: Direction) {
        guard LibSRTPSession.initialized else { return nil }
        self.profile = profile
        var policy = srtp_policy_t()
        switch profile {
        case .aes128CmHmacSha1_80:
            srtp_crypto_policy_set_rtp_default(&policy.rtp)
        case .aes128CmHmacSha1_32:
            srtp_crypto_policy_set_aes_cm_128_hmac_sha1_32(&policy.rtp)
        case .aeadAes128Gcm:
            srtp_crypto_policy_set_aes_gcm_128_16_auth(&policy.rtp)
        case .aeadAes256Gcm:
            srtp_crypto_policy_set_aes_gcm_256_16_auth(&policy.rtp)
        }
        if profile.isAEAD {
            policy.rtcp = policy.rtp
        } else {
            srtp_crypto_policy_set_rtcp_default(&policy.rtcp)  // SRTCP keeps an 80-bit tag
        }
        policy.ssrc.type = direction == .inbound ? ssrc_any_inbound : ssrc_any_outbound
        policy.window_size = 128
        policy.allow_repeat_tx = 0
        var material = masterKey + masterSalt
        let status = material.withUnsafeMutableBufferPointer { m -> srtp_err_status_t in
            policy.key = m.baseAddress
            return srtp_create(&session, &policy)
        }
        for i in material.indices { material[i] = 0 }
        guard status == srtp_err_status_ok else { return nil }
    }

    deinit {
        if let session { srtp_dealloc(session) }
    }

    /// libsrtp2's status code for the last call: 0 is success; 9 auth_fail, 10 cipher_fail,
    /// 11 replay_fail, 12 replay_old (see `srtp_err_status_t`).
    public func protect(_ p: UnsafeMutableRawPointer, length: inout Int) -> UInt32 {
        call(srtp_protect, p, &length)
    }

    public func unprotect(_ p: UnsafeMutableRawPointer, length: inout Int) -> UInt32 {
        call(srtp_unprotect, p, &length)
    }

    public func protectRTCP(_ p: UnsafeMutableRawPointer, length: inout Int) -> UInt32 {
        call(srtp_protect_rtcp, p, &length)
    }

    public func unprotectRTCP(_ p: UnsafeMutableRawPointer, length: inout Int) -> UInt32 {
        call(srtp_unprotect_rtcp, p, &length)
    }

    private func call(
        _ f: (srtp_t?, UnsafeMutableRawPointer?, UnsafeMutablePointer<Int32>?) -> srtp_err_status_t,
        _ p: UnsafeMutableRawPointer, _ length: inout Int
    ) -> UInt32 {
        var n = Int32(length)
        let status = f(session, p, &n)
        length = Int(n)
        return status.rawValue
    }

    public static let authFail: UInt32 = srtp_err_status_auth_fail.rawValue
    public static let replayFail: UInt32 = srtp_err_status_replay_fail.rawValue
    public static let replayOld: UInt32 = srtp_err_status_replay_old.rawValue
}
