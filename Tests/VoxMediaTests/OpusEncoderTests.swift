import COpus
import CVoxAllocCounter
import Foundation
import Testing
import VoxMedia

/// The Opus encoder, checked against libopus's own decoder as the oracle: what comes out of
/// the decoder must be the tone that went in (its frequency and level), mono and stereo, in
/// memory of its own or the caller's; every wrong argument is refused with its code.
@Suite struct OpusEncoderTests {
    static let rate = 48_000
    static let frame = 960  // 20 ms

    /// `frames` 20 ms frames of a sine at `hz`, `dBFS` peak, interleaved over `channels`.
    static func tone(hz: Double, dBFS: Double, frames: Int, channels: Int) -> [Int16] {
        let amplitude = 32_767 * pow(10, dBFS / 20)
        return (0..<(frames * frame)).flatMap { i in
            let v = Int16(amplitude * sin(2 * Double.pi * hz * Double(i) / Double(rate)))
            return [Int16](repeating: v, count: channels)
        }
    }

    /// Encodes `pcm` frame by frame, decodes each packet with libopus, returns the decoded
    /// samples of the first channel and the packets' sizes.
    static func roundTrip(_ encoder: inout OpusEncoder, _ pcm: [Int16]) throws -> (samples: [Int16], sizes: [Int]) {
        let channels = encoder.channels
        var status: Int32 = 0
        let decoder = opus_decoder_create(Int32(rate), Int32(channels), &status)!
        defer { opus_decoder_destroy(decoder) }
        #expect(status == OPUS_OK)
        var packet = [UInt8](repeating: 0, count: 1_275)
        var decoded = [Int16](repeating: 0, count: frame * channels)
        var samples: [Int16] = []
        var sizes: [Int] = []
        for f in 0..<(pcm.count / (frame * channels)) {
            let n = try pcm.withUnsafeBufferPointer { p in
                try packet.withUnsafeMutableBytes { out in
                    try encoder.encode(
                        pcm: UnsafeBufferPointer(rebasing: p[(f * frame * channels)...]),
                        frameSize: frame,
                        into: out
                    )
                }
            }
            sizes.append(n)
            let got = opus_decode(decoder, packet, Int32(n), &decoded, Int32(frame), 0)
            #expect(got == Int32(frame))
            samples += stride(from: 0, to: decoded.count, by: channels).map { decoded[$0] }
        }
        return (samples, sizes)
    }

    /// The frequency (10 Hz steps, 100 Hz to 4 kHz) with the most energy (Goertzel), and the
    /// signal's level as a sine's peak in dBFS.
    static func analyse(_ samples: ArraySlice<Int16>) -> (hz: Double, dBFS: Double) {
        let x = samples.map { Double($0) / 32_768 }
        var best = (hz: 0.0, power: -1.0)
        for hz in stride(from: 100.0, through: 4_000, by: 10) {
            let c = 2 * cos(2 * Double.pi * hz / Double(rate))
            var s1 = 0.0
            var s2 = 0.0
            for v in x {
                let s = v + c * s1 - s2
                s2 = s1
                s1 = s
            }
            let power = s1 * s1 + s2 * s2 - c * s1 * s2
            if power > best.power { best = (hz, power) }
        }
        let rms = (x.reduce(0) { $0 + $1 * $1 } / Double(x.count)).squareRoot()
        return (best.hz, 20 * log10(rms * 2.0.squareRoot()))
    }

    @Test func monoToneDecodesToTheSameToneAndLevel() throws {
        var encoder = try OpusEncoder(channels: 1, bitrate: 32_000, complexity: 5)
        let (samples, sizes) = try Self.roundTrip(&encoder, Self.tone(hz: 440, dBFS: -12, frames: 50, channels: 1))
        // The first frames carry the encoder's look-ahead; judge the settled second half.
        let (hz, level) = Self.analyse(samples[(samples.count / 2)...])
        #expect(abs(hz - 440) <= 10, "dominant \(hz) Hz")
        #expect(abs(level - -12) <= 1.5, "level \(level) dBFS")
        // 32 kbit/s at 20 ms is 80 bytes a frame; a silent or broken encoder makes a few bytes.
        #expect(sizes.allSatisfy { $0 > 10 && $0 <= 1_275 })
        let average = Double(sizes.dropFirst(5).reduce(0, +)) / Double(sizes.count - 5)
        #expect(average > 40 && average < 120, "average packet \(average) bytes")
    }

