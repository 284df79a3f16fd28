import COpenSSL
import VoxWire

extension SRTPContext {
    /// Authenticates and decrypts the SRTP packet of `length` bytes at `packet` in place;
    /// on `.ok`, `length` is the RTP packet's length (tag removed).
    @inlinable
    public mutating func unprotectRTP(_ packet: UnsafeMutableRawPointer, length: inout Int) -> SRTPStatus {
        let tagLength = rtpTagLength
        guard length >= 12 + tagLength else { return .tooShort }
        let authLength = length - tagLength
        let headerLength = rtpHeaderLength(packet, limit: authLength)
        guard headerLength >= 0 else { return .malformed }
        let ssrc = packet.loadBE32(at: 8)
        var slot = stream(for: ssrc)
        let isNew = slot < 0
        if isNew {
            slot = freeStream()
            guard slot >= 0 else { return .tooManyStreams }
        }
        // A new stream starts from a blank state: the first packet fixes ROC 0 (libsrtp2).
        var state = isNew ? SRTPStream() : streams[slot]
        let (index, delta) = state.estimateRTPIndex(sequence: packet.loadBE16(at: 2))
        let replay = state.checkRTP(delta: delta)
        guard replay == .ok else { return replay }
        let roc = UInt32(truncatingIfNeeded: index >> 16)
        if isAEAD {
            let ivHigh = rtp.pointee.saltHigh ^ (UInt64(ssrc) << 16 | UInt64(roc >> 16))
            let ivLow = UInt32(truncatingIfNeeded: rtp.pointee.saltLow) ^ (roc << 16 | UInt32(index & 0xFFFF))
            guard
                SRTPContext.gcmOpen(
                    rtp.pointee.decrypt!, ivHigh: ivHigh, ivLow: ivLow, aad: packet, aadCount: headerLength,
                    packet + headerLength, count: authLength - headerLength, tag: packet + authLength)
            else { return .authenticationFailed }
        } else {
            var digest: Digest20 = (0, 0, 0)
            let authentic = withUnsafeMutableBytes(of: &digest) { d -> Bool in
                SRTPContext.authenticate(rtp, packet, count: authLength, roc: roc, into: d.baseAddress!)
                return constantTimeEqual(d.baseAddress!, packet + authLength, count: tagLength)
            }
            guard authentic else { return .authenticationFailed }
            guard
                SRTPContext.applyKeystream(
                    rtp.pointee.encrypt, ivHigh: rtp.pointee.saltHigh ^ UInt64(ssrc), ivLow: rtp.pointee.saltLow ^ (index << 16),
                    packet + headerLength, count: authLength - headerLength)
            else { return .cryptoFailure }
        }
        state.acceptRTP(index: index, delta: delta)
        streams[slot] = state
        if isNew { claim(slot, ssrc: ssrc) }
        length = authLength
        return .ok
    }

