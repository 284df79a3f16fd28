import Testing
import VoxMedia
import VoxSRTPReference
import VoxTestKit

/// libsrtp2 is the oracle: what we protect it must unprotect, what it protects we must
/// unprotect, and on replayed, reordered, stale and forged packets we must reach the
/// same verdict it does. Every profile, several streams, across a sequence-number wrap.
@Suite struct SRTPInteropTests {
    struct Keys {
        var key: [UInt8]
        var salt: [UInt8]
        init(_ profile: SRTPProfile, seed: UInt64) {
            var rng = SeededRandom(seed: seed)
            key = (0..<profile.masterKeyLength).map { _ in UInt8.random(in: 0...255, using: &rng) }
            salt = (0..<profile.masterSaltLength).map { _ in UInt8.random(in: 0...255, using: &rng) }
        }
        func ours(_ profile: SRTPProfile) throws -> SRTPContext {
            try SRTPContext(profile: profile, masterKey: key, masterSalt: salt)
        }
        func theirs(_ profile: SRTPProfile, _ direction: LibSRTPSession.Direction) -> LibSRTPSession {
            LibSRTPSession(profile: profile, masterKey: key, masterSalt: salt, direction: direction)!
        }
    }

    /// An RTP packet: optional CSRCs and RFC 8285 one-byte extension, payload of `size`.
    static func rtp(ssrc: UInt32, seq: UInt16, size: Int, csrcs: Int = 0, ext: Bool = false) -> [UInt8] {
        var p: [UInt8] = [0x80 | (ext ? 0x10 : 0) | UInt8(csrcs), 111, UInt8(seq >> 8), UInt8(seq & 0xFF)]
        let ts = UInt32(seq) &* 960
        p += [UInt8(ts >> 24), UInt8(ts >> 16 & 0xFF), UInt8(ts >> 8 & 0xFF), UInt8(ts & 0xFF)]
        p += [UInt8(ssrc >> 24), UInt8(ssrc >> 16 & 0xFF), UInt8(ssrc >> 8 & 0xFF), UInt8(ssrc & 0xFF)]
        for c in 0..<csrcs { p += [0, 0, 0, UInt8(c + 1)] }
        if ext { p += [0xBE, 0xDE, 0, 1, 0x10, 0x7F, 0, 0] }
        p += (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seq)) }
        return p
    }

    /// A compound RTCP packet: a receiver report with one report block and an SDES CNAME.
    static func rtcp(ssrc: UInt32, n: Int) -> [UInt8] {
        var p: [UInt8] = [0x81, 201, 0, 7]
        p += [UInt8(ssrc >> 24), UInt8(ssrc >> 16 & 0xFF), UInt8(ssrc >> 8 & 0xFF), UInt8(ssrc & 0xFF)]
        p += (0..<24).map { UInt8(truncatingIfNeeded: $0 + n) }
        p += [0x81, 202, 0, 3]
        p += [UInt8(ssrc >> 24), UInt8(ssrc >> 16 & 0xFF), UInt8(ssrc >> 8 & 0xFF), UInt8(ssrc & 0xFF)]
        p += [1, 5, 0x76, 0x6F, 0x78, 0x2D, 0x65, 0, 0, 0]
        return p
    }

    static let ssrcs: [UInt32] = [0x1111_1111, 0xDEAD_BEEF, 0x0000_0001]

    /// The packets of three interleaved streams starting below the 16-bit wrap.
    static func traffic() -> [[UInt8]] {
        var out: [[UInt8]] = []
        for i in 0..<120 {
            for (s, ssrc) in ssrcs.enumerated() {
                let seq = UInt16(truncatingIfNeeded: 65_500 + s * 7 + i)
                out.append(rtp(ssrc: ssrc, seq: seq, size: [0, 1, 15, 16, 17, 160, 700, 1100][(i + s) % 8],
                    csrcs: i % 5 == 0 ? 2 : 0, ext: i % 3 == 0))
            }
        }
        return out
    }

    @Test(arguments: SRTPProfile.allCases)
    func weProtectLibSRTPUnprotects(profile: SRTPProfile) throws {
        let keys = Keys(profile, seed: UInt64(profile.rawValue))
        var ours = try keys.ours(profile)
        let theirs = keys.theirs(profile, .inbound)
        for plain in Self.traffic() {
            var buffer = plain + [UInt8](repeating: 0, count: 32)
            var length = plain.count
            #expect(buffer.withUnsafeMutableBytes { ours.protectRTP($0.baseAddress!, length: &length, capacity: $0.count) } == .ok)
            #expect(length == plain.count + profile.rtpTagLength)
            #expect(buffer.withUnsafeMutableBytes { theirs.unprotect($0.baseAddress!, length: &length) } == 0)
            #expect(Array(buffer[0..<length]) == plain)
        }
        for ssrc in Self.ssrcs { #expect(ours.rolloverCounter(ssrc: ssrc) == 1) }
        for (n, ssrc) in Self.ssrcs.enumerated() {
            for i in 0..<5 {
                let plain = Self.rtcp(ssrc: ssrc, n: n * 10 + i)
                var buffer = plain + [UInt8](repeating: 0, count: 32)
                var length = plain.count
                #expect(buffer.withUnsafeMutableBytes { ours.protectRTCP($0.baseAddress!, length: &length, capacity: $0.count) } == .ok)
                #expect(buffer.withUnsafeMutableBytes { theirs.unprotectRTCP($0.baseAddress!, length: &length) } == 0)
                #expect(Array(buffer[0..<length]) == plain)
            }
        }
    }

    @Test(arguments: SRTPProfile.allCases)
    func libSRTPProtectsWeUnprotect(profile: SRTPProfile) throws {
        let keys = Keys(profile, seed: 100 + UInt64(profile.rawValue))
        var ours = try keys.ours(profile)
        let theirs = keys.theirs(profile, .outbound)
        for plain in Self.traffic() {
            var buffer = plain + [UInt8](repeating: 0, count: 32)
            var length = plain.count
            #expect(buffer.withUnsafeMutableBytes { theirs.protect($0.baseAddress!, length: &length) } == 0)
            #expect(buffer.withUnsafeMutableBytes { ours.unprotectRTP($0.baseAddress!, length: &length) } == .ok)
            #expect(Array(buffer[0..<length]) == plain)
        }
        for ssrc in Self.ssrcs { #expect(ours.rolloverCounter(ssrc: ssrc) == 1) }
        for (n, ssrc) in Self.ssrcs.enumerated() {
            for i in 0..<5 {
                let plain = Self.rtcp(ssrc: ssrc, n: n * 10 + i)
                var buffer = plain + [UInt8](repeating: 0, count: 32)
                var length = plain.count
                #expect(buffer.withUnsafeMutableBytes { theirs.protectRTCP($0.baseAddress!, length: &length) } == 0)
                #expect(buffer.withUnsafeMutableBytes { ours.unprotectRTCP($0.baseAddress!, length: &length) } == .ok)
                #expect(Array(buffer[0..<length]) == plain)
            }
        }
    }

    /// What libsrtp2 says, in our terms.
    static func verdict(_ status: UInt32) -> SRTPStatus? {
        switch status {
        case 0: return .ok
        case LibSRTPSession.authFail: return .authenticationFailed
        case LibSRTPSession.replayFail: return .replayed
        case LibSRTPSession.replayOld: return .tooOld
        default: return nil
        }
    }

    /// Delivery orders that exercise the replay window: duplicates, reordering inside the
    /// window, the window's exact edge, stale packets, and forgeries (some of them replays).
    static let scenario: [(index: Int, forge: Bool)] = {
        var s: [(Int, Bool)] = []
        for i in 0..<10 { s.append((i, false)) }
        s += [(5, false), (9, false), (0, false)]  // duplicates
        s += [(15, false), (12, false), (14, false), (13, false), (12, false), (11, false), (10, false)]  // reordered
        s += [(20, true), (20, false), (20, true), (20, false)]  // forged, then genuine, then both again
        for i in 21..<300 where i % 2 == 0 { s.append((i, false)) }
        s += [(299 - 127, false), (298 - 127, false), (299 - 128, false), (299 - 129, false), (100, false)]  // window edge
        s += [(299, false), (301, false), (300, true), (299, true), (301, false)]
        // Across the 16-bit wrap: index i carries sequence number 65,136 + i.
        for i in 300..<420 where i % 3 != 1 { s.append((i, false)) }
        s += [(301, false), (400, false), (401, false), (419, true), (418, false)]
        return s
    }()

    @Test(arguments: SRTPProfile.allCases)
    func replayReorderAndForgeryMatchLibSRTP(profile: SRTPProfile) throws {
        let keys = Keys(profile, seed: 200 + UInt64(profile.rawValue))
        let sender = keys.theirs(profile, .outbound)
        // Protect every index once, in order (a sender never reuses an index).
        var rtpPackets: [[UInt8]] = []
        var rtcpPackets: [[UInt8]] = []
        for i in 0..<420 {
            var p = Self.rtp(ssrc: 0xCAFE_F00D, seq: UInt16(truncatingIfNeeded: 65_136 + i), size: 100)
            var n = p.count
            p += [UInt8](repeating: 0, count: 32)
            #expect(p.withUnsafeMutableBytes { sender.protect($0.baseAddress!, length: &n) } == 0)
            rtpPackets.append(Array(p[0..<n]))
            var c = Self.rtcp(ssrc: 0xCAFE_F00D, n: i)
            var m = c.count
            c += [UInt8](repeating: 0, count: 32)
            #expect(c.withUnsafeMutableBytes { sender.protectRTCP($0.baseAddress!, length: &m) } == 0)
            rtcpPackets.append(Array(c[0..<m]))
        }
        var ours = try keys.ours(profile)
        let oracle = keys.theirs(profile, .inbound)
        var seen = Set<SRTPStatus>()
        for (step, (index, forge)) in Self.scenario.enumerated() {
            for rtcp in [false, true] {
                var packet = rtcp ? rtcpPackets[index] : rtpPackets[index]
                if forge { packet[packet.count / 2] ^= 0x20 }
                var a = packet
                var b = packet
                var na = a.count
                var nb = b.count
                let mine = a.withUnsafeMutableBytes {
                    rtcp ? ours.unprotectRTCP($0.baseAddress!, length: &na) : ours.unprotectRTP($0.baseAddress!, length: &na)
                }
                let theirs = b.withUnsafeMutableBytes {
                    rtcp ? oracle.unprotectRTCP($0.baseAddress!, length: &nb) : oracle.unprotect($0.baseAddress!, length: &nb)
                }
                #expect(mine == Self.verdict(theirs), "step \(step): index \(index) forged \(forge) rtcp \(rtcp)")
                if mine == .ok { #expect(a[0..<na] == b[0..<nb]) }
                seen.insert(mine)
            }
        }
        #expect(seen == [.ok, .replayed, .tooOld, .authenticationFailed])
        #expect(ours.rolloverCounter(ssrc: 0xCAFE_F00D) == 1)
    }

    @Test func protectRefusesToReuseAnIndex() throws {
        let keys = Keys(.aes128CmHmacSha1_80, seed: 7)
        var ours = try keys.ours(.aes128CmHmacSha1_80)
        let plain = Self.rtp(ssrc: 9, seq: 100, size: 20)
        for expected in [SRTPStatus.ok, .replayed] {
            var b = plain + [UInt8](repeating: 0, count: 16)
            var n = plain.count
            #expect(b.withUnsafeMutableBytes { ours.protectRTP($0.baseAddress!, length: &n, capacity: $0.count) } == expected)
        }
        var small = plain
        var n = plain.count
        #expect(small.withUnsafeMutableBytes { ours.protectRTP($0.baseAddress!, length: &n, capacity: $0.count) } == .noRoom)
    }

    @Test func streamTableIsBoundedAndForgeriesDoNotTakeSlots() throws {
        let keys = Keys(.aeadAes128Gcm, seed: 8)
        var receiver = try keys.ours(.aeadAes128Gcm)  // maxStreams 4
        let sender = keys.theirs(.aeadAes128Gcm, .outbound)
        var sequence: UInt16 = 0
        func packet(_ ssrc: UInt32) -> [UInt8] {
            sequence += 1
            var p = Self.rtp(ssrc: ssrc, seq: sequence, size: 40) + [UInt8](repeating: 0, count: 16)
            var n = p.count - 16
            #expect(p.withUnsafeMutableBytes { sender.protect($0.baseAddress!, length: &n) } == 0)
            return Array(p[0..<n])
        }
        // Forgeries under many SSRCs claim nothing.
        for ssrc in UInt32(100)..<UInt32(110) {
            var p = packet(ssrc)
            p[20] ^= 1
            var n = p.count
            #expect(p.withUnsafeMutableBytes { receiver.unprotectRTP($0.baseAddress!, length: &n) } == .authenticationFailed)
        }
        for ssrc in UInt32(1)...UInt32(5) {
            var p = packet(ssrc)
            var n = p.count
            let status = p.withUnsafeMutableBytes { receiver.unprotectRTP($0.baseAddress!, length: &n) }
            #expect(status == (ssrc <= 4 ? .ok : .tooManyStreams))
        }
        receiver.resetStreams()
        var p = packet(5)
        var n = p.count
        #expect(p.withUnsafeMutableBytes { receiver.unprotectRTP($0.baseAddress!, length: &n) } == .ok)
    }
}

/// 100,000 seeded truncations and bit flips of valid SRTP and SRTCP packets, 25,000 per
/// profile: every one is refused (a change that verified would be a forgery), none traps,
/// and the untouched packet is still accepted afterwards (refusals leave no state behind).
@Suite struct SRTPMutationTests {
    @Test(arguments: SRTPProfile.allCases)
    func mutatedPacketsAreRefused(profile: SRTPProfile) throws {
        let keys = SRTPInteropTests.Keys(profile, seed: 300 + UInt64(profile.rawValue))
        var sender = try keys.ours(profile)
        var receiver = try keys.ours(profile)
        var rng = SeededRandom(seed: 0x5274_7000 + UInt64(profile.rawValue))
        var originals: [(rtcp: Bool, bytes: [UInt8])] = []
        for i in 0..<8 {
            let rtcp = i % 2 == 1
            var p = rtcp
                ? SRTPInteropTests.rtcp(ssrc: 77, n: i)
                : SRTPInteropTests.rtp(ssrc: 77, seq: UInt16(i), size: 20 + 40 * i, csrcs: i % 3, ext: i % 4 == 0)
            var n = p.count
            p += [UInt8](repeating: 0, count: 32)
            let s = p.withUnsafeMutableBytes {
                rtcp ? sender.protectRTCP($0.baseAddress!, length: &n, capacity: $0.count)
                    : sender.protectRTP($0.baseAddress!, length: &n, capacity: $0.count)
            }
            #expect(s == .ok)
            originals.append((rtcp, Array(p[0..<n])))
        }
        var accepted = 0
        for i in 0..<25_000 {
            let (rtcp, original) = originals[i % originals.count]
            var p = original
            for _ in 0..<Int.random(in: 1...3, using: &rng) {
                p[Int.random(in: 0..<p.count, using: &rng)] ^= UInt8(1) << UInt8.random(in: 0..<8, using: &rng)
            }
            if Int.random(in: 0..<4, using: &rng) == 0 { p.removeLast(Int.random(in: 1...p.count, using: &rng)) }
            if p == original { continue }
            var n = p.count
            let status: SRTPStatus = p.withUnsafeMutableBytes {
                guard let base = $0.baseAddress else { return .tooShort }
                return rtcp ? receiver.unprotectRTCP(base, length: &n) : receiver.unprotectRTP(base, length: &n)
            }
            if status == .ok { accepted += 1 }
        }
        #expect(accepted == 0)
        for (rtcp, original) in originals {
            var p = original
            var n = p.count
            let status = p.withUnsafeMutableBytes {
                rtcp ? receiver.unprotectRTCP($0.baseAddress!, length: &n) : receiver.unprotectRTP($0.baseAddress!, length: &n)
            }
            #expect(status == .ok)
        }
    }
}
