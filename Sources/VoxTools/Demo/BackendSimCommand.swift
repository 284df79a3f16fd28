import ArgumentParser
import CVoxLinux
import Foundation
import Glibc
import VoxControl

/// A backend for demos and tests: answers every RTP datagram by sending it back to where it
/// came from (the edge's backend leg of that session), after an optional delay. The next
/// issues grow it into a full backend (tones, load reports, slow or dead on command).
public struct BackendSimCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "backend-sim", abstract: "An echoing inference backend for demos and tests.")

    @Option(help: "Where to listen, ip:port.") var listen = "127.0.0.1:5004"
    @Option(help: "Echo after this many milliseconds.") var delayMs = 0

    public init() {}

    public func run() throws {
        vox_unblock_all_signals()  // a parent that blocks signals must not take SIGTERM/SIGCHLD from us
        guard let (address, port) = EngineController.parseEndpoint(listen), address.isIPv4 else {
            throw ValidationError("--listen: '\(listen)' is not an IPv4 ip:port")
        }
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = port.rawValue.bigEndian
        a.sin_addr.s_addr = address.ipv4.bigEndian
        let bound = withUnsafePointer(to: &a) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else { throw ValidationError("cannot bind \(listen): \(String(cString: strerror(errno)))") }
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