    /// Encrypts and authenticates the RTP packet of `length` bytes at `packet` in place,
    /// appending the tag; `capacity` is the room at `packet`. On `.ok`, `length` is the
    /// SRTP packet's length. Sending an index twice is refused (`.replayed`): it would
    /// reuse keystream.
    @inlinable
    public mutating func protectRTP(_ packet: UnsafeMutableRawPointer, length: inout Int, capacity: Int) -> SRTPStatus {
        let tagLength = rtpTagLength
        guard length >= 12 else { return .tooShort }
        guard capacity - length >= tagLength else { return .noRoom }
        let headerLength = rtpHeaderLength(packet, limit: length)
        guard headerLength >= 0 else { return .malformed }
        let ssrc = packet.loadBE32(at: 8)
        var slot = stream(for: ssrc)
        if slot < 0 {
            slot = freeStream()
            guard slot >= 0 else { return .tooManyStreams }
            streams[slot] = SRTPStream()
            claim(slot, ssrc: ssrc)
        }
        // Through a local pointer: `streams[slot].mutatingCall()` here made Swift 6.3.1 emit a
        // ThreadSanitizer access on a copy of `self` that LLVM's verifier rejects (docs/reliability.md).
        let streamState = streams + slot
        let (index, delta) = streamState.pointee.estimateRTPIndex(sequence: packet.loadBE16(at: 2))
        let replay = streamState.pointee.checkRTP(delta: delta)
        guard replay == .ok else { return replay }
        let roc = UInt32(truncatingIfNeeded: index >> 16)
        if isAEAD {
            let ivHigh = rtp.pointee.saltHigh ^ (UInt64(ssrc) << 16 | UInt64(roc >> 16))
            let ivLow = UInt32(truncatingIfNeeded: rtp.pointee.saltLow) ^ (roc << 16 | UInt32(index & 0xFFFF))
            guard
                SRTPContext.gcmSeal(
                    rtp.pointee.encrypt, ivHigh: ivHigh, ivLow: ivLow, aad: packet, aadCount: headerLength,
                    packet + headerLength, count: length - headerLength, tag: packet + length)
            else { return .cryptoFailure }
        } else {
            guard
                SRTPContext.applyKeystream(
                    rtp.pointee.encrypt, ivHigh: rtp.pointee.saltHigh ^ UInt64(ssrc), ivLow: rtp.pointee.saltLow ^ (index << 16),
                    packet + headerLength, count: length - headerLength)
            else { return .cryptoFailure }
            var digest: Digest20 = (0, 0, 0)
            let authLength = length
            withUnsafeMutableBytes(of: &digest) { d in
                SRTPContext.authenticate(rtp, packet, count: authLength, roc: roc, into: d.baseAddress!)
                (packet + authLength).copyMemory(from: d.baseAddress!, byteCount: tagLength)
            }
        }
        streamState.pointee.acceptRTP(index: index, delta: delta)
        length += tagLength
        return .ok
    }

    /// Authenticates and (when its E bit is set) decrypts the SRTCP packet of `length`
    /// bytes at `packet` in place; on `.ok`, `length` is the RTCP compound packet's length.
    @inlinable
    public mutating func unprotectRTCP(_ packet: UnsafeMutableRawPointer, length: inout Int) -> SRTPStatus {
        let tagLength = rtcpTagLength
        guard length >= 8 + 4 + tagLength else { return .tooShort }
        guard packet.loadByte(at: 0) >> 6 == 2 else { return .malformed }
        let ssrc = packet.loadBE32(at: 4)
        // AES-CM: ... | E|index | tag      AES-GCM: ... | tag | E|index
        let trailerOffset = isAEAD ? length - 4 : length - tagLength - 4
        let word = packet.loadBE32(at: trailerOffset)
        let encrypted = word & 0x8000_0000 != 0
        let index = word & 0x7FFF_FFFF
        var slot = stream(for: ssrc)
        let isNew = slot < 0
        if isNew {
            slot = freeStream()
            guard slot >= 0 else { return .tooManyStreams }
        }
        var state = isNew ? SRTPStream() : streams[slot]
        let replay = state.checkRTCP(index: index)
        guard replay == .ok else { return replay }
        let plainLength: Int
        if isAEAD {
            plainLength = length - 4 - tagLength
            let ivHigh = rtcp.pointee.saltHigh ^ (UInt64(ssrc) << 16)
            let ivLow = UInt32(truncatingIfNeeded: rtcp.pointee.saltLow) ^ index
            let ok: Bool
            if encrypted {
                // AAD: the first 8 octets, then E|index (RFC 7714 §9.3).
                var aad = (UInt64(0), UInt32(0))
                ok = withUnsafeMutableBytes(of: &aad) { a -> Bool in
                    a.baseAddress!.copyMemory(from: packet, byteCount: 8)
                    a.baseAddress!.storeBE32(word, at: 8)
                    return SRTPContext.gcmOpen(
                        rtcp.pointee.decrypt!, ivHigh: ivHigh, ivLow: ivLow, aad: a.baseAddress!, aadCount: 12,
                        packet + 8, count: plainLength - 8, tag: packet + plainLength)
                }
            } else {
                // Authenticated only: the whole packet and E|index are AAD. They are not
                // contiguous (the tag sits between), so move E|index next to the packet.
                var tag = (UInt64(0), UInt64(0))
                ok = withUnsafeMutableBytes(of: &tag) { t -> Bool in
                    t.baseAddress!.copyMemory(from: packet + plainLength, byteCount: 16)
                    packet.storeBE32(word, at: plainLength)
                    return SRTPContext.gcmOpen(
                        rtcp.pointee.decrypt!, ivHigh: ivHigh, ivLow: ivLow, aad: packet, aadCount: plainLength + 4,
                        packet + plainLength, count: 0, tag: t.baseAddress!)
                }
            }
            guard ok else { return .authenticationFailed }
        } else {
            plainLength = trailerOffset
            var digest: Digest20 = (0, 0, 0)
            let authLength = trailerOffset + 4
            let authentic = withUnsafeMutableBytes(of: &digest) { d -> Bool in
                SRTPContext.authenticate(rtcp, packet, count: authLength, roc: nil, into: d.baseAddress!)
                return constantTimeEqual(d.baseAddress!, packet + authLength, count: tagLength)
            }
            guard authentic else { return .authenticationFailed }
            if encrypted {
                guard
                    SRTPContext.applyKeystream(
                        rtcp.pointee.encrypt, ivHigh: rtcp.pointee.saltHigh ^ UInt64(ssrc),
                        ivLow: rtcp.pointee.saltLow ^ (UInt64(index) << 16), packet + 8, count: plainLength - 8)
                else { return .cryptoFailure }
            }
        }
        state.acceptRTCP(index: index)
        streams[slot] = state
        if isNew { claim(slot, ssrc: ssrc) }
        length = plainLength
        return .ok
    }

