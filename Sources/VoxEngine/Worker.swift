import CXDP
import VoxIO
import VoxMedia
import VoxRouting
import VoxWire

/// Where a worker's traffic arrives and leaves from.
public struct WorkerConfiguration: Sendable {
    /// This worker's index (0 ..< workers).
    public var id: Int
    /// The client-facing media address and port (WebRTC's one UDP port).
    public var mediaAddress: IPAddress
    public var mediaPort: UDPPort
    /// The edge's address toward backends; session slot s uses port `backendPortBase + s`
    /// (DESIGN §4: a reserved range, so a backend packet names its slot).
    public var backendAddress: IPAddress
    public var backendPortBase: UInt16
    /// The edge's own MAC (source of everything it sends).
    public var edgeMAC: MACAddress
    public var burstSize: Int
    /// Per-session policing of what a client sends (SRTP and SRTCP): `ClientPolicer`'s cost
    /// of one packet and its bucket, in ns of credit (0: no policing). See `policing(rate:burst:)`.
    public var clientPacketCost: UInt64 = 0
    public var clientBurstCredit: UInt64 = 0

    /// Polices each client at `rate` packets per second with bursts of `burst` packets above
    /// it (rate 0: off).
    public mutating func policing(rate: Int, burst: Int) {
        guard rate > 0 else {
            clientPacketCost = 0
            clientBurstCredit = 0
            return
        }
        clientPacketCost = 1_000_000_000 / UInt64(rate)
        clientBurstCredit = clientPacketCost * UInt64(max(1, burst))
    }

    public init(
        id: Int, mediaAddress: IPAddress, mediaPort: UDPPort, backendAddress: IPAddress,
        backendPortBase: UInt16, edgeMAC: MACAddress, burstSize: Int = 64
    ) {
        self.id = id
        self.mediaAddress = mediaAddress
        self.mediaPort = mediaPort
        self.backendAddress = backendAddress
        self.backendPortBase = backendPortBase
        self.edgeMAC = edgeMAC
        self.burstSize = burstSize
    }
}

/// What connects a worker to the rest of the engine. Created at start-up.
public struct WorkerLinks: Sendable {
    public var commands: SPSCRing<WorkerCommand>
    /// Slots this worker has released (after `drop`), for the control thread to reuse.
    public var released: SPSCRing<Int32>
    /// `handoffIn[w]`: frames worker w gives us; `handoffOut[w]`: frames we give worker w.
    public var handoffIn: [SPSCRing<FrameDescriptor>?]
    public var handoffOut: [SPSCRing<FrameDescriptor>?]
    /// Frames going home: a handed-over frame completes on the owner's queue; the owner
    /// sends it back to the worker whose share of the UMEM it is, so no queue starves.
    public var returnIn: [SPSCRing<UInt64>?]
    public var returnOut: [SPSCRing<UInt64>?]
    /// DTLS records from clients, to the handshake thread; `handshakeDoorbell` wakes it.
    public var handshake: DatagramQueue
    /// The handshake thread's flights, for this worker to send to the session's client.
    public var handshakeOut: DatagramQueue
    /// The handshake thread's commands (keys, ends): its own ring, so every ring keeps one
    /// producer.
    public var handshakeCommands: SPSCRing<WorkerCommand>
    public var handshakeDoorbell: Doorbell
    /// Slots whose client this worker bound from a check (`SessionStore.publish`), for the
    /// control thread's flow directory. Sized for every slot: at most one notice each.
    public var flowNotices: SPSCRing<Int32>
    /// What happened to sessions that the control thread logs (flushes, backend ends).
    public var events = SPSCRing<WorkerEvent>(capacity: 256)
    /// Rung by the control side after a command, in case the worker sleeps in poll().
    public var doorbell = Doorbell()
    /// Every worker's doorbell, by worker: a hand-off to a sleeping worker wakes it.
    /// Unretained (each worker's `doorbell` owns its own), so ringing costs no reference counting.
    public var peerDoorbells: [Unmanaged<Doorbell>] = []
    /// The client flows the control side has placed, shared by every worker.
    public var clientFlows = ClientFlowDirectory(ClientFlowTable([:]), workers: 1)

    public init(
        commands: SPSCRing<WorkerCommand>, released: SPSCRing<Int32>, handoffIn: [SPSCRing<FrameDescriptor>?],
        handoffOut: [SPSCRing<FrameDescriptor>?], returnIn: [SPSCRing<UInt64>?], returnOut: [SPSCRing<UInt64>?],
        handshake: DatagramQueue, handshakeOut: DatagramQueue, handshakeCommands: SPSCRing<WorkerCommand>,
        handshakeDoorbell: Doorbell, flowNotices: SPSCRing<Int32>
    ) {
        self.commands = commands
        self.released = released
        self.handoffIn = handoffIn
        self.handoffOut = handoffOut
        self.returnIn = returnIn
        self.returnOut = returnOut
        self.handshake = handshake
        self.handshakeOut = handshakeOut
        self.handshakeCommands = handshakeCommands
        self.handshakeDoorbell = handshakeDoorbell
        self.flowNotices = flowNotices
    }
}

/// One worker: a queue's rings, run to completion a burst at a time (DESIGN §1). All its
/// state is in this struct, owned by its thread. Per packet it allocates nothing, takes no
/// lock and makes no system call; each packet gets a `PacketVerdict` and a counter.
///
/// A burst: apply commands → reclaim completed TX frames → top up the fill ring → frames
/// handed over by other workers → up to `burstSize` RX descriptors → one TX submit.
public struct Worker: ~Copyable {
    public let configuration: WorkerConfiguration
    var rings: QueueRings
    let umem: UnsafeMutableRawPointer
    let frameSize: Int
    let store: SessionStore
    let backends: BackendDirectory
    /// The backend table of this burst (`BackendDirectory.enter`): valid until the next one.
    var backendEntries: UnsafePointer<Backend>
    var backendCount: Int
    /// The client-flow directory of this burst: valid until the next one.
    var flowTable: Unmanaged<ClientFlowTable>
    let links: WorkerLinks
    public let counters = WorkerCounters()
    /// Told when sessions start, move and end: the XDP program admits their 5-tuples, the
    /// socket port opens their backend-leg ports.
    public var portBinding: PortBinding = .none
    var clientIndex: FixedIndex<FlowKey>
    /// (5-tuple, SSRC) → slot, for the sessions that named their client's SSRC (`demuxSSRC`):
    /// several may share one 5-tuple, whose `clientIndex` entry names the first of them.
    var sharedIndex: FixedIndex<FlowSSRC>
    /// The clients' RTP SSRCs (learned from their first authenticated packet) → slot: how
    /// RTCP feedback naming a media SSRC finds its session.
    var ssrcIndex: FixedIndex<UInt32>
    let deriver = SRTPKeyDeriver()
    /// This worker's share of the UMEM (frames it hands back to if they stray).
    let ownFrames: Range<UInt64>
    /// The size of every worker's share, to find a stray frame's home.
    let shareBytes: UInt64
    /// Frames (chunk addresses) this worker holds that are in no ring.
    let freeFrames: UnsafeMutablePointer<UInt64>
    let freeCapacity: Int
    var freeCount = 0
    /// This burst's TX descriptors, submitted together.
    let pendingTX: UnsafeMutablePointer<FrameDescriptor>
    let pendingCapacity: Int
    var pendingCount = 0
    /// Two timers per slot. Timer `slot`: the session's own deadlines — its ICE agent's
    /// (connect, then consent), its key deadline, its next backend keepalive — re-armed when
    /// it fires, not on every check, so a check costs the wheel nothing. Timer
    /// `capacity + slot`: its pacing queue's next playout time.
    var timers: TimerWheel
    let expired: UnsafeMutablePointer<Int32>
    static let expiredBatch = 64

