import Glibc
import VoxMedia

/// The backend leg's control messages and the pacing queue (docs/backend-protocol.md).
///
/// The input is a datagram, parsed as received and again with its MAC recomputed with the
/// key (the one of the document's vectors), so the field checks behind the MAC are reached.
/// Whatever parses must encode back to exactly its bytes (the layout has no slack), be
/// accepted once by a fresh channel of its session and then refused as a replay. The same
/// bytes then drive a small pacing queue as a list of operations.
enum BackendFuzz {
    /// Made per input: the key type is not Sendable, so no static copy.
    static func makeKey() -> HMACSHA1Key {
        Array("backend-shared-key-0123456789abcdef".utf8).withUnsafeBytes { HMACSHA1Key(key: $0) }
    }

    static func run(_ data: UnsafeRawBufferPointer) {
        let key = makeKey()
        let raw = FuzzBuffer(data)
        check(UnsafeRawBufferPointer(start: raw.pointer, count: data.count), key: key)
        if data.count >= BackendMessage.minimumLength, BackendMessage.isControl(data[0]) {
            let signed = FuzzBuffer(data)
            let macAt = data.count - BackendMessage.macLength
            var digest = (UInt64(0), UInt64(0), UInt64(0))
            withUnsafeMutableBytes(of: &digest) { d in
                var state = key.begin()
                HMACSHA1Key.update(&state, signed.pointer, count: macAt)
                key.finish(&state, into: d.baseAddress!)
                (signed.pointer + macAt).copyMemory(from: d.baseAddress!, byteCount: BackendMessage.macLength)
            }
            let verdict = check(UnsafeRawBufferPointer(start: signed.pointer, count: data.count), key: key)
            FuzzCheck.expect(verdict != .badMAC, "a message signed with the key failed its MAC")
        }
        pace(data)
    }

    @discardableResult
    static func check(_ datagram: UnsafeRawBufferPointer, key: HMACSHA1Key) -> BackendVerdict {
        var m = BackendMessage()
        let verdict = BackendMessage.parse(datagram, key: key, into: &m)
        guard verdict == .ok else { return verdict }
        let out = FuzzBuffer([UInt8](repeating: 0, count: BackendMessage.maximumLength))
        let n = m.encode(key: key, into: UnsafeMutableRawBufferPointer(start: out.pointer, count: BackendMessage.maximumLength))
        FuzzCheck.expect(n == datagram.count && m.encodedLength == n, "re-encoded to \(n.map(String.init) ?? "nil") bytes, not \(datagram.count)")
        FuzzCheck.expect(
            memcmp(out.pointer, datagram.baseAddress!, datagram.count) == 0, "re-encoded bytes differ from the parsed ones")
        var receiver = BackendChannelState(sessionID: m.sessionID, local: m.sender.other)
        FuzzCheck.expect(receiver.accept(m) == .ok, "a fresh channel refused its session's message")
        FuzzCheck.expect(receiver.accept(m) == .replayed, "a message was accepted twice")
        var other = BackendChannelState(sessionID: m.sessionID &+ 1, local: m.sender.other)
        FuzzCheck.expect(other.accept(m) == .wrongSession, "another session's channel took the message")
        return verdict
    }

    /// Operations on a queue of 8 entries of 64 bytes: offer (timestamp step, length, time
    /// step), release what is due, flush, jump the timestamp. What leaves is never early,
    /// never more than the depth is held, and a flush leaves nothing.
    static func pace(_ data: UnsafeRawBufferPointer) {
        var q = PacingQueue(PacingConfiguration(depth: 8, slotBytes: 64))
        var reader = FuzzReader(data)
        var now: UInt64 = 1_000_000_000
        var ts: UInt32 = 0
        let payload = FuzzBuffer([UInt8](repeating: 0x5A, count: 128))
        while !reader.isAtEnd {
            let op = reader.byte()
            switch op & 3 {
            case 0:
                ts &+= UInt32(reader.uint16())
                let length = Int(reader.byte() & 0x7F)
                now &+= UInt64(reader.byte()) * 1_000_000
                let wasEmpty = q.isEmpty
                let decision = q.offer(
                    UnsafeRawBufferPointer(start: payload.pointer, count: length), rtpTimestamp: ts,
                    marker: op & 4 != 0, now: now)
                FuzzCheck.expect(decision != .sendNow || wasEmpty, "sent at once past queued packets")
                FuzzCheck.expect(decision != .tooLarge || length > 64, "a payload that fits was refused")
            case 1:
                now &+= UInt64(reader.uint16()) * 100_000
                while let p = q.due(now: now) {
                    FuzzCheck.expect(p.due <= now && p.payload.count <= 64, "released early or oversized")
                }
                FuzzCheck.expect(q.nextDeadline.map { $0 > now } ?? true, "something due was left behind")
            case 2:
                let dropped = q.flush()
                FuzzCheck.expect(dropped <= 8 && q.isEmpty && q.nextDeadline == nil, "a flush left packets")
            default:
                ts &+= UInt32(reader.uint16()) << 16
            }
            FuzzCheck.expect(q.count <= 8, "the queue holds more than its depth")
        }
    }
}
