/// Why an SDP offer cannot be answered. `code` is stable (logs, metrics, the signaling
/// error body); `line` is the 1-based line of the offer at fault, when there is one.
public struct SDPError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable, CaseIterable {
        /// Not SDP: a line that is not `x=value`, `v=` missing or not first, a bad `m=` line.
        case malformed
        /// Larger than any real offer (a signaling request is not a place for megabytes).
        case tooLarge
        /// No `m=audio` line.
        case noAudio
        /// An audio m-line, but no Opus in it.
        case noOpus
        /// The audio m-line is not DTLS-SRTP (`RTP/AVP`, SDES `RTP/SAVP`, ...).
        case notDTLSSRTP
        /// No `a=fingerprint` we can check a certificate against.
        case noFingerprint
        /// No `a=ice-ufrag` / `a=ice-pwd`, or values RFC 8839 does not allow.
        case noICECredentials
        /// `a=setup:passive` in the offer: the client wants to be the DTLS server too.
        case setupConflict
    }

    public var code: Code
    public var line: Int?
    public var message: String

    public init(_ code: Code, line: Int? = nil, _ message: String) {
        self.code = code
        self.line = line
        self.message = message
    }

    public var description: String {
        "sdp \(code.rawValue)" + (line.map { " (line \($0))" } ?? "") + ": \(message)"
    }
}

/// One `a=` line: `a=name` or `a=name:value`.
public struct SDPAttribute: Equatable, Sendable {
    public var name: String
    public var value: String?
    public var line: Int

    public init(name: String, value: String?, line: Int) {
        self.name = name
        self.value = value
        self.line = line
    }
}

/// One `m=` section: the m-line's fields and the attributes after it.
public struct MediaDescription: Equatable, Sendable {
    public var kind: String
    public var port: Int
    public var proto: String
    public var formats: [String]
    public var attributes: [SDPAttribute]
    public var line: Int

    /// The first value of attribute `name` (names compare case-insensitively, RFC 8866 §5.13).
    public func attribute(_ name: String) -> String? {
        attributes.first { $0.name == name }?.value
    }

    public func has(_ name: String) -> Bool { attributes.contains { $0.name == name } }
}

/// An SDP document (RFC 8866) split into its session part and its media sections,
/// with no interpretation: `WebRTCOffer` decides what the lines mean for us.
///
/// Parsing is tolerant where real clients differ (CRLF or LF, a missing trailing newline,
/// attributes in any order, unknown line types) and strict where the answer depends on it
/// (`v=0` first, well-formed `m=` lines).
public struct SessionDescription: Equatable, Sendable {
    public var attributes: [SDPAttribute]
    public var media: [MediaDescription]

    /// The largest offer accepted. Chromium's with video and data is ≈ 6 KB.
    public static let maxLength = 64 * 1024

    public func attribute(_ name: String) -> String? {
        attributes.first { $0.name == name }?.value
    }

    public static func parse(_ text: String) throws(SDPError) -> SessionDescription {
        guard text.utf8.count <= maxLength else {
            throw SDPError(.tooLarge, "\(text.utf8.count) bytes, at most \(maxLength)")
        }
        var session: [SDPAttribute] = []
        var media: [MediaDescription] = []
        var number = 0
        var sawVersion = false
        // Split on bytes: a String sees "\r\n" as one Character, not "\r" then "\n".
        for raw in text.utf8.split(separator: 0x0A, omittingEmptySubsequences: false) {
            number += 1
            var bytes = raw
            if bytes.last == 0x0D { bytes = bytes.dropLast() }
            let line = Substring(bytes)
            if line.isEmpty { continue }
            let utf8 = line.utf8
            guard utf8.count >= 2, let type = utf8.first, (0x61...0x7A).contains(type),
                utf8[utf8.index(after: utf8.startIndex)] == UInt8(ascii: "=")
            else {
                throw SDPError(.malformed, line: number, "not a `x=value` line")
            }
            let value = line.dropFirst(2)
            if !sawVersion {
                guard type == UInt8(ascii: "v"), value == "0" else {
                    throw SDPError(.malformed, line: number, "the first line must be v=0")
                }
                sawVersion = true
                continue
            }
            switch type {
            case UInt8(ascii: "m"):
                media.append(try parseMediaLine(value, line: number))
            case UInt8(ascii: "a"):
                let attribute: SDPAttribute
                if let colon = value.firstIndex(of: ":") {
                    attribute = SDPAttribute(
                        name: value[..<colon].lowercased(), value: String(value[value.index(after: colon)...]),
                        line: number)
                } else {
                    attribute = SDPAttribute(name: value.lowercased(), value: nil, line: number)
                }
                guard !attribute.name.isEmpty else {
                    throw SDPError(.malformed, line: number, "an empty attribute name")
                }
                if media.isEmpty {
                    session.append(attribute)
                } else {
                    media[media.count - 1].attributes.append(attribute)
                }
            default:
                break  // o=, s=, t=, c=, b=, ...: nothing in them changes the answer.
            }
        }
        guard sawVersion else { throw SDPError(.malformed, "empty") }
        return SessionDescription(attributes: session, media: media)
    }

    /// `m=<media> <port>[/<count>] <proto> <fmt> ...` (RFC 8866 §5.14).
    static func parseMediaLine(_ value: Substring, line: Int) throws(SDPError) -> MediaDescription {
        let fields = value.split(separator: " ", omittingEmptySubsequences: true)
        guard fields.count >= 4 else {
            throw SDPError(.malformed, line: line, "an m-line needs media, port, proto, format")
        }
        // "9" or "9/2"; "/" and "/2" have an empty port (a split that omitted empty parts
        // would have none at all).
        let portField = fields[1].split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)[0]
        guard let port = Int(portField), (0...65535).contains(port) else {
            throw SDPError(.malformed, line: line, "bad m-line port `\(fields[1])`")
        }
        return MediaDescription(
            kind: fields[0].lowercased(), port: port, proto: String(fields[2]), formats: fields[3...].map(String.init),
            attributes: [], line: line)
    }
}
