import ArgumentParser

/// `voxedge bench`: the micro-benchmarks of the per-packet stages and the end-to-end run.
public struct BenchCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure the engine.",
        subcommands: [MicroBenchCommand.self, EndToEndBenchCommand.self]
    )

    public init() {}
}
