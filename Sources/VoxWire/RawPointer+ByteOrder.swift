// Big-endian loads and stores at byte offsets. Frames are checked for length once,
// where they are parsed; after that these accessors do no bounds checks (FINDINGS:
// raw pointers with loadUnaligned/storeBytes were the fastest idiom measured here).

extension UnsafeRawPointer {
    @inlinable @inline(__always)
    public func loadBE16(at offset: Int) -> UInt16 {
        UInt16(bigEndian: loadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }
    @inlinable @inline(__always)
    public func loadBE32(at offset: Int) -> UInt32 {
        UInt32(bigEndian: loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }
    @inlinable @inline(__always)
    public func loadBE64(at offset: Int) -> UInt64 {
        UInt64(bigEndian: loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }
    @inlinable @inline(__always)
    public func loadByte(at offset: Int) -> UInt8 {
        load(fromByteOffset: offset, as: UInt8.self)
    }
}

extension UnsafeMutableRawPointer {
    @inlinable @inline(__always)
    public func loadBE16(at offset: Int) -> UInt16 { UnsafeRawPointer(self).loadBE16(at: offset) }
    @inlinable @inline(__always)
    public func loadBE32(at offset: Int) -> UInt32 { UnsafeRawPointer(self).loadBE32(at: offset) }
    @inlinable @inline(__always)
    public func loadBE64(at offset: Int) -> UInt64 { UnsafeRawPointer(self).loadBE64(at: offset) }
    @inlinable @inline(__always)
    public func loadByte(at offset: Int) -> UInt8 { load(fromByteOffset: offset, as: UInt8.self) }

    @inlinable @inline(__always)
    public func storeBE16(_ value: UInt16, at offset: Int) {
        storeBytes(of: value.bigEndian, toByteOffset: offset, as: UInt16.self)
    }
    @inlinable @inline(__always)
    public func storeBE32(_ value: UInt32, at offset: Int) {
        storeBytes(of: value.bigEndian, toByteOffset: offset, as: UInt32.self)
    }
    @inlinable @inline(__always)
    public func storeBE64(_ value: UInt64, at offset: Int) {
        storeBytes(of: value.bigEndian, toByteOffset: offset, as: UInt64.self)
    }
    @inlinable @inline(__always)
    public func storeByte(_ value: UInt8, at offset: Int) {
        storeBytes(of: value, toByteOffset: offset, as: UInt8.self)
    }
}
