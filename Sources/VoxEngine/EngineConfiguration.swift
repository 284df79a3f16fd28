import Foundation
import Logging
import VoxIO
import VoxRouting
import VoxWire

/// What `voxedge run` is told: addresses, ports, workers and their cores, capacity, backends.
public struct EngineConfiguration: Codable, Sendable, Equatable {
    public struct BackendEntry: Codable, Sendable, Equatable {
        /// Its name in the registry (`id`; `backend-N` by its place in the list when absent).
        public var id: String?
        public var address: IPAddress
        public var port: UInt16
        /// A file holding the backend protocol's shared key (`key_file`; its bytes, trailing
        /// whitespace trimmed, at least 16). With a key the backend speaks the protocol
        /// (docs/backend-protocol.md); without, plain RTP.
        public var keyFile: String?
        public var region: String?
        /// The models it has loaded (`name` or `name@version`); absent: it serves any model.
        public var models: [String]?
        /// Sessions it takes at most (absent: 1,000,000, unbounded); its load reports may change it.
        public var capacity: Int?
        /// What it takes and sends: `opus` (pass-through; L16 comes with the audio issue).
        public var media: String?
        /// Starts draining: it takes no new session.
        public var draining: Bool?

        public init(
            id: String? = nil, address: IPAddress, port: UInt16, keyFile: String? = nil, region: String? = nil,
            models: [String]? = nil, capacity: Int? = nil, media: String? = nil, draining: Bool? = nil
        ) {
            self.id = id
            self.address = address
            self.port = port
            self.keyFile = keyFile
            self.region = region
            self.models = models
            self.capacity = capacity
            self.media = media
            self.draining = draining
        }

        enum CodingKeys: String, CodingKey, CaseIterable {
            case id, address, port, region, models, capacity, media, draining
            case keyFile = "key_file"
        }

        public init(from decoder: any Decoder) throws {
            try decoder.refuseUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            id = try c.decodeIfPresent(String.self, forKey: .id)
            address = try c.decode(IPAddress.self, forKey: .address)
            port = try c.decode(UInt16.self, forKey: .port)
            keyFile = try c.decodeIfPresent(String.self, forKey: .keyFile)
            region = try c.decodeIfPresent(String.self, forKey: .region)
            models = try c.decodeIfPresent([String].self, forKey: .models)
            capacity = try c.decodeIfPresent(Int.self, forKey: .capacity)
            media = try c.decodeIfPresent(String.self, forKey: .media)
            draining = try c.decodeIfPresent(Bool.self, forKey: .draining)
        }

        /// The shortest shared key taken: 128 bits, the MAC's length.
        public static let minimumKeyBytes = 16
        /// The largest key file read.
        public static let maximumKeyFileBytes = 4096

        /// The key `key_file` holds (nil without one); throws a sentence when the file cannot
        /// be read or holds less than `minimumKeyBytes`.
        public func loadKey() throws(EngineError) -> [UInt8]? {
            guard let keyFile else { return nil }
            // At most 4 KiB read: a key file that never ends (/dev/zero, a FIFO) is refused,
            // not read until memory runs out.
            guard let handle = FileHandle(forReadingAtPath: keyFile),
                let data = try? handle.read(upToCount: BackendEntry.maximumKeyFileBytes + 1)
            else {
                throw EngineError(code: "config.backend_key", message: "key_file \(keyFile) cannot be read")
            }
            try? handle.close()
            guard data.count <= BackendEntry.maximumKeyFileBytes else {
                throw EngineError(
                    code: "config.backend_key",
                    message: "key_file \(keyFile) is larger than \(BackendEntry.maximumKeyFileBytes) bytes: not a key")
            }
            var bytes = [UInt8](data)
            while let last = bytes.last, last == 0x20 || last == 0x09 || last == 0x0A || last == 0x0D { bytes.removeLast() }
            guard bytes.count >= BackendEntry.minimumKeyBytes else {
                throw EngineError(
                    code: "config.backend_key",
                    message: "key_file \(keyFile) holds \(bytes.count) bytes; a backend key needs at least \(BackendEntry.minimumKeyBytes)")
            }
            return bytes
        }
    }

