import COpenSSL
import VoxWire

/// A setup failure, with a stable code for logs and the control socket.
public struct SRTPSetupError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        case badKeyLength = "srtp.bad_key_length"
        case badSaltLength = "srtp.bad_salt_length"
        case cryptoUnavailable = "srtp.crypto_unavailable"
    }
    public var code: Code
    public var message: String
    public var description: String { "\(code.rawValue): \(message)" }
}

/// The session keys for one direction of RTP or RTCP. The cipher contexts are owned
/// by the `SRTPContext` that holds this.
@usableFromInline
struct SRTPSessionKeys {
    /// AES-ECB keyed with the session key (AES-CM keystream from our own counter blocks),
    /// or AES-GCM set up for encryption.
    @usableFromInline var encrypt: OpaquePointer
    /// AES-GCM set up for decryption; nil for AES-CM.
    @usableFromInline var decrypt: OpaquePointer?
    @usableFromInline var auth: HMACSHA1Key
    /// Session salt bytes 0...7, big-endian.
    @usableFromInline var saltHigh: UInt64
    /// AES-CM: salt bytes 8...13 in bits 63...16 (the IV's low half before the counter).
    /// AES-GCM: salt bytes 8...11 in bits 31...0.
    @usableFromInline var saltLow: UInt64
}

/// One SRTP/SRTCP crypto context (RFC 3711 §3.2): the keys of one direction under one
/// master key, for RTP and RTCP, and the per-SSRC state (ROC, replay windows, SRTCP
/// index) of up to `maxStreams` SSRCs.
///
/// Protect and unprotect work in place on a packet in a caller-owned buffer; they never
/// allocate, lock or throw, and return a status the caller counts. Per packet they use
/// the cheapest libcrypto calls FINDINGS measured: AES-CM as one ECB call over our own
/// counter blocks, HMAC-SHA1 from precomputed inner/outer SHA-1 states, and AES-GCM on a
/// cipher context created once whose IV alone is reset.
///
/// Packet layouts (RFC 3711 §3.1, §3.4; RFC 7714 §8, §9):
/// ```
/// SRTP   | RTP header (12 + CSRC + ext) | payload (encrypted)        | tag (10 | 4 | 16) |
/// SRTCP  | header (8) | rest (encrypted) | E|index (4) | tag (10) |            AES-CM
/// SRTCP  | header (8) | rest (encrypted) | tag (16) | E|index (4) |            AES-GCM
/// ```
/// Key material is wiped when the context is released.
public struct SRTPContext: ~Copyable {
    public internal(set) var profile: SRTPProfile
    @usableFromInline var rtpTagLength: Int
    @usableFromInline var rtcpTagLength: Int
    @usableFromInline var isAEAD: Bool
    /// The RTP keys, at the head of the block `allocateState` lays out (the RTCP keys follow
    /// the stream table): behind a pointer so `deinit` can wipe them and the packet path
    /// reads them without copying.
    @usableFromInline let keys: UnsafeMutablePointer<SRTPSessionKeys>
    /// One word per stream slot: `1 << 32 | ssrc` when in use, 0 when free. Scanned to
    /// find a packet's stream without touching the streams' state.
    @usableFromInline let streamKeys: UnsafeMutablePointer<UInt64>
    @usableFromInline let streams: UnsafeMutablePointer<SRTPStream>
    @usableFromInline let maxStreams: Int

