import Glibc
import VoxMedia
import VoxWire

/// SRTP and SRTCP unprotect, past the tag: the input's packets are taken as plaintext RTP
/// (or RTCP), protected by a sender that holds the session's key, and unprotected by a
/// receiver that holds it too, as an edge and its client do.
///
/// Input: one byte (bits 0-1: the profile; bit 2: RTCP instead of RTP), then packets, each
/// a 16-bit length and its bytes, each preceded by a byte naming a bit to flip in a tampered
/// copy. For each packet:
/// - the raw bytes go to `unprotect` as they are (an attacker's datagram, no key): never `.ok`
///   unless they are a replay-free valid packet, which random bytes are not;
/// - when `protect` accepts the plaintext, a copy with one bit flipped must be refused, and
///   the protected packet must unprotect `.ok` back to the same plaintext. The sender and the
///   receiver see the same sequence of packets, so their replay windows and rollover
///   counters agree.
enum SRTPFuzz {
    static let masterKey: [UInt8] = (0..<32).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
    static let masterSalt: [UInt8] = (0..<14).map { UInt8(truncatingIfNeeded: $0 &* 53 &+ 7) }

    static func context(_ profile: SRTPProfile) -> SRTPContext {
        try! SRTPContext(
            profile: profile, masterKey: Array(masterKey.prefix(profile.masterKeyLength)),
            masterSalt: Array(masterSalt.prefix(profile.masterSaltLength)))
    }

    static func run(_ data: UnsafeRawBufferPointer) {
        var reader = FuzzReader(data)
        let mode = reader.byte()
        let profile = SRTPProfile.allCases[Int(mode & 3)]
        let rtcp = mode & 4 != 0
        var sender = context(profile)
        var receiver = context(profile)
        var attacker = context(profile)
        var packets = 0
        while !reader.isAtEnd, packets < 64 {
            let flip = Int(reader.byte())
            guard let plain = reader.lengthPrefixed() else { break }
            packets += 1
            // The raw bytes, as a stranger would send them.
            let raw = FuzzBuffer(plain)
            var rawLength = plain.count
            let rawStatus =
                rtcp ? attacker.unprotectRTCP(raw.pointer, length: &rawLength) : attacker.unprotectRTP(raw.pointer, length: &rawLength)
            FuzzCheck.expect(rawStatus != .ok || rawLength <= plain.count, "unprotect grew the packet")

            let tag = rtcp ? 4 + profile.rtcpTagLength : profile.rtpTagLength
            let buffer = FuzzBuffer(plain, room: tag)
            var length = plain.count
            let sealed =
                rtcp
                ? sender.protectRTCP(buffer.pointer, length: &length, capacity: buffer.capacity)
                : sender.protectRTP(buffer.pointer, length: &length, capacity: buffer.capacity)
            guard sealed == .ok else { continue }
            FuzzCheck.expect(length == plain.count + tag, "protect gave \(length) bytes for \(plain.count)")

            // One bit flipped anywhere: refused (the tag covers header and payload).
            let tampered = FuzzBuffer(UnsafeRawBufferPointer(start: buffer.pointer, count: length))
            let bit = (flip &* 131) % (length * 8)
            tampered.pointer.storeBytes(
                of: tampered.pointer.load(fromByteOffset: bit / 8, as: UInt8.self) ^ UInt8(1 << (bit % 8)),
                toByteOffset: bit / 8, as: UInt8.self)
            var tamperedLength = length
            let forged =
                rtcp
                ? receiver.unprotectRTCP(tampered.pointer, length: &tamperedLength)
                : receiver.unprotectRTP(tampered.pointer, length: &tamperedLength)
            FuzzCheck.expect(forged != .ok, "\(profile) accepted a packet with bit \(bit) flipped")

            var openedLength = length
            let opened =
                rtcp
                ? receiver.unprotectRTCP(buffer.pointer, length: &openedLength)
                : receiver.unprotectRTP(buffer.pointer, length: &openedLength)
            FuzzCheck.expect(opened == .ok, "\(profile) \(rtcp ? "SRTCP" : "SRTP") round trip refused: \(opened)")
            FuzzCheck.expect(openedLength == plain.count, "round trip gave \(openedLength) bytes for \(plain.count)")
            FuzzCheck.expect(
                memcmp(buffer.pointer, plain.baseAddress!, plain.count) == 0, "round trip changed the plaintext")
        }
    }
}
