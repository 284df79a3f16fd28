import Glibc
import VoxWire

/// A failure talking to the kernel's network configuration (rtnetlink, ethtool), with a
/// stable code: `netlink.socket`, `netlink.send`, `netlink.receive`, `netlink.timeout`,
/// `netlink.malformed`, `netlink.request` (the kernel refused; `errno` says why),
/// `interface.notFound`, `interface.notEthernet`.
public struct NetlinkError: Error, Sendable, CustomStringConvertible {
    public var code: String
    public var message: String
    public var errno: Int32
    public var description: String {
        errno == 0 ? "\(code): \(message)" : "\(code): \(message) (\(String(cString: strerror(errno))))"
    }
}

/// rtnetlink's numbers. Swift cannot import the `NLMSG_*`/`RTA_*` macros, and the enums of
/// `linux/rtnetlink.h` are not in Glibc's module: these mirror the kernel's UAPI headers.
enum RTNL {
    // linux/netlink.h
    static let headerSize = 16
    static let error: UInt16 = 2
    static let done: UInt16 = 3
    static let overrun: UInt16 = 4
    static let request: UInt16 = 0x01
    static let ack: UInt16 = 0x04
    static let dump: UInt16 = 0x300
    static let create: UInt16 = 0x400
    static let solNetlink: Int32 = 270
    static let extendedAck: Int32 = 11
    // linux/rtnetlink.h: message types
    static let newLink: UInt16 = 16
    static let getLink: UInt16 = 18
    static let newAddress: UInt16 = 20
    static let getAddress: UInt16 = 22
    static let newRoute: UInt16 = 24
    static let getRoute: UInt16 = 26
    static let newNeighbour: UInt16 = 28
    static let deleteNeighbour: UInt16 = 29
    static let getNeighbour: UInt16 = 30
    // Multicast groups (the RTMGRP_* bit masks of the legacy `nl_groups` field).
    static let groupLink: UInt32 = 0x1
    static let groupNeighbour: UInt32 = 0x4
    static let groupIPv4Address: UInt32 = 0x10
    static let groupIPv4Route: UInt32 = 0x40
    static let groupIPv6Address: UInt32 = 0x100
    static let groupIPv6Route: UInt32 = 0x400
    // Route attributes and types.
    static let routeDestination: UInt16 = 1
    static let routeOutputInterface: UInt16 = 4
    static let routeGateway: UInt16 = 5
    static let routePreferredSource: UInt16 = 7
    static let routeVia: UInt16 = 18
    static let routeUnicast: UInt8 = 1
    static let routeLocal: UInt8 = 2
    // Neighbour attributes (linux/neighbour.h).
    static let neighbourDestination: UInt16 = 1
    static let neighbourLinkAddress: UInt16 = 2
    static let neighbourUse: UInt8 = 0x01
    // Link attributes (linux/if_link.h).
    static let linkAddress: UInt16 = 1
    static let linkName: UInt16 = 3
    static let linkMTU: UInt16 = 4
    static let linkTXQueues: UInt16 = 31
    static let linkRXQueues: UInt16 = 32
    static let hardwareEther: UInt16 = 1
    // Address attributes (linux/if_addr.h).
    static let addressAddress: UInt16 = 1
    static let addressLocal: UInt16 = 2

    /// NLMSG_ALIGN / RTA_ALIGN: 4 bytes.
    static func align(_ n: Int) -> Int { (n + 3) & ~3 }
}

/// One netlink message as received: its header fields and the bytes after the header.
struct NetlinkMessage {
    var type: UInt16
    var flags: UInt16
    var sequence: UInt32
    var payload: [UInt8]

    /// Attributes (`struct rtattr`/`nlattr`) following a fixed family header of `offset`
    /// bytes, by type (the nested/byte-order flag bits masked off). Stops at the first
    /// malformed one.
    func attributes(after offset: Int) -> [UInt16: ArraySlice<UInt8>] {
        var result: [UInt16: ArraySlice<UInt8>] = [:]
        var at = RTNL.align(offset)
        while at + 4 <= payload.count {
            let length = Int(payload.load(UInt16.self, at: at))
            guard length >= 4, at + length <= payload.count else { break }
            result[payload.load(UInt16.self, at: at + 2) & 0x3FFF] = payload[(at + 4)..<(at + length)]
            at += RTNL.align(length)
        }
        return result
    }
}

extension Array where Element == UInt8 {
    /// A host-order integer at `offset` (netlink headers are in host order); the caller
    /// checked the length.
    func load<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
        withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: T.self) }
    }

    mutating func append<T: FixedWidthInteger>(host value: T) {
        Swift.withUnsafeBytes(of: value) { append(contentsOf: $0) }
    }
}

