import Foundation
import Glibc
import Logging
import Synchronization
import VoxIO
import VoxMedia
import VoxWire

/// Counts of the handshake thread, read by metrics and `session show`.
public struct HandshakeStatistics: Sendable {
    /// DTLS servers created (a client's first datagram for an expected session).
    public var started: UInt64 = 0
    /// Handshakes that gave their session keys.
    public var succeeded: UInt64 = 0
    /// Handshakes that failed, by `DTLSError.Code` (timeout, fingerprint_mismatch, no_srtp, …).
    public var failed: [String: UInt64] = [:]
    /// Sessions the client ended with close_notify.
    public var closedByClient: UInt64 = 0
    /// Datagrams for no session the handshake thread expects (a slot reused, a session
    /// created without DTLS, one already ended).
    public var unexpected: UInt64 = 0
    /// Flight datagrams or commands a worker's ring had no room for (the client retransmits;
    /// the session ends at its deadline if it never gets through).
    public var flightsDropped: UInt64 = 0
    public var commandsDropped: UInt64 = 0
    /// CPU time the thread spent inside OpenSSL's handshakes (thread CPU clock).
    public var cpuNanoseconds: UInt64 = 0
    /// Offer → keys installed (the whole set-up as the engine sees it), and the client's
    /// first DTLS datagram → keys (the handshake alone).
    public var setup = LatencyHistogram()
    public var handshake = LatencyHistogram()

    public init() {}

    public var failedTotal: UInt64 { failed.values.reduce(0, +) }
}

/// A fixed-bucket latency histogram, in seconds, for set-up times.
public struct LatencyHistogram: Sendable {
    public static let bounds: [Double] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10]
    /// Observations per bucket (`bounds`, then one for everything above).
    public private(set) var counts = [UInt64](repeating: 0, count: LatencyHistogram.bounds.count + 1)
    public private(set) var sum: Double = 0
    public private(set) var count: UInt64 = 0

    public init() {}

    public mutating func observe(nanoseconds: UInt64) {
        let seconds = Double(nanoseconds) / 1e9
        let bucket = LatencyHistogram.bounds.firstIndex { seconds <= $0 } ?? LatencyHistogram.bounds.count
        counts[bucket] += 1
        sum += seconds
        count += 1
    }
}

/// The handshake thread (DESIGN §1, §2a): DTLS for every WebRTC session, off the workers.
///
/// A worker queues each DTLS datagram of an admitted client flow (`WorkerLinks.handshake`,
/// bounded, never blocking it) and rings this thread's doorbell. Here a `DTLSServer` per
/// session runs on this thread's clock; its flights go back to the worker that queued the
/// datagram (the session's owner) on `handshakeOut`, which sends them from the media port;
/// the exported SRTP keys, a failure or close_notify become commands on the worker's
/// `handshakeCommands` ring. The control thread says which sessions to expect, with the
/// offer's fingerprints, when it creates them (`expect`) and forgets them when their slot
/// comes back (`forget`).
public final class HandshakeService: @unchecked Sendable {
    public let context: DTLSServerContext
    let links: [WorkerLinks]
    public let doorbell: Doorbell

    struct Expectation {
        var session: UInt64
        var fingerprints: [CertificateFingerprint]
        /// When the offer was answered (monotonic ns): set-up times count from it.
        var offeredAt: UInt64
    }

    /// Written by the control thread, read by this one: rare, so a lock.
    let expected = Mutex<[Int32: Expectation]>([:])
    let statistics = Mutex(HandshakeStatistics())

    /// One session's handshake, owned by this thread.
    final class Handshake {
        var server: DTLSServer
        let session: UInt64
        let worker: Int
        var flow: FlowKey
        let offeredAt: UInt64
        let startedAt: UInt64

        init(server: consuming DTLSServer, session: UInt64, worker: Int, flow: FlowKey, offeredAt: UInt64, startedAt: UInt64) {
            self.server = server
            self.session = session
            self.worker = worker
            self.flow = flow
            self.offeredAt = offeredAt
            self.startedAt = startedAt
        }
    }