    public var mediaAddress: IPAddress = .loopbackV4
    public var mediaPort: UInt16 = 40000
    /// The address WebRTC answers advertise as the candidate (`public_address`): the host's
    /// public address behind a 1:1 NAT. When absent, the media address.
    public var publicAddress: IPAddress? = nil
    /// The edge's address toward backends (`backend_address`); when absent, the media address,
    /// which is on the interface AF_XDP serves. Read it through `backendLegAddress`.
    public var backendAddress: IPAddress? = nil
    /// The first of the edge's backend-leg ports (one per session slot): below Linux's
    /// ephemeral range (32768–60999), so the kernel never hands one of them to another socket.
    public var backendPortBase: UInt16 = EngineConfiguration.defaultBackendPortBase
    public static let defaultBackendPortBase: UInt16 = 20000
    public var workers: Int = 1
    /// Core of each worker (by index); unpinned when absent.
    public var cores: [Int]? = nil
    public var maxSessions: Int = 1024
    public var backends: [BackendEntry] = []
    /// How many backends the registry holds at most (`max_backends`): the configuration's and
    /// those `backend.upsert` adds.
    public var maxBackends: Int = 1024
    /// Placement's constants (`routing:`; docs/routing.md).
    public var routing = RoutingSettings()
    /// Backend audio held toward each client when a backend sends ahead of real time
    /// (docs/backend-protocol.md): packets per session (`pacing_depth`; 100 = 2 s of 20 ms
    /// frames) and the bytes each may take (`pacing_slot_bytes`). Memory per slot:
    /// depth × (slot bytes + 16), touched only when packets are queued.
    public var pacingDepth: Int = 100
    public var pacingSlotBytes: Int = 1500
    /// Per-session policing of what a client sends (`client_rate_limit_pps`, 0: off): a voice
    /// call sends 50 packets a second (20 ms frames; 100 with 10 ms), so 250 is 5× that; past
    /// a burst of `client_rate_burst` packets the excess is dropped before unprotect, counted
    /// (`policed`), and the session's neighbours keep their share of the worker.
    public var clientRateLimitPPS: Int = 250
    public var clientRateBurst: Int = 100
    public var controlSocket: String = "/run/voxedge/control.sock"
    /// Peers (by `SO_PEERCRED`) allowed on the control socket: a listed uid or a listed
    /// primary gid. When both are absent: the engine's own uid and the socket's group.
    public var controlAllowedUIDs: [UInt32]? = nil
    public var controlAllowedGIDs: [UInt32]? = nil
    /// Control clients served at once (one more is told `busy`), and how long one may stay
    /// connected without sending a request.
    public var controlMaxClients: Int = 1024
    public var controlIdleTimeoutSeconds: Int = 300
    /// `/healthz` fails when a worker's loop has not come round for this long.
    public var healthStallSeconds: Double = 5
    /// Prometheus `/metrics`, `/healthz`, `/readyz` (port 0: off).
    public var metricsAddress: IPAddress = .loopbackV4
    public var metricsPort: UInt16 = 9464
    /// After SIGTERM, how long live calls may go on before the engine stops anyway.
    public var drainTimeoutSeconds: Int = 300
    public var logLevel: Logger.Level = .info
    /// Packet I/O (`io`).
    public var io: IOMode = .auto
    /// The interface AF_XDP binds to (one socket per queue, worker w on queue w); when
    /// absent, the interface that holds `media_address`.
    public var interface: String? = nil
    public var xdp = XDPSettings()
    /// Socket port: the receive buffer of each worker's media socket, in bytes.
    public var socketReceiveBuffer: Int = SocketQueue.defaultReceiveBuffer
    /// The public signaling listener (`signaling:`); no listener when the section is absent.
    public var signaling: SignalingSettings? = nil

