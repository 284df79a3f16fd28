import ArgumentParser
import Foundation
import VoxMedia

/// 16-bit PCM at 48 kHz, mono or stereo, read whole from a WAV file (RIFF/WAVE, a `fmt `
/// chunk of format 1, or 0xFFFE with the PCM sub-format, and a `data` chunk). Anything else
/// is refused with what it is and what is needed.
struct WAVAudio {
    var channels: Int
    /// Interleaved samples.
    var samples: [Int16]

    init(path: String) throws(ValidationError) {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ValidationError("--wav: cannot read '\(path)'")
        }
        let bytes = [UInt8](data)
        func le16(_ o: Int) -> Int { Int(bytes[o]) | Int(bytes[o + 1]) << 8 }
        func le32(_ o: Int) -> Int { le16(o) | le16(o + 2) << 16 }
        func tag(_ o: Int) -> String { String(decoding: bytes[o..<(o + 4)], as: UTF8.self) }
        guard bytes.count >= 12, tag(0) == "RIFF", tag(8) == "WAVE" else {
            throw ValidationError("--wav: '\(path)' is not a RIFF/WAVE file")
        }
        var format: (tag: Int, channels: Int, rate: Int, bits: Int)?
        var pcm: ArraySlice<UInt8>?
        var offset = 12
        while offset + 8 <= bytes.count {
            let size = le32(offset + 4)
            let body = offset + 8
            guard size <= bytes.count - body else { break }  // a truncated last chunk: ignored
            if tag(offset) == "fmt ", size >= 16 {
                var formatTag = le16(body)
                // WAVE_FORMAT_EXTENSIBLE: the real format is the sub-format GUID's first two bytes.
                if formatTag == 0xFFFE, size >= 26 { formatTag = le16(body + 24) }
                format = (formatTag, le16(body + 2), le32(body + 4), le16(body + 14))
            } else if tag(offset) == "data" {
                pcm = bytes[body..<(body + size)]
            }
            offset = body + size + (size & 1)  // chunks are padded to an even length
        }
        guard let format else { throw ValidationError("--wav: '\(path)' has no fmt chunk") }
        guard format.tag == 1, format.bits == 16 else {
            throw ValidationError(
                "--wav: '\(path)' is format \(format.tag), \(format.bits)-bit;"
                    + " backend-sim plays 16-bit PCM (format 1) only"
            )
        }
        guard format.rate == 48_000 else {
            throw ValidationError("--wav: '\(path)' is \(format.rate) Hz; backend-sim plays 48000 Hz only")
        }
        guard format.channels == 1 || format.channels == 2 else {
            throw ValidationError("--wav: '\(path)' has \(format.channels) channels; backend-sim plays mono or stereo")
        }
        guard let pcm, pcm.count >= 2 * format.channels else {
            throw ValidationError("--wav: '\(path)' has no samples")
        }
        let frames = pcm.count / (2 * format.channels)
        channels = format.channels
        samples = (0..<(frames * format.channels)).map { i in
            Int16(bitPattern: UInt16(pcm[pcm.startIndex + 2 * i]) | UInt16(pcm[pcm.startIndex + 2 * i + 1]) << 8)
        }
    }
}

/// Where a session's audio comes from: 20 ms frames at 48 kHz, interleaved.
enum AudioSource {
    /// A sine at −12 dBFS; `phase` in radians, kept across frames so frames join smoothly.
    case tone(hz: Double, phase: Double)
    /// A WAV file, looped; `position` is the next sample frame to play.
    case wav(WAVAudio, position: Int)

    static let frameSamples = 960  // 20 ms at 48 kHz
    static let toneAmplitude = 32_767 * pow(10, -12.0 / 20)

    var channels: Int {
        switch self {
        case .tone: 1
        case .wav(let audio, _): audio.channels
        }
    }

