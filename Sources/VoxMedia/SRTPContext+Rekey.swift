import COpenSSL

/// The RFC 3711 key derivation PRF (AES-CM over the master key) with its cipher contexts
/// created once, so deriving session keys for a new session allocates nothing: libcrypto
/// re-keys an existing context in place when the cipher stays the same.
public struct SRTPKeyDeriver: ~Copyable {
    @usableFromInline let ecb128: OpaquePointer
    @usableFromInline let ecb256: OpaquePointer

    public init() {
        ecb128 = EVP_CIPHER_CTX_new()!
        ecb256 = EVP_CIPHER_CTX_new()!
        let zero = [UInt8](repeating: 0, count: 32)
        _ = EVP_EncryptInit_ex(ecb128, EVP_aes_128_ecb(), nil, zero, nil)
        _ = EVP_EncryptInit_ex(ecb256, EVP_aes_256_ecb(), nil, zero, nil)
        EVP_CIPHER_CTX_set_padding(ecb128, 0)
        EVP_CIPHER_CTX_set_padding(ecb256, 0)
    }

    deinit {
        EVP_CIPHER_CTX_free(ecb128)
        EVP_CIPHER_CTX_free(ecb256)
    }

    /// Keys the PRF with `masterKey` (16 or 32 bytes); nil for another length.
    func prf(for masterKey: UnsafeRawBufferPointer) -> OpaquePointer? {
        let ctx: OpaquePointer
        switch masterKey.count {
        case 16: ctx = ecb128
        case 32: ctx = ecb256
        default: return nil
        }
        let ok = EVP_EncryptInit_ex(ctx, nil, nil, masterKey.bindMemory(to: UInt8.self).baseAddress, nil) == 1
        return ok ? ctx : nil
    }

    /// Writes `count` bytes of the PRF output for `label` to `out` (RFC 3711 §4.3.3).
    static func derive(
        _ prf: OpaquePointer, masterSalt: UnsafeRawBufferPointer, label: UInt8, count: Int,
        into out: UnsafeMutableRawPointer
    ) {
        var x = (UInt64(0), UInt64(0))
        var block = (UInt64(0), UInt64(0))
        withUnsafeMutableBytes(of: &x) { xb in
            withUnsafeMutableBytes(of: &block) { bb in
                for i in 0..<min(masterSalt.count, 14) { xb[i] = masterSalt[i] }
                xb[7] ^= label
                var outLength: Int32 = 0
                var done = 0
                var n = 0
                while done < count {
                    xb[14] = UInt8(truncatingIfNeeded: n >> 8)
                    xb[15] = UInt8(truncatingIfNeeded: n)
                    _ = EVP_EncryptUpdate(
                        prf, bb.baseAddress!.assumingMemoryBound(to: UInt8.self), &outLength,
                        xb.baseAddress!.assumingMemoryBound(to: UInt8.self), 16)
                    let chunk = min(16, count - done)
                    (out + done).copyMemory(from: bb.baseAddress!, byteCount: chunk)
                    done += chunk
                    n += 1
                }
                OPENSSL_cleanse(bb.baseAddress, 16)
                OPENSSL_cleanse(xb.baseAddress, 16)
            }
        }
    }
}

extension SRTPProfile {
    /// Profiles whose contexts can be re-keyed into one another without new cipher contexts.
    public func sharesCipher(with other: SRTPProfile) -> Bool {
        switch (self, other) {
        case (.aes128CmHmacSha1_80, .aes128CmHmacSha1_80), (.aes128CmHmacSha1_80, .aes128CmHmacSha1_32),
            (.aes128CmHmacSha1_32, .aes128CmHmacSha1_80), (.aes128CmHmacSha1_32, .aes128CmHmacSha1_32),
            (.aeadAes128Gcm, .aeadAes128Gcm), (.aeadAes256Gcm, .aeadAes256Gcm):
            return true
        default:
            return false
        }
    }
}