    /// The `signaling:` section as typed plain values. Each key is optional: absent means
    /// VoxSignaling's default (`SignalingConfiguration`), which also judges the ranges
    /// (VoxControl maps the one onto the other; VoxEngine does not import VoxSignaling).
    public struct SignalingSettings: Codable, Sendable, Equatable {
        public var address: IPAddress? = nil
        public var port: UInt16? = nil
        public var tlsCertificateFile: String? = nil
        public var tlsKeyFile: String? = nil
        public var plainHTTP: Bool? = nil
        public var audience: String? = nil
        public var tokenHS256SecretFile: String? = nil
        public var tokenES256PublicKeyFile: String? = nil
        public var tokenES256PrivateKeyFile: String? = nil
        public var tokenMaxLifetimeSeconds: Int? = nil
        public var maxSessionsPerSubject: Int? = nil
        public var rateLimitPerSecond: Double? = nil
        public var rateLimitBurst: Int? = nil
        public var maxConnections: Int? = nil
        public var maxConnectionsPerSource: Int? = nil
        public var tlsHandshakeTimeoutSeconds: Double? = nil
        public var headerTimeoutSeconds: Double? = nil
        public var bodyTimeoutSeconds: Double? = nil
        public var idleTimeoutSeconds: Double? = nil
        public var maxHeaderBytes: Int? = nil
        public var corsOrigins: [String]? = nil
        public var retryAfterSeconds: Int? = nil

        public init() {}

        enum CodingKeys: String, CodingKey, CaseIterable {
            case address, port
            case tlsCertificateFile = "tls_certificate_file"
            case tlsKeyFile = "tls_key_file"
            case plainHTTP = "plain_http"
            case audience
            case tokenHS256SecretFile = "token_hs256_secret_file"
            case tokenES256PublicKeyFile = "token_es256_public_key_file"
            case tokenES256PrivateKeyFile = "token_es256_private_key_file"
            case tokenMaxLifetimeSeconds = "token_max_lifetime_seconds"
            case maxSessionsPerSubject = "max_sessions_per_subject"
            case rateLimitPerSecond = "rate_limit_per_second"
            case rateLimitBurst = "rate_limit_burst"
            case maxConnections = "max_connections"
            case maxConnectionsPerSource = "max_connections_per_source"
            case tlsHandshakeTimeoutSeconds = "tls_handshake_timeout_seconds"
            case headerTimeoutSeconds = "header_timeout_seconds"
            case bodyTimeoutSeconds = "body_timeout_seconds"
            case idleTimeoutSeconds = "idle_timeout_seconds"
            case maxHeaderBytes = "max_header_bytes"
            case corsOrigins = "cors_origins"
            case retryAfterSeconds = "retry_after_seconds"
        }

        public init(from decoder: any Decoder) throws {
            try decoder.refuseUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            address = try c.decodeIfPresent(IPAddress.self, forKey: .address)
            port = try c.decodeIfPresent(UInt16.self, forKey: .port)
            tlsCertificateFile = try c.decodeIfPresent(String.self, forKey: .tlsCertificateFile)
            tlsKeyFile = try c.decodeIfPresent(String.self, forKey: .tlsKeyFile)
            plainHTTP = try c.decodeIfPresent(Bool.self, forKey: .plainHTTP)
            audience = try c.decodeIfPresent(String.self, forKey: .audience)
            tokenHS256SecretFile = try c.decodeIfPresent(String.self, forKey: .tokenHS256SecretFile)
            tokenES256PublicKeyFile = try c.decodeIfPresent(String.self, forKey: .tokenES256PublicKeyFile)
            tokenES256PrivateKeyFile = try c.decodeIfPresent(String.self, forKey: .tokenES256PrivateKeyFile)
            tokenMaxLifetimeSeconds = try c.decodeIfPresent(Int.self, forKey: .tokenMaxLifetimeSeconds)
            maxSessionsPerSubject = try c.decodeIfPresent(Int.self, forKey: .maxSessionsPerSubject)
            rateLimitPerSecond = try c.decodeIfPresent(Double.self, forKey: .rateLimitPerSecond)
            rateLimitBurst = try c.decodeIfPresent(Int.self, forKey: .rateLimitBurst)
            maxConnections = try c.decodeIfPresent(Int.self, forKey: .maxConnections)
            maxConnectionsPerSource = try c.decodeIfPresent(Int.self, forKey: .maxConnectionsPerSource)
            tlsHandshakeTimeoutSeconds = try c.decodeIfPresent(Double.self, forKey: .tlsHandshakeTimeoutSeconds)
            headerTimeoutSeconds = try c.decodeIfPresent(Double.self, forKey: .headerTimeoutSeconds)
            bodyTimeoutSeconds = try c.decodeIfPresent(Double.self, forKey: .bodyTimeoutSeconds)
            idleTimeoutSeconds = try c.decodeIfPresent(Double.self, forKey: .idleTimeoutSeconds)
            maxHeaderBytes = try c.decodeIfPresent(Int.self, forKey: .maxHeaderBytes)
            corsOrigins = try c.decodeIfPresent([String].self, forKey: .corsOrigins)
            retryAfterSeconds = try c.decodeIfPresent(Int.self, forKey: .retryAfterSeconds)
        }
    }