    /// This thread's handshakes, by slot (only the thread running `runOnce` touches it).
    var handshakes: [Int32: Handshake] = [:]
    var lastSweep: UInt64 = 0
    static let sweepInterval: UInt64 = 100_000_000

    let stopping = Atomic<Bool>(false)
    var thread: Thread?
    let finished = DispatchSemaphore(value: 0)

    /// `links` are every worker's; `doorbell` is the one they ring (`WorkerLinks.handshakeDoorbell`).
    public init(context: DTLSServerContext, links: [WorkerLinks]) {
        self.context = context
        self.links = links
        doorbell = links.first?.handshakeDoorbell ?? Doorbell()
    }

    // MARK: - Control thread

    /// A session whose client will handshake: `fingerprints` are its offer's.
    public func expect(slot: Int32, session: UInt64, fingerprints: [CertificateFingerprint], offeredAt: UInt64) {
        expected.withLock { $0[slot] = Expectation(session: session, fingerprints: fingerprints, offeredAt: offeredAt) }
    }

    /// The session in `slot` has ended: its handshake goes at the next sweep.
    public func forget(slot: Int32) {
        _ = expected.withLock { $0.removeValue(forKey: slot) }
    }

    /// A copy of the counts so far.
    public var snapshot: HandshakeStatistics { statistics.withLock { $0 } }

    // MARK: - The handshake thread

    /// Handles every queued datagram and every timer due by `now`. Returns the datagrams
    /// handled (0: nothing to do). Tests call it with their own clock.
    @discardableResult
    public func runOnce(now: UInt64) -> Int {
        var work = 0
        for (w, link) in links.enumerated() {
            while let (entry, bytes) = link.handshake.pop() {
                work += 1
                receive(entry, bytes, worker: w, now: now)
            }
        }
        for (slot, h) in handshakes {
            if let due = h.server.deadline, due <= now {
                let out = timed { h.server.handleTimeout(now: now) }
                emit(out, slot: slot, h, now: now)
            }
        }
        if now &- lastSweep >= HandshakeService.sweepInterval || now < lastSweep {
            lastSweep = now
            sweep()
        }
        return work
    }

    /// When a handshake's timer is next due, if any runs.
    public var nextDeadline: UInt64? { handshakes.values.compactMap { $0.server.deadline }.min() }

    /// Handshakes in progress or done, whose session is still expected.
    public var count: Int { handshakes.count }

    func receive(_ entry: DatagramQueue.Entry, _ bytes: [UInt8], worker: Int, now: UInt64) {
        let slot = entry.slot
        guard let expectation = expected.withLock({ $0[slot] }), expectation.session == entry.session else {
            statistics.withLock { $0.unexpected += 1 }
            return
        }
        let h: Handshake
        if let existing = handshakes[slot], existing.session == entry.session {
            h = existing
        } else {
            let server: DTLSServer
            do {
                server = try DTLSServer(context: context, remoteFingerprints: expectation.fingerprints, now: now)
            } catch {
                statistics.withLock { $0.failed[error.code.rawValue, default: 0] += 1 }
                command(.drop, slot: slot, session: entry.session, worker: worker, reason: .handshakeFailed)
                return
            }
            h = Handshake(
                server: server, session: entry.session, worker: worker, flow: entry.flow,
                offeredAt: expectation.offeredAt, startedAt: now)
            handshakes[slot] = h
            statistics.withLock { $0.started += 1 }
        }
        h.flow = entry.flow
        let out = timed { bytes.withUnsafeBytes { h.server.handle(now: now, datagram: $0) } }
        emit(out, slot: slot, h, now: now)
    }