    /// Derives the session keys (RFC 3711 §4.3, key derivation rate 0) from a master key
    /// and salt, and sets up the cipher contexts. `maxStreams` bounds the SSRCs tracked.
    public init(
        profile: SRTPProfile, masterKey: [UInt8], masterSalt: [UInt8], maxStreams: Int = 4
    ) throws(SRTPSetupError) {
        guard masterKey.count == profile.masterKeyLength else {
            throw SRTPSetupError(
                code: .badKeyLength, message: "\(profile) needs a \(profile.masterKeyLength)-byte master key")
        }
        guard masterSalt.count == profile.masterSaltLength else {
            throw SRTPSetupError(
                code: .badSaltLength, message: "\(profile) needs a \(profile.masterSaltLength)-byte master salt")
        }
        let makeKeys = { (labelBase: UInt8) in
            masterKey.withUnsafeBytes { k in
                masterSalt.withUnsafeBytes { s in SRTPContext.makeKeys(profile, k, s, labelBase: labelBase) }
            }
        }
        guard let rtpKeys = makeKeys(0) else {
            throw SRTPSetupError(code: .cryptoUnavailable, message: "libcrypto could not set up \(profile)")
        }
        guard let rtcpKeys = makeKeys(3) else {
            var k = rtpKeys
            SRTPContext.release(&k)
            throw SRTPSetupError(code: .cryptoUnavailable, message: "libcrypto could not set up \(profile)")
        }
        self.profile = profile
        self.rtpTagLength = profile.rtpTagLength
        self.rtcpTagLength = profile.rtcpTagLength
        self.isAEAD = profile.isAEAD
        self.maxStreams = max(1, maxStreams)
        (self.keys, self.streamKeys, self.streams) = SRTPContext.allocateState(
            rtpKeys, rtcpKeys, maxStreams: self.maxStreams)
    }

    deinit {
        SRTPContext.release(&rtp.pointee)
        SRTPContext.release(&rtcp.pointee)
        rtcp.deinitialize(count: 1)
        keys.deinitialize(count: 1)
        OPENSSL_cleanse(streams, MemoryLayout<SRTPStream>.stride * maxStreams)
        streamKeys.update(repeating: 0, count: maxStreams)
        streamKeys.deinitialize(count: maxStreams)
        streams.deinitialize(count: maxStreams)
        UnsafeMutableRawPointer(keys).deallocate()
    }

    /// One cache-aligned block for the keys and the stream table, laid out in the order a
    /// packet touches it, so an RTP packet reads a few adjacent cache lines after the context:
    /// ```
    /// | rtp keys | SSRC lane (8 B/slot) | stream 0 | ... | stream maxStreams-1 | rtcp keys |
    /// ```
    /// `keys` points at the RTP keys; the RTCP keys are at `rtcpKeysOffset` bytes from it.
    static func allocateState(
        _ rtp: SRTPSessionKeys, _ rtcp: SRTPSessionKeys, maxStreams: Int
    ) -> (UnsafeMutablePointer<SRTPSessionKeys>, UnsafeMutablePointer<UInt64>, UnsafeMutablePointer<SRTPStream>) {
        let raw = UnsafeMutableRawPointer.allocate(
            byteCount: rtcpKeysOffset(maxStreams: maxStreams) + MemoryLayout<SRTPSessionKeys>.stride, alignment: 64)
        let keys = raw.bindMemory(to: SRTPSessionKeys.self, capacity: 1)
        keys.initialize(to: rtp)
        (raw + rtcpKeysOffset(maxStreams: maxStreams)).bindMemory(to: SRTPSessionKeys.self, capacity: 1)
            .initialize(to: rtcp)
        let lane = (raw + laneOffset).bindMemory(to: UInt64.self, capacity: maxStreams)
        lane.initialize(repeating: 0, count: maxStreams)
        let streams = (raw + streamsOffset(maxStreams: maxStreams)).bindMemory(to: SRTPStream.self, capacity: maxStreams)
        streams.initialize(repeating: SRTPStream(), count: maxStreams)
        return (keys, lane, streams)
    }

    @inlinable
    static var laneOffset: Int { (MemoryLayout<SRTPSessionKeys>.stride + 7) & ~7 }

    @inlinable
    static func streamsOffset(maxStreams: Int) -> Int {
        let a = MemoryLayout<SRTPStream>.alignment
        return (laneOffset + 8 * maxStreams + a - 1) & ~(a - 1)
    }

