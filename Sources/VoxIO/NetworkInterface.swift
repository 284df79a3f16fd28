import CVoxLinux
import Glibc
import VoxWire

/// What the engine needs to know about the Ethernet interface it runs on, read from the
/// kernel of the calling thread's network namespace (rtnetlink and ethtool, not
/// `/sys/class/net`, which shows the namespace `/sys` was mounted in).
public struct NetworkInterface: Hashable, Sendable {
    /// An address configured on the interface, with its prefix length.
    public struct Address: Hashable, Sendable, CustomStringConvertible {
        public var address: IPAddress
        public var prefixLength: Int
        public var description: String { "\(address)/\(prefixLength)" }
    }

    /// The driver's active channels (`ethtool -l`). NICs usually report combined channels;
    /// veth reports separate rx and tx counts.
    public struct Channels: Hashable, Sendable {
        public var rx: Int
        public var tx: Int
        public var other: Int
        public var combined: Int
    }

    public var name: String
    public var index: Int32
    /// The source MAC of every frame the engine writes on this interface.
    public var mac: MACAddress
    public var mtu: Int
    /// Queues the device was created with (`numrxqueues`/`numtxqueues`): an upper bound.
    public var rxQueues: Int
    public var txQueues: Int
    /// The active channels, or nil when the driver does not report them.
    public var channels: Channels?
    /// IPv4 first, then IPv6, in the kernel's order.
    public var addresses: [Address]
    public var isUp: Bool

    /// The queue ids an AF_XDP socket can bind to are `0..<queueCount`: a socket needs both
    /// an RX and a TX queue of its id, so combined channels plus paired rx/tx ones; without
    /// ethtool channels, the device's queue counts.
    public var queueCount: Int {
        if let channels { return max(1, channels.combined + min(channels.rx, channels.tx)) }
        return max(1, min(rxQueues, txQueues))
    }

    /// Looks up the interface `name` in the calling thread's network namespace.
    /// Throws `interface.notFound` if there is none, `interface.notEthernet` if it has no
    /// Ethernet address (loopback, tun): AF_XDP frames carry Ethernet headers.
    public static func named(_ name: String) throws(NetlinkError) -> NetworkInterface {
        var socket = try NetlinkSocket()
        var request = NetlinkRequest(type: RTNL.getLink, flags: RTNL.request)
        request.append(UInt8(AF_UNSPEC))
        request.append(UInt8(0))
        request.append(UInt16(0))  // type
        request.append(Int32(0))  // index: look up by name
        request.append(UInt32(0))  // flags
        request.append(UInt32(0))  // change
        request.attribute(RTNL.linkName, Array(name.utf8) + [0])
        let replies: [NetlinkMessage]
        do {
            replies = try socket.request(request)
        } catch where error.errno == ENODEV {
            throw NetlinkError(code: "interface.notFound", message: "no interface named \(name)", errno: ENODEV)
        }
        guard let link = replies.first(where: { $0.type == RTNL.newLink }), link.payload.count >= 16 else {
            throw NetlinkError(code: "netlink.malformed", message: "no RTM_NEWLINK for \(name)", errno: 0)
        }
        let hardware = link.payload.load(UInt16.self, at: 2)
        let index = link.payload.load(Int32.self, at: 4)
        let flags = link.payload.load(UInt32.self, at: 8)
        let attributes = link.attributes(after: 16)
        guard hardware == RTNL.hardwareEther, let raw = attributes[RTNL.linkAddress],
            let mac = MACAddress(kernelBytes: raw)
        else {
            throw NetlinkError(
                code: "interface.notEthernet", message: "\(name) has no Ethernet address (type \(hardware))", errno: 0)
        }
        let mtu = attributes[RTNL.linkMTU]?.load(UInt32.self) ?? 1500
        let rx = attributes[RTNL.linkRXQueues]?.load(UInt32.self) ?? 1
        let tx = attributes[RTNL.linkTXQueues]?.load(UInt32.self) ?? 1
        return NetworkInterface(
            name: name, index: index, mac: mac, mtu: Int(mtu), rxQueues: Int(rx), txQueues: Int(tx),
            channels: channels(name, socket: socket.fd),
            addresses: try addresses(of: index, socket: &socket),
            isUp: flags & UInt32(IFF_UP) != 0
        )
    }

    /// `ETHTOOL_GCHANNELS`, or nil where the driver does not implement it.
    static func channels(_ name: String, socket fd: Int32) -> Channels? {
        var counts: (UInt32, UInt32, UInt32, UInt32) = (0, 0, 0, 0)
        let result = withUnsafeMutableBytes(of: &counts) {
            vox_ethtool_channels(fd, name, $0.baseAddress!.assumingMemoryBound(to: UInt32.self))
        }
        guard result == 0 else { return nil }
        return Channels(rx: Int(counts.0), tx: Int(counts.1), other: Int(counts.2), combined: Int(counts.3))
    }

    /// The interface's addresses (`RTM_GETADDR` dump, filtered by index here: the kernel
    /// filters dumps only under strict checking).
    static func addresses(of index: Int32, socket: inout NetlinkSocket) throws(NetlinkError) -> [Address] {
        var result: [Address] = []
        for family in [AF_INET, AF_INET6] {
            var request = NetlinkRequest(type: RTNL.getAddress, flags: RTNL.request | RTNL.dump)
            request.append(UInt8(family))
            request.append(UInt8(0))  // prefix length
            request.append(UInt8(0))  // flags
            request.append(UInt8(0))  // scope
            request.append(UInt32(0))  // index
            for message in try socket.dump(request) where message.type == RTNL.newAddress && message.payload.count >= 8 {
                guard message.payload.load(UInt32.self, at: 4) == UInt32(bitPattern: index) else { continue }
                let attributes = message.attributes(after: 8)
                // IPv4 puts the interface's own address in IFA_LOCAL (IFA_ADDRESS is the
                // peer's on point-to-point links); IPv6 has only IFA_ADDRESS.
                guard let raw = attributes[RTNL.addressLocal] ?? attributes[RTNL.addressAddress],
                    let address = IPAddress(kernelBytes: raw)
                else { continue }
                result.append(Address(address: address, prefixLength: Int(message.payload[1])))
            }
        }
        return result
    }
}
