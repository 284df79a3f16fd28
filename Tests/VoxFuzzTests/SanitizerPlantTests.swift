import Foundation
import Testing

/// A heap overflow planted on purpose, for `scripts/sanitize address --plant` to show that
/// the ASan build catches one (the counting allocator would hide it; it is built out there).
/// Skipped unless VOX_ASAN_PLANT=1: in the ordinary build it would corrupt the heap silently.
@Suite struct SanitizerPlantTests {
    @Test(.enabled(if: ProcessInfo.processInfo.environment["VOX_ASAN_PLANT"] == "1", "set VOX_ASAN_PLANT=1"))
    func plantedHeapOverflow() {
        let buffer = UnsafeMutablePointer<UInt8>.allocate(capacity: 16)
        defer { buffer.deallocate() }
        buffer.initialize(repeating: 0, count: 16)
        let index = Int(ProcessInfo.processInfo.environment["VOX_ASAN_PLANT"] ?? "0")! + 15  // 16: one past the end
        buffer[index] = 0xAB
        #expect(buffer[0] == 0)
    }
}
