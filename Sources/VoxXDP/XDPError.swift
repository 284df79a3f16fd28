import Glibc

/// Why loading, attaching or a map operation failed: a stable `code` for programs and
/// logs, a `message` for people, and the errno underneath when there was one.
public struct XDPError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Stable identifiers; their raw values appear in logs and CLI output.
    public enum Code: String, Sendable {
        /// The BPF object file is missing or unreadable.
        case objectNotFound
        /// libbpf could not parse the object, or the kernel's verifier refused it.
        case loadFailed
        /// No interface of that name in this network namespace.
        case interfaceNotFound
        /// Another XDP program is attached to the interface; VoxEdge never replaces it.
        case foreignProgram
        /// The kernel refused the attachment in every mode tried.
        case attachFailed
        /// Asking the kernel which program is attached failed.
        case queryFailed
        /// A map update, lookup or delete failed (a full map, or a bad key).
        case mapOperationFailed
        /// A value the caller passed cannot be represented (too many ports, a bad prefix).
        case invalidArgument
        /// `BPF_PROG_TEST_RUN` refused the input (for example a frame shorter than Ethernet).
        case testRunFailed
    }

    public var code: Code
    public var message: String
    /// The errno reported by the kernel or libbpf (positive), or 0.
    public var errno: Int32

    public init(_ code: Code, _ message: String, errno: Int32 = 0) {
        self.code = code
        self.message = message
        self.errno = errno
    }

    public var description: String {
        errno == 0 ? "[\(code.rawValue)] \(message)" : "[\(code.rawValue)] \(message): \(Self.errnoText(errno))"
    }

    /// `strerror` text for a positive errno.
    static func errnoText(_ value: Int32) -> String {
        String(cString: strerror(value))
    }
}
