import CVoxBPF
import VoxWire

/// What the XDP program treats as ours: the single entry of the `vox_config` map.
public struct XDPConfiguration: Sendable, Equatable {
    /// The media port(s) clients send STUN, DTLS and SRTP to (at most `maximumMediaPorts`).
    public var mediaPorts: [UDPPort]
    /// The reserved range of local ports for backend legs (RTP from backends), if any.
    public var backendPorts: ClosedRange<UDPPort>?
    /// Drop backend-leg datagrams whose 5-tuple no worker has admitted.
    public var backendRequiresAdmission: Bool
    /// Token bucket for STUN from sources without an admitted flow: the refill rate per
    /// source address, in packets per second (0 turns the limiter off) ...
    public var stunRatePerSecond: UInt32
    /// ... and the bucket's depth in packets.
    public var stunBurst: UInt32

    public static let maximumMediaPorts = Int(VOX_MAX_MEDIA_PORTS)

    /// Defaults sized for ICE: a client checks a handful of candidate pairs a few times each
    /// within its first second; many clients can share one NAT address.
    public init(
        mediaPorts: [UDPPort],
        backendPorts: ClosedRange<UDPPort>? = nil,
        backendRequiresAdmission: Bool = true,
        stunRatePerSecond: UInt32 = 50,
        stunBurst: UInt32 = 100
    ) {
        self.mediaPorts = mediaPorts
        self.backendPorts = backendPorts
        self.backendRequiresAdmission = backendRequiresAdmission
        self.stunRatePerSecond = stunRatePerSecond
        self.stunBurst = stunBurst
    }

    /// The C layout, after checking what the C layout cannot hold.
    public func bpfValue() throws(XDPError) -> vox_config {
        guard mediaPorts.count <= Self.maximumMediaPorts else {
            throw XDPError(.invalidArgument, "at most \(Self.maximumMediaPorts) media ports, got \(mediaPorts.count)")
        }
        guard !mediaPorts.contains(UDPPort(0)) else { throw XDPError(.invalidArgument, "media port 0") }
        if let range = backendPorts, range.lowerBound.rawValue == 0 {
            throw XDPError(.invalidArgument, "backend port range may not start at 0")
        }
        guard stunRatePerSecond <= VOX_STUN_MAX_RATE else {
            throw XDPError(.invalidArgument, "STUN rate above \(VOX_STUN_MAX_RATE)/s")
        }
        var value = vox_config()
        withUnsafeMutableBytes(of: &value.media_ports) { raw in
            for (i, port) in mediaPorts.enumerated() {
                raw.storeBytes(of: port.rawValue, toByteOffset: i * 2, as: UInt16.self)
            }
        }
        value.backend_port_min = backendPorts?.lowerBound.rawValue ?? 0
        value.backend_port_max = backendPorts?.upperBound.rawValue ?? 0
        value.flags = backendRequiresAdmission ? UInt32(VOX_CFG_BACKEND_REQUIRE_ADMIT.rawValue) : 0
        value.stun_rate_per_sec = stunRatePerSecond
        value.stun_burst = stunBurst
        return value
    }
}
