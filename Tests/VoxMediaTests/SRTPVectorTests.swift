import COpenSSL
import Testing
import VoxTestKit
import VoxWire

@testable import VoxMedia

/// RFC 3711 Appendix B and RFC 7714 §16-17, transcribed in Vectors/SRTPVectors.swift.
@Suite struct SRTPVectorTests {
    func ecb(_ key: [UInt8]) -> OpaquePointer {
        let ctx = EVP_CIPHER_CTX_new()!
        _ = EVP_EncryptInit_ex(ctx, key.count == 32 ? EVP_aes_256_ecb() : EVP_aes_128_ecb(), nil, key, nil)
        EVP_CIPHER_CTX_set_padding(ctx, 0)
        return ctx
    }

    @Test func rfc3711AESCMKeystream() {
        let ctx = ecb(hexBytes(SRTPVectors.aesCMKey))
        defer { EVP_CIPHER_CTX_free(ctx) }
        let salt = hexBytes(SRTPVectors.aesCMSessionSalt)
        let ivHigh = salt[0..<8].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        let ivLow = salt[8..<16].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        let blocks = 0xFF02
        var stream = [UInt8](repeating: 0, count: blocks * 16)
        let ok = stream.withUnsafeMutableBytes {
            SRTPContext.applyKeystream(ctx, ivHigh: ivHigh, ivLow: ivLow, $0.baseAddress!, count: $0.count)
        }
        #expect(ok)
        for (block, keystream) in SRTPVectors.aesCMKeystream {
            #expect(Array(stream[(block * 16)..<(block * 16 + 16)]) == hexBytes(keystream), "block \(block)")
        }
    }

    @Test func rfc3711KeyDerivation() {
        let ctx = ecb(hexBytes(SRTPVectors.kdfMasterKey))
        defer { EVP_CIPHER_CTX_free(ctx) }
        let salt = hexBytes(SRTPVectors.kdfMasterSalt)
        salt.withUnsafeBytes { s in
            #expect(SRTPContext.deriveKey(ctx, masterSalt: s, label: 0, count: 16) == hexBytes(SRTPVectors.kdfCipherKey))
            #expect(SRTPContext.deriveKey(ctx, masterSalt: s, label: 2, count: 14) == hexBytes(SRTPVectors.kdfCipherSalt))
            let auth = hexBytes(SRTPVectors.kdfAuthKey)
            #expect(SRTPContext.deriveKey(ctx, masterSalt: s, label: 1, count: auth.count) == auth)
        }
    }

    func gcmContext(_ profile: SRTPProfile) -> SRTPContext {
        let key = hexBytes(profile == .aeadAes128Gcm ? SRTPVectors.gcm128Key : SRTPVectors.gcm256Key)
        let salt = hexBytes(SRTPVectors.gcmSalt)
        return SRTPContext(profile: profile, rtpKey: key, rtpSalt: salt, rtcpKey: key, rtcpSalt: salt)!
    }

    @Test(arguments: [SRTPProfile.aeadAes128Gcm, .aeadAes256Gcm])
    func rfc7714RTP(profile: SRTPProfile) {
        let expected = hexBytes(
            profile == .aeadAes128Gcm ? SRTPVectors.gcm128RTPEncryptedPacket : SRTPVectors.gcm256RTPEncryptedPacket)
        var sender = gcmContext(profile)
        var packet = hexBytes(SRTPVectors.gcmRTPPacket) + [UInt8](repeating: 0, count: 16)
        var length = packet.count - 16
        let status = packet.withUnsafeMutableBytes { sender.protectRTP($0.baseAddress!, length: &length, capacity: $0.count) }
        #expect(status == .ok)
        #expect(Array(packet[0..<length]) == expected)

        var receiver = gcmContext(profile)
        var received = expected
        var n = received.count
        #expect(received.withUnsafeMutableBytes { receiver.unprotectRTP($0.baseAddress!, length: &n) } == .ok)
        #expect(Array(received[0..<n]) == hexBytes(SRTPVectors.gcmRTPPacket))
    }

    @Test(arguments: [SRTPProfile.aeadAes128Gcm, .aeadAes256Gcm])
    func rfc7714RTCP(profile: SRTPProfile) {
        let plain = hexBytes(SRTPVectors.gcmRTCPPacket)
        let encrypted = hexBytes(
            profile == .aeadAes128Gcm ? SRTPVectors.gcm128RTCPEncryptedPacket : SRTPVectors.gcm256RTCPEncryptedPacket)
        // Protect with the vector's SRTCP index (0x5d4): the sender's last index was 0x5d3.
        var sender = gcmContext(profile)
        let tracked = sender.setRolloverCounter(0, sequence: 0, ssrc: SRTPVectors.gcmRTCPSSRC)
        #expect(tracked)
        sender.streams[sender.stream(for: SRTPVectors.gcmRTCPSSRC)].rtcpSendIndex = SRTPVectors.gcmSRTCPIndex - 1
        var packet = plain + [UInt8](repeating: 0, count: 20)
        var length = plain.count
        let status = packet.withUnsafeMutableBytes { sender.protectRTCP($0.baseAddress!, length: &length, capacity: $0.count) }
        #expect(status == .ok)
        #expect(Array(packet[0..<length]) == encrypted)

        var receiver = gcmContext(profile)
        var received = encrypted
        var n = received.count
        #expect(received.withUnsafeMutableBytes { receiver.unprotectRTCP($0.baseAddress!, length: &n) } == .ok)
        #expect(Array(received[0..<n]) == plain)
        // The same packet again is a replay.
        received = encrypted
        n = received.count
        #expect(received.withUnsafeMutableBytes { receiver.unprotectRTCP($0.baseAddress!, length: &n) } == .replayed)

        // Authenticated-only SRTCP (E = 0), RFC 7714 §17.3 / §17.4.
        let tagged = hexBytes(
            profile == .aeadAes128Gcm
                ? SRTPVectors.gcm128RTCPAuthOnlyPacket : SRTPVectors.gcm256RTCPAuthOnlyPacket)
        var fresh = gcmContext(profile)
        var t = tagged
        var tn = t.count
        #expect(t.withUnsafeMutableBytes { fresh.unprotectRTCP($0.baseAddress!, length: &tn) } == .ok)
        #expect(Array(t[0..<tn]) == plain)
        if profile == .aeadAes256Gcm { #expect(plain == hexBytes(SRTPVectors.gcm256RTCPAuthOnlyVerifiedPacket)) }
        var forged = tagged
        forged[10] ^= 0x40
        var fn = forged.count
        var other = gcmContext(profile)
        #expect(forged.withUnsafeMutableBytes { other.unprotectRTCP($0.baseAddress!, length: &fn) } == .authenticationFailed)
    }

    @Test func setupRejectsWrongLengths() {
        let key = [UInt8](repeating: 1, count: 16)
        let salt = [UInt8](repeating: 2, count: 14)
        #expect(throws: SRTPSetupError.self) {
            _ = try SRTPContext(profile: .aeadAes256Gcm, masterKey: key, masterSalt: salt)
        }
        #expect(throws: SRTPSetupError.self) {
            _ = try SRTPContext(profile: .aeadAes128Gcm, masterKey: key, masterSalt: salt)
        }
        #expect(SRTPProfile(name: "SRTP_AEAD_AES_128_GCM") == .aeadAes128Gcm)
        #expect(SRTPProfile(name: "AES_CM_128_HMAC_SHA1_32") == .aes128CmHmacSha1_32)
        #expect(SRTPProfile(name: "NULL") == nil)
    }
}
