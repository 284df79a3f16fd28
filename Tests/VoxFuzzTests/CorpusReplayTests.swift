import Foundation
import Testing
import VoxFuzz

/// CI's share of the fuzzing: every committed corpus file (Tests/Fixtures/fuzz/<target>/,
/// the seeds and what `scripts/fuzz` kept, crashers included once fixed) runs through the
/// same `FuzzTarget.run` the libFuzzer binary calls. A trap or a failed property ends this
/// process, which fails the suite.
@Suite struct CorpusReplayTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/fuzz")

    static func files(_ target: FuzzTarget) -> [URL] {
        let dir = root.appendingPathComponent(target.rawValue)
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
        return names.sorted().map { dir.appendingPathComponent($0) }
    }

    @Test(arguments: FuzzTarget.allCases)
    func everyCorpusFileReplays(target: FuzzTarget) async throws {
        let files = Self.files(target)
        // A target without a corpus would replay nothing and pass: each has seeds.
        #expect(files.count >= 3, "Tests/Fixtures/fuzz/\(target.rawValue) holds \(files.count) inputs")
        let inputs = try files.map { [UInt8](try Data(contentsOf: $0)) }
        await onAThread { for input in inputs { target.run(input) } }
    }

    /// The harness's own edges: empty input, one byte, a length prefix past the end.
    @Test(arguments: FuzzTarget.allCases)
    func degenerateInputsAreRefusedQuietly(target: FuzzTarget) async {
        await onAThread {
            target.run([])
            target.run([0x00])
            target.run([0xFF])
            target.run([0x00, 0xFF, 0xFF, 0x01])
            target.run([UInt8](repeating: 0x0A, count: 700))
        }
    }
}

/// Runs `body` on a thread of its own, as libFuzzer runs a target: the `signaling` target
/// blocks its thread until the service answers, which must not be one of the concurrency
/// pool's (on two cores, two blocked pool threads would leave none to answer).
func onAThread(_ body: @escaping @Sendable () -> Void) async {
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
        Thread {
            body()
            continuation.resume()
        }.start()
    }
}
