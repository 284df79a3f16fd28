/// A model as a backend declares it (`models` in its entry) and as a call requests it (the
/// token's `model`, `session.create`'s `model`): `name` or `name@version`. A request without
/// a version is served by any version of that name; a request with one, only by that version.
public struct ModelName: Hashable, Sendable, CustomStringConvertible {
    public var name: String
    public var version: String?

    /// The longest model text taken: the backend protocol's start carries at most this.
    public static let maximumLength = 256

    /// Nil for text that is empty, longer than `maximumLength`, holds a space or a control
    /// character, or has an empty name or version (`@v1`, `m@`, `m@v@w`).
    public init?(_ text: String) {
        guard !text.isEmpty, text.utf8.count <= ModelName.maximumLength,
            text.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value != 0x7F })
        else { return nil }
        let parts = text.split(separator: "@", omittingEmptySubsequences: false)
        guard parts.count <= 2, !parts[0].isEmpty else { return nil }
        name = String(parts[0])
        if parts.count == 2 {
            guard !parts[1].isEmpty else { return nil }
            version = String(parts[1])
        } else {
            version = nil
        }
    }

    /// Whether a backend that loaded `self` serves a call that asked for `request`.
    public func serves(_ request: ModelName) -> Bool {
        name == request.name && (request.version == nil || request.version == version)
    }

    public var description: String { version.map { "\(name)@\($0)" } ?? name }
}