    @inlinable
    static func rtcpKeysOffset(maxStreams: Int) -> Int {
        let end = streamsOffset(maxStreams: maxStreams) + maxStreams * MemoryLayout<SRTPStream>.stride
        let a = MemoryLayout<SRTPSessionKeys>.alignment
        return (end + a - 1) & ~(a - 1)
    }

    /// Frees the cipher contexts (which cleanses their key schedules) and wipes the rest.
    static func release(_ k: inout SRTPSessionKeys) {
        EVP_CIPHER_CTX_free(k.encrypt)
        if let d = k.decrypt { EVP_CIPHER_CTX_free(d) }
        k.auth.wipe()
        k.saltHigh = 0
        k.saltLow = 0
    }

    /// RFC 3711 §4.3.3 AES-CM PRF over the master key: `count` bytes of keystream for
    /// `label`, with x = label·2^48 ⊕ master salt (a 12-byte GCM salt is padded to 14
    /// with zeros, as RFC 7714 §11 and libsrtp2 do).
    static func deriveKey(
        _ ecb: OpaquePointer, masterSalt: UnsafeRawBufferPointer, label: UInt8, count: Int
    ) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: (count + 15) / 16 * 16)
        var block = [UInt8](repeating: 0, count: 16)
        for i in 0..<masterSalt.count { block[i] = masterSalt[i] }
        block[7] ^= label
        var outLength: Int32 = 0
        for n in 0..<(out.count / 16) {
            block[14] = UInt8(n >> 8)
            block[15] = UInt8(n & 0xFF)
            out.withUnsafeMutableBufferPointer { o in
                _ = EVP_EncryptUpdate(ecb, o.baseAddress! + 16 * n, &outLength, block, 16)
            }
        }
        let result = Array(out[0..<count])
        out.withUnsafeMutableBytes { OPENSSL_cleanse($0.baseAddress, $0.count) }
        block.withUnsafeMutableBytes { OPENSSL_cleanse($0.baseAddress, $0.count) }
        return result
    }

    static func makeKeys(
        _ profile: SRTPProfile, _ masterKey: UnsafeRawBufferPointer, _ masterSalt: UnsafeRawBufferPointer,
        labelBase: UInt8
    ) -> SRTPSessionKeys? {
        guard let prf = EVP_CIPHER_CTX_new() else { return nil }
        defer { EVP_CIPHER_CTX_free(prf) }
        let prfCipher = masterKey.count == 32 ? EVP_aes_256_ecb() : EVP_aes_128_ecb()
        guard EVP_EncryptInit_ex(prf, prfCipher, nil, masterKey.bindMemory(to: UInt8.self).baseAddress, nil) == 1
        else { return nil }
        EVP_CIPHER_CTX_set_padding(prf, 0)
        var key = deriveKey(prf, masterSalt: masterSalt, label: labelBase, count: profile.masterKeyLength)
        var salt = deriveKey(prf, masterSalt: masterSalt, label: labelBase + 2, count: profile.masterSaltLength)
        var authKey = profile.isAEAD ? [] : deriveKey(prf, masterSalt: masterSalt, label: labelBase + 1, count: 20)
        defer {
            for i in key.indices { key[i] = 0 }
            for i in salt.indices { salt[i] = 0 }
            for i in authKey.indices { authKey[i] = 0 }
        }
        return key.withUnsafeBytes { k in
            salt.withUnsafeBytes { s in
                authKey.withUnsafeBytes { a in makeSessionKeys(profile, key: k, salt: s, authKey: a) }
            }
        }
    }

    /// Cipher contexts and auth state for given session keys (RFC 7714's vectors start here).
    static func makeSessionKeys(
        _ profile: SRTPProfile, key: UnsafeRawBufferPointer, salt: UnsafeRawBufferPointer,
        authKey: UnsafeRawBufferPointer
    ) -> SRTPSessionKeys? {
        guard key.count == profile.masterKeyLength, salt.count == profile.masterSaltLength else { return nil }
        let k = key.bindMemory(to: UInt8.self).baseAddress
        let auth = HMACSHA1Key(key: authKey)
        guard let encrypt = EVP_CIPHER_CTX_new() else { return nil }
        var decrypt: OpaquePointer? = nil
        let ok: Bool
        if profile.isAEAD {
            let gcm = profile == .aeadAes256Gcm ? EVP_aes_256_gcm() : EVP_aes_128_gcm()
            decrypt = EVP_CIPHER_CTX_new()
            ok =
                decrypt != nil && EVP_EncryptInit_ex(encrypt, gcm, nil, k, nil) == 1
                && EVP_DecryptInit_ex(decrypt, gcm, nil, k, nil) == 1
        } else {
            ok = EVP_EncryptInit_ex(encrypt, EVP_aes_128_ecb(), nil, k, nil) == 1
            EVP_CIPHER_CTX_set_padding(encrypt, 0)
        }
        guard ok else {
            EVP_CIPHER_CTX_free(encrypt)
            if let d = decrypt { EVP_CIPHER_CTX_free(d) }
            return nil
        }
        let (saltHigh, saltLow) = saltWords(profile, salt)
        return SRTPSessionKeys(encrypt: encrypt, decrypt: decrypt, auth: auth, saltHigh: saltHigh, saltLow: saltLow)
    }

    /// A session salt in the two words the IVs are built from (see `SRTPSessionKeys`).
    static func saltWords(_ profile: SRTPProfile, _ salt: UnsafeRawBufferPointer) -> (high: UInt64, low: UInt64) {
        var high: UInt64 = 0
        for i in 0..<8 { high = high << 8 | UInt64(salt[i]) }
        var low: UInt64 = 0
        if profile.isAEAD {
            for i in 8..<12 { low = low << 8 | UInt64(salt[i]) }
        } else {
            for i in 8..<14 { low = low << 8 | UInt64(salt[i]) }
            low <<= 16
        }
        return (high, low)
    }

    /// A context from already derived session keys, for the RFC 7714 vectors, which
    /// start from session keys. `nil` when libcrypto refuses or a length is wrong.
    init?(
        profile: SRTPProfile, rtpKey: [UInt8], rtpSalt: [UInt8], rtpAuthKey: [UInt8] = [],
        rtcpKey: [UInt8], rtcpSalt: [UInt8], rtcpAuthKey: [UInt8] = []
    ) {
        func make(_ k: [UInt8], _ s: [UInt8], _ a: [UInt8]) -> SRTPSessionKeys? {
            k.withUnsafeBytes { kb in
                s.withUnsafeBytes { sb in a.withUnsafeBytes { ab in SRTPContext.makeSessionKeys(profile, key: kb, salt: sb, authKey: ab) } }
            }
        }
        guard let r = make(rtpKey, rtpSalt, rtpAuthKey) else { return nil }
        guard let c = make(rtcpKey, rtcpSalt, rtcpAuthKey) else {
            var k = r
            SRTPContext.release(&k)
            return nil
        }
        self.profile = profile
        self.rtpTagLength = profile.rtpTagLength
        self.rtcpTagLength = profile.rtcpTagLength
        self.isAEAD = profile.isAEAD
        self.maxStreams = 4
        (self.keys, self.streamKeys, self.streams) = SRTPContext.allocateState(r, c, maxStreams: 4)
    }

    @inlinable var rtp: UnsafeMutablePointer<SRTPSessionKeys> { keys }
    @inlinable var rtcp: UnsafeMutablePointer<SRTPSessionKeys> {
        (UnsafeMutableRawPointer(keys) + SRTPContext.rtcpKeysOffset(maxStreams: maxStreams))
            .assumingMemoryBound(to: SRTPSessionKeys.self)
    }

    // MARK: - Streams

    /// The slot tracking `ssrc`, or -1.
    @inlinable @inline(__always)  // not inlined otherwise; one call per packet showed in callgrind
    func stream(for ssrc: UInt32) -> Int {
        let key = 1 << 32 | UInt64(ssrc)
        for i in 0..<maxStreams where streamKeys[i] == key { return i }
        return -1
    }

    /// A free slot for a new SSRC, or -1. Claimed by the caller only once a packet is accepted.
    @inlinable
    func freeStream() -> Int {
        for i in 0..<maxStreams where streamKeys[i] == 0 { return i }
        return -1
    }

    /// Records that slot `i` tracks `ssrc`.
    @inlinable
    func claim(_ i: Int, ssrc: UInt32) { streamKeys[i] = 1 << 32 | UInt64(ssrc) }

    /// The rollover counter of `ssrc`'s stream, if it is tracked.
    public func rolloverCounter(ssrc: UInt32) -> UInt32? {
        let i = stream(for: ssrc)
        return i < 0 ? nil : UInt32(truncatingIfNeeded: streams[i].rtpIndex >> 16)
    }

    /// Starts tracking `ssrc` at a known ROC and sequence number (RFC 3711 §3.3.1: a
    /// receiver joining a stream late, or a sender resuming one). Returns false when full.
    public mutating func setRolloverCounter(_ roc: UInt32, sequence: UInt16, ssrc: UInt32) -> Bool {
        var i = stream(for: ssrc)
        if i < 0 { i = freeStream() }
        guard i >= 0 else { return false }
        streams[i] = SRTPStream()
        claim(i, ssrc: ssrc)
        streams[i].rtpIndex = UInt64(roc) << 16 | UInt64(sequence)
        return true
    }

    /// Forgets every SSRC (their ROCs and replay windows). Keys stay.
    public mutating func resetStreams() {
        streamKeys.update(repeating: 0, count: maxStreams)
        streams.update(repeating: SRTPStream(), count: maxStreams)
    }
}

