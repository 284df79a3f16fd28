import COpus

/// A failure of libopus, or of a check made before calling it, with a stable code for logs.
/// Plain values: throwing one allocates nothing (it can come from the per-frame path).
public struct OpusCodecError: Error, Sendable, Equatable, BitwiseCopyable, CustomStringConvertible {
    public enum Code: String, Sendable, BitwiseCopyable {
        /// libopus refused an argument: the sample rate, channel count, application, a
        /// setting's value or a frame size it does not encode.
        case badArgument = "opus.bad_argument"
        /// The output buffer cannot hold the packet.
        case bufferTooSmall = "opus.buffer_too_small"
        /// Fewer samples than `frameSize × channels` were given.
        case shortInput = "opus.short_input"
        /// Caller-provided state memory smaller than `OpusEncoder.memorySize(channels:)` or
        /// not 16-byte aligned.
        case badMemory = "opus.bad_memory"
        /// Any other libopus failure (internal error, invalid state).
        case library = "opus.library"
    }

    public var code: Code
    /// libopus's return value (`OPUS_BAD_ARG`, …), or 0 when the check was ours.
    public var libraryCode: Int32

    public init(code: Code, libraryCode: Int32 = 0) {
        self.code = code
        self.libraryCode = libraryCode
    }

    init(libraryCode: Int32) {
        let code: Code =
            switch libraryCode {
            case OPUS_BAD_ARG: .badArgument
            case OPUS_BUFFER_TOO_SMALL: .bufferTooSmall
            default: .library
            }
        self.init(code: code, libraryCode: libraryCode)
    }

    public var description: String {
        libraryCode == 0
            ? code.rawValue : "\(code.rawValue): \(String(cString: opus_strerror(libraryCode))) (\(libraryCode))"
    }
}

/// One Opus encoder (RFC 6716), libopus's state in memory of a known size: either memory the
/// caller provides (a session's slot; the caller keeps it alive and aligned for as long as
/// the encoder lives) or memory the encoder allocates and frees itself.
///
/// ```
/// memory: [ libopus's OpusEncoder state, opus_encoder_get_size(channels) bytes ]   16-byte aligned
/// ```
/// Set up with `opus_encoder_init`, never `opus_encoder_create`: libopus allocates nothing
/// else, so moving a session's slot memory moves nothing behind the encoder's back (the
/// state holds no pointers into itself). `encode` allocates nothing.
public struct OpusEncoder: ~Copyable {
    let state: OpaquePointer
    /// Non-nil when the encoder allocated its memory and frees it in `deinit`.
    let owned: UnsafeMutableRawPointer?
    public let sampleRate: Int32
    public let channels: Int

    /// The bytes of state an encoder of `channels` (1 or 2) needs; 0 for another count.
    /// The corresponding C function is `opus_encoder_get_size`.
    public static func memorySize(channels: Int) -> Int {
        guard channels == 1 || channels == 2 else { return 0 }
        return Int(opus_encoder_get_size(Int32(channels)))
    }

    /// The alignment caller-provided memory must have (what `malloc` gives).
    public static let memoryAlignment = 16

    /// An encoder in caller-provided `memory`, at least `memorySize(channels:)` bytes,
    /// `memoryAlignment`-aligned, kept alive by the caller while the encoder lives.
    /// `sampleRate` is one of 8000, 12000, 16000, 24000, 48000; the application is VoIP.
    /// `bitrate` in bit/s (500 to 512,000), `complexity` 0 to 10.
    /// The corresponding C function is `opus_encoder_init`.
    public init(
        memory: UnsafeMutableRawBufferPointer,
        sampleRate: Int32 = 48_000,
        channels: Int,
        bitrate: Int32 = 32_000,
        complexity: Int32 = 5
    ) throws(OpusCodecError) {
        let needed = OpusEncoder.memorySize(channels: channels)
        guard needed > 0 else { throw OpusCodecError(code: .badArgument, libraryCode: OPUS_BAD_ARG) }
        guard let base = memory.baseAddress, memory.count >= needed,
            Int(bitPattern: base) % OpusEncoder.memoryAlignment == 0
        else { throw OpusCodecError(code: .badMemory) }
        try OpusEncoder.setUp(base, sampleRate, channels, bitrate, complexity)
        state = OpaquePointer(base)
        owned = nil
        self.sampleRate = sampleRate
        self.channels = channels
    }

    /// An encoder in memory it allocates (once) and frees when it goes.
    public init(
        sampleRate: Int32 = 48_000,
        channels: Int,
        bitrate: Int32 = 32_000,
        complexity: Int32 = 5
    )
        throws(OpusCodecError)
    {
        let needed = OpusEncoder.memorySize(channels: channels)
        guard needed > 0 else { throw OpusCodecError(code: .badArgument, libraryCode: OPUS_BAD_ARG) }
        let base = UnsafeMutableRawPointer.allocate(byteCount: needed, alignment: OpusEncoder.memoryAlignment)
        do {
            try OpusEncoder.setUp(base, sampleRate, channels, bitrate, complexity)
        } catch {
            base.deallocate()
            throw error
        }
        state = OpaquePointer(base)
        owned = base
        self.sampleRate = sampleRate
        self.channels = channels
    }

    deinit { owned?.deallocate() }

    private static func setUp(
        _ base: UnsafeMutableRawPointer,
        _ sampleRate: Int32,
        _ channels: Int,
        _ bitrate: Int32,
        _ complexity: Int32
    ) throws(OpusCodecError) {
        let state = OpaquePointer(base)
        var status = opus_encoder_init(state, sampleRate, Int32(channels), OPUS_APPLICATION_VOIP)
        if status == OPUS_OK { status = vox_opus_encoder_set_bitrate(state, bitrate) }
        if status == OPUS_OK { status = vox_opus_encoder_set_complexity(state, complexity) }
        guard status == OPUS_OK else { throw OpusCodecError(libraryCode: status) }
    }

    /// Encodes one frame of `frameSize` samples per channel (2.5, 5, 10, 20, 40 or 60 ms at
    /// the sample rate: 960 is 20 ms at 48 kHz), interleaved when stereo, into `out`: the
    /// packet's length in bytes. `out` of 1,275 bytes holds any single-frame packet (RFC 6716
    /// §3.4). Allocates nothing.
    /// The corresponding C function is `opus_encode`.
    public mutating func encode(
        pcm: UnsafeBufferPointer<Int16>,
        frameSize: Int,
        into out: UnsafeMutableRawBufferPointer
    ) throws(OpusCodecError) -> Int {
        guard frameSize > 0, frameSize <= Int(Int32.max) / channels else {
            throw OpusCodecError(code: .badArgument, libraryCode: OPUS_BAD_ARG)
        }
        guard let input = pcm.baseAddress, pcm.count >= frameSize * channels else {
            throw OpusCodecError(code: .shortInput)
        }
        guard let output = out.baseAddress, out.count > 0 else {
            throw OpusCodecError(code: .bufferTooSmall, libraryCode: OPUS_BUFFER_TOO_SMALL)
        }
        let n = opus_encode(
            state,
            input,
            Int32(frameSize),
            output.assumingMemoryBound(to: UInt8.self),
            Int32(clamping: out.count)
        )
        guard n > 0 else { throw OpusCodecError(libraryCode: n) }
        return Int(n)
    }
}