    /// Fills `pcm` (frameSamples × channels) with the next frame.
    mutating func next(into pcm: inout [Int16]) {
        switch self {
        case .tone(let hz, var phase):
            let step = 2 * Double.pi * hz / 48_000
            for i in 0..<AudioSource.frameSamples {
                pcm[i] = Int16(AudioSource.toneAmplitude * sin(phase))
                phase += step
                if phase > 2 * Double.pi { phase -= 2 * Double.pi }
            }
            self = .tone(hz: hz, phase: phase)
        case .wav(let audio, var position):
            let frames = audio.samples.count / audio.channels
            for i in 0..<AudioSource.frameSamples {
                for c in 0..<audio.channels {
                    pcm[i * audio.channels + c] = audio.samples[position * audio.channels + c]
                }
                position = (position + 1) % frames
            }
            self = .wav(audio, position: position)
        }
    }
}

/// One session's RTP stream toward the edge: its own SSRC, sequence and timestamp (random
/// starts, RFC 3550 §5.1), Opus-encoded 20 ms frames, and the schedule that says when the
/// next burst is due.
///
/// Schedule: a run ("spurt") starts at `spurtStart`; burst k of `perBurst` packets is due at
/// `spurtStart + k × burstNs`. A run has a budget of packets (nil: unlimited). A flush
/// starts a new run at real time, one packet per 20 ms.
final class AudioStream {
    var source: AudioSource
    var encoder: OpusEncoder
    let ssrc = UInt32.random(in: 0...UInt32.max)
    var sequence = UInt16.random(in: 0...UInt16.max)
    var timestamp = UInt32.random(in: 0...UInt32.max)
    var marker = true

    var spurtStart: UInt64
    var burstNs: UInt64
    var perBurst: Int
    var sentInSpurt = 0
    var budget: Int?

    private var pcm: [Int16]
    private var packet = [UInt8](repeating: 0, count: 12 + 1_275)

    init(source: AudioSource, start: UInt64, burstNs: UInt64, perBurst: Int, budget: Int?) throws(OpusCodecError) {
        self.source = source
        encoder = try OpusEncoder(channels: source.channels, bitrate: source.channels == 1 ? 32_000 : 64_000)
        pcm = [Int16](repeating: 0, count: AudioSource.frameSamples * source.channels)
        spurtStart = start
        self.burstNs = burstNs
        self.perBurst = perBurst
        self.budget = budget
    }

    /// When the next burst is due; nil when the run's budget is spent.
    var nextDue: UInt64? {
        if let budget, sentInSpurt >= budget { return nil }
        return spurtStart + UInt64(sentInSpurt / perBurst) * burstNs
    }

    /// Starts a new run now: `source` from here on, at real time, `budget` packets, marked.
    func restart(source: AudioSource, now: UInt64, budget: Int) {
        self.source = source
        spurtStart = now
        burstNs = 20_000_000
        perBurst = 1
        sentInSpurt = 0
        self.budget = budget
        marker = true
    }

    /// Encodes the next frame into an RTP packet with `payloadType`; calls `send` with the
    /// packet, its sequence, timestamp and payload. Returns false if the encoder failed.
    func sendNext(
        payloadType: UInt8,
        _ send: (_ packet: ArraySlice<UInt8>, UInt16, UInt32, ArraySlice<UInt8>) -> Void
    )
        -> Bool
    {
        source.next(into: &pcm)
        let n: Int
        do {
            n = try pcm.withUnsafeBufferPointer { p in
                try packet.withUnsafeMutableBytes { out in
                    try encoder.encode(
                        pcm: p,
                        frameSize: AudioSource.frameSamples,
                        into: UnsafeMutableRawBufferPointer(rebasing: out[12...])
                    )
                }
            }
        } catch {
            return false
        }
        packet[0] = 0x80
        packet[1] = (marker ? 0x80 : 0) | payloadType
        packet[2] = UInt8(sequence >> 8)
        packet[3] = UInt8(sequence & 0xFF)
        for i in 0..<4 {
            packet[4 + i] = UInt8(truncatingIfNeeded: timestamp >> (24 - 8 * i))
            packet[8 + i] = UInt8(truncatingIfNeeded: ssrc >> (24 - 8 * i))
        }
        send(packet[0..<(12 + n)], sequence, timestamp, packet[12..<(12 + n)])
        marker = false
        sequence &+= 1
        timestamp &+= UInt32(AudioSource.frameSamples)
        sentInSpurt += 1
        return true
    }
}