// MARK: - Header parsing

/// The length of the RTP header (fixed part, CSRCs, RFC 8285 extension) of a packet
/// whose first `limit` bytes are header and payload; -1 when it is not RTP v2 or runs past `limit`.
@inlinable
func rtpHeaderLength(_ p: UnsafeRawPointer, limit: Int) -> Int {
    let b0 = p.loadByte(at: 0)
    guard b0 >> 6 == 2 else { return -1 }
    var h = 12 + 4 * Int(b0 & 0x0F)
    if b0 & 0x10 != 0 {
        guard h + 4 <= limit else { return -1 }
        h += 4 + 4 * Int(p.loadBE16(at: h + 2))
    }
    return h <= limit ? h : -1
}

// MARK: - Cipher primitives

extension SRTPContext {
    /// XORs AES-CM keystream (RFC 3711 §4.1.1) into `count` bytes at `data`, for the IV
    /// whose two big-endian halves are given (the low 16 bits of `ivLow` are the block
    /// counter, zero here). Counter blocks are built on the stack in chunks of 32 and
    /// encrypted by one ECB call each.
    @inlinable
    static func applyKeystream(
        _ ecb: OpaquePointer, ivHigh: UInt64, ivLow: UInt64, _ data: UnsafeMutableRawPointer, count: Int
    ) -> Bool {
        withUnsafeTemporaryAllocation(byteCount: 512, alignment: 16) { scratch -> Bool in
            let s = scratch.baseAddress!
            var done = 0
            var counter: UInt64 = 0
            var outLength: Int32 = 0
            while done < count {
                let chunk = min(count - done, 512)
                let blocks = (chunk + 15) >> 4
                for b in 0..<blocks {
                    s.storeBE64(ivHigh, at: b << 4)
                    s.storeBE64(ivLow | counter, at: (b << 4) + 8)
                    counter &+= 1
                }
                let bytes = s.assumingMemoryBound(to: UInt8.self)
                guard EVP_EncryptUpdate(ecb, bytes, &outLength, bytes, Int32(blocks << 4)) == 1 else { return false }
                let d = data + done
                var i = 0
                while i + 8 <= chunk {
                    let v = d.loadUnaligned(fromByteOffset: i, as: UInt64.self)
                        ^ s.load(fromByteOffset: i, as: UInt64.self)
                    d.storeBytes(of: v, toByteOffset: i, as: UInt64.self)
                    i += 8
                }
                while i < chunk {
                    d.storeByte(d.loadByte(at: i) ^ s.load(fromByteOffset: i, as: UInt8.self), at: i)
                    i += 1
                }
                done += chunk
            }
            return true
        }
    }