    /// Sends what one call of the server produced: keys first (the worker applies commands
    /// before it sends flights, so the client's first SRTP finds them), then datagrams.
    func emit(_ out: DTLSOutput, slot: Int32, _ h: Handshake, now: UInt64) {
        var out = out
        if var keys = out.keys {
            var c = WorkerCommand(kind: .installKeys, slot: slot)
            c.sessionID = h.session
            c.profile = keys.profile
            c.clientKey = KeyMaterial(key: keys.clientKey, salt: keys.clientSalt) ?? KeyMaterial()
            c.edgeKey = KeyMaterial(key: keys.serverKey, salt: keys.serverSalt) ?? KeyMaterial()
            keys.wipe()
            out.keys = nil
            push(c, worker: h.worker)
            statistics.withLock {
                $0.succeeded += 1
                $0.setup.observe(nanoseconds: now &- h.offeredAt)
                $0.handshake.observe(nanoseconds: now &- h.startedAt)
            }
        }
        if let failure = out.failure {
            statistics.withLock { $0.failed[failure.code.rawValue, default: 0] += 1 }
        }
        let link = links[h.worker]
        var dropped: UInt64 = 0
        for d in out.datagrams {
            let pushed = d.withUnsafeBytes {
                link.handshakeOut.push(slot: slot, session: h.session, flow: h.flow, $0.baseAddress!, length: $0.count)
            }
            if !pushed { dropped += 1 }
        }
        if dropped > 0 { statistics.withLock { $0.flightsDropped += dropped } }
        // The session ends after its last datagrams (an alert, our close_notify) are out.
        if out.failure != nil {
            command(.drop, slot: slot, session: h.session, worker: h.worker, reason: .handshakeFailed)
        } else if out.closed {
            statistics.withLock { $0.closedByClient += 1 }
            command(.drop, slot: slot, session: h.session, worker: h.worker, reason: .closedByClient)
        }
        link.doorbell.ring()
    }

    func command(_ kind: WorkerCommand.Kind, slot: Int32, session: UInt64, worker: Int, reason: WorkerCommand.EndReason) {
        var c = WorkerCommand(kind: kind, slot: slot)
        c.sessionID = session
        c.endReason = reason
        push(c, worker: worker)
        links[worker].doorbell.ring()
    }

    func push(_ c: WorkerCommand, worker: Int) {
        if !links[worker].handshakeCommands.push(c) { statistics.withLock { $0.commandsDropped += 1 } }
    }

    /// Frees the handshakes of sessions that have ended.
    func sweep() {
        let live = expected.withLock { $0.mapValues(\.session) }
        for (slot, h) in handshakes where live[slot] != h.session { handshakes[slot] = nil }
    }

    /// Runs `body`, adding the thread CPU time it took to the statistics.
    func timed(_ body: () -> DTLSOutput) -> DTLSOutput {
        let before = HandshakeService.threadCPU()
        let out = body()
        let spent = HandshakeService.threadCPU() &- before
        statistics.withLock { $0.cpuNanoseconds &+= spent }
        return out
    }

    static func threadCPU() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }

    /// Starts the thread: it sleeps on its doorbell until a worker queues a datagram or a
    /// handshake's timer is due.
    public func start(logger: Logger) {
        let t = Thread { [self] in
            loop()
            finished.signal()
        }
        t.name = "voxedge-handshake"
        thread = t
        t.start()
    }

    func loop() {
        var fds = [pollfd(fd: doorbell.fd, events: Int16(POLLIN), revents: 0)]
        while !stopping.load(ordering: .acquiring) {
            let now = MonotonicClock.now()
            if runOnce(now: now) > 0 { continue }
            doorbell.willSleep()
            if links.contains(where: { $0.handshake.count > 0 }) {
                doorbell.woke()
                continue
            }
            // Wake for the next timer, and at least every sweep interval.
            var timeout = Int32(HandshakeService.sweepInterval / 1_000_000)
            if let due = nextDeadline {
                timeout = due <= now ? 0 : Int32(min(UInt64(timeout), (due - now + 999_999) / 1_000_000))
            }
            _ = poll(&fds, 1, timeout)
            doorbell.woke()
        }
    }

    /// Stops the thread and waits for it.
    public func stop() {
        guard thread != nil else { return }
        stopping.store(true, ordering: .releasing)
        doorbell.ringAlways()
        finished.wait()
        thread = nil
    }
}
