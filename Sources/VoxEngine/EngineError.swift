/// A failure the engine reports to whoever asked: a stable `code` (`config.invalid`, `full`,
/// `busy`, …) for programs and a `message` for people. The control socket sends both as they
/// are (`{"ok":false,"error":{"code":…,"message":…}}`), so one type serves the engine and
/// its control protocol.
public struct EngineError: Error, Sendable, CustomStringConvertible {
    public var code: String
    public var message: String

    public init(code: String, message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }
}
