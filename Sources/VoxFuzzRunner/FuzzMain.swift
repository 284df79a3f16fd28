import Foundation
import VoxFuzz

// The fuzz binary. Built by `scripts/fuzz` with `-sanitize=fuzzer` and `VOX_LIBFUZZER`,
// libFuzzer's driver runs the target below; the target comes from
// VOXEDGE_FUZZ_TARGET. Built plainly (as `swift build` does), it replays files instead:
// `voxedge-fuzz TARGET FILE|DIR...` — a crasher reproduced without the fuzzing build.

#if VOX_LIBFUZZER
// SwiftPM links an executable with `main` aliased to `VoxFuzzRunner_main` (so tests can link
// the module); under -sanitize=fuzzer that alias, defined here, hands the process to
// libFuzzer's driver, the way libFuzzer's own main would.
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
) -> Int32

nonisolated(unsafe) var selected: FuzzTarget = .frame

@_cdecl("VoxFuzzRunner_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    let name = ProcessInfo.processInfo.environment["VOXEDGE_FUZZ_TARGET"] ?? ""
    guard let target = FuzzTarget(rawValue: name) else {
        let known = FuzzTarget.allCases.map(\.rawValue).joined(separator: " ")
        FileHandle.standardError.write(Data("set VOXEDGE_FUZZ_TARGET to one of: \(known)\n".utf8))
        return 64
    }
    selected = target
    var count = argc
    var arguments = argv
    return LLVMFuzzerRunDriver(&count, &arguments) { data, size in
        selected.run(UnsafeRawBufferPointer(start: data, count: size))
        return 0
    }
}
#else
@main
struct FuzzReplay {
    static func main() {
        let arguments = CommandLine.arguments.dropFirst()
        guard let name = arguments.first, let target = FuzzTarget(rawValue: name), arguments.count > 1 else {
            let known = FuzzTarget.allCases.map(\.rawValue).joined(separator: "|")
            print("usage: voxedge-fuzz \(known) FILE|DIR...  (replays inputs; scripts/fuzz fuzzes)")
            exit(64)
        }
        var count = 0
        for path in arguments.dropFirst() {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                print("\(path): no such file")
                exit(66)
            }
            let files =
                isDirectory.boolValue
                ? ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted().map { "\(path)/\($0)" }
                : [path]
            for file in files {
                guard let data = FileManager.default.contents(atPath: file) else { continue }
                target.run([UInt8](data))
                count += 1
            }
        }
        print("\(target.rawValue): \(count) inputs replayed, none failed")
    }
}
#endif
