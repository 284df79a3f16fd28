import Foundation
import VoxEngine
import Yams

/// A configuration file as `voxedge run --config` reads it: YAML (JSON is YAML) decoded into
/// `EngineConfiguration` (unknown keys and wrong types refused), then the checks the engine
/// makes before it starts (`problems()`). The same bytes also go through `JSONDecoder`.
enum ConfigFuzz {
    static func run(_ data: UnsafeRawBufferPointer) {
        let text = String(decoding: data, as: UTF8.self)
        if let c = try? YAMLDecoder().decode(EngineConfiguration.self, from: text) {
            check(c)
        }
        if let c = try? JSONDecoder().decode(EngineConfiguration.self, from: Data(data)) {
            check(c)
        }
    }

    static func check(_ c: EngineConfiguration) {
        let problems = c.problems()
        FuzzCheck.consume(problems)
        // What decoded re-encodes and decodes to itself.
        if let encoded = try? JSONEncoder().encode(c) {
            let again = try? JSONDecoder().decode(EngineConfiguration.self, from: encoded)
            FuzzCheck.expect(again == c, "the configuration does not survive encoding: \(String(decoding: encoded, as: UTF8.self))")
        }
    }
}
