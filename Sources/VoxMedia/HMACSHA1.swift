import COpenSSL

/// An HMAC-SHA1 key as the two SHA-1 chaining values after absorbing `key ⊕ ipad` and
/// `key ⊕ opad`. A MAC is then `SHA1_Update`s and two `SHA1_Final`s from those states:
/// FINDINGS measured this at 263 ns per SRTP packet against 500 ns for `HMAC_Init_ex`
/// reuse and 1.6 µs for `EVP_MAC_CTX_dup`.
///
/// Only the five 32-bit chaining words of each state are kept (40 bytes, not two 96-byte
/// `SHA_CTX`s): after exactly one 64-byte block the rest of a `SHA_CTX` is known (512 bits
/// counted, empty buffer). Across 1,000 sessions this took two cache lines off every packet.
///
/// Holds key-derived state: call `wipe()` before letting it go.
public struct HMACSHA1Key {
    @usableFromInline typealias Chaining = (UInt32, UInt32, UInt32, UInt32, UInt32)
    @usableFromInline var inner: Chaining = (0, 0, 0, 0, 0)
    @usableFromInline var outer: Chaining = (0, 0, 0, 0, 0)

    public init(key: UnsafeRawBufferPointer) {
        var block = (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        withUnsafeMutableBytes(of: &block) { pad in
            if key.count > 64 {
                var c = SHA_CTX()
                SHA1_Init(&c)
                SHA1_Update(&c, key.baseAddress, key.count)
                SHA1_Final(pad.baseAddress!.assumingMemoryBound(to: UInt8.self), &c)
                OPENSSL_cleanse(&c, MemoryLayout<SHA_CTX>.size)
            } else if key.count > 0 {
                pad.baseAddress!.copyMemory(from: key.baseAddress!, byteCount: key.count)
            }
            var c = SHA_CTX()
            for i in 0..<64 { pad[i] ^= 0x36 }
            SHA1_Init(&c)
            SHA1_Update(&c, pad.baseAddress, 64)
            inner = (c.h0, c.h1, c.h2, c.h3, c.h4)
            for i in 0..<64 { pad[i] ^= 0x36 ^ 0x5C }
            SHA1_Init(&c)
            SHA1_Update(&c, pad.baseAddress, 64)
            outer = (c.h0, c.h1, c.h2, c.h3, c.h4)
            OPENSSL_cleanse(&c, MemoryLayout<SHA_CTX>.size)
            OPENSSL_cleanse(pad.baseAddress, 64)
        }
    }

    /// A SHA-1 state that has absorbed exactly one block and ended at `h`.
    @inlinable
    static func state(after h: Chaining) -> SHA_CTX {
        var c = SHA_CTX()
        (c.h0, c.h1, c.h2, c.h3, c.h4) = h
        c.Nl = 512
        return c
    }

    /// A running MAC: start with `begin()`, `update` as often as needed, then `finish`.
    @inlinable
    public func begin() -> SHA_CTX { HMACSHA1Key.state(after: inner) }

    @inlinable
    public static func update(_ state: inout SHA_CTX, _ p: UnsafeRawPointer, count: Int) {
        SHA1_Update(&state, p, count)
    }

    /// Writes the 20-byte MAC to `out`.
    @inlinable
    public func finish(_ state: inout SHA_CTX, into out: UnsafeMutableRawPointer) {
        let digest = out.assumingMemoryBound(to: UInt8.self)
        SHA1_Final(digest, &state)
        var o = HMACSHA1Key.state(after: outer)
        SHA1_Update(&o, out, 20)
        SHA1_Final(digest, &o)
    }

    /// Overwrites the key-derived state.
    public mutating func wipe() {
        inner = (0, 0, 0, 0, 0)
        outer = (0, 0, 0, 0, 0)
        withUnsafeMutableBytes(of: &inner) { OPENSSL_cleanse($0.baseAddress, $0.count) }
        withUnsafeMutableBytes(of: &outer) { OPENSSL_cleanse($0.baseAddress, $0.count) }
    }
}

extension HMACSHA1Key: Sendable, BitwiseCopyable, Equatable {
    /// Same key-derived state (the backend table compares entries; not a MAC check).
    public static func == (a: HMACSHA1Key, b: HMACSHA1Key) -> Bool {
        a.inner == b.inner && a.outer == b.outer
    }
}

extension HMACSHA1Key: CustomStringConvertible, CustomReflectable {
    /// Key-derived state never reaches logs or test failure messages.
    public var description: String { "HMACSHA1Key(redacted)" }
    public var customMirror: Mirror { Mirror(self, children: []) }
}

/// A 20-byte SHA-1 digest on the stack.
@usableFromInline
typealias Digest20 = (UInt64, UInt64, UInt32)

/// Compares `count` bytes in time that depends only on `count`.
@inlinable
func constantTimeEqual(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, count: Int) -> Bool {
    var diff: UInt8 = 0
    for i in 0..<count { diff |= a.load(fromByteOffset: i, as: UInt8.self) ^ b.load(fromByteOffset: i, as: UInt8.self) }
    return diff == 0
}
