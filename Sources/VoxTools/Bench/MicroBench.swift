import CVoxAllocCounter
import Foundation
import VoxBenchKit

/// Measuring and reporting for `voxedge bench micro`; the stages live in VoxBenchKit.
extension MicroBench {
    struct Result: Codable {
        var stage: String
        var perPacketPath: Bool
        var packetsPerRun: Int
        var nsPerPacket: Double
        var minNsPerPacket: Double
        var maxNsPerPacket: Double
        /// nil when allocation counting is not active.
        var allocationsPerPacket: Double?
        /// libsrtp2's time over ours, same operation and profile (higher is better).
        var speedupOverLibsrtp2: Double?
        /// Our time over the plain C loop's, same operation and profile (1.0 = equal).
        var ratioToCLoop: Double?
        /// A whole packet's time over the SRTP operation's alone.
        var ratioToSRTPAlone: Double?
    }

    struct Report: Codable {
        var runs: Int
        var sessions: Int
        var packetsPerSession: Int
        var allocationCounting: Bool
        var stages: [Result]

        func table() -> String {
            var lines: [String] = []
            let header = ["stage", "ns/pkt", "min-max", "allocs/pkt", "vs libsrtp2", "vs C loop", "vs SRTP alone"]
            var rows: [[String]] = [header]
            for r in stages {
                rows.append([
                    r.stage + (r.perPacketPath ? "" : " *"),
                    String(format: "%.0f", r.nsPerPacket),
                    String(format: "%.0f-%.0f", r.minNsPerPacket, r.maxNsPerPacket),
                    r.allocationsPerPacket.map { String(format: "%.2f", $0) } ?? "n/a",
                    r.speedupOverLibsrtp2.map { String(format: "%.1fx faster", $0) } ?? "",
                    r.ratioToCLoop.map { String(format: "%.2fx", $0) } ?? "",
                    r.ratioToSRTPAlone.map { String(format: "%.2fx", $0) } ?? "",
                ])
            }
            let widths = (0..<header.count).map { c in rows.map { $0[c].count }.max() ?? 0 }
            for (i, row) in rows.enumerated() {
                lines.append(
                    row.enumerated().map { c, cell in
                        c == 0 ? cell.padding(toLength: widths[c], withPad: " ", startingAt: 0)
                            : String(repeating: " ", count: widths[c] - cell.count) + cell
                    }.joined(separator: "  "))
                if i == 0 { lines.append(String(repeating: "-", count: lines[0].count)) }
            }
            lines.append("")
            lines.append(
                "\(runs) rounds, median (min-max); \(sessions) sessions x \(packetsPerSession) packets per round; "
                    + "* = not gated on allocations: a baseline, or session set-up rather than the packet path.")
            if !allocationCounting { lines.append("allocation counting is not active in this binary") }
            return lines.joined(separator: "\n")
        }
    }

    static func nanoseconds(_ d: Duration) -> Double {
        let c = d.components
        return Double(c.seconds) * 1e9 + Double(c.attoseconds) / 1e9
    }

    /// Under callgrind: each stage's timed pass alone, dumped as a profile part named
    /// "<stage>|<packets>", after an uncollected warm-up pass.
    static func profile(_ stages: [Stage]) {
        for stage in stages {
            stage.setup()
            _ = stage.body()
            stage.setup()
            vox_callgrind_toggle_collect()
            let ok = stage.body()
            vox_callgrind_toggle_collect()
            precondition(ok == stage.packets, "\(stage.name): \(ok) of \(stage.packets) packets succeeded")
            vox_callgrind_dump("\(stage.name)|\(stage.packets)")
        }
    }

    /// Runs every stage once per round, rounds interleaved, and summarises.
    static func measure(_ stages: [Stage], runs: Int, countAllocations: Bool) -> [Result] {
        var times = Array(repeating: [Double](), count: stages.count)
        var partTimes = Array(repeating: [Double](), count: stages.count)
        var allocations = Array(repeating: UInt64(0), count: stages.count)
        let clock = ContinuousClock()
        // One untimed warm-up round.
        for stage in stages {
            stage.setup()
            _ = stage.body()
        }
        for _ in 0..<runs {
            for (i, stage) in stages.enumerated() {
                stage.setup()
                let before = vox_alloc_count()
                let start = clock.now
                let ok = stage.body()
                let elapsed = clock.now - start
                allocations[i] += vox_alloc_count() - before
                precondition(ok == stage.packets, "\(stage.name): \(ok) of \(stage.packets) packets succeeded")
                times[i].append(nanoseconds(elapsed) / Double(stage.packets))
                if let part = stage.part { partTimes[i].append(nanoseconds(part.elapsed()) / Double(stage.packets)) }
            }
        }
        var results: [Result] = stages.enumerated().map { i, stage in
            let sorted = times[i].sorted()
            return Result(
                stage: stage.name, perPacketPath: stage.perPacketPath, packetsPerRun: stage.packets,
                nsPerPacket: sorted[sorted.count / 2], minNsPerPacket: sorted.first!, maxNsPerPacket: sorted.last!,
                allocationsPerPacket: countAllocations ? Double(allocations[i]) / Double(stage.packets * runs) : nil)
        }
        for (i, stage) in stages.enumerated() {
            guard let part = stage.part else { continue }
            let sorted = partTimes[i].sorted()
            results.append(
                Result(
                    stage: part.name, perPacketPath: false, packetsPerRun: stage.packets,
                    nsPerPacket: sorted[sorted.count / 2], minNsPerPacket: sorted.first!, maxNsPerPacket: sorted.last!,
                    allocationsPerPacket: nil))
        }
        for (i, stage) in stages.enumerated() {
            if let twin = stage.libsrtp2Twin, let t = results.first(where: { $0.stage == twin }) {
                results[i].speedupOverLibsrtp2 = t.nsPerPacket / results[i].nsPerPacket
            }
            if let twin = stage.cLoopTwin, let t = results.first(where: { $0.stage == twin }) {
                results[i].ratioToCLoop = results[i].nsPerPacket / t.nsPerPacket
            }
            if let twin = stage.srtpTwin, let t = results.first(where: { $0.stage == twin }) {
                results[i].ratioToSRTPAlone = results[i].nsPerPacket / t.nsPerPacket
            }
        }
        return results
    }
}