    /// The AF_XDP port's settings (`xdp:` in the configuration file).
    public struct XDPSettings: Codable, Sendable, Equatable {
        public var frameCount: Int = 8192
        public var frameSize: Int = 2048
        public var ringSize: UInt32 = 2048
        /// Bytes of headroom the kernel leaves in front of each packet (for header growth).
        public var headroom: Int = 0
        public var hugePages: Bool = true
        /// `auto` (the driver's choice), `copy` or `zerocopy`.
        public var bindMode: XSKConfiguration.BindMode = .automatic
        /// What a worker does when a burst finds nothing.
        public var idle: IdleStrategy = .poll
        /// How the XDP program attaches.
        public var attach: AttachMode = .auto
        /// The compiled XDP program; default: found beside the executable or in /usr/lib/voxedge.
        public var object: String? = nil
        /// New-flow STUN allowed per source address per second before XDP drops it (0: no limit).
        public var stunRate: UInt32 = 50
        public var stunBurst: UInt32 = 100
        /// Whether RTP, RTCP and the backend leg are checked against the XDP program's flow
        /// filter (a bitmap, cheap under load) rather than its exact flow map (docs/xdp.md).
        public var flowFilter: Bool = true

        public init() {}

        enum CodingKeys: String, CodingKey, CaseIterable {
            case frameCount = "frame_count"
            case frameSize = "frame_size"
            case ringSize = "ring_size"
            case headroom
            case hugePages = "huge_pages"
            case bindMode = "bind_mode"
            case idle, attach, object
            case stunRate = "stun_rate"
            case stunBurst = "stun_burst"
            case flowFilter = "flow_filter"
        }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            try decoder.refuseUnknownKeys(CodingKeys.self)
            let d = XDPSettings()
            frameCount = try c.value(.frameCount, or: d.frameCount)
            frameSize = try c.value(.frameSize, or: d.frameSize)
            ringSize = try c.value(.ringSize, or: d.ringSize)
            headroom = try c.value(.headroom, or: d.headroom)
            hugePages = try c.value(.hugePages, or: d.hugePages)
            bindMode = try c.choice(.bindMode, or: d.bindMode)
            idle = try c.choice(.idle, or: d.idle)
            attach = try c.choice(.attach, or: d.attach)
            object = try c.decodeIfPresent(String.self, forKey: .object)
            stunRate = try c.value(.stunRate, or: d.stunRate)
            stunBurst = try c.value(.stunBurst, or: d.stunBurst)
            flowFilter = try c.value(.flowFilter, or: d.flowFilter)
        }

        /// The sockets' part, for VoxIO.
        public var sockets: XSKConfiguration {
            var x = XSKConfiguration()
            x.frameCount = frameCount
            x.frameSize = frameSize
            x.ringSize = ringSize
            x.headroom = headroom
            x.hugePages = hugePages
            x.bindMode = bindMode
            return x
        }

