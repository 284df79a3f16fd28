import VoxWire

/// Receive statistics of one RTP source, as RFC 3550 Appendix A keeps them: sequence
/// validation and extended sequence numbers (A.1), loss and fraction lost per report
/// interval (A.3) and interarrival jitter (A.8), plus what LSR/DLSR need. Sans-IO: the
/// caller passes every time in, and the struct is plain data for a per-session slot.
///
/// Two clocks are passed in, each in the unit its RTCP field uses:
/// - `arrival`: the packet's arrival time on the stream's RTP clock (e.g. 48 kHz for Opus),
///   from any origin; only differences count. Jitter is in these units.
/// - `now`/`at` for sender reports: "compact NTP" time, units of 1/65536 s (the middle
///   32 bits of an NTP timestamp), from any origin; DLSR is in these units.
///
/// The sequence fields follow A.1's `source` struct: `cycles` is the count of 16-bit wraps
/// already shifted left 16, so `cycles + maxSequence` is the extended highest sequence.
public struct RTPReceiveStatistics: Sendable {
    /// A.1's constants: a forward jump of up to MAX_DROPOUT is loss, a step back of up to
    /// MAX_MISORDER is reordering or a duplicate, anything else a possible restart; a new
    /// source counts after MIN_SEQUENTIAL packets in sequence.
    public static let maxDropout: UInt16 = 3000
    public static let maxMisorder: UInt16 = 100
    public static let minSequential: UInt32 = 2
    @usableFromInline static let sequenceModulus: UInt32 = 1 << 16

    @usableFromInline var _maxSequence: UInt16 = 0
    @usableFromInline var _cycles: UInt32 = 0
    @usableFromInline var _baseSequence: UInt32 = 0
    /// The sequence number after the last packet that jumped far ("bad"); a packet with it
    /// confirms a restart. 65537 (never a sequence number) when there is none.
    @usableFromInline var badSequence: UInt32 = 0
    @usableFromInline var _probation: UInt32 = 0
    @usableFromInline var _received: UInt32 = 0
    @usableFromInline var expectedPrior: UInt32 = 0
    @usableFromInline var receivedPrior: UInt32 = 0
    /// The previous packet's relative transit time (arrival − timestamp), in RTP units.
    @usableFromInline var transit: UInt32 = 0
    @usableFromInline var _scaledJitter: UInt32 = 0
    @usableFromInline var lastSRCompactNTP: UInt32 = 0
    @usableFromInline var lastSRArrival: UInt32 = 0
    @usableFromInline var _isStarted: Bool = false
    @usableFromInline var hasTransit = false
    @usableFromInline var hasLastSR = false

    @inlinable
    public init() {}

    /// The highest sequence number seen.
    @inlinable public var maxSequence: UInt16 { _maxSequence }

    /// Wraps of the sequence number, × 65536.
    @inlinable public var cycles: UInt32 { _cycles }

    /// The first sequence number of the current (re)synchronised run.
    @inlinable public var baseSequence: UInt32 { _baseSequence }

    /// Packets still to see in sequence before the source is valid.
    @inlinable public var probation: UInt32 { _probation }

    /// Valid packets received, duplicates and late ones included.
    @inlinable public var received: UInt32 { _received }

    /// Jitter × 16: A.8's integer form keeps four fraction bits.
    @inlinable public var scaledJitter: UInt32 { _scaledJitter }

    /// The source's first packet has been seen.
    @inlinable public var isStarted: Bool { _isStarted }

    /// Past probation: packets count and reports may be sent about the source.
    @inlinable
    public var isValid: Bool { _isStarted && _probation == 0 }

    /// A.1 `init_seq`: (re)starts counting at `sequence`.
    @inlinable
    mutating func initSequence(_ sequence: UInt16) {
        _baseSequence = UInt32(sequence)
        _maxSequence = sequence
        badSequence = Self.sequenceModulus + 1
        _cycles = 0
        _received = 0
        receivedPrior = 0
        expectedPrior = 0
        // A resynchronised source is a new sender as far as timing goes: the first transit
        // after the jump must not count as one huge jitter sample.
        hasTransit = false
    }

