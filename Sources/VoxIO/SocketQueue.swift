import CVoxLinux
import CXDP
import Glibc
import Synchronization
import VoxWire

/// A failure opening or binding a socket, with a stable code.
public struct SocketError: Error, Sendable, CustomStringConvertible {
    public var code: String
    public var message: String
    public var errno: Int32
    public var description: String { "\(code): \(message) (\(String(cString: strerror(errno))))" }
}

/// What the socket port dropped below the worker's pipeline, by reason: the kernel-socket
/// counterpart of `XSKStatistics`. A datagram the port takes from the kernel is posted on the
/// RX ring or counted here; one it never takes waits in its socket, or is counted by the
/// kernel (`rxBufferFull`).
public struct SocketPortStatistics: Sendable, Equatable {
    /// Datagrams the kernel dropped at one of this queue's sockets (`SK_MEMINFO_DROPS`): its
    /// receive buffer was full because the worker fell behind or had no free frames (or the
    /// checksum was bad). Sampled every 100 ms by the worker, and as a backend-leg socket closes.
    public var rxBufferFull: UInt64 = 0
    /// Datagrams larger than a frame's room (truncated by the kernel, so dropped here).
    public var rxOversize: UInt64 = 0
    /// Datagrams `sendmmsg` did not take (the socket's send buffer full, or an error).
    public var txFailed: UInt64 = 0
    /// Frames queued for a backend-leg port with no socket (its session ended meanwhile).
    public var txNoSocket: UInt64 = 0

    public init() {}

    /// Each counter under the name `voxedge ctl stats` and `/metrics` give it.
    public var labelled: [(String, UInt64)] {
        [("rx_buffer_full", rxBufferFull), ("rx_oversize", rxOversize), ("tx_failed", txFailed), ("tx_no_socket", txNoSocket)]
    }
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
///
/// It takes from the kernel only what the RX ring and the fill ring have room for, so a
/// datagram read is never thrown away for want of room: the rest stays in its socket until
/// the worker has caught up. What is dropped anyway is counted (`statistics`).
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
    /// The drop counters (`SocketPortStatistics`, in its order): written only by the thread
    /// that drives this queue (a relaxed load and store, no RMW), read by anyone (relaxed
    /// loads): atomics, so the control thread's reads race nothing (ThreadSanitizer).
    let drops: UnsafeMutablePointer<Atomic<UInt64>>
    /// The kernel's drop count last seen on the media socket and on each backend-leg socket.
    var mediaDropsSeen: UInt32 = 0
    let backendDropsSeen: UnsafeMutablePointer<UInt32>
    /// Where the next sample of backend-leg sockets starts (a bounded slice per sample).
    var sampleCursor = 0
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
        drops = .allocate(capacity: 4)
        for i in 0..<4 { (drops + i).initialize(to: Atomic<UInt64>(0)) }
        backendDropsSeen = .allocate(capacity: backendPortCount)
        backendDropsSeen.initialize(repeating: 0, count: backendPortCount)
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
        drops.deinitialize(count: 4)
        drops.deallocate()
        backendDropsSeen.deallocate()
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