        public func problems() -> [String] { sockets.problems() }
    }

    public init() {}

    enum CodingKeys: String, CodingKey, CaseIterable {
        case mediaAddress = "media_address"
        case mediaPort = "media_port"
        case publicAddress = "public_address"
        case backendAddress = "backend_address"
        case backendPortBase = "backend_port_base"
        case workers, cores
        case maxSessions = "max_sessions"
        case backends
        case maxBackends = "max_backends"
        case routing
        case pacingDepth = "pacing_depth"
        case pacingSlotBytes = "pacing_slot_bytes"
        case clientRateLimitPPS = "client_rate_limit_pps"
        case clientRateBurst = "client_rate_burst"
        case controlSocket = "control_socket"
        case controlAllowedUIDs = "control_allowed_uids"
        case controlAllowedGIDs = "control_allowed_gids"
        case controlMaxClients = "control_max_clients"
        case controlIdleTimeoutSeconds = "control_idle_timeout_seconds"
        case healthStallSeconds = "health_stall_seconds"
        case logLevel = "log_level"
        case io, interface, xdp
        case socketReceiveBuffer = "socket_receive_buffer"
        case metricsAddress = "metrics_address"
        case metricsPort = "metrics_port"
        case drainTimeoutSeconds = "drain_timeout_seconds"
        case signaling
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        try decoder.refuseUnknownKeys(CodingKeys.self)
        let d = EngineConfiguration()
        mediaAddress = try c.value(.mediaAddress, or: d.mediaAddress)
        mediaPort = try c.value(.mediaPort, or: d.mediaPort)
        publicAddress = try c.decodeIfPresent(IPAddress.self, forKey: .publicAddress)
        backendAddress = try c.decodeIfPresent(IPAddress.self, forKey: .backendAddress)
        backendPortBase = try c.value(.backendPortBase, or: d.backendPortBase)
        workers = try c.value(.workers, or: d.workers)
        cores = try c.decodeIfPresent([Int].self, forKey: .cores)
        maxSessions = try c.value(.maxSessions, or: d.maxSessions)
        backends = try c.value(.backends, or: d.backends)
        maxBackends = try c.value(.maxBackends, or: d.maxBackends)
        routing = try c.value(.routing, or: d.routing)
        pacingDepth = try c.value(.pacingDepth, or: d.pacingDepth)
        pacingSlotBytes = try c.value(.pacingSlotBytes, or: d.pacingSlotBytes)
        clientRateLimitPPS = try c.value(.clientRateLimitPPS, or: d.clientRateLimitPPS)
        clientRateBurst = try c.value(.clientRateBurst, or: d.clientRateBurst)
        controlSocket = try c.value(.controlSocket, or: d.controlSocket)
        controlAllowedUIDs = try c.decodeIfPresent([UInt32].self, forKey: .controlAllowedUIDs)
        controlAllowedGIDs = try c.decodeIfPresent([UInt32].self, forKey: .controlAllowedGIDs)
        controlMaxClients = try c.value(.controlMaxClients, or: d.controlMaxClients)
        controlIdleTimeoutSeconds = try c.value(.controlIdleTimeoutSeconds, or: d.controlIdleTimeoutSeconds)
        healthStallSeconds = try c.value(.healthStallSeconds, or: d.healthStallSeconds)
        logLevel = try c.choice(.logLevel, or: d.logLevel)
        io = try c.choice(.io, or: d.io)
        interface = try c.decodeIfPresent(String.self, forKey: .interface)
        xdp = try c.value(.xdp, or: d.xdp)
        socketReceiveBuffer = try c.value(.socketReceiveBuffer, or: d.socketReceiveBuffer)
        metricsAddress = try c.value(.metricsAddress, or: d.metricsAddress)
        metricsPort = try c.value(.metricsPort, or: d.metricsPort)
        drainTimeoutSeconds = try c.value(.drainTimeoutSeconds, or: d.drainTimeoutSeconds)
        signaling = try c.decodeIfPresent(SignalingSettings.self, forKey: .signaling)
    }

    /// Every problem with this configuration, as sentences; empty when it can run.
    public func problems() -> [String] {
        var out: [String] = []
        let backendAddress = backendLegAddress
        if backendAddress.isIPv4 != mediaAddress.isIPv4 {
            out.append("backend_address \(backendAddress) and media_address \(mediaAddress) must be of one family")
        }
        if let publicAddress {
            if let reason = publicAddress.notUnicastReason { out.append("public_address: \(reason)") }
            if publicAddress.isIPv4 != mediaAddress.isIPv4 {
                out.append("public_address \(publicAddress) and media_address \(mediaAddress) must be of one family")
            }
        }
        for (key, address) in [("media_address", mediaAddress), ("backend_address", backendAddress)] {
            if let reason = address.notUnicastReason { out.append("\(key): \(reason); give one of the host's addresses") }
        }
        // The kernel sends nothing from a loopback address to anywhere else (and AF_XDP never
        // sees loopback): every packet to such a backend would be lost while counted sent.
        if backendAddress.isLoopback, let far = backends.firstIndex(where: { !$0.address.isLoopback }) {
            let b = backends[far]
            let backend: String = "backends[\(far)] \(b.address):\(b.port)"
            out.append(
                "\(backendAddressName) is on loopback and \(backend) is not: nothing sent from loopback reaches it; "
                    .appending("set backend_address to an address of the interface toward the backends"))
        }
        if backendAddress == mediaAddress && backendPorts.contains(Int(mediaPort)) {
            out.append("the backend-leg ports \(backendPorts) on \(backendAddress) include media_port \(mediaPort)")
        }
        for (i, b) in backends.enumerated() {
            if let reason = peerProblem(b.address, b.port) { out.append("backends[\(i)] \(b.address):\(b.port): \(reason)") }
            let id = b.id ?? "backend-\(i)"
            if !BackendSpec.isValidID(id) {
                out.append("backends[\(i)] id '\(id.prefix(80))' is not 1...\(BackendSpec.maximumIDLength) bytes of A-Z a-z 0-9 . _ : -")
            } else if backends[..<i].enumerated().contains(where: { ($1.id ?? "backend-\($0)") == id }) {
                out.append("backends[\(i)] id '\(id)' is taken by an earlier backend")
            }
            if backends[..<i].contains(where: { $0.address == b.address && $0.port == b.port }) {
                out.append("backends[\(i)] \(b.address):\(b.port) is listed twice")
            }
            for m in b.models ?? [] where ModelName(m) == nil {
                out.append("backends[\(i)] model '\(m.prefix(80))' is not `name` or `name@version` (no spaces, at most \(ModelName.maximumLength) bytes)")
            }
            if let capacity = b.capacity, !(1...BackendSpec.maximumCapacity).contains(capacity) {
                out.append("backends[\(i)] capacity \(capacity) is not 1...\(BackendSpec.maximumCapacity)")
            }
            if let media = b.media, BackendSpec.Media(rawValue: media) == nil {
                out.append("backends[\(i)] media '\(media.prefix(40))' is not one of \(BackendSpec.Media.allCases.map(\.rawValue).joined(separator: ", "))")
            }
        }
        if !(1...3000).contains(pacingDepth) { out.append("pacing_depth must be 1...3000 packets") }
        if !(64...9000).contains(pacingSlotBytes) { out.append("pacing_slot_bytes must be 64...9000") }
        if !(0...1_000_000).contains(clientRateLimitPPS) { out.append("client_rate_limit_pps must be 0 (off) ...1000000") }
        if !(1...100_000).contains(clientRateBurst) { out.append("client_rate_burst must be 1...100000 packets") }
        if workers < 1 || workers > 64 { out.append("workers must be 1...64") }
        if maxSessions < 1 { out.append("max_sessions must be at least 1") }
        if !(1...65536).contains(maxBackends) { out.append("max_backends \(maxBackends) is not 1...65536") }
        if backends.count > maxBackends { out.append("\(backends.count) backends are listed; max_backends is \(maxBackends)") }
        if let problem = routing.policy.problem { out.append(problem) }
        if let m = routing.defaultModel, ModelName(m) == nil {
            out.append("routing.default_model '\(m.prefix(80))' is not `name` or `name@version`")
        }
        if Int(backendPortBase) + maxSessions > 65536 {
            out.append("backend_port_base + max_sessions passes port 65535")
        }
        if let cores, cores.count != workers { out.append("cores lists \(cores.count) cores for \(workers) workers") }
        if controlMaxClients < 1 { out.append("control_max_clients must be at least 1") }
        if controlIdleTimeoutSeconds < 1 { out.append("control_idle_timeout_seconds must be at least 1") }
        if drainTimeoutSeconds < 0 { out.append("drain_timeout_seconds must be 0 or more") }
        if !(healthStallSeconds > 0) { out.append("health_stall_seconds must be more than 0") }
        if io != .socket { out += xdp.problems() }
        return out
    }

    /// The address the backend legs are sent from and received on: `backend_address`, else
    /// the media address.
    public var backendLegAddress: IPAddress { backendAddress ?? mediaAddress }

    /// `backend_address 198.18.0.1`, saying when it is the default: for messages.
    public var backendAddressName: String {
        let address: IPAddress = backendLegAddress
        guard backendAddress == nil else { return "backend_address \(address)" }
        return "backend_address \(address) (media_address, the default)"
    }

    /// The edge's backend-leg ports on `backend_address`: `backend_port_base + slot`, one per
    /// session slot.
    public var backendPorts: ClosedRange<Int> { Int(backendPortBase)...(Int(backendPortBase) + max(maxSessions, 1) - 1) }

    /// Why the engine cannot exchange packets with `address`:`port` as a peer — a client
    /// (`session.create`) or a backend (`backends`) — or nil when it can. The one check for
    /// both: a peer is a unicast address of the media address's family, on a port other than
    /// 0, and none of the engine's own endpoints (its media address and port, or its backend
    /// address on a backend-leg port), which would have the engine send to itself in a loop.
    public func peerProblem(_ address: IPAddress, _ port: UInt16) -> String? {
        if port == 0 { return "port 0 names no peer" }
        if let reason = address.notUnicastReason { return reason }
        if address.isIPv4 != mediaAddress.isIPv4 {
            return "\(address) is \(address.isIPv4 ? "IPv4" : "IPv6"), and the engine's media address \(mediaAddress) is not"
        }
        if address == mediaAddress && port == mediaPort {
            return "\(address):\(port) is the engine's own media address and port"
        }
        if address == backendLegAddress && backendPorts.contains(Int(port)) {
            return "\(address):\(port) is one of the engine's own backend-leg ports (\(backendPorts))"
        }
        return nil
    }
}

