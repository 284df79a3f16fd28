import VoxSignaling

/// The fuzz targets: one entry point per parser that sees bytes from outside the engine,
/// shared by the libFuzzer binary (`scripts/fuzz TARGET`, `voxedge-fuzz`) and the ordinary
/// test build, which replays every committed corpus (`Tests/Fixtures/fuzz/<target>/`)
/// through the same `run`. One implementation: what the fuzzer explored is what CI replays.
///
/// Each target feeds its input to the real code the way the engine does, and where a MAC
/// guards the code (SRTP's tag, STUN's MESSAGE-INTEGRITY) it protects or signs the mutated
/// input with a known key first, so the fuzzer reaches what lies behind the check. Besides
/// "does not trap", each checks what must hold of a result (`FuzzCheck.expect`): a frame's
/// offsets inside the frame, an SRTP round trip that gives back its plaintext, a STUN answer
/// that verifies with the key, a control reply that is one JSON line.
public enum FuzzTarget: String, CaseIterable, Sendable {
    /// Ethernet / 802.1Q / IPv4 / IPv6 / UDP (`ParsedFrame.parse`), then the payload's class
    /// and its parser, as `Worker` does per frame.
    case frame
    /// A connectivity check: `STUNMessage.parse`, then the ICE-lite agent's `verifies` and
    /// `handle` with MESSAGE-INTEGRITY and FINGERPRINT recomputed with the agent's password.
    case stun
    /// `RTPHeader.parse`, its CSRCs and header extensions, receive statistics.
    case rtp
    /// An RTCP compound (`RTCPCompound`) and every packet type's typed view.
    case rtcp
    /// SRTP and SRTCP in all four profiles: the input is the plaintext, protected with a
    /// known key and unprotected (the round trip must give it back), a tampered copy must be
    /// refused, and the raw input is offered to `unprotect` as an attacker's datagram.
    case srtp
    /// An SDP offer (`WebRTCOffer`), and the answer built for it, which must parse.
    case sdp
    /// DTLS records (`DTLSRecord`) and a `DTLSServer` handshake fed the input as a sequence
    /// of datagrams, with timers.
    case dtls
    /// The control socket: bytes through `BoundedLineDecoder` in chunks, each line through
    /// `ControlWire.parse` and `EngineController.handle` (an engine with no backends, never
    /// started, so nothing is created), each reply through `ControlWire.encode`.
    case control
    /// A configuration file: YAML (and JSON) into `EngineConfiguration`, then `problems()`.
    case config
    /// The public HTTP signaling request (`SignalingFuzz.fuzzOne`): request line, header
    /// fields, token, media type and offer body through `SignalingService`, without sockets.
    case signaling
    /// A backend leg's control message (`BackendMessage.parse`), as received and with its MAC
    /// recomputed; what parses must encode back to the same bytes. Then a pacing queue driven
    /// by the same bytes.
    case backend

    /// Runs one input. Traps (a failed `FuzzCheck.expect`, or a Swift runtime check) are
    /// findings; everything else is the input being refused as it should be.
    public func run(_ data: UnsafeRawBufferPointer) {
        switch self {
        case .frame: FrameFuzz.run(data)
        case .stun: STUNFuzz.run(data)
        case .rtp: RTPFuzz.run(data)
        case .rtcp: RTCPFuzz.run(data)
        case .srtp: SRTPFuzz.run(data)
        case .sdp: SDPFuzz.run(data)
        case .dtls: DTLSFuzz.run(data)
        case .control: ControlFuzz.run(data)
        case .config: ConfigFuzz.run(data)
        case .signaling: SignalingFuzz.fuzzOne(data)
        case .backend: BackendFuzz.run(data)
        }
    }

    /// Convenience for tests and replay.
    public func run(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { run($0) }
    }
}

/// What a target checks beyond "no trap".
public enum FuzzCheck {
    /// A property of the code under test that failed: a finding, reported like a crash.
    @inlinable
    public static func expect(
        _ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String, file: StaticString = #fileID,
        line: UInt = #line
    ) {
        if !condition() { fatalError("fuzz property failed: \(message())", file: file, line: line) }
    }

    /// Keeps a value alive so the optimizer cannot drop the code that made it.
    @inline(never)
    public static func consume<T>(_ value: T) { _ = value }
}

/// Reads an input as a sequence of small fields (the harnesses' own framing).
struct FuzzReader {
    let data: UnsafeRawBufferPointer
    var offset = 0

    init(_ data: UnsafeRawBufferPointer) { self.data = data }

    var isAtEnd: Bool { offset >= data.count }
    var remaining: Int { data.count - offset }

    mutating func byte() -> UInt8 {
        guard offset < data.count else { return 0 }
        defer { offset += 1 }
        return data[offset]
    }

    mutating func uint16() -> UInt16 { UInt16(byte()) << 8 | UInt16(byte()) }

    /// The next `count` bytes (fewer at the end).
    mutating func bytes(_ count: Int) -> UnsafeRawBufferPointer {
        let n = max(0, min(count, remaining))
        defer { offset += n }
        return UnsafeRawBufferPointer(rebasing: data[offset..<(offset + n)])
    }

    /// The rest.
    mutating func rest() -> UnsafeRawBufferPointer { bytes(remaining) }

    /// A 16-bit length, then that many bytes: how multi-datagram inputs are framed.
    mutating func lengthPrefixed() -> UnsafeRawBufferPointer? {
        guard remaining >= 2 else { return nil }
        return bytes(Int(uint16()))
    }
}

/// A heap copy of exactly the bytes given (plus `room` writable bytes after them), so an
/// out-of-bounds read under AddressSanitizer lands in a redzone, not in a neighbour.
struct FuzzBuffer: ~Copyable {
    let pointer: UnsafeMutableRawPointer
    let capacity: Int

    init(_ bytes: UnsafeRawBufferPointer, room: Int = 0) {
        capacity = bytes.count + room
        pointer = .allocate(byteCount: max(capacity, 1), alignment: 16)
        if let b = bytes.baseAddress, bytes.count > 0 { pointer.copyMemory(from: b, byteCount: bytes.count) }
        if room > 0 { (pointer + bytes.count).initializeMemory(as: UInt8.self, repeating: 0xA5, count: room) }
    }

    init(_ bytes: [UInt8], room: Int = 0) {
        capacity = bytes.count + room
        pointer = .allocate(byteCount: max(capacity, 1), alignment: 16)
        pointer.initializeMemory(as: UInt8.self, repeating: 0xA5, count: max(capacity, 1))
        for (i, b) in bytes.enumerated() { pointer.storeBytes(of: b, toByteOffset: i, as: UInt8.self) }
    }

    deinit { pointer.deallocate() }

    func bytes(_ count: Int) -> [UInt8] { Array(UnsafeRawBufferPointer(start: pointer, count: count)) }
}
