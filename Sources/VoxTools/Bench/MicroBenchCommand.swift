import ArgumentParser
import CVoxAllocCounter
import Foundation
import VoxBenchKit

struct MicroBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "micro",
        abstract: "Run each per-packet stage briefly in this process: ns per packet, allocations per packet.",
        discussion: """
            Stages run interleaved, one pass each per round, so the ratios compare code measured \
            under the same conditions. SRTP stages run over --sessions sessions with their own keys; \
            libsrtp2 and a plain C loop making the same libcrypto calls run beside them. \
            Timings are medians over --runs rounds with min-max; they are reported, never asserted.
            """
    )

    @Flag(help: "Print JSON instead of a table.")
    var json = false

    @Option(help: "Rounds; each stage's figure is the median over them.")
    var runs = 7

    @Option(help: "SRTP sessions, each with its own master key.")
    var sessions = 1000

    @Option(help: "Packets per session per round.")
    var packetsPerSession = 16

    @Option(help: "Only stages whose name contains this text (their baselines are kept for the ratios).")
    var stage: String?

    @Flag(help: """
        Under `valgrind --tool=callgrind --collect-atstart=no`: one round, collecting only the \
        timed passes, one profile part per stage (scripts/callgrind-stages reads them).
        """)
    var callgrind = false

    @Flag(help: "Exit with status 1 if any per-packet stage allocates (CI gates on this).")
    var failOnAllocation = false

    func validate() throws {
        guard runs >= 1, sessions >= 1, packetsPerSession >= 1 else {
            throw ValidationError("--runs, --sessions and --packets-per-session must be at least 1")
        }
    }

    func run() throws {
        let counting = vox_alloc_counter_active() != 0
        let config = MicroBench.Configuration(sessions: sessions, packetsPerSession: packetsPerSession)
        var stages = try MicroBench.stages(config)
        if let filter = stage {
            let wanted = stages.filter { $0.name.contains(filter) }
            let twins = Set(wanted.flatMap { [$0.libsrtp2Twin, $0.cLoopTwin, $0.srtpTwin].compactMap { $0 } })
            stages = stages.filter { $0.name.contains(filter) || twins.contains($0.name) }
            guard !stages.isEmpty else { throw ValidationError("no stage matches '\(filter)'") }
        }
        if callgrind {
            guard vox_running_on_valgrind() != 0 else {
                throw ValidationError("--callgrind needs valgrind --tool=callgrind --collect-atstart=no")
            }
            MicroBench.profile(stages)
            return
        }
        let results = MicroBench.measure(stages, runs: runs, countAllocations: counting)
        let report = MicroBench.Report(
            runs: runs, sessions: sessions, packetsPerSession: packetsPerSession,
            allocationCounting: counting, stages: results)
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            print(report.table())
        }
        if failOnAllocation {
            guard counting else {
                FileHandle.standardError.write(Data("allocation counting is not active: cannot prove 0 allocations\n".utf8))
                throw ExitCode(1)
            }
            let offenders = results.filter { $0.perPacketPath && ($0.allocationsPerPacket ?? 1) > 0 }
            if !offenders.isEmpty {
                let names = offenders.map(\.stage).joined(separator: ", ")
                FileHandle.standardError.write(Data("per-packet stages that allocate: \(names)\n".utf8))
                throw ExitCode(1)
            }
        }
    }
}