/// Packet I/O (`io`).
public enum IOMode: String, Sendable, CaseIterable, Codable {
    /// AF_XDP sockets fed by VoxEdge's XDP program.
    case xdp
    /// Kernel UDP sockets.
    case socket
    /// AF_XDP, falling back to sockets with a log line saying why.
    case auto
}

/// How the XDP program attaches (`xdp.attach`).
public enum AttachMode: String, Sendable, CaseIterable, Codable {
    /// Native (driver) mode, else generic with a log line.
    case auto
    case native
    case generic
}

/// What a worker does when a burst finds nothing (`xdp.idle`).
public enum IdleStrategy: String, Sendable, CaseIterable, Codable {
    /// Sleep in poll() on the socket and the worker's doorbell (need_wakeup): no CPU when idle.
    case poll
    /// Spin on the rings: lowest latency, a whole core always. Starves a NAPI thread that
    /// shares the core (FINDINGS: 43 % of poll mode's rate on veth).
    case busyPoll = "busy-poll"
    /// Spin, with SO_PREFER_BUSY_POLL: the kernel leaves the queue's NAPI to the worker's
    /// recvfrom/sendto, so it can share a core with NAPI.
    case preferBusyPoll = "prefer-busy-poll"
}

/// The configuration's `routing:` section: placement's constants (`RoutingPolicy`), each
/// optional, absent meaning the policy's default (docs/routing.md).
public struct RoutingSettings: Codable, Sendable, Equatable {
    public var choices: Int?
    public var freshMs: Int?
    public var staleMs: Int?
    public var stalePenaltyMs: Double?
    public var loadPenaltyMs: Double?
    public var rampMs: Int?
    public var rampFloor: Double?
    public var defaultServiceTimeMs: Double?
    public var defaultRTTMs: Double?
    public var defaultModel: String?

