import CVoxLinux
import CXDP
import Glibc
import VoxWire

/// A failure opening or binding a socket, with a stable code.
public struct SocketError: Error, Sendable, CustomStringConvertible {
    public var code: String
    public var message: String
    public var errno: Int32
    public var description: String { "\(code): \(message) (\(String(cString: strerror(errno))))" }
}

/// The kernel-socket port of one worker (DESIGN §1: the fallback where XDP cannot attach,
/// and the path for traffic that never crosses a NIC). It plays the kernel's side of the
/// worker's rings, as `InMemoryPort` does in tests, but with real sockets: `receive` reads
/// datagrams with `recvmmsg` straight into frames taken from the fill ring, puts an
/// Ethernet/IP/UDP header in front (so the worker's pipeline is the same one AF_XDP runs)
/// and posts them on the RX ring; `transmit` sends the TX ring's frames with `sendmmsg` from
/// the socket their source port names, payload straight from the frame.
///
/// Sockets: the media port, bound with `SO_REUSEPORT` so each worker has its own; and the
/// backend-leg ports its owner opens (`openBackendPort`), one per session so each session has
/// its own backend 5-tuple as on AF_XDP (a descriptor each: `ulimit -n` bounds sessions). It
/// knows ports and addresses, never sessions.
public final class SocketQueue: @unchecked Sendable {
    public static let batch = 64
    let port: InMemoryPort
    let queue: InMemoryPort.Queue
    let mediaAddress: IPAddress
    let mediaPort: UDPPort
    let backendAddress: IPAddress
    let backendPortBase: UInt16
    let media: Int32
    let epoll: Int32
    /// How many backend-leg ports from `backendPortBase` this queue may open.
    let backendPortCount: Int
    /// The socket of each backend-leg port (index: port − `backendPortBase`), or -1.
    let backendSockets: UnsafeMutablePointer<Int32>
    // Batch scratch, allocated once.
    let messages: UnsafeMutablePointer<vox_mmsghdr>
    let vectors: UnsafeMutablePointer<iovec>
    let names: UnsafeMutableRawPointer
    let addresses: UnsafeMutablePointer<UInt64>
    let tokens: UnsafeMutablePointer<UInt64>
    static let nameSize = MemoryLayout<sockaddr_in6>.size

    public init(
        port: InMemoryPort, queue q: Int, mediaAddress: IPAddress, mediaPort: UDPPort, backendAddress: IPAddress,
        backendPortBase: UInt16, backendPortCount: Int, receiveBuffer: Int = SocketQueue.defaultReceiveBuffer
    ) throws(SocketError) {
        self.port = port
        self.queue = port.queues[q]
        self.mediaAddress = mediaAddress
        self.mediaPort = mediaPort
        self.backendAddress = backendAddress
        self.backendPortBase = backendPortBase
        self.backendPortCount = backendPortCount
        epoll = vox_epoll_create()
        guard epoll >= 0 else { throw SocketError(code: "socket.epoll", message: "epoll_create1", errno: -epoll) }
        do {
            media = try SocketQueue.bind(mediaAddress, mediaPort, reusePort: true)
        } catch {
            close(epoll)
            throw error
        }
        SocketQueue.setReceiveBuffer(media, bytes: receiveBuffer)
        backendSockets = .allocate(capacity: backendPortCount)
        backendSockets.initialize(repeating: -1, count: backendPortCount)
        messages = .allocate(capacity: SocketQueue.batch)
        vectors = .allocate(capacity: SocketQueue.batch)
        names = .allocate(byteCount: SocketQueue.batch * SocketQueue.nameSize, alignment: 8)
        addresses = .allocate(capacity: SocketQueue.batch)
        tokens = .allocate(capacity: SocketQueue.batch)
        watch(media, token: UInt64.max)
    }

