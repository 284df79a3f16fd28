// swift-tools-version: 6.1
import Foundation
import PackageDescription

// A path dependency is known by its directory's name: whatever the clone is called.
let engine = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().lastPathComponent

// package-benchmark suite for VoxEdge's per-packet stages, a nested package as swift-nio
// keeps its benchmarks: the engine's own build does not pull in the benchmark framework.
// Run from this directory: `swift package benchmark` (see docs/benchmarks.md).
let package = Package(
    name: "voxedge-benchmarks",
    dependencies: [
        .package(path: "../"),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "PacketPath",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "VoxBenchKit", package: engine),
            ],
            path: "Benchmarks/PacketPath",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        )
    ]
)
