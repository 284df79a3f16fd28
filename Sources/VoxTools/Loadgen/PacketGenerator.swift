import CVoxLinux
import CXDP
import Glibc
import VoxIO
import VoxMedia
import VoxWire

/// One generated call: where its frames go and its RTP stream's state. Plain values in a
/// preallocated table (FINDINGS: no class per flow).
struct GeneratedSession {
    var addresses: FrameAddresses
    var ssrc: UInt32
    var sequence: UInt16
    var timestamp: UInt32
}

/// The load generator's transmit side: SRTP for N sessions, protected as it is sent, paced
/// against the monotonic clock and handed to the kernel in batches.
///
/// Why protect on the fly rather than send precomputed packets: the engine keeps a replay
/// window, so every (SSRC, sequence) may be sent once; precomputing a trial's worth at
/// 500k pps is gigabytes. Protecting with our own SRTPContext costs ≈ 0.35 µs a packet
/// (docs/benchmarks.md), well below what the kernel's transmit path costs per packet.
///
/// Two transmit paths, the same frames:
/// - **AF_XDP** (`xsk` given: VoxIO's XSKSet, one queue): frames are built in the UMEM and
///   posted to the TX ring in batches; copy mode on veth, so every batch is kicked and the
///   kick repeated while the kernel answers EAGAIN (FINDINGS; XSKQueueDriver.kickTX). A full
///   peer ring pushes back (frames wait on the TX ring) instead of dropping.
/// - **packet socket** (`fd`): a UDP socket has one source port, so one sendmmsg could carry
///   one session; an AF_PACKET socket takes whole frames of any 5-tuple, 64 per call. What
///   the kernel refuses (the peer's ring full) is counted as refused.
///
/// Memory, all allocated at init, nothing per packet:
/// ```
/// frames   | frame 0 (2048) | frame 1 | … | frame batch-1 |   Ethernet+IPv4+UDP+SRTP
/// iovecs   | one per frame, length set per packet          |
/// messages | one vox_mmsghdr per frame, pointing at its iovec |
/// sessions | GeneratedSession × N | contexts | SRTPContext × N |
/// UMEM     | frame i = i × frameSize, reused in order once its completion is back (AF_XDP) |
/// ```
struct PacketGenerator: ~Copyable {
    static let frameSize = 2048
    /// RTP payload bytes (20 ms of G.711, as afxdp-ref's frames carry).
    static let payloadLength = 160
    /// First four payload bytes of every packet: the return counter checks that what comes
    /// back was decrypted to this.
    static let magic: UInt32 = 0x5658_4C47  // "VXLG"

    let fd: Int32
    let batch: Int
    let sessionCount: Int
    let sessions: UnsafeMutablePointer<GeneratedSession>
    let contexts: UnsafeMutablePointer<SRTPContext>
    let frames: UnsafeMutableRawPointer
    let iovecs: UnsafeMutablePointer<iovec>
    let messages: UnsafeMutablePointer<vox_mmsghdr>
    /// The payload after its 12 header-like bytes (magic, session, counter): a pattern.
    let pattern: UnsafeMutableRawPointer
    var next = 0
    /// Frames the kernel took.
    var sent = 0
    /// Frames protected but refused by the kernel (its queue full): their sequence numbers
    /// are skipped, which the engine's replay window allows.
    var refused = 0
    var protectFailures = 0
    /// AF_XDP: the socket set (nil: the packet socket), its queue 0's rings and kick.
    let xsk: XSKSet?
    var rings: QueueRings
    var driver: XSKQueueDriver?
    /// UMEM frames in use, in order: frame `nextFrame` is reused once `outstanding` says its
    /// completion came back (copy mode completes in order).
    let umemFrames: Int
    var nextFrame = 0
    var outstanding = 0