    public init(
        configuration: WorkerConfiguration, rings: QueueRings, umem: UnsafeMutableRawPointer, frameSize: Int,
        frames: Range<UInt64>, store: SessionStore, backends: BackendDirectory, links: WorkerLinks
    ) {
        self.configuration = configuration
        self.rings = rings
        self.umem = umem
        self.frameSize = frameSize
        self.store = store
        self.backends = backends
        backendEntries = UnsafePointer(backends.table.entries)
        backendCount = 0  // nothing is usable before the first burst's `enter`
        flowTable = links.clientFlows.enter(worker: configuration.id)
        links.clientFlows.leave(worker: configuration.id)
        self.links = links
        clientIndex = FixedIndex(capacity: store.capacity, placeholder: FlowKey(
            remoteAddress: IPAddress(ipv4: 0), remotePort: UDPPort(0), localAddress: IPAddress(ipv4: 0), localPort: UDPPort(0)))
        ssrcIndex = FixedIndex(capacity: store.capacity, placeholder: 0)
        sharedIndex = FixedIndex(
            capacity: store.capacity,
            placeholder: FlowSSRC(
                FlowKey(
                    remoteAddress: IPAddress(ipv4: 0), remotePort: UDPPort(0), localAddress: IPAddress(ipv4: 0),
                    localPort: UDPPort(0)),
                0))
        ownFrames = frames
        shareBytes = frames.upperBound - frames.lowerBound
        // Strays go home (`returnOut`); if a return ring is full they stay here meanwhile.
        freeCapacity = Int(shareBytes / UInt64(frameSize)) * 2 + 1024
        freeFrames = .allocate(capacity: freeCapacity)
        var a = frames.lowerBound
        while a < frames.upperBound {
            freeFrames[freeCount] = a
            freeCount += 1
            a += UInt64(frameSize)
        }
        pendingCapacity = max(configuration.burstSize * 2, 128)
        pendingTX = .allocate(capacity: pendingCapacity)
        timers = TimerWheel(capacity: store.capacity * 2)
        expired = .allocate(capacity: Worker.expiredBatch)
    }

    deinit {
        freeFrames.deallocate()
        pendingTX.deallocate()
        expired.deallocate()
    }

    /// Runs one burst at time `now` (ns, read once by the caller). Returns the number of
    /// packets handled (received + handed in).
    public mutating func runOnce(now: UInt64) -> Int {
        (backendEntries, backendCount) = backends.enter(worker: configuration.id)._withUnsafeGuaranteedRef {
            (UnsafePointer($0.entries), $0.count)
        }
        flowTable = links.clientFlows.enter(worker: configuration.id)
        applyCommands(from: links.commands, now: now)
        expireTimers(now: now)
        reclaimCompletions()
        takeReturnedFrames()
        // Flights, then the handshake's commands: an alert leaves before the session it
        // ends; keys are in before the flight that lets the client send SRTP leaves.
        sendFlights()
        applyCommands(from: links.handshakeCommands, now: now)
        refill()
        var handled = 0
        var handedIn = 0
        for w in 0..<links.handoffIn.count {
            guard let ring = links.handoffIn[w] else { continue }
            while handedIn < configuration.burstSize, let d = ring.pop() {
                process(address: d.address, length: Int(d.length), now: now)
                handedIn += 1
            }
        }
        var index: UInt32 = 0
        let n = xsk_ring_cons__peek(&rings.rx, UInt32(configuration.burstSize), &index)
        // Int ranges: UInt32 ones go through generic witnesses (and allocate) in debug builds.
        for i in 0..<Int(n) {
            let desc = xsk_ring_cons__rx_desc(&rings.rx, index &+ UInt32(i))!.pointee
            process(address: desc.addr, length: Int(desc.len), now: now)
        }
        if n > 0 { xsk_ring_cons__release(&rings.rx, n) }
        flushTX()
        handled = Int(n) + handedIn
        if handled > 0 { counters.addBurst(received: Int(n), handedIn: handedIn) }
        return handled
    }

    /// The worker is about to sleep in poll(): it holds no backend table until its next
    /// burst (so the control side can free replaced tables meanwhile), and its doorbell
    /// will ring for commands and hand-offs. False when work arrived in between: do not
    /// sleep then.
    public func prepareToSleep() -> Bool {
        backends.leave(worker: configuration.id)
        links.clientFlows.leave(worker: configuration.id)
        links.doorbell.willSleep()
        var pending = links.commands.count > 0 || links.handshakeCommands.count > 0 || links.handshakeOut.count > 0
        for ring in links.handoffIn where (ring?.count ?? 0) > 0 { pending = true }
        if pending { links.doorbell.woke() }
        return !pending
    }

    /// Back from poll().
    public func wokeUp() { links.doorbell.woke() }

    /// The worker stops: it holds no backend table any more.
    public func park() {
        backends.leave(worker: configuration.id)
        links.clientFlows.leave(worker: configuration.id)
    }

    /// When the worker must run again though no packet arrives (its earliest ICE deadline),
    /// or nil when none falls within the wheel's revolution (≈ 1 s, the longest sleep):
    /// how long its poll() may sleep.
    public func nextDeadline() -> UInt64? { timers.nextDeadline(withinOneRevolution: true) }

    /// The fd that becomes readable when the doorbell rings (the worker polls it).
    public var doorbellFD: Int32 { links.doorbell.fd }

    /// The backend at `index` in this burst's table, if there is one and it takes traffic.
    func usableBackend(_ index: Int32) -> UnsafePointer<Backend>? {
        guard index >= 0, Int(index) < backendCount, backendEntries[Int(index)].state != .down else { return nil }
        return backendEntries + Int(index)
    }

    // MARK: - Frames

    func chunk(_ address: UInt64) -> UInt64 { address & ~UInt64(frameSize - 1) }

    mutating func recycle(_ address: UInt64) {
        let frame = chunk(address)
        if !ownFrames.contains(frame), shareBytes > 0 {
            let home = Int(frame / shareBytes)
            if home < links.returnOut.count, let ring = links.returnOut[home], ring.push(frame) { return }
        }
        precondition(freeCount < freeCapacity, "frame pool overflow")
        freeFrames[freeCount] = frame
        freeCount += 1
    }

