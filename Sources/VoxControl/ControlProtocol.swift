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
        guard let v = arguments[key], !(v is NSNull) else {
            throw ControlError(code: "bad_argument", message: "missing '\(key)'")
        }
        guard let s = v as? String else {
            throw ControlError(code: "bad_argument", message: "'\(key)' must be a string, not \(ControlRequest.show(v))")
        }
        return s
    }

    /// A string argument, or nil when it is absent or `null`.
    public func optionalString(_ key: String) throws(ControlError) -> String? {
        guard let v = arguments[key], !(v is NSNull) else { return nil }
        return try string(key)
    }

    /// An integer argument of type `T` within `range`: a JSON number whose value is an integer
    /// `T` holds and `range` contains. Anything else — a negative number for an unsigned
    /// field, a number past `T` (2^32 for a slot, 2^64 for an id), a fraction, 1e300, a
    /// string, a boolean — is `bad_argument` naming the field and the range it accepts, never
    /// a conversion that traps or truncates. Every integer the control socket reads goes
    /// through here.
    public func integer<T: FixedWidthInteger>(_ key: String, in range: ClosedRange<T>) throws(ControlError) -> T {
        guard let v = arguments[key], !(v is NSNull) else {
            throw ControlError(code: "bad_argument", message: "missing '\(key)' (an integer in \(range))")
        }
        guard let value = ControlRequest.exactInteger(v, as: T.self), range.contains(value) else {
            throw ControlError(
                code: "bad_argument", message: "'\(key)' must be an integer in \(range), not \(ControlRequest.show(v))")
        }
        return value
    }

    /// As `integer(_:in:)` over a half-open range (`0..<capacity`); an empty range accepts nothing.
    public func integer<T: FixedWidthInteger>(_ key: String, in range: Range<T>) throws(ControlError) -> T {
        guard let last = range.last else {
            throw ControlError(code: "bad_argument", message: "'\(key)' accepts no value here (none configured)")
        }
        return try integer(key, in: range.lowerBound...last)
    }

    /// An integer argument as `integer(_:in:)` does, or nil when it is absent or `null`.
    public func optionalInteger<T: FixedWidthInteger>(_ key: String, in range: ClosedRange<T>) throws(ControlError) -> T? {
        guard let v = arguments[key], !(v is NSNull) else { return nil }
        return try integer(key, in: range)
    }

    public func optionalInteger<T: FixedWidthInteger>(_ key: String, in range: Range<T>) throws(ControlError) -> T? {
        guard let v = arguments[key], !(v is NSNull) else { return nil }
        return try integer(key, in: range)
    }

    /// `value` as a `T` when it is a JSON integer `T` can hold exactly; nil otherwise.
    /// JSONSerialization gives NSNumbers (Int64 for negatives, UInt64 for the rest, Double or
    /// NSDecimalNumber past 2^64 or with a fraction or exponent, a CFBoolean for true and
    /// false); their decimal text is parsed by `T` itself, which refuses signs it cannot
    /// hold, fractions, exponents and anything past its range.
    static func exactInteger<T: FixedWidthInteger>(_ value: Any, as _: T.Type) -> T? {
        if let n = value as? NSNumber {
            // JSON booleans arrive as NSNumber too, with objCType "c".
            guard String(cString: n.objCType) != "c" else { return nil }
            return T(n.description)
        }
        if let i = value as? any BinaryInteger { return T(exactly: i) }
        return nil
    }

    /// How an argument's value is named in an error message (bounded: it is the client's text).
    static func show(_ value: Any) -> String {
        switch value {
        case is NSNull: return "null"
        case let s as String: return "the string \"\(s.prefix(40))\"" + (s.count > 40 ? "…" : "")
        case let n as NSNumber:
            if String(cString: n.objCType) == "c" { return n.boolValue ? "true" : "false" }
            return String(n.description.prefix(40))
        case is [Any]: return "an array"
        case is [String: Any]: return "an object"
        default: return "\(type(of: value))"
        }
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
        // Fragments allowed: a lone string, number or null is JSON (RFC 8259), just not a
        // request — `bad_request` like an array, not `bad_json`.
        guard let object = try? JSONSerialization.jsonObject(with: Data(line), options: [.fragmentsAllowed]) else {
            return .invalid(id: NSNull(), .failure("bad_json", "not valid JSON"))
        }
        guard var dictionary = object as? [String: Any] else {
            return .invalid(id: NSNull(), .failure("bad_request", "a request is a JSON object"))
        }
        // JSONSerialization keeps the last of a repeated field silently; whatever else reads
        // the line (a proxy, an audit) may take the first. Ambiguous: refused.
        if let key = duplicateKey(Array(line)) {
            let shown = key.count > 40 ? key.prefix(40) + "…" : Substring(key)
            return .invalid(
                id: dictionary["id"] ?? NSNull(), .failure("bad_request", "field '\(shown)' is given more than once"))
        }
        let id = dictionary.removeValue(forKey: "id") ?? NSNull()
        guard let command = dictionary.removeValue(forKey: "cmd") as? String else {
            return .invalid(id: id, .failure("bad_request", "missing string 'cmd'"))
        }
        return .request(ControlRequest(id: id, command: command, arguments: dictionary))
    }

    /// The first member name the top-level object in `line` (valid JSON, an object) repeats,
    /// decoded as JSON decodes it (so `"a"` and `"\u0061"` are the same name); nil if none.
    static func duplicateKey(_ line: [UInt8]) -> String? {
        var seen = Set<String>()
        var depth = 0
        var expectKey = false
        var i = 0
        while i < line.count {
            switch line[i] {
            case UInt8(ascii: "\""):
                let start = i
                i += 1
                while i < line.count && line[i] != UInt8(ascii: "\"") {
                    if line[i] == UInt8(ascii: "\\") { i += 1 }
                    i += 1
                }
                if depth == 1 && expectKey {
                    expectKey = false
                    let token = Data(line[start..<min(i + 1, line.count)])
                    let name = (try? JSONSerialization.jsonObject(with: token, options: [.fragmentsAllowed])) as? String
                    if let name, !seen.insert(name).inserted { return name }
                }
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                depth += 1
                expectKey = depth == 1
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                depth -= 1
            case UInt8(ascii: ","):
                if depth == 1 { expectKey = true }
            default:
                break
            }
            i += 1
        }
        return nil
    }

    /// The reply line, newline included. `revealSecrets` is true only for the reply that hands
    /// a created session's edge key (or a WebRTC session's answer) to its caller; every other
    /// reply is redacted.
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
        // SDP carries ICE passwords: an offer's and our answer's.
        return n == "key" || n.hasSuffix("_key") || n.contains("secret") || n.contains("token") || n.contains("password")
            || n == "sdp" || n == "answer"
    }

    static func isCount(_ value: Any) -> Bool {
        value is Int || value is UInt64 || value is Double || value is NSNumber
    }

    /// `value` with every secret field (at any depth) replaced by "<redacted>": what logs and
    /// replies may show.
    public static func redacted(_ value: Any) -> Any {
        if let dictionary = value as? [String: Any] {
            var out: [String: Any] = [:]
            // A count is never a secret, whatever it counts (`bad_token` requests).
            for (k, v) in dictionary { out[k] = isSecret(k) && !isCount(v) ? "<redacted>" : redacted(v) }
            return out
        }
        if let array = value as? [Any] { return array.map(redacted) }
        return value
    }
}