    /// Takes ownership of `contexts` (initialised, one per session). Sends through `xsk`'s
    /// queue 0 when given, else through the packet socket `fd`.
    init(
        fd: Int32, xsk: XSKSet?, batch: Int, sessions: [GeneratedSession], contexts: UnsafeMutablePointer<SRTPContext>
    ) {
        self.fd = fd
        self.xsk = xsk
        if let xsk {
            rings = xsk.rings(queue: 0)
            driver = XSKQueueDriver(set: xsk, queue: 0)
            umemFrames = min(xsk.configuration.frameCount, Int(xsk.configuration.ringSize))
        } else {
            rings = QueueRings(fill: xsk_ring_prod(), rx: xsk_ring_cons(), tx: xsk_ring_prod(), completion: xsk_ring_cons())
            driver = nil
            umemFrames = 0
        }
        self.batch = batch
        sessionCount = sessions.count
        self.sessions = .allocate(capacity: sessions.count)
        self.sessions.initialize(from: sessions, count: sessions.count)
        self.contexts = contexts
        frames = .allocate(byteCount: Self.frameSize * batch, alignment: 64)
        frames.initializeMemory(as: UInt8.self, repeating: 0, count: Self.frameSize * batch)
        iovecs = .allocate(capacity: batch)
        messages = .allocate(capacity: batch)
        for i in 0..<batch {
            iovecs[i] = iovec(iov_base: frames + i * Self.frameSize, iov_len: 0)
            var message = vox_mmsghdr()
            message.msg_hdr.msg_iov = iovecs + i
            message.msg_hdr.msg_iovlen = 1
            messages[i] = message
        }
        pattern = .allocate(byteCount: Self.payloadLength, alignment: 16)
        for i in 0..<Self.payloadLength { pattern.storeBytes(of: UInt8(truncatingIfNeeded: i &* 7 &+ 3), toByteOffset: i, as: UInt8.self) }
    }

    deinit {
        contexts.deinitialize(count: sessionCount)
        contexts.deallocate()
        sessions.deinitialize(count: sessionCount)
        sessions.deallocate()
        frames.deallocate()
        iovecs.deallocate()
        messages.deallocate()
        pattern.deallocate()
        if fd >= 0 { close(fd) }
    }

    /// Writes the next session's next packet into `frame`; returns the frame's length.
    @inline(__always)
    mutating func build(_ frame: UnsafeMutableRawPointer) -> Int {
        let s = next
        next = next + 1 == sessionCount ? 0 : next + 1
        let session = sessions + s
        let headerLength = session.pointee.addresses.headerLength
        let rtp = frame + headerLength
        session.pointee.sequence &+= 1
        session.pointee.timestamp &+= UInt32(Self.payloadLength)
        rtp.storeBE16(0x8000 | 111, at: 0)  // version 2, payload type 111
        rtp.storeBE16(session.pointee.sequence, at: 2)
        rtp.storeBE32(session.pointee.timestamp, at: 4)
        rtp.storeBE32(session.pointee.ssrc, at: 8)
        (rtp + 12).copyMemory(from: pattern, byteCount: Self.payloadLength)
        rtp.storeBE32(Self.magic, at: 12)
        rtp.storeBE32(UInt32(truncatingIfNeeded: s), at: 16)
        rtp.storeBE32(UInt32(truncatingIfNeeded: sent), at: 20)
        var length = 12 + Self.payloadLength
        // Through a local pointer: `contexts[s].protectRTP` made Swift 6.3.1 emit a TSan access
        // on a copy of `self` that LLVM rejects (docs/reliability.md, TSan).
        let context = contexts + s
        guard context.pointee.protectRTP(rtp, length: &length, capacity: Self.frameSize - headerLength) == .ok else {
            protectFailures += 1
            return 0
        }
        _ = FrameBuilder.write(frame, session.pointee.addresses, payloadLength: length)
        return headerLength + length
    }

    /// Builds `count` (≤ batch) frames and hands them to the kernel, retrying what it
    /// refuses for a moment (its queue full) before giving up on the rest of the batch.
    mutating func send(_ count: Int) {
        var built = 0
        for _ in 0..<count {
            let length = build(frames + built * Self.frameSize)
            guard length > 0 else { continue }
            iovecs[built].iov_base = frames + built * Self.frameSize
            iovecs[built].iov_len = length
            built += 1
        }
        var done = 0
        var attempts = 0
        while done < built {
            let n = vox_sendmmsg(fd, messages + done, UInt32(built - done))
            if n > 0 {
                done += Int(n)
                continue
            }
            attempts += 1
            if attempts > 100 || (n != -EAGAIN && n != -ENOBUFS && n != -EINTR) { break }
        }
        sent += done
        refused += built - done
    }