    public init() {}

    enum CodingKeys: String, CodingKey, CaseIterable {
        case choices
        case freshMs = "fresh_ms"
        case staleMs = "stale_ms"
        case stalePenaltyMs = "stale_penalty_ms"
        case loadPenaltyMs = "load_penalty_ms"
        case rampMs = "ramp_ms"
        case rampFloor = "ramp_floor"
        case defaultServiceTimeMs = "default_service_time_ms"
        case defaultRTTMs = "default_rtt_ms"
        case defaultModel = "default_model"
    }

    public init(from decoder: any Decoder) throws {
        try decoder.refuseUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        choices = try c.decodeIfPresent(Int.self, forKey: .choices)
        freshMs = try c.decodeIfPresent(Int.self, forKey: .freshMs)
        staleMs = try c.decodeIfPresent(Int.self, forKey: .staleMs)
        stalePenaltyMs = try c.decodeIfPresent(Double.self, forKey: .stalePenaltyMs)
        loadPenaltyMs = try c.decodeIfPresent(Double.self, forKey: .loadPenaltyMs)
        rampMs = try c.decodeIfPresent(Int.self, forKey: .rampMs)
        rampFloor = try c.decodeIfPresent(Double.self, forKey: .rampFloor)
        defaultServiceTimeMs = try c.decodeIfPresent(Double.self, forKey: .defaultServiceTimeMs)
        defaultRTTMs = try c.decodeIfPresent(Double.self, forKey: .defaultRTTMs)
        defaultModel = try c.decodeIfPresent(String.self, forKey: .defaultModel)
    }