    deinit {
        for i in 0..<backendPortCount where backendSockets[i] >= 0 { close(backendSockets[i]) }
        close(media)
        close(epoll)
        backendSockets.deallocate()
        messages.deallocate()
        vectors.deallocate()
        names.deallocate()
        addresses.deallocate()
        tokens.deallocate()
    }

    /// The media socket's receive buffer: every client of a worker lands in it, and the
    /// kernel's default (208 KiB, 2–3 ms at 100k pps of voice) overflows on a scheduling
    /// hiccup (measured: 0.05–0.55 % loss at 100k pps, docs/benchmarks.md).
    public static let defaultReceiveBuffer = 8 << 20

    /// SO_RCVBUFFORCE where the process may (CAP_NET_ADMIN), else SO_RCVBUF (capped by
    /// net.core.rmem_max). Best effort: a smaller buffer still works.
    static func setReceiveBuffer(_ fd: Int32, bytes: Int) {
        guard bytes > 0 else { return }
        var size = Int32(clamping: bytes)
        let length = socklen_t(MemoryLayout<Int32>.size)
        if setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, length) != 0 {
            _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, length)
        }
    }

    /// A non-blocking UDP socket bound to `address:port`.
    public static func bind(_ address: IPAddress, _ port: UDPPort, reusePort: Bool) throws(SocketError) -> Int32 {
        let v6 = !address.isIPv4
        let fd = socket(v6 ? AF_INET6 : AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SocketError(code: "socket.create", message: "socket()", errno: Glibc.errno) }
        if reusePort && vox_set_reuseport(fd) != 0 {
            let e = Glibc.errno
            close(fd)
            throw SocketError(code: "socket.reuseport", message: "SO_REUSEPORT on \(address):\(port)", errno: e)
        }
        var storage = sockaddr_in6()
        let length = SocketQueue.fill(&storage, address, port)
        let ok = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, length) }
        }
        guard ok == 0 else {
            let e = Glibc.errno
            close(fd)
            throw SocketError(code: "socket.bind", message: "bind \(address):\(port)", errno: e)
        }
        return fd
    }

    /// Writes `address:port` as a sockaddr_in or sockaddr_in6; returns its length.
    @discardableResult
    static func fill(_ storage: UnsafeMutablePointer<sockaddr_in6>, _ address: IPAddress, _ port: UDPPort) -> socklen_t {
        let raw = UnsafeMutableRawPointer(storage)
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: MemoryLayout<sockaddr_in6>.size)
        if address.isIPv4 {
            raw.storeBytes(of: sa_family_t(AF_INET), toByteOffset: 0, as: sa_family_t.self)
            raw.storeBE16(port.rawValue, at: 2)
            raw.storeBE32(address.ipv4, at: 4)
            return socklen_t(MemoryLayout<sockaddr_in>.size)
        }
        raw.storeBytes(of: sa_family_t(AF_INET6), toByteOffset: 0, as: sa_family_t.self)
        raw.storeBE16(port.rawValue, at: 2)
        address.storeIPv6(to: raw, at: 8)
        return socklen_t(MemoryLayout<sockaddr_in6>.size)
    }

    static func fill(_ storage: inout sockaddr_in6, _ address: IPAddress, _ port: UDPPort) -> socklen_t {
        withUnsafeMutablePointer(to: &storage) { fill($0, address, port) }
    }


    func watch(_ fd: Int32, token: UInt64) {
        _ = vox_epoll_add(epoll, fd, token)
    }

    // MARK: - Backend-leg ports

    /// The index of backend-leg `port` in this queue's range, if it is in it.
    func backendIndex(_ port: UDPPort) -> Int? {
        let i = Int(port.rawValue) - Int(backendPortBase)
        return i >= 0 && i < backendPortCount ? i : nil
    }

    /// Watches backend-leg `port` (its owner calls this as a session starts) through
    /// `socket`, a UDP socket already bound to it on the backend address, which this queue
    /// now owns; without one, binds it here. Opening a port already open here is a no-op
    /// (and closes `socket`).
    public func openBackendPort(_ port: UDPPort, socket given: Int32 = -1) throws(SocketError) {
        guard let i = backendIndex(port) else {
            if given >= 0 { close(given) }
            throw SocketError(code: "socket.range", message: "port \(port) is outside this queue's backend range", errno: EINVAL)
        }
        guard backendSockets[i] < 0 else {
            if given >= 0 { close(given) }
            return
        }
        let fd = given >= 0 ? given : try SocketQueue.bind(backendAddress, port, reusePort: false)
        backendSockets[i] = fd
        watch(fd, token: UInt64(i))
    }

    /// Closes backend-leg `port` (its session ended).
    public func closeBackendPort(_ port: UDPPort) {
        guard let i = backendIndex(port), backendSockets[i] >= 0 else { return }
        close(backendSockets[i])  // leaves the epoll set with it
        backendSockets[i] = -1
    }

    // MARK: - Receive

    /// Waits up to `timeout` ms (0: poll) for datagrams and posts what arrived on the RX
    /// ring. Returns how many.
    public func receive(timeout: Int32 = 0) -> Int {
        let ready = tokens.withMemoryRebound(to: CUnsignedLongLong.self, capacity: SocketQueue.batch) {
            vox_epoll_wait(epoll, $0, Int32(SocketQueue.batch), timeout)
        }
        guard ready > 0 else { return 0 }
        var total = 0
        for i in 0..<Int(ready) {
            let token = tokens[i]
            if token == UInt64.max {
                total += drain(media, localAddress: mediaAddress, localPort: mediaPort)
            } else if Int(token) < backendPortCount, backendSockets[Int(token)] >= 0 {
                total += drain(
                    backendSockets[Int(token)], localAddress: backendAddress,
                    localPort: UDPPort(backendPortBase &+ UInt16(token)))
            }
        }
        return total
    }

    /// recvmmsg from `fd` into frames from the fill ring until it has nothing more.
    func drain(_ fd: Int32, localAddress: IPAddress, localPort: UDPPort) -> Int {
        // The header `FrameBuilder` will put in front: the peer is of the local address's family.
        let headerRoom = port.headroom + FrameAddresses(
            destinationMAC: .zero, sourceMAC: .zero, source: localAddress, sourcePort: localPort,
            destination: localAddress, destinationPort: localPort).headerLength
        let room = port.frameSize - headerRoom
        var total = 0
        while true {
            var fillIndex: UInt32 = 0
            let n = Int(xsk_ring_cons__peek(queue.kernelFill, UInt32(SocketQueue.batch), &fillIndex))
            guard n > 0 else { return total }  // no frames: the rest waits in the socket
            for i in 0..<n {
                let chunk = xsk_ring_cons__comp_addr(queue.kernelFill, fillIndex &+ UInt32(i)).pointee
                addresses[i] = chunk
                vectors[i] = iovec(iov_base: port.umem + Int(chunk) + headerRoom, iov_len: room)
                var header = msghdr()
                header.msg_name = names + i * SocketQueue.nameSize
                header.msg_namelen = socklen_t(SocketQueue.nameSize)
                header.msg_iov = vectors + i
                header.msg_iovlen = 1
                messages[i] = vox_mmsghdr(msg_hdr: header, msg_len: 0)
            }
            let got = Int(vox_recvmmsg(fd, messages, UInt32(n)))
            let used = max(got, 0)
            var rxIndex: UInt32 = 0
            guard used == 0 || xsk_ring_prod__reserve(queue.kernelRX, UInt32(used), &rxIndex) == UInt32(used) else {
                xsk_ring_cons__cancel(queue.kernelFill, UInt32(n))
                return total
            }
            for i in 0..<used {
                let frame = port.umem + Int(addresses[i]) + port.headroom
                let name = names + i * SocketQueue.nameSize
                let family = name.load(as: sa_family_t.self)
                let remote = family == sa_family_t(AF_INET6)
                    ? IPAddress.loadIPv6(from: name, at: 8) : IPAddress(ipv4: name.loadBE32(at: 4))
                let addresses = FrameAddresses(
                    destinationMAC: .zero, sourceMAC: .zero, source: remote, sourcePort: UDPPort(name.loadBE16(at: 2)),
                    destination: localAddress, destinationPort: localPort)
                let length = Int(messages[i].msg_len)
                _ = FrameBuilder.write(frame, addresses, payloadLength: length, udpChecksum: false)
                let desc = xsk_ring_prod__tx_desc(queue.kernelRX, rxIndex &+ UInt32(i))!
                desc.pointee.addr = self.addresses[i] + UInt64(port.headroom)
                desc.pointee.len = UInt32(addresses.headerLength + length)
                desc.pointee.options = 0
            }
            // Frames recvmmsg did not fill stay in the fill ring.
            xsk_ring_cons__cancel(queue.kernelFill, UInt32(n - used))
            if used > 0 {
                xsk_ring_cons__release(queue.kernelFill, UInt32(used))
                xsk_ring_prod__submit(queue.kernelRX, UInt32(used))
            }
            total += used
            if used < n { return total }
        }
    }

    // MARK: - Transmit

    /// Sends everything on the TX ring, batched per socket, and completes the frames.
    /// Returns how many datagrams the kernel took.
    @discardableResult
    public func transmit() -> Int {
        var index: UInt32 = 0
        let n = xsk_ring_cons__peek(queue.kernelTX, queue.tx.size, &index)
        guard n > 0 else { return 0 }
        var sent = 0
        var batched = 0
        var batchFD: Int32 = -1
        func flush() {
            var offset = 0
            while offset < batched {
                let r = Int(vox_sendmmsg(batchFD, messages + offset, UInt32(batched - offset)))
                if r <= 0 { break }  // EAGAIN or an error: the rest is dropped, as a full NIC queue would
                offset += r
                sent += r
            }
            batched = 0
        }
        for i in 0..<n {
            let desc = xsk_ring_cons__rx_desc(queue.kernelTX, index &+ i)!.pointee
            let frame = port.umem + Int(desc.addr)
            var parsed = ParsedFrame()
            guard ParsedFrame.parse(frame, length: Int(desc.len), into: &parsed) == .ok else { continue }
            let fd: Int32
            if parsed.sourcePort == mediaPort {
                fd = media
            } else {
                guard let b = backendIndex(parsed.sourcePort), backendSockets[b] >= 0 else { continue }
                fd = backendSockets[b]
            }
            if fd != batchFD || batched == SocketQueue.batch {
                flush()
                batchFD = fd
            }
            let name = (names + batched * SocketQueue.nameSize).assumingMemoryBound(to: sockaddr_in6.self)
            let nameLength = SocketQueue.fill(name, parsed.destination, parsed.destinationPort)
            vectors[batched] = iovec(iov_base: frame + parsed.payloadOffset, iov_len: parsed.payloadLength)
            var header = msghdr()
            header.msg_name = UnsafeMutableRawPointer(name)
            header.msg_namelen = nameLength
            header.msg_iov = vectors + batched
            header.msg_iovlen = 1
            messages[batched] = vox_mmsghdr(msg_hdr: header, msg_len: 0)
            batched += 1
        }
        flush()
        // Every frame goes back to the worker, sent or not.
        var completion: UInt32 = 0
        precondition(xsk_ring_prod__reserve(queue.kernelCompletion, n, &completion) == n, "completion ring full")
        for i in 0..<n {
            xsk_ring_prod__fill_addr(queue.kernelCompletion, completion &+ i).pointee =
                xsk_ring_cons__rx_desc(queue.kernelTX, index &+ i)!.pointee.addr
        }
        xsk_ring_cons__release(queue.kernelTX, n)
        xsk_ring_prod__submit(queue.kernelCompletion, n)
        return sent
    }
}