    /// AF_XDP: takes back the frames the kernel has sent.
    mutating func reapCompletions() {
        var index: UInt32 = 0
        let n = xsk_ring_cons__peek(&rings.completion, rings.completion.size, &index)
        if n > 0 {
            xsk_ring_cons__release(&rings.completion, n)
            outstanding -= Int(n)
        }
    }

    /// AF_XDP: builds up to `count` frames in the UMEM, posts them to the TX ring and kicks.
    /// Fewer when the kernel still holds the frames (the peer pushing back): the pacing then
    /// falls behind, as afxdp-ref's gen.c does, rather than dropping.
    mutating func sendXSK(_ count: Int) {
        guard let xsk else { return }
        reapCompletions()
        let room = min(count, umemFrames - outstanding)
        var index: UInt32 = 0
        let reserved = room > 0 ? Int(xsk_ring_prod__reserve(&rings.tx, UInt32(room), &index)) : 0
        if reserved > 0 {
            let base = xsk.umemBase
            let frameSize = xsk.frameSize
            for i in 0..<reserved {
                let address = nextFrame * frameSize
                nextFrame = nextFrame + 1 == umemFrames ? 0 : nextFrame + 1
                let desc = xsk_ring_prod__tx_desc(&rings.tx, index &+ UInt32(i))!
                desc.pointee.addr = UInt64(address)
                desc.pointee.len = UInt32(build(base + address))
                desc.pointee.options = 0
            }
            xsk_ring_prod__submit(&rings.tx, UInt32(reserved))
            outstanding += reserved
            sent += reserved
        }
        driver?.kickTX()
    }

    /// AF_XDP: kicks until the kernel has taken every descriptor off the TX ring (100 ms at
    /// most); what is still on the ring then was never sent. (Completions come later, when
    /// the peer frees the copy: they do not say whether a frame left.)
    mutating func flush() {
        guard var driver else { return }
        for _ in 0..<1000 where driver.txPending > 0 {
            driver.kickTX()
            if driver.txPending > 0 { usleep(100) }
        }
        sent -= Int(driver.txPending)
        self.driver = driver
    }

    /// Sends `total` packets (0: until the deadline) at `rate` packets a second (0: as fast
    /// as it can), in bursts of `batch`, or stops at `deadline` (monotonic ns) or when `stop`
    /// says so. Ahead of schedule it sleeps rather than spins, so the NAPI thread that
    /// shares this core (and counts the returns) gets to run. `tick` runs about once a second.
    mutating func run(
        rate: Double, total: Int, deadline: UInt64, stop: () -> Bool, tick: (borrowing PacketGenerator) -> Void
    ) {
        let start = MonotonicClock.now()
        var nextTick = start + 1_000_000_000
        while !stop() {
            let now = MonotonicClock.now()
            if now >= deadline { break }
            if now >= nextTick {
                tick(self)
                nextTick += 1_000_000_000
            }
            var allowed = batch
            if total > 0 { allowed = min(allowed, total - sent - refused) }
            if allowed <= 0 { break }
            if rate > 0 {
                let due = Int(Double(now - start) * rate / 1e9)
                let behind = due - sent - refused
                if behind < allowed {
                    // Ahead: sleep until the next whole batch is due (minus 10 µs), if that
                    // is more than 30 µs away (afxdp-ref's gen.c does the same).
                    let nextDue = start + UInt64(Double(sent + refused + allowed) * 1e9 / rate)
                    if nextDue > now + 30_000 {
                        if xsk != nil && outstanding > 0 {
                            driver?.kickTX()
                            reapCompletions()
                        }
                        MonotonicClock.sleep(until: min(nextDue - 10_000, nextTick, deadline))
                        continue
                    }
                    allowed = max(behind, 1)
                }
            }
            if xsk != nil { sendXSK(allowed) } else { send(allowed) }
        }
        flush()
    }
}