    /// HMAC-SHA1 with `keys`' auth key over `count` bytes at `p`, then `roc` (big-endian) when given; the 20-byte
    /// result goes to `out`.
    @inlinable
    static func authenticate(
        _ keys: UnsafeMutablePointer<SRTPSessionKeys>, _ p: UnsafeRawPointer, count: Int, roc: UInt32?, into out: UnsafeMutableRawPointer
    ) {
        var state = keys.pointee.auth.begin()
        HMACSHA1Key.update(&state, p, count: count)
        if let roc {
            var r = roc.bigEndian
            withUnsafeBytes(of: &r) { HMACSHA1Key.update(&state, $0.baseAddress!, count: 4) }
        }
        keys.pointee.auth.finish(&state, into: out)
    }

    /// AES-GCM seal in place: encrypts `count` bytes at `data`, authenticates `aad`, and
    /// writes the 16-byte tag to `tag`.
    @inlinable
    static func gcmSeal(
        _ ctx: OpaquePointer, ivHigh: UInt64, ivLow: UInt32, aad: UnsafeRawPointer, aadCount: Int,
        _ data: UnsafeMutableRawPointer, count: Int, tag: UnsafeMutableRawPointer
    ) -> Bool {
        var iv = (ivHigh.bigEndian, ivLow.bigEndian)
        return withUnsafeBytes(of: &iv) { ivBytes -> Bool in
            var n: Int32 = 0
            var sink: UInt64 = 0
            let d = data.assumingMemoryBound(to: UInt8.self)
            return EVP_EncryptInit_ex(ctx, nil, nil, nil, ivBytes.baseAddress!.assumingMemoryBound(to: UInt8.self)) == 1
                && EVP_EncryptUpdate(ctx, nil, &n, aad.assumingMemoryBound(to: UInt8.self), Int32(aadCount)) == 1
                && (count == 0 || EVP_EncryptUpdate(ctx, d, &n, d, Int32(count)) == 1)
                && withUnsafeMutableBytes(of: &sink) {
                    EVP_EncryptFinal_ex(ctx, $0.baseAddress!.assumingMemoryBound(to: UInt8.self), &n)
                } == 1
                && vox_evp_gcm_get_tag(ctx, tag, 16) == 1
        }
    }