    /// The policy these settings make (an invalid default model is left out here and
    /// reported by `problems()`).
    public var policy: RoutingPolicy {
        var p = RoutingPolicy()
        if let v = choices { p.choices = v }
        if let v = freshMs { p.freshMs = v }
        if let v = staleMs { p.staleMs = v }
        if let v = stalePenaltyMs { p.stalePenaltyMs = v }
        if let v = loadPenaltyMs { p.loadPenaltyMs = v }
        if let v = rampMs { p.rampMs = v }
        if let v = rampFloor { p.rampFloor = v }
        if let v = defaultServiceTimeMs { p.defaultServiceTimeMs = v }
        if let v = defaultRTTMs { p.defaultRTTMs = v }
        p.defaultModel = defaultModel.flatMap(ModelName.init)
        return p
    }
}

extension EngineConfiguration {
    /// The registry the configuration describes: its backends (keys read from their files) in
    /// list order, indices 0, 1, …, as the initial set (no ramp-up). Throws a sentence when a
    /// key file cannot be used.
    public func makeRegistry() throws(EngineError) -> BackendRegistry {
        var registry = BackendRegistry(capacity: maxBackends, policy: routing.policy)
        for (i, entry) in backends.enumerated() {
            let spec = BackendSpec(
                id: entry.id ?? "backend-\(i)", address: entry.address, port: UDPPort(entry.port), key: try entry.loadKey(),
                region: entry.region ?? "", models: (entry.models ?? []).compactMap(ModelName.init),
                media: entry.media.flatMap(BackendSpec.Media.init) ?? .opus,
                capacity: entry.capacity ?? BackendSpec.maximumCapacity)
            do {
                try registry.upsert(spec, draining: entry.draining, now: nil)
            } catch {
                throw EngineError(code: "config.invalid", message: "backends[\(i)]: \(error.message)")
            }
        }
        return registry
    }
}

extension KeyedDecodingContainer {
    /// The value under `key`, or `fallback` when the key is absent: every configuration key
    /// is optional and defaults to what `init()` sets.
    func value<T: Decodable>(_ key: Key, or fallback: T) throws -> T {
        try decodeIfPresent(T.self, forKey: key) ?? fallback
    }

    /// One of `T`'s cases under `key` (or `fallback` when absent); any other text fails
    /// naming the accepted values.
    func choice<T: RawRepresentable & CaseIterable>(_ key: Key, or fallback: T) throws -> T where T.RawValue == String {
        guard let text = try decodeIfPresent(String.self, forKey: key) else { return fallback }
        guard let value = T(rawValue: text) else {
            let accepted = T.allCases.map(\.rawValue).joined(separator: ", ")
            throw DecodingError.dataCorruptedError(
                forKey: key, in: self, debugDescription: "'\(text)' is not one of \(accepted)")
        }
        return value
    }
}

/// Any key, to list what a configuration file holds.
struct AnyCodingKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

extension Decoder {
    /// Fails on a key `Keys` does not know: a misspelt key would otherwise fall back to its
    /// default without a word.
    func refuseUnknownKeys<Keys: CodingKey & CaseIterable>(_: Keys.Type) throws {
        let known = Set(Keys.allCases.map(\.stringValue))
        let all = try container(keyedBy: AnyCodingKey.self)
        for key in all.allKeys where !known.contains(key.stringValue) {
            throw DecodingError.dataCorruptedError(
                forKey: key, in: all,
                debugDescription: "unknown key; known keys: \(known.sorted().joined(separator: ", "))")
        }
    }
}

extension IPAddress: Codable {
    /// An address as text (`198.18.0.1`, `2001:db8::1`); anything else fails naming it.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        let text = try c.decode(String.self)
        guard let address = IPAddress(text) else {
            throw DecodingError.dataCorruptedError(in: c, debugDescription: "'\(text)' is not an IP address")
        }
        self = address
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }
}
