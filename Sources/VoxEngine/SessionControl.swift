import VoxWire

/// The control thread's side of session placement: which slots are free, which worker
/// owns each, and the commands that make workers change their sessions. Single-threaded
/// (the control thread); workers answer through their `released` rings.
public final class SessionControl {
    public let store: SessionStore
    let links: [WorkerLinks]
    var freeSlots: [Int32]
    var nextSessionID: UInt64 = 1
    /// Client flows placed by commands, for the workers' shared directory.
    var flows: [FlowKey: Int32] = [:]
    var flowOfSlot: [Int32: FlowKey] = [:]
    var flowsChanged = false

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
        if let flow = command.flow { place(slot, flow) }
        return slot
    }

    func place(_ slot: Int32, _ flow: FlowKey?) {
        if let old = flowOfSlot[slot] {
            flows[old] = nil
            flowOfSlot[slot] = nil
        }
        if let flow {
            flows[flow] = slot
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

    public func drop(_ slot: Int32) throws(Failure) {
        try send(WorkerCommand(kind: .drop, slot: slot))
    }

    /// Takes back the slots workers have released; publishes the client-flow directory if
    /// it changed.
    public func reclaim() {
        for link in links {
            while let slot = link.released.pop() {
                store.unassign(Int(slot))
                freeSlots.append(slot)
            }
        }
        publishFlows()
        links.first?.clientFlows.reclaim()
    }
}

extension WorkerLinks {
    /// The rings between `workers` workers and the control and handshake threads, built at
    /// start-up.
    public static func make(workers: Int, sessions: Int, commandCapacity: Int = 1024, handoffCapacity: Int = 1024)
        -> [WorkerLinks]
    {
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
                handshake: DatagramQueue(capacity: 256))
            links.doorbell = doorbells[w]
            links.peerDoorbells = doorbells.map { Unmanaged.passUnretained($0) }
            links.clientFlows = flows
            return links
        }
    }
}
