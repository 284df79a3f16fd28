import ArgumentParser
import VoxTools

@main
struct VoxEdgeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "voxedge",
        abstract: "An edge media engine for real-time voice AI: WebRTC audio in, inference backends out.",
        subcommands: [DemoCommand.self, RunCommand.self, ControlCommand.self, BackendSimCommand.self, DemoCallersCommand.self, BenchCommand.self, XDPCommand.self, LoadgenCommand.self, TokenCommand.self]
    )
}