    /// Frames other workers sent home.
    mutating func takeReturnedFrames() {
        for w in 0..<links.returnIn.count {
            guard let ring = links.returnIn[w] else { continue }
            while freeCount < freeCapacity, let frame = ring.pop() {
                freeFrames[freeCount] = frame
                freeCount += 1
            }
        }
    }

    mutating func reclaimCompletions() {
        var index: UInt32 = 0
        let n = xsk_ring_cons__peek(&rings.completion, rings.completion.size, &index)
        for i in 0..<Int(n) { recycle(xsk_ring_cons__comp_addr(&rings.completion, index &+ UInt32(i)).pointee) }
        if n > 0 { xsk_ring_cons__release(&rings.completion, n) }
    }

    mutating func refill() {
        guard freeCount > 0 else { return }
        var index: UInt32 = 0
        let want = UInt32(min(freeCount, Int(rings.fill.size)))
        let free = xsk_prod_nb_free(&rings.fill, want)
        let n = min(want, free)
        guard n > 0, xsk_ring_prod__reserve(&rings.fill, n, &index) == n else { return }
        for i in 0..<Int(n) {
            freeCount -= 1
            xsk_ring_prod__fill_addr(&rings.fill, index &+ UInt32(i)).pointee = freeFrames[freeCount]
        }
        xsk_ring_prod__submit(&rings.fill, n)
    }

    mutating func transmit(_ address: UInt64, length: Int) {
        // Timers may send more than a burst's worth (keepalives, paced audio): submit early.
        if pendingCount == pendingCapacity { flushTX() }
        pendingTX[pendingCount] = FrameDescriptor(address: address, length: UInt32(length))
        pendingCount += 1
    }

    mutating func flushTX() {
        guard pendingCount > 0 else { return }
        var index: UInt32 = 0
        let n = UInt32(pendingCount)
        if xsk_ring_prod__reserve(&rings.tx, n, &index) == n {
            for i in 0..<pendingCount {
                let desc = xsk_ring_prod__tx_desc(&rings.tx, index &+ UInt32(i))!
                desc.pointee.addr = pendingTX[i].address
                desc.pointee.len = pendingTX[i].length
                desc.pointee.options = 0
            }
            xsk_ring_prod__submit(&rings.tx, n)
        } else {
            for i in 0..<pendingCount {
                counters.drop(.transmitFull)
                recycle(pendingTX[i].address)
            }
        }
        pendingCount = 0
    }

    // MARK: - Packets

    mutating func drop(_ address: UInt64, _ reason: DropReason) {
        counters.drop(reason)
        recycle(address)
    }

    /// Runs one frame through the pipeline to its verdict.
    mutating func process(address: UInt64, length: Int, now: UInt64) {
        let frame = umem + Int(address)
        let capacity = frameSize - Int(address - chunk(address))
        var parsed = ParsedFrame()
        guard ParsedFrame.parse(frame, length: length, into: &parsed) == .ok else {
            return drop(address, .malformedFrame)
        }
        let c = configuration
        if parsed.destinationPort == c.mediaPort && parsed.destination == c.mediaAddress {
            clientLeg(address, frame, capacity, &parsed, now: now)
        } else if parsed.destination == c.backendAddress,
            parsed.destinationPort.rawValue >= c.backendPortBase,
            Int(parsed.destinationPort.rawValue - c.backendPortBase) < store.capacity
        {
            backendLeg(
                address, frame, length, capacity, &parsed, slot: Int(parsed.destinationPort.rawValue - c.backendPortBase),
                now: now)
        } else {
            drop(address, .notForUs)
        }
    }

    /// Gives the frame to the worker that owns `slot`, if that is not us. True when handed.
    mutating func handOff(_ address: UInt64, _ frameLength: Int, slot: Int) -> Bool {
        let owner = Int(store.owner(of: slot))
        guard owner >= 0, owner != configuration.id else { return false }
        if owner < links.handoffOut.count, let ring = links.handoffOut[owner],
            ring.push(FrameDescriptor(address: address, length: UInt32(frameLength)))
        {
            counters.count(.handedOff)
            if owner < links.peerDoorbells.count { links.peerDoorbells[owner]._withUnsafeGuaranteedRef { $0.ring() } }
        } else {
            drop(address, .handoffFull)
        }
        return true
    }

    mutating func clientLeg(
        _ address: UInt64, _ frame: UnsafeMutableRawPointer, _ capacity: Int, _ parsed: inout ParsedFrame, now: UInt64
    ) {
        let payload = frame + parsed.payloadOffset
        let payloadClass = PayloadClass.classify(payload, length: parsed.payloadLength)
        switch payloadClass {
        case .stun:
            stun(address, frame, capacity, &parsed, now: now)
        case .dtls:
            guard let slot = clientIndex.find(parsed.flowKey) else { return strayClientFlow(address, &parsed) }
            let s = store.slots + Int(slot)
            guard s.pointee.usesHandshake else { return drop(address, .unsupportedPayload) }
            if links.handshake.push(slot: slot, session: s.pointee.sessionID, flow: parsed.flowKey, payload, length: parsed.payloadLength) {
                counters.count(.toHandshake)
                recycle(address)
                links.handshakeDoorbell.ring()
            } else {
                drop(address, .handshakeFull)
            }
        case .rtp, .rtcp:
            let flow = parsed.flowKey
            let flowHash = flow.indexHash
            guard var found = clientIndex.find(flow, hash: flowHash) else { return strayClientFlow(address, &parsed) }
            let isRTCP = payloadClass == .rtcp
            if store.slots[Int(found)].demuxSSRC != nil {
                // A 5-tuple shared by SSRC: the sender's SSRC, in the clear before unprotect
                // (RTP bytes 8..11, SRTCP 4..7), names the session.
                guard parsed.payloadLength >= (isRTCP ? 8 : 12) else { return drop(address, .malformedRTP) }
                let ssrc = payload.loadBE32(at: isRTCP ? 4 : 8)
                let key = FlowSSRC(flow, ssrc)
                guard let shared = sharedIndex.find(key, hash: FlowSSRC.hash(flowHash: flowHash, ssrc: ssrc)) else {
                    return drop(address, .unknownSSRC)
                }
                found = shared
            }
            media(address, frame, capacity, &parsed, slot: Int(found), isRTCP: isRTCP, now: now)
        default:
            drop(address, .unsupportedPayload)
        }
    }

    /// A client flow this worker does not own: hand it to the worker whose session it is,
    /// if the control side placed it (the kernel chose this queue, not the control side).
    mutating func strayClientFlow(_ address: UInt64, _ parsed: inout ParsedFrame) {
        let slot = flowTable._withUnsafeGuaranteedRef { $0.slot(of: parsed.flowKey) }
        guard let slot, handOff(address, parsed.payloadOffset + parsed.payloadLength, slot: Int(slot)) else {
            return drop(address, .unknownFlow)
        }
    }

