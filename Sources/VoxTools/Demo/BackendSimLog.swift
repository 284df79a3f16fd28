import COpenSSL
import Foundation

/// backend-sim's log: one JSON object per line on stdout, flushed per line, keys in the order
/// given ("event" first), each value encoded by JSONSerialization (docs/backend-protocol.md,
/// "backend-sim").
enum BackendSimLog {
    static func emit(_ event: String, _ fields: KeyValuePairs<String, Any> = [:]) {
        var line = "{\"event\":\(json(event))"
        for (key, value) in fields { line += ",\(json(key)):\(json(value))" }
        line += "}\n"
        FileHandle.standardOutput.write(Data(line.utf8))  // unbuffered: a line is out when this returns
    }

    static func json(_ value: Any) -> String {
        guard let data = try? JSONSerialization.data(withJSONObject: value, options: [.fragmentsAllowed, .sortedKeys])
        else { return "null" }
        return String(decoding: data, as: UTF8.self)
    }

    /// The first 16 hex digits of the bytes' SHA-1: enough to match a payload received to one sent.
    static func sha1Prefix(_ bytes: ArraySlice<UInt8>) -> String {
        var digest = [UInt8](repeating: 0, count: Int(SHA_DIGEST_LENGTH))
        bytes.withUnsafeBufferPointer { b in _ = SHA1(b.baseAddress, b.count, &digest) }
        return digest.prefix(8).map { String(format: "%02x", $0) }.joined()
    }
}
