import ArgumentParser
import CVoxLinux
import Foundation
import Glibc
import VoxControl
import VoxIO

/// A backend for demos and tests: answers every RTP datagram by sending it back to where it
/// came from (the edge's backend leg of that session), after an optional delay. The next
/// issues grow it into a full backend (tones, load reports, slow or dead on command).
public struct BackendSimCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "backend-sim", abstract: "An echoing inference backend for demos and tests.")

    @Option(help: "Where to listen, ip:port or [ipv6]:port.") var listen = "127.0.0.1:5004"
    @Option(help: "Echo after this many milliseconds.") var delayMs = 0

    public init() {}

    public func run() throws {
        vox_unblock_all_signals()  // a parent that blocks signals must not take SIGTERM/SIGCHLD from us
        guard let (address, port) = EngineController.parseEndpoint(listen) else {
            throw ValidationError("--listen: '\(listen)' is not an ip:port or [ipv6]:port")
        }
        let fd: Int32
        do {
            fd = try SocketQueue.bind(address, port, reusePort: false)
        } catch {
            throw ValidationError("cannot bind \(listen): \(error)")
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)  // this loop waits in recvfrom
        print("backend-sim listening on \(listen)")
        fflush(nil)
        var buffer = [UInt8](repeating: 0, count: 2048)
        var from = sockaddr_storage()
        while true {
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let n = buffer.withUnsafeMutableBytes { b in
                withUnsafeMutablePointer(to: &from) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(fd, b.baseAddress, b.count, 0, $0, &length) }
                }
            }
            guard n > 0 else { continue }
            if delayMs > 0 { usleep(UInt32(delayMs) * 1000) }
            _ = buffer.withUnsafeBytes { b in
                withUnsafePointer(to: &from) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, b.baseAddress, n, 0, $0, length) }
                }
            }
        }
    }
}
