import Synchronization
import VoxWire
import VoxMedia

/// The control thread's side of session placement: which slots are free, which worker
/// owns each, and the commands that make workers change their sessions. Single-threaded
/// (the control thread); workers answer through their `released` rings.
public final class SessionControl {
    public let store: SessionStore
    let links: [WorkerLinks]
    var freeSlots: [Int32]
    var nextSessionID: UInt64 = 1
    /// Client flows placed by commands, for the workers' shared directory: each names one of
    /// the slots holding it (the last placed), `sharers` all of them (several when sessions
    /// share a 5-tuple by SSRC; they share its owner too).
    var flows: [FlowKey: Int32] = [:]
    var sharers: [FlowKey: [Int32]] = [:]
    var flowOfSlot: [Int32: FlowKey] = [:]
    var flowsChanged = false
    /// Sessions held for a worker to claim (`hold`): the owner value claim and reap race
    /// from, and when the control thread reaps them.
    var unclaimed: [Int32: (mark: Int32, deadline: UInt64)] = [:]
    /// The session each live slot holds, by id: a worker's notice of a client flow counts
    /// only for the session it was published for.
    var sessionOfSlot: [Int32: UInt64] = [:]
    var generation: UInt32 = 0

    public init(store: SessionStore, links: [WorkerLinks]) {
        self.store = store
        self.links = links
        freeSlots = (0..<Int32(store.capacity)).reversed()
    }

    public var freeCount: Int { freeSlots.count }

    /// The slot the next `create` takes (after taking back released ones), or nil when none
    /// is free: the control thread binds that slot's backend-leg port before creating.
    public func nextSlot() -> Int32? {
        reclaim()
        return freeSlots.last
    }

    /// Puts free slot `slot` last in line (its backend-leg port is taken by someone else):
    /// the next creates try other slots rather than the same port again.
    public func setAside(_ slot: Int32) {
        guard let i = freeSlots.lastIndex(of: slot) else { return }
        freeSlots.remove(at: i)
        freeSlots.insert(slot, at: 0)
    }

    public enum Failure: Error, Equatable { case full, workerBusy, unknownSlot }

    /// Starts a session on `worker`: takes a free slot (`slot` when given and free: the one
    /// `nextSlot` named), makes it that worker's, and sends the create command (filled in by
    /// `configure`). Returns the slot.
    public func create(
        on worker: Int, slot wanted: Int32? = nil, _ configure: (inout WorkerCommand) -> Void
    ) throws(Failure) -> Int32 {
        reclaim()
        if let wanted, let i = freeSlots.lastIndex(of: wanted) { freeSlots.swapAt(i, freeSlots.count - 1) }
        guard let slot = freeSlots.popLast() else { throw .full }
        var command = WorkerCommand(kind: .create, slot: slot)
        command.sessionID = nextSessionID
        configure(&command)
        store.assign(Int(slot), to: worker)
        guard links[worker].commands.push(command) else {
            store.unassign(Int(slot))
            freeSlots.append(slot)
            throw .workerBusy
        }
        links[worker].doorbell.ring()
        nextSessionID += 1
        sessionOfSlot[slot] = command.sessionID
        if let flow = command.flow { place(slot, flow) }
        return slot
    }

    /// Holds a session that no worker owns yet (a WebRTC session from its offer, DESIGN
    /// §2a): its slot and ufrag exist now, and the worker whose queue receives its first
    /// valid check claims it. Unclaimed at `deadline`, `reapUnclaimed` frees it. The
    /// command (filled in by `configure`; its flow is ignored: the client is whoever checks
    /// first) must carry ICE credentials, or nothing can ever claim it.
    public func hold(until deadline: UInt64, slot wanted: Int32? = nil, _ configure: (inout WorkerCommand) -> Void)
        throws(Failure) -> Int32
    {
        reclaim()
        if let wanted, let i = freeSlots.lastIndex(of: wanted) { freeSlots.swapAt(i, freeSlots.count - 1) }
        guard let slot = freeSlots.popLast() else { throw .full }
        var command = WorkerCommand(kind: .create, slot: slot)
        command.sessionID = nextSessionID
        configure(&command)
        command.slot = slot
        command.flow = nil
        nextSessionID += 1
        sessionOfSlot[slot] = command.sessionID
        generation &+= 1
        unclaimed[slot] = (store.hold(Int(slot), command, generation: generation), deadline)
        return slot
    }

