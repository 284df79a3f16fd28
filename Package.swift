// swift-tools-version: 6.1
import PackageDescription

// One target per concern, imported downwards only; the folder list reads as the packet's path.
// docs/architecture.md draws the graph and holds the table a test checks every `import` against:
//   C system libraries ← VoxWire ← VoxMedia ← VoxIO, VoxXDP ← VoxRouting ← VoxEngine ← VoxControl
//   ← VoxTools (loadgen, demo, bench, backend-sim) ← voxedge (the CLI only)
let package = Package(
    name: "voxedge",
    products: [
        .executable(name: "voxedge", targets: ["voxedge"]),
        .executable(name: "voxedge-fuzz", targets: ["VoxFuzzRunner"]),
        .library(name: "VoxWire", targets: ["VoxWire"]),
        .library(name: "VoxMedia", targets: ["VoxMedia"]),
        .library(name: "VoxXDP", targets: ["VoxXDP"]),
        .library(name: "VoxRouting", targets: ["VoxRouting"]),
        .library(name: "VoxEngine", targets: ["VoxEngine"]),
        .library(name: "VoxBenchKit", targets: ["VoxBenchKit"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
        // The control plane's I/O (DESIGN §6): the control socket on swift-nio, metrics and
        // health on Hummingbird (without its swift-configuration trait), swift-metrics
        // exported by swift-prometheus.
        .package(url: "https://github.com/apple/swift-nio", from: "2.81.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: []),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.0.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        // The public signaling listener: HTTP/1.1 on HummingbirdCore, TLS on swift-nio-ssl
        // (a reloadable context per connection), JWT tokens (jwt-kit 5, HS256 and ES256).
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.2"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.34.1"),
        .package(url: "https://github.com/vapor/jwt-kit", from: "5.7.1"),
    ],
    targets: [
        // System libraries, each wrapped once: a module map plus a shim header with
        // `static inline` wrappers for what Swift cannot import (macros, variadics).
        .systemLibrary(name: "CXDP", pkgConfig: "libxdp", providers: [.apt(["libxdp-dev", "libbpf-dev"])]),
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CSRTP", pkgConfig: "libsrtp2", providers: [.apt(["libsrtp2-dev"])]),
        .systemLibrary(name: "COpus", pkgConfig: "opus", providers: [.apt(["libopus-dev"])]),
        // The header the XDP program and Swift share (bpf/voxedge_shared.h): map layouts,
        // counter indices, names. Its module map points into bpf/, so there is one copy.
        .systemLibrary(name: "CVoxBPF"),

        // The plain C loop `voxedge bench micro` compares our SRTP against: the same
        // libcrypto calls with nothing around them.
        .target(
            name: "CVoxCryptoRef",
            dependencies: ["COpenSSL"],
            linkerSettings: [.linkedLibrary("crypto")]
        ),
        // Counts malloc/calloc/realloc calls of the whole process (glibc allows the main
        // program to replace malloc). Linked into the `voxedge` executable only.
        .target(name: "CVoxAllocCounter"),

        .target(name: "VoxWire"),
        .target(name: "VoxMedia", dependencies: ["VoxWire", "COpenSSL", "COpus"]),
        // _GNU_SOURCE-only Linux calls (recvmmsg/sendmmsg), compiled with prefixed names.
        .target(name: "CVoxLinux"),
        .target(name: "VoxIO", dependencies: ["CXDP", "CVoxLinux", "VoxWire"]),
        // The XDP program's loader: load, attach through a bpf_link, typed map access.
        .target(name: "VoxXDP", dependencies: ["CXDP", "CVoxBPF", "VoxWire"]),
        // Backends, their published snapshots and next hops (the routing issue fills it).
        .target(
            name: "VoxRouting",
            dependencies: ["VoxWire", "VoxMedia", "VoxIO", .product(name: "Logging", package: "swift-log")]
        ),
        // Workers and their runtime: threads, loops, the XDP data plane's assembly, the
        // session table, command rings, configuration.
        .target(
            name: "VoxEngine",
            dependencies: [
                "VoxWire", "VoxMedia", "VoxIO", "VoxXDP", "VoxRouting", "CXDP", "CVoxLinux",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The control plane: control socket (swift-nio), metrics and health (Hummingbird).
        .target(
            name: "VoxControl",
            dependencies: [
                "VoxEngine", "VoxSignaling", "VoxRouting", "VoxIO", "VoxWire", "VoxMedia", "VoxXDP", .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Hummingbird", package: "hummingbird"), .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        // The public signaling listener (WHIP-style POST of an SDP offer) over HTTPS with tokens.
        // Knows the engine only through its `SignalingEngine` protocol; VoxControl implements it.
        .target(
            name: "VoxSignaling",
            dependencies: [
                "VoxMedia", .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"), .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "JWTKit", package: "jwt-kit"),
            ]
        ),
        // Reference peers: libsrtp2 behind a small Swift surface, and OpenSSL's own DTLS client.
        // The oracles for tests, the baselines for benchmarks.
        .target(name: "VoxSRTPReference", dependencies: ["VoxMedia", "CSRTP", "COpenSSL"]),
        // Seeded randomness and hex vectors for tests and benchmark fixtures.
        .target(name: "VoxTestKit"),
        // The micro-benchmark stages, shared by `voxedge bench micro` and Benchmarks/.
        .target(
            name: "VoxBenchKit",
            dependencies: [
                "VoxWire", "VoxMedia", "VoxIO", "VoxRouting", "VoxEngine", "VoxSRTPReference", "CVoxCryptoRef", "VoxTestKit",
            ]
        ),
        // The tools beside the engine: load generator, demo, benchmarks, backend simulator.
        .target(
            name: "VoxTools",
            dependencies: [
                "VoxWire", "VoxMedia", "VoxIO", "VoxXDP", "VoxControl", "VoxBenchKit", "VoxSRTPReference",
                "CXDP", "CVoxLinux", "CVoxAllocCounter", "COpenSSL",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // The CLI only. CVoxAllocCounter's malloc must be in the executable (glibc lets the
        // main program replace malloc), so `bench micro` can count.
        .executableTarget(
            name: "voxedge",
            dependencies: [
                "VoxTools", "VoxControl", "VoxEngine", "VoxSignaling", "VoxXDP", "VoxWire", "CVoxLinux", "CVoxAllocCounter",
                .product(name: "Logging", package: "swift-log"), .product(name: "Yams", package: "Yams"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        // The fuzz targets: one entry point per parser that sees outside bytes, run by the
        // libFuzzer binary (`scripts/fuzz`) and replayed over the committed corpora by
        // VoxFuzzTests in the ordinary build (docs/reliability.md).
        .target(
            name: "VoxFuzz",
            dependencies: [
                "VoxWire", "VoxMedia", "VoxEngine", "VoxControl", "VoxSignaling", .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "Yams", package: "Yams"),
            ]
        ),
        // The fuzz binary: libFuzzer's main under `scripts/fuzz`, a corpus replayer otherwise.
        .executableTarget(name: "VoxFuzzRunner", dependencies: ["VoxFuzz"]),

        .testTarget(name: "VoxWireTests", dependencies: ["VoxWire", "VoxTestKit"]),
        // Links the counting allocator: the backend protocol's codec and the pacing queue
        // prove they allocate nothing.
        .testTarget(
            name: "VoxMediaTests",
            dependencies: [
                "VoxMedia", "VoxWire", "VoxSRTPReference", "COpenSSL", "COpus", "CVoxAllocCounter", "VoxTestKit",
            ]
        ),
        // Links the counting allocator too, so the churn test can prove it allocates nothing.
        .testTarget(
            name: "VoxEngineTests",
            dependencies: [
                "VoxEngine", "VoxRouting", "VoxIO", "VoxWire", "VoxMedia", "VoxSRTPReference", "CVoxAllocCounter", "VoxTestKit",
            ]
        ),
        .testTarget(
            name: "VoxControlTests",
            dependencies: [
                "VoxControl", "VoxEngine", "VoxSignaling", "VoxMedia", "VoxWire", "VoxTestKit", "COpenSSL",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "VoxSignalingTests",
            dependencies: [
                "VoxSignaling", "VoxMedia", .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"), .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
            ]
        ),
        // Privileged: BPF_PROG_TEST_RUN, veth/netns attach tests, and VoxIO's netlink next-hop
        // resolution over the same namespaces (root; CI=true fails without it).
        .testTarget(
            name: "VoxXDPTests",
            dependencies: [
                "VoxXDP", "VoxIO", "VoxWire", "CVoxBPF", "CVoxLinux", "CXDP", "VoxEngine", "VoxMedia", "VoxRouting",
            ]
        ),
        // Reads the sources' imports against docs/architecture.md and this file.
        // Replays every committed fuzz corpus through the targets (no fuzzing build needed).
        .testTarget(name: "VoxRoutingTests", dependencies: ["VoxRouting", "VoxWire", "VoxMedia", "VoxTestKit"]),
        .testTarget(name: "VoxFuzzTests", dependencies: ["VoxFuzz"]),
        .testTarget(name: "ArchitectureTests"),
        .testTarget(name: "SystemLibrariesTests", dependencies: ["CXDP", "COpenSSL", "CSRTP", "COpus"]),
    ],
    swiftLanguageModes: [.v6]
)
