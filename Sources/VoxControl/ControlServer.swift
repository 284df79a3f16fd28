import Foundation
import Glibc

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

public struct ControlError: Error, Sendable {
    public var code: String
    public var message: String
}

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

/// The control socket (DESIGN §5): a Unix stream socket (mode 0660), one JSON object per
/// line each way. Single-threaded: the control thread calls `poll` in its loop, and every
/// request is handled there, in order per connection. Garbage, unknown commands, wrong
/// types and lines over `maxLine` bytes get an error reply and the connection stays usable;
/// nothing here touches the data plane except through the handler. Used from one thread
/// at a time (hence `@unchecked Sendable`: it moves to that thread once).
public final class ControlServer: @unchecked Sendable {
    public let path: String
    public let maxLine: Int
    public let maxClients: Int
    let handler: (ControlRequest) -> ControlReply
    var listener: Int32 = -1

    final class Client {
        let fd: Int32
        var input: [UInt8] = []
        /// Skipping the rest of a line that was too long.
        var discarding = false
        var output: [UInt8] = []
        init(fd: Int32) { self.fd = fd }
    }
    var clients: [Int32: Client] = [:]
    public private(set) var requests = 0
    public private(set) var errors = 0

    public init(path: String, maxLine: Int = 64 * 1024, maxClients: Int = 1024, handler: @escaping (ControlRequest) -> ControlReply) {
        self.path = path
        self.maxLine = maxLine
        self.maxClients = maxClients
        self.handler = handler
    }

    deinit { stop() }

    /// Binds and listens (replacing a stale socket file).
    public func start() throws(ControlError) {
        unlink(path)
        listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard listener >= 0 else { throw ControlError(code: "control.socket", message: String(cString: strerror(errno))) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            throw ControlError(code: "control.path", message: "socket path too long: \(path)")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { p in for (i, b) in bytes.enumerated() { p[i] = b } }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0, listen(listener, 128) == 0 else {
            let message = String(cString: strerror(errno))
            close(listener)
            listener = -1
            throw ControlError(code: "control.bind", message: "\(path): \(message)")
        }
        chmod(path, 0o660)
    }

    public func stop() {
        for fd in clients.keys { close(fd) }
        clients.removeAll()
        if listener >= 0 {
            close(listener)
            listener = -1
            unlink(path)
        }
    }

    public var connectedClients: Int { clients.count }

    /// Runs after a batch of requests is handled and before their replies go out: what a
    /// reply promises must hold when the client reads it (a created session's flows are in
    /// the workers' directory), and one call covers a whole pipelined batch.
    public var beforeReplies: (() -> Void)?

    /// Waits up to `timeout` ms for activity and handles all of it.
    public func poll(timeout: Int32) {
        guard listener >= 0 else { return }
        var fds = [pollfd(fd: listener, events: Int16(POLLIN), revents: 0)]
        for c in clients.values {
            fds.append(pollfd(fd: c.fd, events: Int16(POLLIN) | (c.output.isEmpty ? 0 : Int16(POLLOUT)), revents: 0))
        }
        guard Glibc.poll(&fds, nfds_t(fds.count), timeout) > 0 else { return }
        for p in fds where p.revents != 0 {
            if p.fd == listener {
                accept()
            } else if let c = clients[p.fd] {
                if p.revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 { read(c) }
                if clients[p.fd] != nil, !c.output.isEmpty { write(c) }
            }
        }
    }

    func accept() {
        while true {
            let fd = Glibc.accept(listener, nil, nil)
            guard fd >= 0 else { return }
            _ = fcntl(fd, F_SETFL, O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            guard clients.count < maxClients else {
                close(fd)
                continue
            }
            clients[fd] = Client(fd: fd)
        }
    }

    func drop(_ c: Client) {
        close(c.fd)
        clients[c.fd] = nil
    }

    func read(_ c: Client) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(c.fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n == 0 { return drop(c) }
            if n < 0 {
                if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { break }
                return drop(c)
            }
            for byte in buffer[0..<n] {
                if byte == 0x0A {
                    if c.discarding {
                        c.discarding = false
                    } else {
                        handle(line: c.input, client: c)
                    }
                    c.input.removeAll(keepingCapacity: true)
                } else if !c.discarding {
                    if c.input.count >= maxLine {
                        // One error per oversized line, then skip to its end.
                        c.discarding = true
                        c.input.removeAll(keepingCapacity: true)
                        respond(c, id: NSNull(), .failure("line_too_long", "request lines are limited to \(maxLine) bytes"))
                    } else {
                        c.input.append(byte)
                    }
                }
            }
        }
        if !c.output.isEmpty {
            beforeReplies?()
            write(c)
        }
    }

    func write(_ c: Client) {
        while !c.output.isEmpty {
            let n = c.output.withUnsafeBytes { send(c.fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { return }
                return drop(c)
            }
            c.output.removeFirst(n)
        }
    }

    func handle(line: [UInt8], client: Client) {
        requests += 1
        if line.allSatisfy({ $0 == 0x20 || $0 == 0x0D || $0 == 0x09 }) { return }  // blank line: nothing asked
        guard let object = try? JSONSerialization.jsonObject(with: Data(line)) else {
            return respond(client, id: NSNull(), .failure("bad_json", "not valid JSON"))
        }
        guard var dictionary = object as? [String: Any] else {
            return respond(client, id: NSNull(), .failure("bad_request", "a request is a JSON object"))
        }
        let id = dictionary.removeValue(forKey: "id") ?? NSNull()
        guard let command = dictionary.removeValue(forKey: "cmd") as? String else {
            return respond(client, id: id, .failure("bad_request", "missing string 'cmd'"))
        }
        respond(client, id: id, handler(ControlRequest(id: id, command: command, arguments: dictionary)))
    }

    func respond(_ c: Client, id: Any, _ reply: ControlReply) {
        var object = reply.fields
        object["id"] = id
        if let e = reply.error {
            errors += 1
            object["ok"] = false
            object["error"] = ["code": e.code, "message": e.message]
        } else {
            object["ok"] = true
        }
        guard var data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else {
            errors += 1
            c.output += Array(#"{"error":{"code":"internal","message":"reply not serialisable"},"ok":false}"#.utf8) + [0x0A]
            return
        }
        data.append(0x0A)
        c.output += data
    }
}