extension ArraySlice where Element == UInt8 {
    func load<T: FixedWidthInteger>(_: T.Type) -> T? {
        guard count >= MemoryLayout<T>.size else { return nil }
        return withUnsafeBytes { $0.loadUnaligned(as: T.self) }
    }
}

/// A request being built: the 16-byte `nlmsghdr`, a family header, then attributes, each
/// padded to 4 bytes. `NetlinkSocket.request` fills in the length and sequence number.
struct NetlinkRequest {
    var bytes: [UInt8]

    init(type: UInt16, flags: UInt16) {
        bytes = [UInt8](repeating: 0, count: RTNL.headerSize)
        bytes.withUnsafeMutableBytes {
            $0.storeBytes(of: type, toByteOffset: 4, as: UInt16.self)
            $0.storeBytes(of: flags, toByteOffset: 6, as: UInt16.self)
        }
    }

    mutating func append<T: FixedWidthInteger>(_ value: T) { bytes.append(host: value) }

    mutating func attribute(_ type: UInt16, _ payload: [UInt8]) {
        bytes.append(host: UInt16(4 + payload.count))
        bytes.append(host: type)
        bytes += payload
        bytes += [UInt8](repeating: 0, count: RTNL.align(bytes.count) - bytes.count)
    }
}

extension IPAddress {
    /// The netlink address family of this address: AF_INET or AF_INET6.
    var family: UInt8 { UInt8(isIPv4 ? AF_INET : AF_INET6) }

    /// The address as the kernel carries it in attributes: 4 or 16 bytes, network order.
    var kernelBytes: [UInt8] {
        if isIPv4 { return withUnsafeBytes(of: ipv4.bigEndian) { Array($0) } }
        return withUnsafeBytes(of: (high.bigEndian, low.bigEndian)) { Array($0) }
    }

    /// Reads a 4- or 16-byte network-order address attribute.
    init?(kernelBytes bytes: ArraySlice<UInt8>) {
        switch bytes.count {
        case 4: self.init(ipv4: UInt32(bigEndian: bytes.load(UInt32.self)!))
        case 16:
            let high = UInt64(bigEndian: bytes.prefix(8).load(UInt64.self)!)
            let low = UInt64(bigEndian: bytes.dropFirst(8).load(UInt64.self)!)
            self.init(high: high, low: low)
        default: return nil
        }
    }
}

extension MACAddress {
    /// Reads a 6-byte link-layer address attribute.
    init?(kernelBytes bytes: ArraySlice<UInt8>) {
        guard bytes.count == 6 else { return nil }
        self.init(rawValue: bytes.reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
    }
}

/// A NETLINK_ROUTE socket of the calling thread's network namespace, owned: closed on
/// deinit. Used two ways: request/response (`request`, `dump`), blocking with a receive
/// timeout so a lost reply cannot stall the control thread; or as a non-blocking listener
/// of multicast `groups` (`receive`).
struct NetlinkSocket: ~Copyable, Sendable {
    let fd: Int32
    private var sequence: UInt32 = 0
    private var buffer: [UInt8]

    /// Opens and binds the socket. The corresponding C function is `socket(AF_NETLINK, …)`.
    init(groups: UInt32 = 0) throws(NetlinkError) {
        let flags = Int32(SOCK_CLOEXEC.rawValue) | (groups != 0 ? Int32(SOCK_NONBLOCK.rawValue) : 0)
        let fd = socket(AF_NETLINK, Int32(SOCK_RAW.rawValue) | flags, 0 /* NETLINK_ROUTE */)
        guard fd >= 0 else { throw NetlinkError(code: "netlink.socket", message: "socket(AF_NETLINK)", errno: Glibc.errno) }
        var one: Int32 = 1
        // Error replies then carry the kernel's reason text; harmless where unsupported.
        _ = setsockopt(fd, RTNL.solNetlink, RTNL.extendedAck, &one, socklen_t(MemoryLayout<Int32>.size))
        if groups == 0 {
            var timeout = timeval(tv_sec: 2, tv_usec: 0)
            _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        } else {
            // Room for a burst of events (a link flap re-announces every route); an overrun
            // is still handled, by resynchronising.
            var size: Int32 = 1 << 20
            if setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, socklen_t(MemoryLayout<Int32>.size)) != 0 {
                _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
            }
        }
        // struct sockaddr_nl: family (2), pad (2), port id (4, 0: the kernel assigns), groups (4).
        var address: [UInt8] = []
        address.append(host: UInt16(AF_NETLINK))
        address.append(host: UInt16(0))
        address.append(host: UInt32(0))
        address.append(host: groups)
        let bound = address.withUnsafeBytes {
            bind(fd, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t($0.count))
        }
        guard bound == 0 else {
            let e = Glibc.errno
            close(fd)
            throw NetlinkError(code: "netlink.socket", message: "bind(AF_NETLINK, groups \(groups))", errno: e)
        }
        self.fd = fd
        buffer = [UInt8](repeating: 0, count: 64 * 1024)
    }

