import Foundation
import Testing

@testable import VoxSignaling

/// The fuzz entry point: its seeds reach the rules they are meant to reach, and mutated inputs
/// (seeded, so a failure repeats) go through without a crash or a hang.
@Suite struct SignalingFuzzTests {
    @Test func seedsReachTheRules() async throws {
        let seeds = await onAThread { SignalingFuzz.seedInputs() }
        #expect(seeds.count == 3)
        let service = await SignalingFuzz.service()
        #expect(await SignalingFuzz.respond(service, seeds[0]).status == .created)
        #expect(await SignalingFuzz.respond(service, seeds[1]).status == .notFound)
        #expect(await SignalingFuzz.respond(service, seeds[2]).status == .noContent)
        // The same POST without its audio m-line: the fuzz engine's refusal comes back as a 400.
        let noAudio = String(decoding: seeds[0], as: UTF8.self).replacingOccurrences(of: "m=audio", with: "m=video")
        #expect(await SignalingFuzz.respond(service, Array(noAudio.utf8)).status == .badRequest)
    }

    /// The committed seeds' tokens (make-seeds.py, expiring in 2100) verify: the corpus CI
    /// replays reaches past the token check, and the refusals seeded are the ones named.
    @Test func committedSeedsReachTheRules() async throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/fuzz/signaling")
        let service = await SignalingFuzz.service()
        func status(_ name: String) async throws -> Int {
            let input = [UInt8](try Data(contentsOf: dir.appendingPathComponent("seed-" + name)))
            return await SignalingFuzz.respond(service, input).status.code
        }
        #expect(try await status("post") == 201)
        #expect(try await status("lf-only") == 201)
        #expect(try await status("post-no-token") == 401)
        #expect(try await status("post-expired") == 401)
        #expect(try await status("post-wrong-aud") == 401)
        #expect(try await status("post-alg-none") == 401)
        #expect(try await status("post-json") == 415)
        #expect(try await status("post-no-audio") == 400)
        #expect(try await status("patch") == 405)
        #expect(try await status("options") == 204)
    }

    @Test func mutatedInputsGoThrough() async {
        await onAThread { Self.mutate() }
    }

    /// 400 seeded mutations of the seeds, and two degenerate inputs, through `fuzzOne`.
    static func mutate() {
        var random = SplitMix(seed: 0x5eed)
        let seeds = SignalingFuzz.seedInputs()
        for i in 0..<400 {
            var input = seeds[i % seeds.count]
            for _ in 0..<(1 + Int(random.next() % 8)) {
                let at = Int(random.next() % UInt64(input.count + 1))
                switch random.next() % 4 {
                case 0: if at < input.count { input[at] = UInt8(truncatingIfNeeded: random.next()) }
                case 1: input.insert(UInt8(truncatingIfNeeded: random.next()), at: at)
                case 2: if at < input.count { input.remove(at: at) }
                default: input.insert(contentsOf: input[at...].prefix(64), at: at)
                }
            }
            input.withUnsafeBytes { SignalingFuzz.fuzzOne($0) }
        }
        [UInt8]().withUnsafeBytes { SignalingFuzz.fuzzOne($0) }
        Array(repeating: UInt8(0x0a), count: 70000).withUnsafeBytes { SignalingFuzz.fuzzOne($0) }
    }
}

/// Runs `body` on a thread of its own: `fuzzOne` blocks its thread, as a fuzzer's would be,
/// which must not be one of the concurrency pool's.
func onAThread<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        let thread = Thread { continuation.resume(returning: body()) }
        thread.start()
    }
}

struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}