    /// Frees the held sessions whose deadline has passed and that no worker claimed; forgets
    /// those a worker did claim (their worker keeps their timers from then on). Returns the
    /// slots reaped (also told to `onRelease`).
    @discardableResult
    public func reapUnclaimed(now: UInt64) -> [Int32] {
        var reaped: [Int32] = []
        for (slot, entry) in unclaimed where entry.deadline <= now {
            if reap(slot, reason: .connectTimeout) { reaped.append(slot) }
        }
        if !reaped.isEmpty { expiredUnclaimed.add(UInt64(reaped.count), ordering: .relaxed) }
        return reaped
    }

    /// Forgets held `slot`'s deadline and, when no worker claimed it first, frees it (told
    /// to `onReap` with `reason`). True when it was reaped.
    func reap(_ slot: Int32, reason: BackendEndReason) -> Bool {
        guard let entry = unclaimed.removeValue(forKey: slot), store.reap(Int(slot), from: entry.mark) else {
            return false
        }
        onReap?(slot, sessionOfSlot[slot] ?? 0, reason)
        sessionOfSlot[slot] = nil
        freeSlots.append(slot)
        onRelease?(slot)
        return true
    }

    /// Held sessions reaped at their deadline, no worker having claimed them (no valid check
    /// came): the connect timeouts no worker counts. Read by the metrics thread.
    public let expiredUnclaimed = Atomic<UInt64>(0)

    /// True while `slot` holds a session no worker has claimed.
    public func isUnclaimed(_ slot: Int32) -> Bool {
        guard let entry = unclaimed[slot] else { return false }
        return store.owner(of: Int(slot)) == entry.mark
    }

    /// The slot whose session holds client 5-tuple `flow`, as the control side placed it:
    /// the directory the workers' shared table is published from.
    public func slot(ofClient flow: FlowKey) -> Int32? { flows[flow] }

    /// The client 5-tuple of the session in `slot`, as given or as its worker bound it.
    public func clientFlow(ofSlot slot: Int32) -> FlowKey? { flowOfSlot[slot] }
    /// Every slot holding client 5-tuple `flow`, oldest first.
    public func slots(ofClient flow: FlowKey) -> [Int32] { sharers[flow] ?? [] }

    func place(_ slot: Int32, _ flow: FlowKey?) {
        if let old = flowOfSlot.removeValue(forKey: slot) {
            sharers[old]?.removeAll { $0 == slot }
            if let rest = sharers[old], let last = rest.last {
                flows[old] = last
            } else {
                sharers[old] = nil
                flows[old] = nil
            }
        }
        if let flow {
            flows[flow] = slot
            sharers[flow, default: []].append(slot)
            flowOfSlot[slot] = flow
        }
        flowsChanged = true
    }

    /// Publishes the client-flow directory if sessions were placed, moved or dropped since
    /// the last call (`reclaim` calls it: the control loop runs both every tick).
    public func publishFlows() {
        guard flowsChanged, let directory = links.first?.clientFlows else { return }
        flowsChanged = false
        directory.publish(ClientFlowTable(flows))
    }

    /// Sends `command` to the worker owning its slot.
    public func send(_ command: WorkerCommand) throws(Failure) {
        let owner = Int(store.owner(of: Int(command.slot)))
        guard owner >= 0 else { throw .unknownSlot }
        guard links[owner].commands.push(command) else { throw .workerBusy }
        links[owner].doorbell.ring()
        switch command.kind {
        case .bindClient: place(command.slot, command.flow)
        case .drop: place(command.slot, nil)
        default: break
        }
    }

    /// Where the last command sent to `worker` stands in its ring: `isApplied` once the
    /// worker has applied it (and so admitted what it binds, `PortBinding`).
    public struct Ticket: Sendable, Equatable {
        public let worker: Int
        let position: Int
    }

    public func ticket(worker: Int) -> Ticket { Ticket(worker: worker, position: links[worker].commands.pushed) }

