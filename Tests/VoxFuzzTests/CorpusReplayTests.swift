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
    func everyCorpusFileReplays(target: FuzzTarget) throws {
        let files = Self.files(target)
        // A target without a corpus would replay nothing and pass: each has seeds.
        #expect(files.count >= 3, "Tests/Fixtures/fuzz/\(target.rawValue) holds \(files.count) inputs")
        for file in files {
            target.run([UInt8](try Data(contentsOf: file)))
        }
    }

    /// The harness's own edges: empty input, one byte, a length prefix past the end.
    @Test(arguments: FuzzTarget.allCases)
    func degenerateInputsAreRefusedQuietly(target: FuzzTarget) {
        target.run([])
        target.run([0x00])
        target.run([0xFF])
        target.run([0x00, 0xFF, 0xFF, 0x01])
        target.run([UInt8](repeating: 0x0A, count: 700))
    }
}
