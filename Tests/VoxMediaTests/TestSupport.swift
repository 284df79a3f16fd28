import Foundation
import VoxTestKit
import VoxWire



/// The repository's test fixtures (captured from real clients; see Tests/Fixtures/README.md).
let fixturesDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("Fixtures")

/// The UDP payloads of an Ethernet pcap file, in order, with their UDP ports.
func pcapUDPPayloads(_ url: URL) throws -> [(sourcePort: UInt16, destinationPort: UInt16, payload: [UInt8])] {
    let data = [UInt8](try Data(contentsOf: url))
    func le32(_ o: Int) -> Int { Int(data[o]) | Int(data[o + 1]) << 8 | Int(data[o + 2]) << 16 | Int(data[o + 3]) << 24 }
    guard data.count >= 24, le32(0) == 0xA1B2_C3D4 || le32(0) == 0xA1B2_3C4D, le32(20) == 1 else {
        throw FixtureError.notEthernetPcap
    }
    var out: [(UInt16, UInt16, [UInt8])] = []
    var offset = 24
    while offset + 16 <= data.count {
        let captured = le32(offset + 8)
        let frame = Array(data[(offset + 16)..<(offset + 16 + captured)])
        offset += 16 + captured
        var parsed = ParsedFrame()
        let verdict = frame.withUnsafeBytes { ParsedFrame.parse($0.baseAddress!, length: $0.count, into: &parsed) }
        guard verdict == .ok else { throw FixtureError.badFrame(verdict) }
        out.append((
            parsed.sourcePort.rawValue, parsed.destinationPort.rawValue,
            Array(frame[parsed.payloadOffset..<(parsed.payloadOffset + parsed.payloadLength)])
        ))
    }
    return out
}

enum FixtureError: Error { case notEthernetPcap, badFrame(WireVerdict), noPassword }

/// The value of the first `a=NAME:` line of an SDP file.
func sdpAttribute(_ name: String, in url: URL) throws -> String {
    let text = try String(contentsOf: url, encoding: .utf8)
    for line in text.split(whereSeparator: \.isNewline) where line.hasPrefix("a=\(name):") {
        return String(line.dropFirst(name.count + 3))
    }
    throw FixtureError.noPassword
}
