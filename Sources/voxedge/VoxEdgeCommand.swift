import ArgumentParser

@main
struct VoxEdgeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "voxedge",
        abstract: "An edge media engine for real-time voice AI: WebRTC audio in, inference backends out.",
        subcommands: [DemoCommand.self, RunCommand.self, ControlCommand.self, BackendSimCommand.self, DemoCallersCommand.self, BenchCommand.self, XDPCommand.self, LoadgenCommand.self]
    )
}

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure the engine.",
        subcommands: [MicroBenchCommand.self, EndToEndBenchCommand.self]
    )
}
