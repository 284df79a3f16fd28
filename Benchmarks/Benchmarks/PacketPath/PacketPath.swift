import Benchmark
import VoxBenchKit

/// Every stage of `voxedge bench micro` as a package-benchmark benchmark: one iteration is
/// one pass over 1,000 sessions x 16 packets, its fresh-state setup excluded from the
/// measurement. Allocations are gated (0 on our packet path); time is reported, not gated.
let benchmarks: @Sendable () -> Void = {
    let configuration = MicroBench.Configuration(sessions: 1000, packetsPerSession: 16)
    let stages: [MicroBench.Stage]
    do {
        stages = try MicroBench.stages(configuration)
    } catch {
        fatalError("benchmark setup failed: \(error)")
    }
    for stage in stages {
        Benchmark(
            stage.name,
            configuration: .init(
                // No OS metrics (.cpuTotal, ...): their sampling thread allocates during the
                // measured region, and the malloc count is process-wide.
                metrics: [.wallClock, .throughput, .mallocCountTotal],
                timeUnits: .microseconds,
                warmupIterations: 1,
                scalingFactor: .one,
                maxDuration: .seconds(3),
                maxIterations: 50,
                // Gate allocations only: timings on these VMs move by more than any threshold.
                thresholds: stage.perPacketPath ? [.mallocCountTotal: .init(absolute: [.p100: 0])] : [:]
            )
        ) { benchmark in
            stage.setup()
            benchmark.startMeasurement()
            let ok = stage.body()
            benchmark.stopMeasurement()
            precondition(ok == stage.packets, "\(stage.name): \(ok) of \(stage.packets) packets succeeded")
        }
    }
}