extension SRTPContext {
    /// Re-keys this context in place for a new master key and forgets every stream: what a
    /// session slot does when it is reused. Allocates nothing. Returns false, leaving the
    /// context unusable until re-keyed successfully, when `profile` needs another cipher
    /// than the context was created with (`sharesCipher`) or a length is wrong.
    public mutating func rekey(
        profile newProfile: SRTPProfile, masterKey: UnsafeRawBufferPointer, masterSalt: UnsafeRawBufferPointer,
        deriver: borrowing SRTPKeyDeriver
    ) -> Bool {
        resetStreams()
        guard newProfile.sharesCipher(with: profile), masterKey.count == newProfile.masterKeyLength,
            masterSalt.count == newProfile.masterSaltLength, let prf = deriver.prf(for: masterKey)
        else {
            wipeKeys()
            return false
        }
        // 32 (key) + 14 (salt) + 20 (auth key), on the stack.
        var material = (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        let ok = withUnsafeMutableBytes(of: &material) { m -> Bool in
            let key = m.baseAddress!
            let salt = key + 32
            let auth = key + 46
            // Twice, RTP then RTCP, without an array (this path must not allocate).
            func install(_ keys: UnsafeMutablePointer<SRTPSessionKeys>, labelBase: UInt8) -> Bool {
                SRTPKeyDeriver.derive(prf, masterSalt: masterSalt, label: labelBase, count: newProfile.masterKeyLength, into: key)
                SRTPKeyDeriver.derive(prf, masterSalt: masterSalt, label: labelBase + 2, count: newProfile.masterSaltLength, into: salt)
                if !newProfile.isAEAD {
                    SRTPKeyDeriver.derive(prf, masterSalt: masterSalt, label: labelBase + 1, count: 20, into: auth)
                }
                return SRTPContext.rekey(
                    keys, newProfile, key: UnsafeRawBufferPointer(start: key, count: newProfile.masterKeyLength),
                    salt: UnsafeRawBufferPointer(start: salt, count: newProfile.masterSaltLength),
                    authKey: UnsafeRawBufferPointer(start: auth, count: newProfile.isAEAD ? 0 : 20))
            }
            let ok = install(rtp, labelBase: 0) && install(rtcp, labelBase: 3)
            OPENSSL_cleanse(m.baseAddress, m.count)
            return ok
        }
        guard ok else {
            wipeKeys()
            return false
        }
        profile = newProfile
        rtpTagLength = newProfile.rtpTagLength
        rtcpTagLength = newProfile.rtcpTagLength
        isAEAD = newProfile.isAEAD
        return true
    }

    /// Keys existing cipher contexts (same cipher) and recomputes HMAC states and salts.
    static func rekey(
        _ keys: UnsafeMutablePointer<SRTPSessionKeys>, _ profile: SRTPProfile, key: UnsafeRawBufferPointer,
        salt: UnsafeRawBufferPointer, authKey: UnsafeRawBufferPointer
    ) -> Bool {
        let k = key.bindMemory(to: UInt8.self).baseAddress
        var ok = EVP_EncryptInit_ex(keys.pointee.encrypt, nil, nil, k, nil) == 1
        if let d = keys.pointee.decrypt { ok = ok && EVP_DecryptInit_ex(d, nil, nil, k, nil) == 1 }
        keys.pointee.auth = HMACSHA1Key(key: authKey)
        (keys.pointee.saltHigh, keys.pointee.saltLow) = SRTPContext.saltWords(profile, salt)
        return ok
    }

    /// Makes the context useless until re-keyed: no key of a freed session lingers.
    public mutating func wipeKeys() {
        var zero = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        withUnsafeMutableBytes(of: &zero) { z in
            func wipe(_ keys: UnsafeMutablePointer<SRTPSessionKeys>) {
                _ = EVP_EncryptInit_ex(keys.pointee.encrypt, nil, nil, z.baseAddress!.assumingMemoryBound(to: UInt8.self), nil)
                if let d = keys.pointee.decrypt {
                    _ = EVP_DecryptInit_ex(d, nil, nil, z.baseAddress!.assumingMemoryBound(to: UInt8.self), nil)
                }
                keys.pointee.auth.wipe()
                keys.pointee.saltHigh = 0
                keys.pointee.saltLow = 0
            }
            wipe(rtp)
            wipe(rtcp)
        }
    }
}
