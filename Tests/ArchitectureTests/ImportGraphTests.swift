import Foundation
import Testing

/// The module graph as docs/architecture.md draws it, checked against what the sources import
/// and what Package.swift declares: a target may import only what it declares, declare only
/// what the document allows, and depend only on targets of a lower layer.
@Suite struct ImportGraphTests {
    /// Modules of the platform every target may import without declaring them. Foundation is
    /// one too, but a source target must have it in its row: it stays off the packet path.
    static let platform: Set<String> = ["Glibc", "Synchronization", "Dispatch", "Testing", "_Concurrency", "Foundation"]

    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    @Test func everyImportIsDeclaredAndPointsDown() throws {
        let graph = try ModuleGraph(document: Self.read("docs/architecture.md"))
        let package = try PackageTargets(manifest: Self.read("Package.swift"))
        var problems: [String] = []

        // The document and the manifest describe the same source targets.
        for (name, target) in package.targets where !target.isTest {
            guard let row = graph.rows[name] else {
                problems.append("\(name): in Package.swift, missing from docs/architecture.md's table")
                continue
            }
            let declared = target.dependencies
            let folder = Self.root.appendingPathComponent("Sources").appendingPathComponent(name)
            if !row.allowed.contains("Foundation"), try Self.imports(under: folder).contains(where: { $0.module == "Foundation" }) {
                problems.append("\(name) imports Foundation; docs/architecture.md does not allow it there")
            }
            for extra in declared.subtracting(row.allowed) {
                problems.append("\(name): Package.swift declares \(extra), docs/architecture.md does not allow it")
            }
            for dependency in declared {
                if let lower = graph.rows[dependency], lower.layer >= row.layer {
                    problems.append("\(name) (layer \(row.layer)) depends on \(dependency) (layer \(lower.layer)): not downwards")
                }
            }
        }
        for name in graph.rows.keys where package.targets[name] == nil {
            problems.append("\(name): in docs/architecture.md, not a target in Package.swift")
        }

        // Every `import` of every target, tests included, is declared (Foundation too).
        for (name, target) in package.targets {
            let folder = Self.root.appendingPathComponent(target.isTest ? "Tests" : "Sources").appendingPathComponent(name)
            for (file, module) in try Self.imports(under: folder)
            where !Self.platform.contains(module) && !target.dependencies.contains(module) && module != name {
                problems.append("\(name): \(file) imports \(module), which its target does not declare")
            }
        }
        #expect(problems.isEmpty, "\(problems.joined(separator: "\n"))")
        #expect(graph.rows.count >= 10, "the table in docs/architecture.md was not found")
    }

    /// The checker itself: an undeclared import and an upward dependency are both caught.
    @Test func theCheckerCatchesWhatItShould() throws {
        let graph = try ModuleGraph(
            document: """
                | target | layer | may import |
                |---|---|---|
                | `Low` | 1 | — |
                | `High` | 2 | `Low`, `Foundation` |
                """)
        #expect(graph.rows["Low"]?.allowed == [])
        #expect(graph.rows["High"]?.allowed == ["Low", "Foundation"])
        #expect(graph.rows["High"]?.layer == 2)
        let package = try PackageTargets(
            manifest: """
                .target(name: "Low", dependencies: ["High"]),
                .target(
                    name: "High",
                    dependencies: ["Low", .product(name: "Logging", package: "swift-log")]
                ),
                .testTarget(name: "HighTests", dependencies: ["High"]),
                """)
        #expect(package.targets["Low"]?.dependencies == ["High"])
        #expect(package.targets["High"]?.dependencies == ["Low", "Logging"])
        #expect(package.targets["HighTests"]?.isTest == true)
        let source = """
            import Foundation
            @testable import VoxIO
            public import struct VoxWire.IPAddress
            // import Commented
            #if canImport(Glibc)
            import Glibc
            #endif
            let script = \"\"\"
                import json
                \"\"\"
            """
        #expect(Self.imports(in: source) == ["Foundation", "VoxIO", "VoxWire", "Glibc"])
    }

    static func read(_ path: String) throws -> String {
        try String(contentsOf: root.appendingPathComponent(path), encoding: .utf8)
    }

    static func imports(under folder: URL) throws -> [(file: String, module: String)] {
        guard let files = FileManager.default.enumerator(at: folder, includingPropertiesForKeys: nil) else { return [] }
        var found: [(String, String)] = []
        for case let url as URL in files where url.pathExtension == "swift" {
            for module in imports(in: try String(contentsOf: url, encoding: .utf8)) {
                found.append((url.lastPathComponent, module))
            }
        }
        return found
    }

    /// Module names of the `import` declarations in `source` (attributes, access levels and
    /// `import struct M.T` forms included; lines inside multi-line string literals skipped).
    static func imports(in source: String) -> [String] {
        let pattern = /^\s*(?:@\w+\s+)*(?:(?:public|package|internal|fileprivate|private)\s+)?import\s+(?:(?:struct|class|enum|protocol|func|var|let|typealias)\s+)?(\w+)/
        var inString = false
        var found: [String] = []
        for line in source.split(separator: "\n") {
            let quotes = line.ranges(of: "\"\"\"").count
            if !inString, let m = try? pattern.firstMatch(in: String(line)) { found.append(String(m.output.1)) }
            if quotes % 2 == 1 { inString.toggle() }
        }
        return found
    }
}

/// The table in docs/architecture.md: `| `Target` | layer | `Dep`, `Dep` |`.
struct ModuleGraph {
    struct Row { var layer: Int; var allowed: Set<String> }
    var rows: [String: Row] = [:]

    init(document: String) throws {
        let row = /^\|\s*`(\w+)`\s*\|\s*(\d+)\s*\|([^|]*)\|/
        let name = /`(\w+)`/
        for line in document.split(separator: "\n") {
            guard let m = try row.firstMatch(in: String(line)) else { continue }
            let allowed = Set(String(m.output.3).matches(of: name).map { String($0.output.1) })
            rows[String(m.output.1)] = Row(layer: Int(m.output.2)!, allowed: allowed)
        }
    }
}

/// Targets of a Package.swift as written in this repository: `.target(name: "X", dependencies:
/// ["A", .product(name: "B", package: "b")])`, across lines.
struct PackageTargets {
    struct Target { var isTest: Bool; var dependencies: Set<String> }
    var targets: [String: Target] = [:]

    init(manifest: String) throws {
        let start = /\.(target|executableTarget|testTarget|systemLibrary)\(\s*name:\s*"(\w+)"/
        let matches = manifest.matches(of: start)
        for (i, m) in matches.enumerated() {
            let end = i + 1 < matches.count ? matches[i + 1].range.lowerBound : manifest.endIndex
            let body = manifest[m.range.upperBound..<end]
            var dependencies: Set<String> = []
            if let list = body.firstMatch(of: /dependencies:\s*\[([^\]]*)\]/) {
                let text = String(list.output.1)
                let withoutProducts = text.replacing(/\.product\(\s*name:\s*"(\w+)"[^)]*\)/) { "\"\($0.output.1)\"" }
                dependencies = Set(withoutProducts.matches(of: /"(\w+)"/).map { String($0.output.1) })
            }
            targets[String(m.output.2)] = Target(isTest: m.output.1 == "testTarget", dependencies: dependencies)
        }
    }
}