    /// A connectivity check: the slot is read from our ufrag, the session's ICE agent
    /// verifies and answers it in place, and the session moves only when the agent says so
    /// (first valid check, or a new path after nomination). STUN is parsed once.
    mutating func stun(
        _ address: UInt64, _ frame: UnsafeMutableRawPointer, _ capacity: Int, _ parsed: inout ParsedFrame, now: UInt64
    ) {
        // The answer goes back to the source: never to one of the engine's own endpoints.
        if isOwnEndpoint(parsed.source, parsed.sourcePort) { return drop(address, .ownAddress) }
        let payload = frame + parsed.payloadOffset
        var request = STUNMessage()
        guard STUNMessage.parse(payload, length: parsed.payloadLength, into: &request) == .ok,
            request.usernameOffset >= 0
        else { return drop(address, .stunRejected) }
        // USERNAME is "<our ufrag>:<theirs>"; ours names the slot.
        let user = payload + request.usernameOffset
        var ours = 0
        while ours < request.usernameLength && user.loadByte(at: ours) != 0x3A { ours += 1 }
        guard let slot = IceUfrag.slot(in: user, count: ours), slot < store.capacity else {
            return drop(address, .unknownSession)
        }
        let owner = store.owner(of: slot)
        if SessionStore.isHeld(owner) {
            // Nobody owns the session yet: a valid check claims it for this worker, unless
            // the control thread reaped it or another worker claimed it first.
            switch claim(slot, from: owner, payload, &request, now: now) {
            case .claimed: break
            case .failedCheck where SessionStore.isHeld(store.owner(of: slot)):
                // Still held: the check itself is bad (MESSAGE-INTEGRITY, USERNAME, FINGERPRINT).
                return drop(address, .stunRejected)
            case .failedCheck, .lost:
                // Claimed meanwhile (its held credentials wiped) or reaped: its owner, if any, decides.
                if handOff(address, parsed.payloadOffset + parsed.payloadLength, slot: slot) { return }
                return drop(address, .unknownSession)
            }
        } else if handOff(address, parsed.payloadOffset + parsed.payloadLength, slot: slot) {
            return
        }
        let s = store.slots + slot
        guard s.pointee.active else { return drop(address, .unknownSession) }
        let flow = parsed.flowKey
        let result = s.pointee.ice.handle(
            now: now, payload, length: parsed.payloadLength, capacity: capacity - parsed.payloadOffset, from: flow,
            request: &request)
        switch result.verdict {
        case .answered: break
        case .badUsername, .closed: return drop(address, .unknownSession)
        default: return drop(address, .stunRejected)
        }
        // An agent that had no deadline (its client was given) has one from its first check.
        if !timers.isScheduled(slot) { armTimer(slot) }
        if result.events.contains(.connected) || result.events.contains(.pathChanged) {
            bind(slot, flow, MACAddress.load(from: frame, at: 6))
            // The control thread learns the flow too: its directory is how a stray of this
            // flow on another queue finds its way here.
            if store.publish(slot, session: s.pointee.sessionID, flow: flow), !links.flowNotices.push(Int32(slot)) {
                store.noticed[slot].store(false, ordering: .relaxed)  // not queued: the next check tells
            }
        } else if s.pointee.clientFlow == flow {
            s.pointee.clientMAC = MACAddress.load(from: frame, at: 6)
        }
        FrameBuilder.reply(frame, &parsed, payloadLength: result.responseLength)
        counters.count(.answered)
        transmit(address, length: parsed.payloadOffset + result.responseLength)
    }

    /// Claims the held session in `slot` when the check at `payload` verifies with its
    /// credentials, and starts it here. False when the check does not verify or the race
    /// was lost.
    mutating func claim(
        _ slot: Int, from mark: Int32, _ payload: UnsafeMutableRawPointer, _ request: inout STUNMessage, now: UInt64
    ) -> ClaimResult {
        let command = store.held + slot
        let probe = command.pointee.icePassword.withBytes {
            ICELiteAgent(
                localUfrag: command.pointee.ufrag, password: $0, remoteUfrag: command.pointee.remoteUfrag, now: now)
        }
        guard probe.verifies(payload, request) else { return .failedCheck }
        guard store.claim(slot, from: mark, by: configuration.id) else { return .lost }
        start(slot, command, now: now)
        store.wipeHeld(slot)
        counters.countClaimed()
        return .claimed
    }

    /// A first check against a held session: it claimed the slot, did not verify against the
    /// held credentials, or verified but lost the slot (reaped, or claimed by another worker).
    enum ClaimResult { case claimed, failedCheck, lost }

    /// Client SRTP/SRTCP → unprotect → (RTP) the session's backend.
    mutating func media(
        _ address: UInt64, _ frame: UnsafeMutableRawPointer, _ capacity: Int, _ parsed: inout ParsedFrame, slot: Int,
        isRTCP: Bool, now: UInt64
    ) {
        let s = store.slots + slot
        guard s.pointee.keyed else { return drop(address, .notKeyed) }
        // Before unprotect: a client sending far more than a call can costs its neighbours
        // no SRTP work past its bucket.
        let c = configuration
        if c.clientPacketCost > 0,
            !s.pointee.policer.admit(now: now, cost: c.clientPacketCost, capacity: c.clientBurstCredit)
        {
            return drop(address, .policed)
        }
        let payload = frame + parsed.payloadOffset
        var length = parsed.payloadLength
        let status = isRTCP ? s.pointee.inbound.unprotectRTCP(payload, length: &length)
            : s.pointee.inbound.unprotectRTP(payload, length: &length)
        switch status {
        case .ok: break
        case .authenticationFailed: return drop(address, .srtpAuthentication)
        case .replayed, .tooOld: return drop(address, .srtpReplay)
        default: return drop(address, .srtpOther)
        }
        s.pointee.packetsFromClient &+= 1
        s.pointee.clientMAC = MACAddress.load(from: frame, at: 6)
        s.pointee.ice.mediaReceived(now: now)
        if !isRTCP {
            let ssrc = payload.loadBE32(at: 8)
            if s.pointee.clientSSRC != ssrc {
                if let old = s.pointee.clientSSRC, ssrcIndex.find(old) == Int32(slot) { ssrcIndex.remove(old) }
                _ = ssrcIndex.insert(ssrc, Int32(slot))
                s.pointee.clientSSRC = ssrc
                s.pointee.clientStats = RTPReceiveStatistics()
            }
            // Arrival on the 48 kHz RTP clock (Opus), for jitter.
            let arrival = UInt32(truncatingIfNeeded: (now / 1_000) &* 48 / 1_000)
            _ = s.pointee.clientStats.update(
                sequenceNumber: payload.loadBE16(at: 2), timestamp: payload.loadBE32(at: 4), arrival: arrival)
        }
        if isRTCP {
            counters.count(.consumed)
            return recycle(address)
        }
        guard let backend = usableBackend(s.pointee.backendIndex) else { return drop(address, .backendUnavailable) }
        let addresses = FrameAddresses(
            destinationMAC: backend.pointee.mac, sourceMAC: c.edgeMAC, vlanID: parsed.vlanID,
            source: c.backendAddress, sourcePort: backendPort(slot),
            destination: backend.pointee.address, destinationPort: backend.pointee.port)
        let total = send(frame, &parsed, addresses, payloadLength: length, capacity: capacity)
        guard total > 0 else { return drop(address, .noRoom) }
        counters.count(.toBackend)
        transmit(address, length: total)
    }

