import VoxWire

/// A key of a `FixedIndex`: cheap to hash, compared with `==`.
public protocol IndexKey: Equatable, BitwiseCopyable {
    var indexHash: UInt64 { get }
}

@inlinable @inline(__always)
func mix(_ x: UInt64) -> UInt64 {
    // A 64-bit finaliser (splitmix64): good spread for 5-tuples and SSRCs, no Hasher state.
    var z = x &* 0x9E37_79B9_7F4A_7C15
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
}

extension FlowKey: IndexKey {
    @inlinable
    public var indexHash: UInt64 {
        // Every field goes through the mixer: many clients share one address and differ in
        // port only, and the table uses the low bits.
        let ports = UInt64(remotePort.rawValue) << 16 | UInt64(localPort.rawValue)
        return mix(remoteAddress.low ^ mix(remoteAddress.high ^ mix(localAddress.low ^ mix(localAddress.high ^ ports))))
    }
}

extension UInt32: IndexKey {
    @inlinable public var indexHash: UInt64 { mix(UInt64(self)) }
}

/// A client 5-tuple and an SSRC sent on it: how a packet on a 5-tuple shared by
/// SSRC-multiplexed sessions finds its session.
public struct FlowSSRC: IndexKey {
    public var flow: FlowKey
    public var ssrc: UInt32

    @inlinable
    public init(_ flow: FlowKey, _ ssrc: UInt32) {
        self.flow = flow
        self.ssrc = ssrc
    }

    /// From the flow's own hash, so a packet that has hashed its 5-tuple once pays one more mix.
    @inlinable
    public static func hash(flowHash: UInt64, ssrc: UInt32) -> UInt64 { mix(flowHash ^ UInt64(ssrc)) }

    @inlinable
    public var indexHash: UInt64 { FlowSSRC.hash(flowHash: flow.indexHash, ssrc: ssrc) }
}

/// An open-addressing map from keys to session slots with a fixed capacity, allocated
/// once: lookups and updates never allocate. Linear probing; removal shifts the following
/// entries back (no tombstones), so a million creates and drops leave it as fast as new.
/// Written and read by one thread (the owning worker).
public struct FixedIndex<Key: IndexKey>: ~Copyable {
    @usableFromInline let keys: UnsafeMutablePointer<Key>
    /// -1: empty.
    @usableFromInline let values: UnsafeMutablePointer<Int32>
    @usableFromInline let mask: Int
    public private(set) var count = 0
    public let capacity: Int

    /// Room for `capacity` keys at a load factor of at most 1/2.
    public init(capacity: Int, placeholder: Key) {
        var size = 2
        while size < capacity * 2 { size <<= 1 }
        self.capacity = capacity
        mask = size - 1
        keys = .allocate(capacity: size)
        keys.initialize(repeating: placeholder, count: size)
        values = .allocate(capacity: size)
        values.initialize(repeating: -1, count: size)
    }

    deinit {
        keys.deallocate()
        values.deallocate()
    }

    @inlinable
    public func find(_ key: Key) -> Int32? { find(key, hash: key.indexHash) }

    /// `find` with the key's `indexHash` already computed (it must be that hash).
    @inlinable
    public func find(_ key: Key, hash: UInt64) -> Int32? {
        var i = Int(truncatingIfNeeded: hash) & mask
        while true {
            let v = values[i]
            if v < 0 { return nil }
            if keys[i] == key { return v }
            i = (i + 1) & mask
        }
    }

    /// Inserts or replaces; false when full.
    public mutating func insert(_ key: Key, _ value: Int32) -> Bool {
        var i = Int(truncatingIfNeeded: key.indexHash) & mask
        while values[i] >= 0 {
            if keys[i] == key {
                values[i] = value
                return true
            }
            i = (i + 1) & mask
        }
        guard count < capacity else { return false }
        keys[i] = key
        values[i] = value
        count += 1
        return true
    }

    /// Removes `key`; false when absent.
    @discardableResult
    public mutating func remove(_ key: Key) -> Bool {
        var i = Int(truncatingIfNeeded: key.indexHash) & mask
        while true {
            if values[i] < 0 { return false }
            if keys[i] == key { break }
            i = (i + 1) & mask
        }
        // Backward-shift deletion (Knuth 6.4, algorithm R).
        var hole = i
        var j = i
        while true {
            j = (j + 1) & mask
            if values[j] < 0 { break }
            let home = Int(truncatingIfNeeded: keys[j].indexHash) & mask
            // Move j into the hole unless its home lies cyclically in (hole, j].
            let inRange = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j)
            if !inRange {
                keys[hole] = keys[j]
                values[hole] = values[j]
                hole = j
            }
        }
        values[hole] = -1
        count -= 1
        return true
    }
}
