import CVoxLinux
import Foundation
import Glibc
import VoxEngine
import VoxWire
import VoxXDP

/// Prometheus text exposition (format 0.0.4) of the engine's counters, and health checks,
/// over a small HTTP/1.1 server polled by the control thread: `GET /metrics`, `/healthz`
/// (200 while the process serves), `/readyz` (503 while draining). One request per
/// connection; anything else gets 404 or 400. The counters are read from the workers' own
/// blocks at scrape time, so scraping costs the data plane nothing.
public final class MetricsServer: @unchecked Sendable {
    let runtime: EngineRuntime
    let controller: EngineController
    var listener: Int32 = -1
    public private(set) var port: UInt16 = 0
    /// Set while draining: /readyz answers 503.
    public var draining = false

    final class Connection {
        let fd: Int32
        var request: [UInt8] = []
        init(fd: Int32) { self.fd = fd }
    }
    var connections: [Int32: Connection] = [:]

    public init(runtime: EngineRuntime, controller: EngineController) {
        self.runtime = runtime
        self.controller = controller
    }

    deinit { stop() }

    /// Listens on `address:port` (port 0 picks one; `port` then says which).
    public func start(address: String, port requested: UInt16) throws(ControlError) {
        guard let parsed = IPAddress(address), parsed.isIPv4 else {
            throw ControlError(code: "metrics.address", message: "metrics address must be IPv4, not '\(address)'")
        }
        listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var one: Int32 = 1
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = requested.bigEndian
        a.sin_addr.s_addr = parsed.ipv4.bigEndian
        let bound = withUnsafePointer(to: &a) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(listener, 64) == 0 else {
            let message = String(cString: strerror(errno))
            close(listener)
            listener = -1
            throw ControlError(code: "metrics.bind", message: "\(address):\(requested): \(message)")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) } }
        port = UInt16(bigEndian: a.sin_port)
    }

    public func stop() {
        for fd in connections.keys { close(fd) }
        connections.removeAll()
        if listener >= 0 {
            close(listener)
            listener = -1
        }
    }

    public func poll(timeout: Int32) {
        guard listener >= 0 else { return }
        var fds = [pollfd(fd: listener, events: Int16(POLLIN), revents: 0)]
        for c in connections.values { fds.append(pollfd(fd: c.fd, events: Int16(POLLIN), revents: 0)) }
        guard Glibc.poll(&fds, nfds_t(fds.count), timeout) > 0 else { return }
        for p in fds where p.revents != 0 {
            if p.fd == listener {
                while true {
                    let fd = accept(listener, nil, nil)
                    guard fd >= 0 else { break }
                    _ = fcntl(fd, F_SETFL, O_NONBLOCK)
                    if connections.count >= 64 {
                        close(fd)
                    } else {
                        connections[fd] = Connection(fd: fd)
                    }
                }
            } else if let c = connections[p.fd] {
                read(c)
            }
        }
    }

    func read(_ c: Connection) {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBytes { recv(c.fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        if n <= 0 {
            if n < 0 && (errno == EAGAIN || errno == EINTR) { return }
            close(c.fd)
            connections[c.fd] = nil
            return
        }
        c.request += buffer[0..<n]
        guard c.request.count <= 16384 else { return finish(c, status: "400 Bad Request", body: "request too large\n") }
        // Headers end with an empty line; only the request line matters here.
        guard let end = String(decoding: c.request, as: UTF8.self).range(of: "\r\n\r\n") else { return }
        let head = String(decoding: c.request, as: UTF8.self)[..<end.lowerBound]
        let parts = head.split(separator: "\r\n").first?.split(separator: " ") ?? []
        guard parts.count == 3, parts[0] == "GET" else { return finish(c, status: "400 Bad Request", body: "GET only\n") }
        switch parts[1] {
        case "/metrics":
            finish(c, status: "200 OK", body: exposition(), type: "text/plain; version=0.0.4; charset=utf-8")
        case "/healthz":
            finish(c, status: "200 OK", body: "ok\n")
        case "/readyz":
            draining ? finish(c, status: "503 Service Unavailable", body: "draining\n") : finish(c, status: "200 OK", body: "ready\n")
        default:
            finish(c, status: "404 Not Found", body: "not found\n")
        }
    }

    func finish(_ c: Connection, status: String, body: String, type: String = "text/plain; charset=utf-8") {
        let response = "HTTP/1.1 \(status)\r\nContent-Type: \(type)\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
        var bytes = Array(response.utf8)
        // Small responses; wait for the socket rather than keep per-connection output state.
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeMutableBytes { send(c.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EAGAIN {
                var p = pollfd(fd: c.fd, events: Int16(POLLOUT), revents: 0)
                _ = Glibc.poll(&p, 1, 100)
                continue
            }
            if n <= 0 { break }
            offset += n
        }
        bytes.removeAll()
        close(c.fd)
        connections[c.fd] = nil
    }

    /// The metrics, in Prometheus text format.
    public func exposition() -> String {
        var out = ""
        func family(_ name: String, _ type: String, _ help: String) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
        }
        family("voxedge_packets_total", "counter", "Packets by worker and pipeline verdict.")
        for (w, c) in runtime.counters.enumerated() {
            for v in PacketVerdict.allCases { out += "voxedge_packets_total{worker=\"\(w)\",verdict=\"\(v)\"} \(c[v])\n" }
        }
        family("voxedge_drops_total", "counter", "Dropped packets by worker and reason.")
        for (w, c) in runtime.counters.enumerated() {
            for d in DropReason.allCases { out += "voxedge_drops_total{worker=\"\(w)\",reason=\"\(d)\"} \(c[d])\n" }
        }
        family("voxedge_received_packets_total", "counter", "Packets a worker read from its queue.")
        for (w, c) in runtime.counters.enumerated() { out += "voxedge_received_packets_total{worker=\"\(w)\"} \(c.received)\n" }
        family("voxedge_handed_in_packets_total", "counter", "Packets another worker handed to this one.")
        for (w, c) in runtime.counters.enumerated() { out += "voxedge_handed_in_packets_total{worker=\"\(w)\"} \(c.handedIn)\n" }
        family("voxedge_bursts_total", "counter", "Bursts that handled at least one packet.")
        for (w, c) in runtime.counters.enumerated() { out += "voxedge_bursts_total{worker=\"\(w)\"} \(c.bursts)\n" }
        family("voxedge_worker_busy_seconds_total", "counter", "Time a worker's loop spent on bursts that handled packets.")
        for (w, c) in runtime.counters.enumerated() {
            out += "voxedge_worker_busy_seconds_total{worker=\"\(w)\"} \(Double(c.busyNanoseconds) / 1e9)\n"
        }
        family("voxedge_worker_idle_seconds_total", "counter", "Time a worker's loop spent idle (empty bursts, sleeping in poll).")
        for (w, c) in runtime.counters.enumerated() {
            out += "voxedge_worker_idle_seconds_total{worker=\"\(w)\"} \(Double(c.idleNanoseconds) / 1e9)\n"
        }
        if let xdp = runtime.xdp {
            family("voxedge_xsk_kernel_drops_total", "counter", "Packets the kernel could not give a worker's AF_XDP socket (XDP_STATISTICS), by reason.")
            for w in 0..<runtime.counters.count {
                let k = runtime.socketStatistics(worker: w)
                for (reason, value) in [("rx_dropped", k.rxDropped), ("rx_ring_full", k.rxRingFull),
                    ("rx_fill_ring_empty", k.rxFillRingEmpty), ("rx_invalid_descriptors", k.rxInvalidDescriptors),
                    ("tx_invalid_descriptors", k.txInvalidDescriptors)]
                {
                    out += "voxedge_xsk_kernel_drops_total{worker=\"\(w)\",reason=\"\(reason)\"} \(value)\n"
                }
            }
            family("voxedge_xdp_packets_total", "counter", "Frames the XDP program saw on \(xdp.interface), by verdict and reason.")
            if let counters = xdp.programCounters() {
                for counter in XDPCounter.allCases {
                    out += "voxedge_xdp_packets_total{interface=\"\(xdp.interface)\",counter=\"\(counter)\"} \(counters[counter])\n"
                }
            }
        }
        family("voxedge_sessions", "gauge", "Live sessions.")
        out += "voxedge_sessions \(controller.sessionCount)\n"
        family("voxedge_session_capacity", "gauge", "Session slots allocated at start-up.")
        out += "voxedge_session_capacity \(runtime.store.capacity)\n"
        family("voxedge_control_requests_total", "counter", "Control socket requests.")
        out += "voxedge_control_requests_total \(controller.server?.requests ?? 0)\n"
        family("voxedge_control_errors_total", "counter", "Control socket requests answered with an error.")
        out += "voxedge_control_errors_total \(controller.server?.errors ?? 0)\n"
        return out
    }
}