    /// Backend RTP → the client leg's own stream → protect → the client.
    mutating func backendLeg(
        _ address: UInt64, _ frame: UnsafeMutableRawPointer, _ frameLength: Int, _ capacity: Int,
        _ parsed: inout ParsedFrame, slot: Int, now: UInt64
    ) {
        if handOff(address, frameLength, slot: slot) { return }
        let s = store.slots + slot
        guard s.pointee.active else { return drop(address, .unknownSession) }
        guard let backend = usableBackend(s.pointee.backendIndex), backend.pointee.address == parsed.source,
            backend.pointee.port == parsed.sourcePort
        else { return drop(address, .wrongSource) }
        let payload = frame + parsed.payloadOffset
        let length = parsed.payloadLength
        if length > 0 && payload.load(as: UInt8.self) == BackendMessage.magic {
            return backendControl(address, slot, payload, length, key: backend.pointee.key, now: now)
        }
        guard let client = s.pointee.clientFlow else { return drop(address, .unknownSession) }
        guard s.pointee.keyed else { return drop(address, .notKeyed) }
        switch PayloadClass.classify(payload, length: length) {
        case .rtp where length >= 12:
            break
        case .rtcp:
            counters.count(.consumed)
            return recycle(address)
        default:
            return drop(address, .malformedRTP)
        }
        let c = configuration
        // The control side refuses such clients; a flow moved here by a spoofed check must not
        // make the engine feed itself either.
        if isOwnEndpoint(client.remoteAddress, client.remotePort) { return drop(address, .ownAddress) }
        // A port that writes Ethernet headers (edge MAC known) needs the client's MAC.
        if c.edgeMAC != .zero && s.pointee.clientMAC == .zero { return drop(address, .clientUnheard) }
        // The tag must fit after the packet wherever the headers end up.
        let addresses = FrameAddresses(
            destinationMAC: s.pointee.clientMAC, sourceMAC: c.edgeMAC, vlanID: parsed.vlanID,
            source: client.localAddress, sourcePort: client.localPort,
            destination: client.remoteAddress, destinationPort: client.remotePort)
        let start = addresses.headerLength
        guard start + length + 16 + 4 <= capacity else { return drop(address, .noRoom) }
        if s.pointee.paced {
            // Ahead of its playout time (or behind others queued): its payload waits in the
            // session's own memory and the frame goes back to the pool at once.
            var header = RTPHeader()
            guard RTPHeader.parse(payload, length: length, into: &header) == .ok else { return drop(address, .malformedRTP) }
            let decision = s.pointee.pacing.offer(
                UnsafeRawBufferPointer(start: payload + header.payloadOffset, count: header.payloadLength),
                rtpTimestamp: header.timestamp, marker: header.marker, payloadType: header.payloadType, now: now)
            s.pointee.publishPacing()
            switch decision {
            case .sendNow: break
            case .queued, .droppedOldest:
                if decision == .droppedOldest { counters.count(.pacingOverflow) }
                armPacing(slot)
                counters.count(.paced)
                return recycle(address)
            case .tooLarge:
                return drop(address, .pacingTooLarge)
            }
        }
        if parsed.payloadOffset != start {
            (frame + start).copyMemory(from: payload, byteCount: length)
        }
        guard protectForClient(slot, frame, start: start, length: length, capacity: capacity, addresses) else {
            return drop(address, .srtpOther)
        }
        counters.count(.toClient)
    }

    /// Rewrites the RTP packet at `frame + start` into `slot`'s client-leg stream, protects it,
    /// writes the headers and queues the frame for sending: the one way backend audio reaches
    /// a client, at once or paced. False when protect fails (nothing is queued).
    mutating func protectForClient(
        _ slot: Int, _ frame: UnsafeMutableRawPointer, start: Int, length: Int, capacity: Int,
        _ addresses: FrameAddresses
    ) -> Bool {
        let s = store.slots + slot
        var length = length
        let rtp = frame + start
        s.pointee.clientLeg.rewrite(rtp)
        let status = s.pointee.outbound.protectRTP(rtp, length: &length, capacity: capacity - start)
        guard status == .ok else { return false }
        _ = FrameBuilder.write(frame, addresses, payloadLength: length)
        s.pointee.packetsToClient &+= 1
        transmit(UInt64(frame - umem), length: start + length)
        return true
    }

    /// Whether `address`:`port` is one of the engine's own endpoints: its media address and
    /// port, or its backend address on a backend-leg port. Two compares, no allocation.
    func isOwnEndpoint(_ address: IPAddress, _ port: UDPPort) -> Bool {
        let c = configuration
        if port == c.mediaPort && address == c.mediaAddress { return true }
        return address == c.backendAddress && port.rawValue >= c.backendPortBase
            && Int(port.rawValue - c.backendPortBase) < store.capacity
    }

    /// Moves `payloadLength` bytes from `parsed.payloadOffset` to where `addresses`' headers
    /// end and writes the headers. Returns the frame length, or 0 without room.
    func send(
        _ frame: UnsafeMutableRawPointer, _ parsed: inout ParsedFrame, _ addresses: FrameAddresses,
        payloadLength: Int, capacity: Int
    ) -> Int {
        let start = addresses.headerLength
        guard start + payloadLength <= capacity else { return 0 }
        if parsed.payloadOffset != start {
            (frame + start).copyMemory(from: frame + parsed.payloadOffset, byteCount: payloadLength)
        }
        parsed = FrameBuilder.write(frame, addresses, payloadLength: payloadLength)
        return start + payloadLength
    }

    // MARK: - Commands

    mutating func applyCommands(from ring: SPSCRing<WorkerCommand>, now: UInt64) {
        while let command = ring.peek() {
            apply(command, now: now)
            // Key material does not linger in the ring.
            command.pointee = WorkerCommand(kind: .drop, slot: -1)
            ring.advance()
        }
    }

    mutating func apply(_ command: UnsafeMutablePointer<WorkerCommand>, now: UInt64) {
        let slot = Int(command.pointee.slot)
        guard slot >= 0, slot < store.capacity else { return }
        let s = store.slots + slot
        switch command.pointee.kind {
        case .create:
            start(slot, command, now: now)
        case .bindClient:
            guard s.pointee.active, let flow = command.pointee.flow else { return }
            bind(slot, flow, command.pointee.clientMAC)
        case .changeBackend:
            guard s.pointee.active else { return }
            // The old backend is told it lost the session; audio it already queued plays out.
            if s.pointee.paced { sendControl(slot, .migratedAway, now: now) }
            let old = backendFlow(slot, s.pointee.backendIndex)
            s.pointee.backendIndex = command.pointee.backend
            s.pointee.clientLeg.needsAnchor = true
            portBinding.flowChanged(slot: slot, from: old, to: backendFlow(slot, s.pointee.backendIndex))
            beginBackend(slot, now: now, migrated: true)
            armTimer(slot)
        case .drop:
            guard s.pointee.active else { return }
            let id = command.pointee.sessionID
            guard id == 0 || id == s.pointee.sessionID else { return }
            switch command.pointee.endReason {
            case .handshakeFailed: counters.countEnded(.handshakeFailed)
            case .closedByClient: counters.countEnded(.closedByClient)
            case .none, .clientLeft, .drained: break
            }
            end(slot, reason: command.pointee.endReason.backendReason, now: now)
        case .installKeys:
            guard s.pointee.active, s.pointee.usesHandshake, !s.pointee.keyed,
                command.pointee.sessionID == s.pointee.sessionID
            else { return }
            installKeys(slot, command)
            s.pointee.keyed = true
            s.pointee.keyDeadline = .max
            armTimer(slot)
        }
    }