    /// A.1 `update_seq`: counts the packet with `sequence`, returns whether it is valid
    /// (false while the source is on probation, and for a lone far jump that may be the
    /// start of a restart). The source's first packet starts probation, as A.1 does for a
    /// newly heard source.
    ///
    /// One deliberate difference: A.1's C tests `seq == max_seq + 1` in `int`, so during
    /// probation 65535 → 0 does not count as in sequence there; here it does (wrapping).
    @inlinable
    public mutating func updateSequence(_ sequence: UInt16) -> Bool {
        if !_isStarted {
            _isStarted = true
            initSequence(sequence)
            _maxSequence = sequence &- 1
            _probation = Self.minSequential
        }
        let udelta = sequence &- _maxSequence
        if _probation > 0 {
            if sequence == _maxSequence &+ 1 {
                _probation -= 1
                _maxSequence = sequence
                if _probation == 0 {
                    initSequence(sequence)
                    _received += 1
                    return true
                }
            } else {
                _probation = Self.minSequential - 1
                _maxSequence = sequence
            }
            return false
        } else if udelta < Self.maxDropout {
            // In order, with a permissible gap; a smaller number means it wrapped.
            if sequence < _maxSequence { _cycles &+= Self.sequenceModulus }
            _maxSequence = sequence
        } else if UInt32(udelta) <= Self.sequenceModulus - UInt32(Self.maxMisorder) {
            // A very large jump: believe it only when the next packet follows it.
            if UInt32(sequence) == badSequence {
                initSequence(sequence)
            } else {
                badSequence = (UInt32(sequence) + 1) & (Self.sequenceModulus - 1)
                return false
            }
        } else {
            // A duplicate or a reordered packet: counted, nothing else moves.
        }
        _received &+= 1
        return true
    }

    /// Counts one RTP packet: A.1 sequence validation, then, for a valid packet, the A.8
    /// jitter update in arrival order. `arrival` is on the RTP clock (see the type's doc).
    /// Returns whether the packet is valid.
    @inlinable
    public mutating func update(sequenceNumber: UInt16, timestamp: UInt32, arrival: UInt32) -> Bool {
        guard updateSequence(sequenceNumber) else { return false }
        updateJitter(timestamp: timestamp, arrival: arrival)
        return true
    }

    /// A.8 in its integer form: `J += |D| − J/16` on J × 16, rounding as the RFC does.
    /// Arithmetic is modulo 2^32 like the RFC's unsigned C, so clock wraps are harmless.
    @inlinable
    mutating func updateJitter(timestamp: UInt32, arrival: UInt32) {
        let newTransit = arrival &- timestamp
        if hasTransit {
            let d = Int32(bitPattern: newTransit &- transit).magnitude
            _scaledJitter = _scaledJitter &+ d &- ((_scaledJitter &+ 8) >> 4)
        }
        transit = newTransit
        hasTransit = true
    }

    /// Interarrival jitter in RTP timestamp units, as a report block carries it.
    @inlinable
    public var jitter: UInt32 { _scaledJitter >> 4 }

    /// A.3's `extended_max`.
    @inlinable
    public var extendedHighestSequence: UInt32 { _cycles &+ UInt32(_maxSequence) }

    /// A.3's `expected`: packets from the base sequence to the extended highest.
    @inlinable
    public var expected: Int64 { Int64(extendedHighestSequence) - Int64(_baseSequence) + 1 }

    /// A.3's `lost`: expected − received, negative when duplicates outnumber losses.
    @inlinable
    public var cumulativeLost: Int64 { expected - Int64(_received) }

    /// A.3's interval step: the fraction of the packets expected since the previous call
    /// that were lost, × 256, 0 when none were expected or duplicates made up for losses.
    /// Moves the interval on: call it once per report sent. A whole interval lost is 255,
    /// not the RFC's 256, which an 8-bit field would turn into 0.
    @inlinable
    public mutating func takeFractionLost() -> UInt8 {
        let expectedNow = expected
        let expectedInterval = expectedNow - Int64(expectedPrior)
        expectedPrior = UInt32(truncatingIfNeeded: expectedNow)
        let receivedInterval = Int64(_received) - Int64(receivedPrior)
        receivedPrior = _received
        let lostInterval = expectedInterval - receivedInterval
        if expectedInterval <= 0 || lostInterval <= 0 { return 0 }
        return UInt8(min((lostInterval << 8) / expectedInterval, 255))
    }

    /// Notes an SR from the source: its NTP timestamp and when it arrived (compact NTP
    /// units), for the next report's LSR and DLSR.
    @inlinable
    public mutating func senderReportReceived(ntpTimestamp: UInt64, at arrival: UInt32) {
        lastSRCompactNTP = UInt32(truncatingIfNeeded: ntpTimestamp >> 16)
        lastSRArrival = arrival
        hasLastSR = true
    }

    /// The report block about this source for an RR or SR sent at `now` (compact NTP
    /// units), and the start of the next report interval. Cumulative loss is clamped to
    /// 24 bits (A.3); LSR and DLSR are 0 until an SR has been received (§6.4.1).
    @inlinable
    public mutating func makeReportBlock(ssrc: SSRC, now: UInt32) -> RTCPReportBlock {
        RTCPReportBlock(
            ssrc: ssrc,
            fractionLost: takeFractionLost(),
            cumulativeLost: Int32(min(max(cumulativeLost, -0x80_0000), 0x7F_FFFF)),
            extendedHighestSequence: extendedHighestSequence,
            jitter: jitter,
            lastSR: hasLastSR ? lastSRCompactNTP : 0,
            delaySinceLastSR: hasLastSR ? now &- lastSRArrival : 0)
    }
}