    public func isApplied(_ ticket: Ticket) -> Bool { links[ticket.worker].commands.consumed >= ticket.position }

    /// Ends the session in `slot`: a held one that no worker has claimed is reaped here (no
    /// backend heard of it); an owned one gets a drop command, whose `reason` its backend is
    /// told.
    public func drop(_ slot: Int32, reason: WorkerCommand.EndReason = .none) throws(Failure) {
        // A held session a worker claimed meanwhile is that worker's to drop.
        if reap(slot, reason: reason.backendReason) { return }
        var command = WorkerCommand(kind: .drop, slot: slot)
        command.endReason = reason
        try send(command)
    }

    /// Runs at the start of every `reclaim` (the runtime takes the workers' events there).
    public var beforeReclaim: (() -> Void)? = nil

    /// Told of every held session freed before any worker claimed it: its slot, id and why
    /// (its connect deadline, or dropped). No backend heard of it. Runs on the control thread.
    public var onReap: ((Int32, UInt64, BackendEndReason) -> Void)? = nil

    /// Told of every slot a worker gave back: after a drop, or because the worker ended the
    /// session itself (its ICE failed). Runs on the control thread, inside `reclaim`.
    public var onRelease: ((Int32) -> Void)? = nil

    /// Takes back the slots workers have released; publishes the client-flow directory if
    /// it changed.
    public func reclaim() {
        // What the workers said about their sessions first: a worker reports a session's end
        // before it releases the slot, so its record is read before the slot can be reused.
        beforeReclaim?()
        // Clients the workers bound from checks first, then releases: a notice of a session
        // already released counts for nothing (its id no longer matches).
        for link in links {
            while let slot = link.flowNotices.pop() {
                let (id, flow) = store.takePublished(Int(slot))
                guard sessionOfSlot[slot] == id else { continue }
                if flowOfSlot[slot] != flow { place(slot, flow) }
            }
        }
        for link in links {
            while let slot = link.released.pop() {
                sessionOfSlot[slot] = nil
                store.unassign(Int(slot))
                freeSlots.append(slot)
                // A session its worker ended: its flow leaves the directory too.
                if flowOfSlot[slot] != nil { place(slot, nil) }
                onRelease?(slot)
            }
        }
        publishFlows()
        links.first?.clientFlows.reclaim()
    }
}

extension WorkerLinks {
    /// The rings between `workers` workers and the control and handshake threads, built at
    /// start-up.
    public static func make(
        workers: Int, sessions: Int, commandCapacity: Int = 1024, handoffCapacity: Int = 1024,
        handshakeDoorbell: Doorbell = Doorbell()
    ) -> [WorkerLinks] {
        // handoff[from][to]
        let handoff: [[SPSCRing<FrameDescriptor>?]] = (0..<workers).map { from in
            (0..<workers).map { to in from == to ? nil : SPSCRing<FrameDescriptor>(capacity: handoffCapacity) }
        }
        let returns: [[SPSCRing<UInt64>?]] = (0..<workers).map { from in
            (0..<workers).map { to in from == to ? nil : SPSCRing<UInt64>(capacity: handoffCapacity * 2) }
        }
        let doorbells = (0..<workers).map { _ in Doorbell() }
        let flows = ClientFlowDirectory(ClientFlowTable([:]), workers: workers)
        return (0..<workers).map { w in
            var links = WorkerLinks(
                commands: SPSCRing(capacity: commandCapacity), released: SPSCRing(capacity: sessions),
                handoffIn: (0..<workers).map { handoff[$0][w] }, handoffOut: handoff[w],
                returnIn: (0..<workers).map { returns[$0][w] }, returnOut: returns[w],
                handshake: DatagramQueue(capacity: 256), handshakeOut: DatagramQueue(capacity: 256),
                handshakeCommands: SPSCRing(capacity: 256), handshakeDoorbell: handshakeDoorbell,
                flowNotices: SPSCRing(capacity: sessions))
            links.doorbell = doorbells[w]
            // Room for every session's end and as many other events: a drain's mass end loses none.
            links.events = SPSCRing(capacity: sessions * 2 + 256)
            links.peerDoorbells = doorbells.map { Unmanaged.passUnretained($0) }
            links.clientFlows = flows
            return links
        }
    }
}