    /// Keys `slot`'s contexts from `command` (allocation-free unless the profile needs a
    /// cipher neither of the slot's pairs has).
    mutating func installKeys(_ slot: Int, _ command: UnsafeMutablePointer<WorkerCommand>) {
        let s = store.slots + slot
        defer { s.pointee.profile = s.pointee.inbound.profile }  // what the control thread reads
        let profile = command.pointee.profile
        guard !s.pointee.rekey(profile, client: command.pointee.clientKey, edge: command.pointee.edgeKey, deriver: deriver)
        else { return }
        // New contexts: the one case that allocates (AES-256-GCM, or AES-CM-32 after GCM).
        command.pointee.clientKey.withKeyAndSalt { key, salt in
            if let ctx = try? SRTPContext(profile: profile, masterKey: Array(key), masterSalt: Array(salt)) {
                s.pointee.inbound = ctx
            }
        }
        command.pointee.edgeKey.withKeyAndSalt { key, salt in
            if let ctx = try? SRTPContext(profile: profile, masterKey: Array(key), masterSalt: Array(salt)) {
                s.pointee.outbound = ctx
            }
        }
    }

    /// Sends the handshake thread's flights: each datagram is copied into a frame of this
    /// worker's pool and addressed to the session's client from the media port.
    mutating func sendFlights() {
        while freeCount > 0 {
            var length = 0
            let taken = links.handshakeOut.consume { entry, bytes in
                length = flight(entry, bytes)
            }
            guard taken else { return }
            if length > 0 {
                let frame = freeFrames[freeCount - 1]  // flight wrote the pool's top frame
                freeCount -= 1
                counters.count(.fromHandshake)
                transmit(frame, length: length)
            } else {
                counters.drop(.unknownSession)
            }
        }
    }

    /// Writes one flight datagram for `entry`'s session into the pool's top free frame (not
    /// taken: the caller takes it); the frame's length, or 0 when the session is gone, moved,
    /// or there is no free frame or no room.
    func flight(_ entry: DatagramQueue.Entry, _ bytes: UnsafeRawBufferPointer) -> Int {
        let slot = Int(entry.slot)
        guard slot >= 0, slot < store.capacity else { return 0 }
        let s = store.slots + slot
        guard s.pointee.active, s.pointee.sessionID == entry.session, let client = s.pointee.clientFlow,
            client == entry.flow, !isOwnEndpoint(client.remoteAddress, client.remotePort)
        else { return 0 }
        let addresses = clientAddresses(s, client)
        guard let out = freeFrame(addresses, payload: bytes.count) else { return 0 }
        (out.frame + out.start).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        _ = FrameBuilder.write(out.frame, addresses, payloadLength: bytes.count)
        return out.start + bytes.count
    }

    /// The pool's top free frame for a datagram the worker makes itself (a handshake flight,
    /// a control message, a paced packet), with `addresses`' headers and `payload` bytes
    /// after them: its UMEM address, its memory and where the payload starts. The frame stays
    /// in the pool until the caller takes it (`freeCount -= 1`), so nothing needs giving back
    /// when what follows fails. Nil when the pool is empty or the frame has no room.
    func freeFrame(_ addresses: FrameAddresses, payload: Int) -> (address: UInt64, frame: UnsafeMutableRawPointer, start: Int)? {
        let start = addresses.headerLength
        guard freeCount > 0, start + payload <= frameSize else { return nil }
        let address = freeFrames[freeCount - 1]
        return (address, umem + Int(address), start)
    }

    /// Headers from the media port to `slot`'s client (`s`, its `client` flow).
    func clientAddresses(_ s: UnsafeMutablePointer<SessionSlot>, _ client: FlowKey) -> FrameAddresses {
        FrameAddresses(
            destinationMAC: s.pointee.clientMAC, sourceMAC: configuration.edgeMAC, source: client.localAddress,
            sourcePort: client.localPort, destination: client.remoteAddress, destinationPort: client.remotePort)
    }

    /// Starts a session in `slot` from its create command (from the command ring, or held
    /// for this worker's claim).
    mutating func start(_ slot: Int, _ command: UnsafeMutablePointer<WorkerCommand>, now: UInt64) {
        let s = store.slots + slot
        s.pointee.usesHandshake = command.pointee.keysFromHandshake
        if command.pointee.keysFromHandshake {
            // Keys come from the handshake, by its deadline; until then no media passes.
            s.pointee.keyed = false
            s.pointee.keyDeadline = command.pointee.connectDeadline
        } else {
            installKeys(slot, command)
            s.pointee.keyed = true
            s.pointee.keyDeadline = .max
        }
        s.pointee.ice.close()
        s.pointee.doesICE = !command.pointee.ufrag.isEmpty
        if !command.pointee.ufrag.isEmpty {
            // A session whose client is given (static keys) has no connect deadline;
            // one that waits for its client's first check has.
            let configuration = ICELiteAgent.Configuration(
                connectTimeout: command.pointee.flow == nil ? ICELiteAgent.Configuration().connectTimeout : .max)
            s.pointee.ice = command.pointee.icePassword.withBytes {
                ICELiteAgent(
                    localUfrag: command.pointee.ufrag, password: $0, remoteUfrag: command.pointee.remoteUfrag, now: now,
                    configuration: configuration)
            }
        }
        s.pointee.sessionID = command.pointee.sessionID
        s.pointee.backendIndex = command.pointee.backend
        s.pointee.clientLeg = ClientLegStream(
            ssrc: command.pointee.edgeSSRC, firstSequence: command.pointee.firstSequence,
            firstTimestamp: command.pointee.firstTimestamp)
        s.pointee.packetsFromClient = 0
        s.pointee.packetsToClient = 0
        s.pointee.clientFlow = nil
        s.pointee.demuxSSRC = command.pointee.clientSSRC
        s.pointee.clientSSRC = nil
        s.pointee.clientStats = RTPReceiveStatistics()
        s.pointee.clientMAC = .zero  // a reused slot must not answer the last client's MAC
        s.pointee.backendStream = command.pointee.backendStream
        s.pointee.backendRTT = 0
        s.pointee.backendHeard = 0
        s.pointee.flushes = 0
        s.pointee.lastFlushSequence = 0
        s.pointee.pacing.reset(clockRate: max(1, command.pointee.backendStream.clockRate))
        s.pointee.publishPacing()
        s.pointee.policer = ClientPolicer(credit: configuration.clientBurstCredit, last: now)
        s.pointee.active = true
        portBinding.sessionStarted(slot: slot, backendPort: backendPort(slot), socket: command.pointee.backendSocket)
        if let flow = command.pointee.flow { bind(slot, flow, command.pointee.clientMAC) }
        portBinding.flowChanged(slot: slot, from: nil, to: backendFlow(slot, s.pointee.backendIndex))
        beginBackend(slot, now: now, migrated: false)
        armTimer(slot)
    }