    /// Encrypts and authenticates the RTCP compound packet of `length` bytes at `packet`
    /// in place with the next SRTCP index of its sender SSRC, appending E|index and the
    /// tag within `capacity`. On `.ok`, `length` is the SRTCP packet's length.
    @inlinable
    public mutating func protectRTCP(_ packet: UnsafeMutableRawPointer, length: inout Int, capacity: Int) -> SRTPStatus {
        let tagLength = rtcpTagLength
        guard length >= 8 else { return .tooShort }
        guard capacity - length >= 4 + tagLength else { return .noRoom }
        guard packet.loadByte(at: 0) >> 6 == 2 else { return .malformed }
        let ssrc = packet.loadBE32(at: 4)
        var slot = stream(for: ssrc)
        if slot < 0 {
            slot = freeStream()
            guard slot >= 0 else { return .tooManyStreams }
            streams[slot] = SRTPStream()
            claim(slot, ssrc: ssrc)
        }
        guard streams[slot].rtcpSendIndex < 0x7FFF_FFFF else { return .indexExhausted }
        let index = streams[slot].rtcpSendIndex + 1
        let word = 0x8000_0000 | index
        if isAEAD {
            var aad = (UInt64(0), UInt32(0))
            let sealed = withUnsafeMutableBytes(of: &aad) { a -> Bool in
                a.baseAddress!.copyMemory(from: packet, byteCount: 8)
                a.baseAddress!.storeBE32(word, at: 8)
                return SRTPContext.gcmSeal(
                    rtcp.pointee.encrypt, ivHigh: rtcp.pointee.saltHigh ^ (UInt64(ssrc) << 16),
                    ivLow: UInt32(truncatingIfNeeded: rtcp.pointee.saltLow) ^ index, aad: a.baseAddress!, aadCount: 12,
                    packet + 8, count: length - 8, tag: packet + length)
            }
            guard sealed else { return .cryptoFailure }
            packet.storeBE32(word, at: length + tagLength)
        } else {
            guard
                SRTPContext.applyKeystream(
                    rtcp.pointee.encrypt, ivHigh: rtcp.pointee.saltHigh ^ UInt64(ssrc), ivLow: rtcp.pointee.saltLow ^ (UInt64(index) << 16),
                    packet + 8, count: length - 8)
            else { return .cryptoFailure }
            packet.storeBE32(word, at: length)
            var digest: Digest20 = (0, 0, 0)
            let authLength = length + 4
            withUnsafeMutableBytes(of: &digest) { d in
                SRTPContext.authenticate(rtcp, packet, count: authLength, roc: nil, into: d.baseAddress!)
                (packet + authLength).copyMemory(from: d.baseAddress!, byteCount: tagLength)
            }
        }
        streams[slot].rtcpSendIndex = index
        length += 4 + tagLength
        return .ok
    }
}
