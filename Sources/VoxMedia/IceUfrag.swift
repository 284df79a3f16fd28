import Glibc
import VoxWire

/// An ICE username fragment, inline (no heap): the engine's own, which names its session's
/// slot, and the client's. One codec for the answer writer (`ICECredentials.make`) and the
/// workers (`slot(in:count:)`).
///
/// Ours is "vx" + the slot in six hex digits + a random part (DESIGN §2a): a check's
/// USERNAME names its slot without a lookup, and the random part makes it unguessable.
/// A client's is whatever its offer said, up to `capacity` bytes (RFC 8839 allows 256;
/// browsers use 4 to 32).
public struct IceUfrag: Equatable, Sendable, BitwiseCopyable, CustomStringConvertible {
    public static let capacity = 64
    /// Slots a ufrag can name: six hex digits.
    public static let slotLimit = 1 << 24
    @usableFromInline var bytes: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)
    public private(set) var length: UInt8 = 0

    public static func == (a: IceUfrag, b: IceUfrag) -> Bool {
        guard a.length == b.length else { return false }
        var x = a.bytes
        var y = b.bytes
        return withUnsafeBytes(of: &x) { p in withUnsafeBytes(of: &y) { q in memcmp(p.baseAddress!, q.baseAddress!, p.count) == 0 } }
    }

    /// The empty ufrag: a slot without ICE (static-key sessions) matches no check.
    public init() {}

    /// nil unless 4 to `capacity` bytes.
    public init?(_ text: String) {
        var text = text
        guard let made = text.withUTF8({ IceUfrag(UnsafeRawBufferPointer($0)) }) else { return nil }
        self = made
    }

    public init?(_ raw: UnsafeRawBufferPointer) {
        guard raw.count >= 4, raw.count <= IceUfrag.capacity else { return nil }
        length = UInt8(raw.count)
        withUnsafeMutableBytes(of: &bytes) { $0.baseAddress!.copyMemory(from: raw.baseAddress!, byteCount: raw.count) }
    }

    /// Ours for `slot` (0 ..< `slotLimit`), followed by `random`.
    public static func make(slot: Int, random: String) -> IceUfrag? {
        guard (0..<slotLimit).contains(slot) else { return nil }
        let hex = String(slot, radix: 16)
        return IceUfrag("vx" + String(repeating: "0", count: 6 - hex.count) + hex + random)
    }

    /// The slot a ufrag of ours names, from `count` bytes at `p`; nil when it is not ours.
    @inlinable
    public static func slot(in p: UnsafeRawPointer, count: Int) -> Int? {
        guard count >= 8, p.loadByte(at: 0) == 0x76, p.loadByte(at: 1) == 0x78 else { return nil }  // "vx"
        var slot = 0
        for i in 2..<8 {
            let c = p.loadByte(at: i)
            let d: Int
            switch c {
            case 0x30...0x39: d = Int(c - 0x30)
            case 0x61...0x66: d = Int(c - 0x61 + 10)
            default: return nil
            }
            slot = slot << 4 | d
        }
        return slot
    }

    public var isEmpty: Bool { length == 0 }

    /// True when the `count` bytes at `p` are this ufrag.
    @inlinable
    public func matches(_ p: UnsafeRawPointer, count: Int) -> Bool {
        guard count == Int(length) else { return false }
        var copy = bytes
        return withUnsafeBytes(of: &copy) { memcmp($0.baseAddress!, p, count) == 0 }
    }

    public var description: String {
        var copy = bytes
        return withUnsafeBytes(of: &copy) { String(decoding: $0.prefix(Int(length)), as: UTF8.self) }
    }
}