    // MARK: - The backend protocol (docs/backend-protocol.md)

    /// How often the edge sends each session's backend a keepalive (its RTT comes back in
    /// the ack; issue-sized liveness builds on it).
    public static let keepaliveInterval: UInt64 = 1_000_000_000

    /// `slot`'s session begins with its current backend — at its start, or on a new backend
    /// after a move (`migrated`): a backend with a key gets a fresh channel, the start (or
    /// migrated-in) with the session's stream, model and subject, keepalives from now on, and
    /// its audio paced. One without a key gets plain RTP, forwarded as it comes.
    mutating func beginBackend(_ slot: Int, now: UInt64, migrated: Bool) {
        let s = store.slots + slot
        guard let backend = usableBackend(s.pointee.backendIndex), backend.pointee.key != nil else {
            s.pointee.paced = false
            s.pointee.nextKeepalive = .max
            return
        }
        s.pointee.paced = true
        s.pointee.backendChannel = BackendChannelState(sessionID: s.pointee.sessionID, local: .edge)
        let stream = s.pointee.backendStream
        sendControl(slot, migrated ? .migratedIn(stream) : .start(stream), now: now)
        s.pointee.nextKeepalive = now &+ Worker.keepaliveInterval
    }

    /// Sends a control message to `slot`'s backend from a frame of the pool, stamped by the
    /// session's channel. False (counted) when the backend has no key or no frame is free.
    @discardableResult
    mutating func sendControl(_ slot: Int, _ body: BackendMessage.Body, now: UInt64) -> Bool {
        let s = store.slots + slot
        guard let backend = usableBackend(s.pointee.backendIndex), let key = backend.pointee.key else {
            counters.count(.controlUnsent)
            return false
        }
        let c = configuration
        let addresses = FrameAddresses(
            destinationMAC: backend.pointee.mac, sourceMAC: c.edgeMAC, source: c.backendAddress,
            sourcePort: backendPort(slot), destination: backend.pointee.address, destinationPort: backend.pointee.port)
        guard let frame = freeFrame(addresses, payload: 0) else {
            counters.count(.controlUnsent)
            return false
        }
        let out = UnsafeMutableRawBufferPointer(start: frame.frame + frame.start, count: frameSize - frame.start)
        guard let n = s.pointee.backendChannel.send(body, now: now, key: key, into: out) else {
            counters.count(.controlUnsent)
            return false
        }
        freeCount -= 1
        _ = FrameBuilder.write(frame.frame, addresses, payloadLength: n)
        counters.count(.controlSent)
        transmit(frame.address, length: frame.start + n)
        return true
    }

    /// A control message from `slot`'s backend (its source already checked): authenticated
    /// with the backend's key, checked against the session's channel (session, sender,
    /// replay), then acted on. Anything refused changes nothing and is counted by verdict.
    mutating func backendControl(
        _ address: UInt64, _ slot: Int, _ payload: UnsafeMutableRawPointer, _ length: Int, key: HMACSHA1Key?,
        now: UInt64
    ) {
        guard let key else { return drop(address, .backendControl) }
        let s = store.slots + slot
        var message = BackendMessage()
        let verdict = s.pointee.backendChannel.receive(
            UnsafeRawBufferPointer(start: payload, count: length), key: key, into: &message)
        counters.count(verdict)
        guard verdict == .ok else { return drop(address, .backendControl) }
        s.pointee.backendHeard = now
        counters.count(.consumed)
        recycle(address)  // the message is copied out; replies take frames of their own
        switch message.body {
        case .flush:
            flush(slot)
        case .keepalive:
            sendControl(slot, .keepaliveAck(echo: message.timestamp), now: now)
        case .keepaliveAck(let echo):
            if echo <= now { s.pointee.backendRTT = now - echo }
        case .end(let reason):
            var event = WorkerEvent(kind: .backendEnded, slot: Int32(slot), sessionID: s.pointee.sessionID)
            event.reason = reason.rawValue
            _ = links.events.push(event)
            counters.countEnded(.backendEnded)
            end(slot, reason: reason, tellBackend: false, now: now)
        case .start, .migratedAway, .migratedIn:
            break  // the edge's own messages: parse refuses them from a backend
        }
    }

    /// Barge-in: everything queued toward `slot`'s client goes at once; the backend's next
    /// packet plays immediately, continuing the client leg's timeline from the last packet
    /// sent. Tells the control thread (its log) the last client-leg sequence number sent.
    mutating func flush(_ slot: Int) {
        let s = store.slots + slot
        let dropped = s.pointee.pacing.flush()
        s.pointee.publishPacing()
        timers.cancel(store.capacity + slot)
        s.pointee.clientLeg.needsAnchor = true
        s.pointee.flushes &+= 1
        s.pointee.lastFlushSequence = s.pointee.clientLeg.nextSequence &- 1
        counters.count(.flushes)
        counters.count(.flushedPackets, UInt64(dropped))
        var event = WorkerEvent(kind: .flush, slot: Int32(slot), sessionID: s.pointee.sessionID)
        event.sequence = s.pointee.lastFlushSequence
        event.count = UInt32(truncatingIfNeeded: dropped)
        _ = links.events.push(event)
    }

    /// Arms `slot`'s pacing timer at its queue's next playout time.
    mutating func armPacing(_ slot: Int) {
        if let next = store.slots[slot].pacing.nextDeadline { timers.schedule(store.capacity + slot, at: next) }
    }

    /// Sends what `slot`'s pacing queue has due by `now`, each in a frame of the pool, and
    /// re-arms its timer.
    mutating func releasePaced(_ slot: Int, now: UInt64) {
        let s = store.slots + slot
        guard s.pointee.active else { return }
        while let packet = s.pointee.pacing.due(now: now) {
            if !sendPaced(slot, packet) { counters.count(.pacedUnsent) }
        }
        s.pointee.publishPacing()
        armPacing(slot)
    }

