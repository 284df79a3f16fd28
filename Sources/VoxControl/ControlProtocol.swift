import Foundation
import VoxEngine

/// A reply on the control socket: `{"id":…,"ok":true,…}` or
/// `{"id":…,"ok":false,"error":{"code":…,"message":…}}` (DESIGN §5).
public struct ControlReply: @unchecked Sendable {
    public var fields: [String: Any]
    public var error: ControlError?

    public static func ok(_ fields: [String: Any] = [:]) -> ControlReply { ControlReply(fields: fields, error: nil) }
    public static func failure(_ code: String, _ message: String) -> ControlReply {
        ControlReply(fields: [:], error: ControlError(code: code, message: message))
    }
}

/// The control protocol's errors are the engine's: code and message go into the reply as they are.
public typealias ControlError = EngineError

/// A parsed request: its `id` (echoed back as sent), `cmd`, and the rest.
public struct ControlRequest: @unchecked Sendable {
    public var id: Any
    public var command: String
    public var arguments: [String: Any]

    /// A string argument, or a `bad_argument` failure naming it.
    public func string(_ key: String) throws(ControlError) -> String {
        guard let v = arguments[key] else { throw ControlError(code: "bad_argument", message: "missing '\(key)'") }
        guard let s = v as? String else { throw ControlError(code: "bad_argument", message: "'\(key)' must be a string") }
        return s
    }

    public func optionalString(_ key: String) throws(ControlError) -> String? {
        guard arguments[key] != nil, !(arguments[key] is NSNull) else { return nil }
        return try string(key)
    }

    /// An integer argument (JSON numbers without a fraction), or `bad_argument`.
    public func integer(_ key: String) throws(ControlError) -> Int {
        guard let v = arguments[key] else { throw ControlError(code: "bad_argument", message: "missing '\(key)'") }
        // JSON booleans arrive as NSNumber too, with objCType "c".
        guard let n = v as? NSNumber, String(cString: n.objCType) != "c", let i = Int(exactly: n.doubleValue) else {
            throw ControlError(code: "bad_argument", message: "'\(key)' must be an integer")
        }
        return i
    }

    public func optionalInteger(_ key: String) throws(ControlError) -> Int? {
        guard arguments[key] != nil, !(arguments[key] is NSNull) else { return nil }
        return try integer(key)
    }
}

/// The wire format of the control socket (DESIGN §5): one JSON object per line each way.
/// Parsing and encoding live here, apart from the I/O, so every server and test speaks
/// exactly the same lines.
public enum ControlWire {
    /// What one request line asks for.
    public enum Parsed {
        /// A blank line: nothing asked, nothing answered.
        case blank
        case request(ControlRequest)
        /// A line that never reaches the handler, and the reply it gets.
        case invalid(id: Any, ControlReply)
    }

    public static func parse<Bytes: Collection<UInt8>>(_ line: Bytes) -> Parsed {
        if line.allSatisfy({ $0 == 0x20 || $0 == 0x0D || $0 == 0x09 }) { return .blank }
        guard let object = try? JSONSerialization.jsonObject(with: Data(line)) else {
            return .invalid(id: NSNull(), .failure("bad_json", "not valid JSON"))
        }
        guard var dictionary = object as? [String: Any] else {
            return .invalid(id: NSNull(), .failure("bad_request", "a request is a JSON object"))
        }
        let id = dictionary.removeValue(forKey: "id") ?? NSNull()
        guard let command = dictionary.removeValue(forKey: "cmd") as? String else {
            return .invalid(id: id, .failure("bad_request", "missing string 'cmd'"))
        }
        return .request(ControlRequest(id: id, command: command, arguments: dictionary))
    }

    /// The reply line, newline included. `revealSecrets` is true only for the reply that hands
    /// a created session's edge key to its caller; every other reply is redacted.
    public static func encode(id: Any, _ reply: ControlReply, revealSecrets: Bool = false) -> [UInt8] {
        var object = revealSecrets ? reply.fields : (redacted(reply.fields) as? [String: Any] ?? [:])
        object["id"] = id
        if let e = reply.error {
            object["ok"] = false
            object["error"] = ["code": e.code, "message": e.message]
        } else {
            object["ok"] = true
        }
        guard JSONSerialization.isValidJSONObject(object),
            var data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        else {
            return Array(#"{"error":{"code":"internal","message":"reply not serialisable"},"id":null,"ok":false}"#.utf8) + [0x0A]
        }
        data.append(0x0A)
        return [UInt8](data)
    }

    /// A reply line that answers no request (`id` null): busy, refused, idle, line too long.
    public static func notice(_ code: String, _ message: String) -> [UInt8] {
        encode(id: NSNull(), .failure(code, message))
    }

    /// Whether a field holds a secret: SRTP master keys (`client_key`, `edge_key`, any
    /// `…_key`), and anything named like a secret, token or password.
    public static func isSecret(_ name: String) -> Bool {
        let n = name.lowercased()
        return n == "key" || n.hasSuffix("_key") || n.contains("secret") || n.contains("token") || n.contains("password")
    }

    /// `value` with every secret field (at any depth) replaced by "<redacted>": what logs and
    /// replies may show.
    public static func redacted(_ value: Any) -> Any {
        if let dictionary = value as? [String: Any] {
            var out: [String: Any] = [:]
            for (k, v) in dictionary { out[k] = isSecret(k) ? "<redacted>" : redacted(v) }
            return out
        }
        if let array = value as? [Any] { return array.map(redacted) }
        return value
    }
}