    deinit { close(fd) }

    /// Sends `request` with `NLM_F_ACK` and returns the reply messages before the
    /// acknowledgement. A negative acknowledgement throws `netlink.request` with its errno.
    mutating func request(_ request: NetlinkRequest) throws(NetlinkError) -> [NetlinkMessage] {
        var request = request
        request.bytes.withUnsafeMutableBytes {
            $0.storeBytes(of: $0.load(fromByteOffset: 6, as: UInt16.self) | RTNL.ack, toByteOffset: 6, as: UInt16.self)
        }
        return try exchange(request, untilDone: false)
    }

    /// Sends a `NLM_F_DUMP` request and returns every message up to `NLMSG_DONE`.
    mutating func dump(_ request: NetlinkRequest) throws(NetlinkError) -> [NetlinkMessage] {
        try exchange(request, untilDone: true)
    }

    private mutating func exchange(_ request: NetlinkRequest, untilDone: Bool) throws(NetlinkError) -> [NetlinkMessage] {
        sequence &+= 1
        let sequence = self.sequence
        var bytes = request.bytes
        bytes.withUnsafeMutableBytes {
            $0.storeBytes(of: UInt32($0.count), toByteOffset: 0, as: UInt32.self)
            $0.storeBytes(of: sequence, toByteOffset: 8, as: UInt32.self)
        }
        let sent = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
        guard sent == bytes.count else { throw NetlinkError(code: "netlink.send", message: "send", errno: Glibc.errno) }
        var replies: [NetlinkMessage] = []
        while true {
            for message in try receive() where message.sequence == sequence {
                switch message.type {
                case RTNL.error:
                    guard message.payload.count >= 4 else {
                        throw NetlinkError(code: "netlink.malformed", message: "short NLMSG_ERROR", errno: 0)
                    }
                    let error = message.payload.load(Int32.self, at: 0)
                    if error == 0 { return replies }
                    throw NetlinkError(code: "netlink.request", message: Self.reason(message), errno: -error)
                case RTNL.done:
                    return replies
                default:
                    replies.append(message)
                }
            }
        }
    }

    /// The extended-ack text of an error message, if the kernel sent one.
    private static func reason(_ message: NetlinkMessage) -> String {
        // NLMSG_ERROR: errno (4), the original request's header (16, capped), then TLVs;
        // NLMSGERR_ATTR_MSG = 1 is a NUL-terminated string.
        if message.flags & 0x200 /* NLM_F_ACK_TLVS */ != 0,
            let text = message.attributes(after: 4 + RTNL.headerSize)[1]
        {
            return String(decoding: text.prefix { $0 != 0 }, as: UTF8.self)
        }
        return "the kernel refused the request"
    }

    /// Reads one datagram and splits it into messages. On a request socket this waits up to
    /// the receive timeout; on a listener it returns `[]` when nothing is queued.
    /// `NLMSG_OVERRUN`/`ENOBUFS` (events lost) throw `netlink.overrun`.
    mutating func receive() throws(NetlinkError) -> [NetlinkMessage] {
        let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if count < 0 {
            let e = Glibc.errno
            if e == EINTR { return [] }
            if e == EAGAIN {
                if fcntl(fd, F_GETFL) & O_NONBLOCK != 0 { return [] }
                throw NetlinkError(code: "netlink.timeout", message: "no reply from the kernel", errno: e)
            }
            if e == ENOBUFS { throw NetlinkError(code: "netlink.overrun", message: "events were lost", errno: e) }
            throw NetlinkError(code: "netlink.receive", message: "recv", errno: e)
        }
        var messages: [NetlinkMessage] = []
        var at = 0
        while at + RTNL.headerSize <= count {
            let length = Int(buffer.load(UInt32.self, at: at))
            guard length >= RTNL.headerSize, at + length <= count else {
                throw NetlinkError(code: "netlink.malformed", message: "message length \(length)", errno: 0)
            }
            let type = buffer.load(UInt16.self, at: at + 4)
            if type == RTNL.overrun {
                throw NetlinkError(code: "netlink.overrun", message: "events were lost", errno: ENOBUFS)
            }
            messages.append(
                NetlinkMessage(
                    type: type,
                    flags: buffer.load(UInt16.self, at: at + 6),
                    sequence: buffer.load(UInt32.self, at: at + 8),
                    payload: Array(buffer[(at + RTNL.headerSize)..<(at + length)])
                )
            )
            at += RTNL.align(length)
        }
        return messages
    }
}