    /// One paced packet to `slot`'s client: a fresh 12-byte RTP header with the backend's
    /// marker, payload type and timestamp, the payload copied from the queue, then the same
    /// rewrite and protect as audio sent at once.
    mutating func sendPaced(_ slot: Int, _ packet: PacedPacket) -> Bool {
        let s = store.slots + slot
        guard let client = s.pointee.clientFlow else { return false }
        let addresses = clientAddresses(s, client)
        let length = RTP.fixedHeaderLength + packet.payload.count
        // The tag must fit after the packet, as in backendLeg.
        guard let (_, frame, start) = freeFrame(addresses, payload: length + 16 + 4) else { return false }
        let rtp = frame + start
        rtp.storeBytes(of: RTP.version << 6, as: UInt8.self)
        rtp.storeBytes(of: (packet.marker ? 0x80 : 0) | packet.payloadType, toByteOffset: 1, as: UInt8.self)
        rtp.storeBE32(packet.rtpTimestamp, at: 4)
        if packet.payload.count > 0 {
            (rtp + RTP.fixedHeaderLength).copyMemory(from: packet.payload.baseAddress!, byteCount: packet.payload.count)
        }
        freeCount -= 1
        guard protectForClient(slot, frame, start: start, length: length, capacity: frameSize, addresses) else {
            freeCount += 1  // the frame never left the pool's top
            return false
        }
        counters.count(.pacedSent)
        return true
    }

    /// Ends the session in `slot` (a drop command, its ICE failed, its backend ended it) and
    /// gives the slot back. A backend with a key is told `reason` unless it ended the session
    /// itself; the control thread hears of it (`WorkerEvent.ended`).
    mutating func end(_ slot: Int, reason: BackendEndReason, tellBackend: Bool = true, now: UInt64) {
        let s = store.slots + slot
        var event = WorkerEvent(kind: .ended, slot: Int32(slot), sessionID: s.pointee.sessionID)
        event.reason = reason.rawValue
        _ = links.events.push(event)
        if tellBackend, s.pointee.paced, sendControl(slot, .end(reason), now: now) {
            // The socket port closes the leg's socket below: the end leaves first.
            flushTX()
            portBinding.transmitNow()
        }
        s.pointee.pacing.reset(clockRate: max(1, s.pointee.pacing.configuration.clockRate))
        s.pointee.publishPacing()
        s.pointee.paced = false
        s.pointee.nextKeepalive = .max
        timers.cancel(store.capacity + slot)
        if let flow = s.pointee.clientFlow { detach(slot, from: flow) }
        portBinding.flowChanged(slot: slot, from: backendFlow(slot, s.pointee.backendIndex), to: nil)
        if let ssrc = s.pointee.clientSSRC, ssrcIndex.find(ssrc) == Int32(slot) { ssrcIndex.remove(ssrc) }
        s.pointee.clientFlow = nil
        s.pointee.clientSSRC = nil
        s.pointee.active = false
        s.pointee.keyed = true
        s.pointee.usesHandshake = false
        s.pointee.keyDeadline = .max
        s.pointee.inbound.wipeKeys()
        s.pointee.outbound.wipeKeys()
        s.pointee.inbound.resetStreams()
        s.pointee.outbound.resetStreams()
        s.pointee.ice.close()
        timers.cancel(slot)
        portBinding.sessionEnded(slot: slot, backendPort: backendPort(slot))
        while !links.released.push(Int32(slot)) {}  // sized for every slot: never full for long
    }

    // MARK: - Timers

    /// Schedules `slot`'s timer at its agent's deadline, or its key deadline if that comes
    /// first (none once the agent has failed and the keys are in).
    mutating func armTimer(_ slot: Int) {
        let s = store.slots + slot
        let deadline = min(s.pointee.ice.deadline, s.pointee.keyDeadline, s.pointee.nextKeepalive)
        if deadline == .max { timers.cancel(slot) } else { timers.schedule(slot, at: deadline) }
    }

    /// Runs the ICE timers due by `now`: a session whose agent failed (no check by the
    /// connect deadline, or consent expired) ends here; one whose checks moved its deadline
    /// on is re-armed.
    mutating func expireTimers(now: UInt64) {
        while true {
            let n = timers.expire(upTo: now, into: expired, max: Worker.expiredBatch)
            for i in 0..<n {
                let id = Int(expired[i])
                if id >= store.capacity {
                    releasePaced(id - store.capacity, now: now)
                    continue
                }
                let slot = id
                let s = store.slots + slot
                guard s.pointee.active else { continue }
                _ = s.pointee.ice.poll(now: now)
                // A check may have found the agent failed first (it then answers nothing). A
                // session without ICE has a closed agent and other timers (keepalives).
                if s.pointee.doesICE, case .failed(let failure) = s.pointee.ice.state {
                    let consent = failure == .consentExpired
                    counters.countEnded(consent ? .consentExpired : .connectTimeout)
                    end(slot, reason: consent ? .consentExpired : .connectTimeout, now: now)
                } else if now >= s.pointee.keyDeadline {
                    // ICE connected, but no handshake finished within the connect deadline.
                    counters.countEnded(.connectTimeout)
                    end(slot, reason: .connectTimeout, now: now)
                } else {
                    if now >= s.pointee.nextKeepalive {
                        sendControl(slot, .keepalive, now: now)
                        s.pointee.nextKeepalive = now &+ Worker.keepaliveInterval
                    }
                    armTimer(slot)
                }
            }
            if n < Worker.expiredBatch { break }
        }
    }

    mutating func bind(_ slot: Int, _ flow: FlowKey, _ mac: MACAddress) {
        let s = store.slots + slot
        let old = s.pointee.clientFlow
        if let old, old != flow { detach(slot, from: old) }
        attach(slot, to: flow, moved: old != flow)
        s.pointee.clientFlow = flow
        if mac != .zero { s.pointee.clientMAC = mac }
    }

    /// The edge's port on `slot`'s backend leg.
    func backendPort(_ slot: Int) -> UDPPort { UDPPort(configuration.backendPortBase &+ UInt16(slot)) }

    /// The backend leg's 5-tuple of `slot` on backend `index` (as the edge sees it), if that
    /// backend is in this burst's table.
    func backendFlow(_ slot: Int, _ index: Int32) -> FlowKey? {
        guard index >= 0, Int(index) < backendCount else { return nil }
        return .backendLeg(
            backendEntries[Int(index)], edge: configuration.backendAddress, portBase: configuration.backendPortBase,
            slot: slot)
    }

    /// Frames in this worker's pool (not in any ring).
    public var freeFrameCount: Int { freeCount }

    /// The slot of the session whose client sends RTP with `ssrc`.
    public func slot(forClientSSRC ssrc: UInt32) -> Int32? { ssrcIndex.find(ssrc) }

    /// The slot of the session whose client is at `flow` (of a 5-tuple shared by SSRC: the
    /// first of its sessions, the one `vox_flows` names).
    public func slot(forClient flow: FlowKey) -> Int32? { clientIndex.find(flow) }

    /// The slot of the session that named `ssrc` on the shared 5-tuple `flow`.
    public func slot(forClient flow: FlowKey, ssrc: UInt32) -> Int32? { sharedIndex.find(FlowSSRC(flow, ssrc)) }

    /// The session in `slot` as this worker sees it (tests, `session show`).
    public func withSession<R>(_ slot: Int, _ body: (borrowing SessionSlot) -> R) -> R {
        body(store.slots[slot])
    }
}