    @Test func stereoInCallerMemoryDecodesToTheTone() throws {
        let size = OpusEncoder.memorySize(channels: 2)
        #expect(size > OpusEncoder.memorySize(channels: 1) && size > 0)
        let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: OpusEncoder.memoryAlignment)
        defer { memory.deallocate() }
        memory.initializeMemory(as: UInt8.self, repeating: 0xA5)  // garbage: init must not rely on zeros
        var encoder = try OpusEncoder(memory: memory, channels: 2, bitrate: 64_000, complexity: 10)
        let (samples, _) = try Self.roundTrip(&encoder, Self.tone(hz: 1_000, dBFS: -6, frames: 40, channels: 2))
        let (hz, level) = Self.analyse(samples[(samples.count / 2)...])
        #expect(abs(hz - 1_000) <= 10, "dominant \(hz) Hz")
        #expect(abs(level - -6) <= 1.5, "level \(level) dBFS")
    }

    @Test func encodingAllocatesNothing() throws {
        guard vox_alloc_counter_active() == 1 else {
            Issue.record("the counting allocator is not linked")
            return
        }
        var encoder = try OpusEncoder(channels: 2)
        let tone = Self.tone(hz: 300, dBFS: -20, frames: 20, channels: 2)
        let pcm = UnsafeMutableBufferPointer<Int16>.allocate(capacity: tone.count)
        defer { pcm.deallocate() }
        _ = pcm.initialize(from: tone)
        let out = UnsafeMutableRawBufferPointer.allocate(byteCount: 1_275, alignment: 8)
        defer { out.deallocate() }
        let stride = Self.frame * 2
        var bytes = try encoder.encode(pcm: UnsafeBufferPointer(pcm), frameSize: Self.frame, into: out)  // warm up
        let before = vox_thread_alloc_count()
        var f = 1
        while f < 20 {
            bytes += try encoder.encode(
                pcm: UnsafeBufferPointer(rebasing: pcm[(f * stride)..<((f + 1) * stride)]),
                frameSize: Self.frame,
                into: out
            )
            f += 1
        }
        let allocations = vox_thread_alloc_count() - before
        #expect(allocations == 0)
        #expect(bytes > 20 * 10)
    }

    /// The code `body` throws, nil when it throws nothing (anything else than an
    /// OpusCodecError fails the test).
    static func code(_ body: () throws -> Void) -> OpusCodecError.Code? {
        do {
            try body()
            return nil
        } catch let error as OpusCodecError {
            return error.code
        } catch {
            Issue.record("not an OpusCodecError: \(error)")
            return nil
        }
    }

    @Test func wrongSetUpIsRefusedWithItsCode() throws {
        #expect(OpusEncoder.memorySize(channels: 0) == 0)
        #expect(OpusEncoder.memorySize(channels: 3) == 0)
        #expect(Self.code { _ = try OpusEncoder(channels: 3) } == .badArgument)
        #expect(Self.code { _ = try OpusEncoder(channels: 0) } == .badArgument)
        #expect(Self.code { _ = try OpusEncoder(sampleRate: 44_100, channels: 1) } == .badArgument)
        #expect(Self.code { _ = try OpusEncoder(channels: 1, bitrate: -5) } == .badArgument)
        #expect(Self.code { _ = try OpusEncoder(channels: 1, complexity: 11) } == .badArgument)

        let size = OpusEncoder.memorySize(channels: 1)
        let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: size + 16, alignment: 16)
        defer { memory.deallocate() }
        #expect(
            Self.code {
                _ = try OpusEncoder(
                    memory: UnsafeMutableRawBufferPointer(rebasing: memory[0..<(size - 1)]),
                    channels: 1
                )
            } == .badMemory
        )
        #expect(
            Self.code {
                _ = try OpusEncoder(memory: UnsafeMutableRawBufferPointer(rebasing: memory[1...]), channels: 1)
            } == .badMemory
        )
        #expect(
            Self.code { _ = try OpusEncoder(memory: UnsafeMutableRawBufferPointer(start: nil, count: 0), channels: 1) }
                == .badMemory
        )
        #expect(
            Self.code {
                _ = try OpusEncoder(memory: UnsafeMutableRawBufferPointer(rebasing: memory[0..<size]), channels: 1)
            } == nil
        )
    }

    @Test func wrongFramesAreRefusedAndTheEncoderGoesOn() throws {
        var encoder = try OpusEncoder(channels: 2)
        let pcm = Self.tone(hz: 500, dBFS: -12, frames: 2, channels: 2)
        var out = [UInt8](repeating: 0, count: 1_275)
        func encode(_ count: Int, frameSize: Int, outBytes: Int = 1_275) -> OpusCodecError.Code? {
            Self.code {
                try pcm.withUnsafeBufferPointer { p in
                    try out.withUnsafeMutableBytes { o in
                        _ = try encoder.encode(
                            pcm: UnsafeBufferPointer(rebasing: p[0..<count]),
                            frameSize: frameSize,
                            into: UnsafeMutableRawBufferPointer(rebasing: o[0..<outBytes])
                        )
                    }
                }
            }
        }
        #expect(encode(961 * 2, frameSize: 961) == .badArgument)  // not 2.5/5/10/20/40/60 ms
        #expect(encode(1_920, frameSize: 0) == .badArgument)
        #expect(encode(1_920, frameSize: -960) == .badArgument)
        #expect(encode(1_919, frameSize: 960) == .shortInput)  // stereo: 960 × 2 samples
        #expect(encode(0, frameSize: 960) == .shortInput)
        #expect(encode(1_920, frameSize: 960, outBytes: 0) == .bufferTooSmall)
        #expect(encode(1_920, frameSize: 960) == nil)
        #expect(encode(480 * 2, frameSize: 480) == nil)  // 10 ms is a valid frame too
    }
}
