/// Per-SSRC state of one SRTP crypto context (which SSRC it belongs to is kept apart, in
/// the context's compact SSRC lane, so a lookup touches one cache line): the RTP packet index and replay window
/// (RFC 3711 §3.3.1, Appendix A) and the SRTCP replay window and send index.
///
/// The windows follow libsrtp2's so both sides judge a packet the same way:
///
/// ```
/// RTP  window: bit k of (high:low) set  ⇔  index (rtpIndex - k) was accepted, 0 ≤ k < 128
/// RTCP window: bit d of (high:low) set  ⇔  index (rtcpWindowStart + d) was accepted
/// ```
@usableFromInline
struct SRTPStream {
    /// The highest accepted 48-bit index (ROC << 16 | SEQ).
    @usableFromInline var rtpIndex: UInt64 = 0
    @usableFromInline var rtpWindowLow: UInt64 = 0
    @usableFromInline var rtpWindowHigh: UInt64 = 0
    @usableFromInline var rtcpWindowStart: UInt32 = 0
    @usableFromInline var rtcpWindowLow: UInt64 = 0
    @usableFromInline var rtcpWindowHigh: UInt64 = 0
    /// The last SRTCP index sent (protect side).
    @usableFromInline var rtcpSendIndex: UInt32 = 0

    @usableFromInline
    init() {}

    /// The window size, in packets.
    @usableFromInline static let windowSize = 128

    /// RFC 3711 Appendix A, as libsrtp2 does it: the index of `seq` and its distance
    /// from the highest accepted index. While the highest index is below 2^15 the ROC
    /// is taken as 0 (the guess could otherwise wrap to 0xFFFFFFFF).
    @inlinable
    func estimateRTPIndex(sequence s: UInt16) -> (index: UInt64, delta: Int64) {
        let median: Int64 = 1 << 15
        if rtpIndex <= UInt64(median) {
            return (UInt64(s), Int64(s) - Int64(rtpIndex))
        }
        let localROC = UInt32(truncatingIfNeeded: rtpIndex >> 16)
        let localSeq = Int64(rtpIndex & 0xFFFF)
        let seq = Int64(s)
        var roc = localROC
        var delta: Int64
        if localSeq < median {
            if seq - localSeq > median {
                roc = localROC &- 1
                delta = seq - localSeq - 65536
            } else {
                delta = seq - localSeq
            }
        } else {
            if localSeq - median > seq {
                roc = localROC &+ 1
                delta = seq - localSeq + 65536
            } else {
                delta = seq - localSeq
            }
        }
        return (UInt64(roc) << 16 | UInt64(s), delta)
    }

    @inlinable
    func checkRTP(delta: Int64) -> SRTPStatus {
        if delta > 0 { return .ok }
        let k = -delta
        if k >= Int64(Self.windowSize) { return .tooOld }
        return bit(Int(k), rtpWindowLow, rtpWindowHigh) ? .replayed : .ok
    }

    @inlinable
    mutating func acceptRTP(index: UInt64, delta: Int64) {
        if delta > 0 {
            shiftUp(&rtpWindowLow, &rtpWindowHigh, by: delta)
            rtpWindowLow |= 1
            rtpIndex = index
        } else {
            setBit(Int(-delta), &rtpWindowLow, &rtpWindowHigh)
        }
    }

    @inlinable
    func checkRTCP(index: UInt32) -> SRTPStatus {
        let delta = Int64(index) - Int64(rtcpWindowStart)
        if delta >= Int64(Self.windowSize) { return .ok }
        if delta < 0 { return .tooOld }
        return bit(Int(delta), rtcpWindowLow, rtcpWindowHigh) ? .replayed : .ok
    }

    @inlinable
    mutating func acceptRTCP(index: UInt32) {
        let delta = Int64(index) - Int64(rtcpWindowStart)
        if delta < Int64(Self.windowSize) {
            setBit(Int(delta), &rtcpWindowLow, &rtcpWindowHigh)
        } else {
            let shift = delta - Int64(Self.windowSize - 1)
            shiftDown(&rtcpWindowLow, &rtcpWindowHigh, by: shift)
            setBit(Self.windowSize - 1, &rtcpWindowLow, &rtcpWindowHigh)
            rtcpWindowStart = UInt32(truncatingIfNeeded: Int64(rtcpWindowStart) + shift)
        }
    }
}

@inlinable
func bit(_ k: Int, _ low: UInt64, _ high: UInt64) -> Bool {
    k < 64 ? (low >> UInt64(k)) & 1 == 1 : (high >> UInt64(k - 64)) & 1 == 1
}

@inlinable
func setBit(_ k: Int, _ low: inout UInt64, _ high: inout UInt64) {
    if k < 64 { low |= 1 << UInt64(k) } else { high |= 1 << UInt64(k - 64) }
}

/// (high:low) <<= n, for n > 0.
@inlinable
func shiftUp(_ low: inout UInt64, _ high: inout UInt64, by n: Int64) {
    if n >= 128 {
        low = 0
        high = 0
    } else if n >= 64 {
        high = low << UInt64(n - 64)
        low = 0
    } else {
        high = (high << UInt64(n)) | (low >> UInt64(64 - n))
        low <<= UInt64(n)
    }
}

/// (high:low) >>= n, for n > 0.
@inlinable
func shiftDown(_ low: inout UInt64, _ high: inout UInt64, by n: Int64) {
    if n >= 128 {
        low = 0
        high = 0
    } else if n >= 64 {
        low = high >> UInt64(n - 64)
        high = 0
    } else {
        low = (low >> UInt64(n)) | (high << UInt64(64 - n))
        high >>= UInt64(n)
    }
}
