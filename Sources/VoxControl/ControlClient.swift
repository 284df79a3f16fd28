import Foundation
import Glibc

/// One request, one reply, over the control socket: the client side of the control protocol
/// (DESIGN §5), for `voxedge ctl` and the tools.
public enum ControlClient {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// One request on a connection of its own.
    public static func call(_ path: String, _ request: [String: Any]) throws -> [String: Any] {
        try ControlConnection(path: path).call(request)
    }
}

/// One connection to the control socket, kept open for many requests (creating a thousand
/// sessions one connection each would measure connect(2)).
public final class ControlConnection {
    public let fd: Int32
    private var buffered: [UInt8] = []
    private var nextID = 1

    public init(path: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ControlClient.Failure(description: "socket: \(String(cString: strerror(errno)))") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            close(fd)
            throw ControlClient.Failure(description: "socket path too long")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { p in for (i, b) in bytes.enumerated() { p[i] = b } }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw ControlClient.Failure(description: "cannot reach the engine at \(path): \(reason) (is `voxedge run` running?)")
        }
    }

    deinit { close(fd) }

    /// The next line the engine sends (an event, after `subscribe`), waiting as long as it takes.
    public func nextLine() throws -> [String: Any] {
        var chunk = [UInt8](repeating: 0, count: 65536)
        while !buffered.contains(0x0A) {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { throw ControlClient.Failure(description: "the engine closed the control connection") }
            buffered += chunk[0..<n]
        }
        let end = buffered.firstIndex(of: 0x0A)!
        let object = try JSONSerialization.jsonObject(with: Data(buffered[..<end])) as? [String: Any]
        buffered.removeSubrange(...end)
        guard let object else { throw ControlClient.Failure(description: "unreadable line from the engine") }
        return object
    }

    public func call(_ request: [String: Any]) throws -> [String: Any] {
        var message = request
        message["id"] = nextID
        nextID += 1
        var line = try JSONSerialization.data(withJSONObject: message)
        line.append(0x0A)
        let written = line.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard written == line.count else { throw ControlClient.Failure(description: "the engine closed the control connection") }
        // A subscribed connection may have events ahead of the reply: a reply has an `id`.
        while true {
            let object = try nextLine()
            if object["id"] != nil { return object }
        }
    }
}