    /// Makes `receive` return when `fd` (the worker's doorbell) becomes readable: commands
    /// and the handshake thread's flights wake a worker that sleeps on its sockets.
    public func wake(on fd: Int32) { watch(fd, token: SocketQueue.doorbellToken) }
    static let doorbellToken = UInt64.max - 1

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
        backendDropsSeen[i] = UInt32(truncatingIfNeeded: max(vox_socket_drops(fd), 0))
        watch(fd, token: UInt64(i))
    }

    /// Closes backend-leg `port` (its session ended).
    public func closeBackendPort(_ port: UDPPort) {
        guard let i = backendIndex(port), backendSockets[i] >= 0 else { return }
        sampleBackend(i)  // what it dropped since the last sample, before the count goes with it
        close(backendSockets[i])  // leaves the epoll set with it
        backendSockets[i] = -1
    }

    // MARK: - Drops

    /// Adds `n` to drop counter `i` (the driving thread only).
    func countDrops(_ i: Int, _ n: UInt64) {
        drops[i].store(drops[i].load(ordering: .relaxed) &+ n, ordering: .relaxed)
    }

    /// What this queue has dropped so far.
    public var statistics: SocketPortStatistics {
        var s = SocketPortStatistics()
        s.rxBufferFull = drops[0].load(ordering: .relaxed)
        s.rxOversize = drops[1].load(ordering: .relaxed)
        s.txFailed = drops[2].load(ordering: .relaxed)
        s.txNoSocket = drops[3].load(ordering: .relaxed)
        return s
    }

    /// How many backend-leg sockets one `sampleKernelDrops` reads: bounds its cost (one
    /// getsockopt each) however many sessions there are.
    static let sampleSlice = 256

    /// Adds what the kernel dropped at the media socket, and at the next slice of backend-leg
    /// sockets, since the last sample to `rxBufferFull`. Its driving thread calls it every
    /// 100 ms or so; a closing backend-leg socket is sampled as it closes.
    public func sampleKernelDrops() {
        let now = vox_socket_drops(media)
        if now >= 0 {
            let count = UInt32(truncatingIfNeeded: now)
            countDrops(0, UInt64(count &- mediaDropsSeen))
            mediaDropsSeen = count
        }
        guard backendPortCount > 0 else { return }
        for _ in 0..<min(SocketQueue.sampleSlice, backendPortCount) {
            sampleBackend(sampleCursor)
            sampleCursor = sampleCursor + 1 == backendPortCount ? 0 : sampleCursor + 1
        }
    }

    func sampleBackend(_ i: Int) {
        guard backendSockets[i] >= 0 else { return }
        let now = vox_socket_drops(backendSockets[i])
        guard now >= 0 else { return }
        let count = UInt32(truncatingIfNeeded: now)
        countDrops(0, UInt64(count &- backendDropsSeen[i]))
        backendDropsSeen[i] = count
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
            } else if token < UInt64(backendPortCount), backendSockets[Int(token)] >= 0 {
                total += drain(
                    backendSockets[Int(token)], localAddress: backendAddress,
                    localPort: UDPPort(backendPortBase &+ UInt16(token)))
            }
        }
        return total
    }

    /// recvmmsg from `fd` into frames from the fill ring until it has nothing more, or the
    /// RX ring or the fill ring has no more room: a batch is never larger than both have free,
    /// so every datagram read is posted (or counted, when it did not fit a frame).
    func drain(_ fd: Int32, localAddress: IPAddress, localPort: UDPPort) -> Int {
        // The header `FrameBuilder` will put in front: the peer is of the local address's family.
        let headerRoom = port.headroom + FrameAddresses(
            destinationMAC: .zero, sourceMAC: .zero, source: localAddress, sourcePort: localPort,
            destination: localAddress, destinationPort: localPort).headerLength
        let room = port.frameSize - headerRoom
        var total = 0
        while true {
            // This queue is the RX ring's only producer: what is free now stays free until submit.
            let free = xsk_prod_nb_free(queue.kernelRX, UInt32(SocketQueue.batch))
            guard free > 0 else { return total }  // the worker is behind: the rest waits in the socket
            var fillIndex: UInt32 = 0
            let n = Int(xsk_ring_cons__peek(queue.kernelFill, min(free, UInt32(SocketQueue.batch)), &fillIndex))
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
            let used = max(Int(vox_recvmmsg(fd, messages, UInt32(n))), 0)
            var oversize = 0
            for i in 0..<used where messages[i].msg_hdr.msg_flags & Int32(MSG_TRUNC) != 0 { oversize += 1 }
            var rxIndex: UInt32 = 0
            let toPost = UInt32(used - oversize)
            precondition(toPost == 0 || xsk_ring_prod__reserve(queue.kernelRX, toPost, &rxIndex) == toPost)
            var posted = 0
            for i in 0..<used where messages[i].msg_hdr.msg_flags & Int32(MSG_TRUNC) == 0 {
                let chunk = addresses[i]
                // Posted frames take the fill ring's first entries, in order (we are its consumer:
                // its taken entries are ours to rewrite until released).
                UnsafeMutablePointer(mutating: xsk_ring_cons__comp_addr(queue.kernelFill, fillIndex &+ UInt32(posted)))
                    .pointee = chunk
                let frame = port.umem + Int(chunk) + port.headroom
                let name = names + i * SocketQueue.nameSize
                let family = name.load(as: sa_family_t.self)
                let remote = family == sa_family_t(AF_INET6)
                    ? IPAddress.loadIPv6(from: name, at: 8) : IPAddress(ipv4: name.loadBE32(at: 4))
                let frameAddresses = FrameAddresses(
                    destinationMAC: .zero, sourceMAC: .zero, source: remote, sourcePort: UDPPort(name.loadBE16(at: 2)),
                    destination: localAddress, destinationPort: localPort)
                let length = Int(messages[i].msg_len)
                _ = FrameBuilder.write(frame, frameAddresses, payloadLength: length, udpChecksum: false)
                let desc = xsk_ring_prod__tx_desc(queue.kernelRX, rxIndex &+ UInt32(posted))!
                desc.pointee.addr = chunk + UInt64(port.headroom)
                desc.pointee.len = UInt32(frameAddresses.headerLength + length)
                desc.pointee.options = 0
                posted += 1
            }
            // The oversize datagrams' frames follow the posted ones and stay in the fill ring,
            // with those recvmmsg did not fill.
            var parked = posted
            for i in 0..<used where messages[i].msg_hdr.msg_flags & Int32(MSG_TRUNC) != 0 {
                UnsafeMutablePointer(mutating: xsk_ring_cons__comp_addr(queue.kernelFill, fillIndex &+ UInt32(parked)))
                    .pointee = addresses[i]
                parked += 1
            }
            countDrops(1, UInt64(oversize))
            xsk_ring_cons__cancel(queue.kernelFill, UInt32(n - posted))
            if posted > 0 {
                xsk_ring_cons__release(queue.kernelFill, UInt32(posted))
                xsk_ring_prod__submit(queue.kernelRX, UInt32(posted))
            }
            total += posted
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
                guard r > 0 else {
                    // EAGAIN or an error: the rest is dropped, as a full NIC queue would, and counted.
                    countDrops(2, UInt64(batched - offset))
                    break
                }
                offset += r
                sent += r
            }
            batched = 0
        }
        for i in 0..<n {
            let desc = xsk_ring_cons__rx_desc(queue.kernelTX, index &+ i)!.pointee
            let frame = port.umem + Int(desc.addr)
            var parsed = ParsedFrame()
            // The worker builds every frame it sends: one that does not parse is a bug, not input.
            guard ParsedFrame.parse(frame, length: Int(desc.len), into: &parsed) == .ok else { continue }
            let fd: Int32
            if parsed.sourcePort == mediaPort {
                fd = media
            } else {
                guard let b = backendIndex(parsed.sourcePort), backendSockets[b] >= 0 else {
                    countDrops(3, 1)
                    continue
                }
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