    /// AES-GCM open in place: decrypts `count` bytes at `data` and checks `tag` over them
    /// and `aad`. On false the bytes at `data` are unspecified.
    @inlinable
    static func gcmOpen(
        _ ctx: OpaquePointer, ivHigh: UInt64, ivLow: UInt32, aad: UnsafeRawPointer, aadCount: Int,
        _ data: UnsafeMutableRawPointer, count: Int, tag: UnsafeRawPointer
    ) -> Bool {
        var iv = (ivHigh.bigEndian, ivLow.bigEndian)
        return withUnsafeBytes(of: &iv) { ivBytes -> Bool in
            var n: Int32 = 0
            var sink: UInt64 = 0
            let d = data.assumingMemoryBound(to: UInt8.self)
            return EVP_DecryptInit_ex(ctx, nil, nil, nil, ivBytes.baseAddress!.assumingMemoryBound(to: UInt8.self)) == 1
                && EVP_DecryptUpdate(ctx, nil, &n, aad.assumingMemoryBound(to: UInt8.self), Int32(aadCount)) == 1
                && (count == 0 || EVP_DecryptUpdate(ctx, d, &n, d, Int32(count)) == 1)
                && vox_evp_gcm_set_tag(ctx, tag, 16) == 1
                && withUnsafeMutableBytes(of: &sink) {
                    EVP_DecryptFinal_ex(ctx, $0.baseAddress!.assumingMemoryBound(to: UInt8.self), &n)
                } > 0
        }
    }
}
