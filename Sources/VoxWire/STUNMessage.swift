/// STUN (RFC 8489) constants: message types and the attributes ICE-lite uses.
public enum STUN {
    public static let magicCookie: UInt32 = 0x2112_A442
    public static let headerLength = 20
    /// FINGERPRINT's XOR constant ("STUN").
    public static let fingerprintXOR: UInt32 = 0x5354_554E

    public static let bindingRequest: UInt16 = 0x0001
    public static let bindingSuccess: UInt16 = 0x0101
    public static let bindingError: UInt16 = 0x0111
    public static let bindingIndication: UInt16 = 0x0011

    public enum Attribute {
        public static let mappedAddress: UInt16 = 0x0001
        public static let username: UInt16 = 0x0006
        public static let messageIntegrity: UInt16 = 0x0008
        public static let errorCode: UInt16 = 0x0009
        public static let unknownAttributes: UInt16 = 0x000A
        public static let realm: UInt16 = 0x0014
        public static let nonce: UInt16 = 0x0015
        public static let messageIntegritySHA256: UInt16 = 0x001C
        public static let userhash: UInt16 = 0x001E
        public static let xorMappedAddress: UInt16 = 0x0020
        public static let priority: UInt16 = 0x0024
        public static let useCandidate: UInt16 = 0x0025
        public static let software: UInt16 = 0x8022
        public static let fingerprint: UInt16 = 0x8028
        public static let iceControlled: UInt16 = 0x8029
        public static let iceControlling: UInt16 = 0x802A
    }

    /// The longest USERNAME RFC 8489 §14.3 allows.
    public static let maxUsernameLength = 513
}

/// Why a datagram is not a STUN message we accept.
public enum STUNVerdict: UInt8, Sendable, CaseIterable {
    case ok
    case truncated
    /// Top bits set, wrong magic cookie, or a length that is not a multiple of 4.
    case notSTUN
    /// The header length disagrees with the datagram.
    case badLength
    /// An attribute runs past the end, has the wrong size for its type, or follows FINGERPRINT.
    case badAttribute
}

/// A parsed STUN message: a view over the bytes it was parsed from, with the offsets
/// of the attributes ICE-lite needs. Offsets are from the start of the message and
/// point at attribute values; `-1` means absent.
///
/// ```
///  0      2      4              8                  20
///  | type | len  | magic cookie | transaction id  | attributes (TLV, padded to 4) ...
/// ```
/// Only the first occurrence of an attribute counts. Attributes after
/// MESSAGE-INTEGRITY other than FINGERPRINT are ignored (RFC 8489 §14.5).
public struct STUNMessage: Sendable {
    public var type: UInt16 = 0
    /// The whole message: header plus attributes.
    public var length: Int = 0
    public var usernameOffset: Int = -1
    public var usernameLength: Int = 0
    /// Offset of the MESSAGE-INTEGRITY attribute *header* (its value is 4 bytes on).
    public var messageIntegrityOffset: Int = -1
    /// Offset of the FINGERPRINT attribute *header*.
    public var fingerprintOffset: Int = -1
    public var xorMappedAddressOffset: Int = -1
    public var xorMappedAddressLength: Int = 0
    public var errorCodeOffset: Int = -1
    public var errorCodeLength: Int = 0
    public var priority: UInt32? = nil
    public var useCandidate: Bool = false
    public var iceControlling: UInt64? = nil
    public var iceControlled: UInt64? = nil
    /// The first comprehension-required attribute (type < 0x8000) we do not know, if any.
    public var unknownRequiredAttribute: UInt16? = nil

    @inlinable
    public init() {}

    @inlinable public var isRequest: Bool { type & 0x0110 == 0x0000 }
    @inlinable public var isIndication: Bool { type & 0x0110 == 0x0010 }
    @inlinable public var isSuccessResponse: Bool { type & 0x0110 == 0x0100 }
    @inlinable public var isErrorResponse: Bool { type & 0x0110 == 0x0110 }
    /// The method bits (0x001 is Binding).
    @inlinable public var method: UInt16 {
        (type & 0x000F) | ((type & 0x00E0) >> 1) | ((type & 0x3E00) >> 2)
    }

    /// Parses `length` bytes at `p` (a whole UDP payload).
    @inlinable
    public static func parse(_ p: UnsafeRawPointer, length: Int, into m: inout STUNMessage) -> STUNVerdict {
        m = STUNMessage()
        guard length >= STUN.headerLength else { return .truncated }
        let type = p.loadBE16(at: 0)
        let bodyLength = Int(p.loadBE16(at: 2))
        guard type & 0xC000 == 0, p.loadBE32(at: 4) == STUN.magicCookie, bodyLength & 3 == 0 else {
            return .notSTUN
        }
        guard STUN.headerLength + bodyLength == length else { return .badLength }
        m.type = type
        m.length = length
        var offset = STUN.headerLength
        var afterIntegrity = false
        while offset < length {
            guard length - offset >= 4 else { return .badAttribute }
            if m.fingerprintOffset >= 0 { return .badAttribute }  // FINGERPRINT must be last
            let attrType = p.loadBE16(at: offset)
            let attrLength = Int(p.loadBE16(at: offset + 2))
            let value = offset + 4
            let padded = (attrLength + 3) & ~3
            guard length - value >= padded else { return .badAttribute }
            switch attrType {
            case STUN.Attribute.fingerprint:
                guard attrLength == 4 else { return .badAttribute }
                m.fingerprintOffset = offset
            case _ where afterIntegrity:
                break
            case STUN.Attribute.messageIntegrity:
                guard attrLength == 20 else { return .badAttribute }
                m.messageIntegrityOffset = offset
                afterIntegrity = true
            case STUN.Attribute.username:
                guard attrLength <= STUN.maxUsernameLength else { return .badAttribute }
                if m.usernameOffset < 0 {
                    m.usernameOffset = value
                    m.usernameLength = attrLength
                }
            case STUN.Attribute.priority:
                guard attrLength == 4 else { return .badAttribute }
                if m.priority == nil { m.priority = p.loadBE32(at: value) }
            case STUN.Attribute.useCandidate:
                guard attrLength == 0 else { return .badAttribute }
                m.useCandidate = true
            case STUN.Attribute.iceControlling:
                guard attrLength == 8 else { return .badAttribute }
                if m.iceControlling == nil { m.iceControlling = p.loadBE64(at: value) }
            case STUN.Attribute.iceControlled:
                guard attrLength == 8 else { return .badAttribute }
                if m.iceControlled == nil { m.iceControlled = p.loadBE64(at: value) }
            case STUN.Attribute.xorMappedAddress:
                guard attrLength == 8 || attrLength == 20 else { return .badAttribute }
                if m.xorMappedAddressOffset < 0 {
                    m.xorMappedAddressOffset = value
                    m.xorMappedAddressLength = attrLength
                }
            case STUN.Attribute.errorCode:
                guard attrLength >= 4 else { return .badAttribute }
                if m.errorCodeOffset < 0 {
                    m.errorCodeOffset = value
                    m.errorCodeLength = attrLength
                }
            case STUN.Attribute.mappedAddress, STUN.Attribute.unknownAttributes, STUN.Attribute.realm,
                STUN.Attribute.nonce, STUN.Attribute.messageIntegritySHA256, STUN.Attribute.userhash:
                break
            default:
                if attrType < 0x8000 && m.unknownRequiredAttribute == nil { m.unknownRequiredAttribute = attrType }
            }
            offset = value + padded
        }
        return .ok
    }

    /// FINGERPRINT checks out (CRC-32 of everything before it, XOR "STUN").
    /// False when there is no FINGERPRINT.
    @inlinable
    public func fingerprintMatches(_ p: UnsafeRawPointer) -> Bool {
        guard fingerprintOffset >= 0 else { return false }
        let expected = CRC32.checksum(p, count: fingerprintOffset) ^ STUN.fingerprintXOR
        return p.loadBE32(at: fingerprintOffset + 4) == expected
    }

    /// XOR-MAPPED-ADDRESS decoded, if present and well-formed.
    @inlinable
    public func xorMappedAddress(_ p: UnsafeRawPointer) -> (address: IPAddress, port: UDPPort)? {
        guard xorMappedAddressOffset >= 0 else { return nil }
        let o = xorMappedAddressOffset
        let family = p.loadByte(at: o + 1)
        let port = UDPPort(p.loadBE16(at: o + 2) ^ UInt16(STUN.magicCookie >> 16))
        if family == 0x01 && xorMappedAddressLength == 8 {
            return (IPAddress(ipv4: p.loadBE32(at: o + 4) ^ STUN.magicCookie), port)
        }
        if family == 0x02 && xorMappedAddressLength == 20 {
            let high = p.loadBE64(at: o + 4) ^ (UInt64(STUN.magicCookie) << 32 | UInt64(p.loadBE32(at: 8)))
            let low = p.loadBE64(at: o + 12) ^ p.loadBE64(at: 12)
            return (IPAddress(high: high, low: low), port)
        }
        return nil
    }

    /// ERROR-CODE as (code, reason), if present.
    public func errorCode(_ p: UnsafeRawPointer) -> (code: Int, reason: String)? {
        guard errorCodeOffset >= 0 else { return nil }
        let code = Int(p.loadByte(at: errorCodeOffset + 2) & 0x07) * 100 + Int(p.loadByte(at: errorCodeOffset + 3))
        let reason = String(
            decoding: UnsafeRawBufferPointer(start: p + errorCodeOffset + 4, count: errorCodeLength - 4),
            as: UTF8.self)
        return (code, reason)
    }

    /// USERNAME bytes, if present.
    @inlinable
    public func username(_ p: UnsafeRawPointer) -> UnsafeRawBufferPointer? {
        guard usernameOffset >= 0 else { return nil }
        return UnsafeRawBufferPointer(start: p + usernameOffset, count: usernameLength)
    }
}

/// Writes a STUN message into a buffer, attribute by attribute. It tracks the length
/// and keeps the header's length field current, so MESSAGE-INTEGRITY and FINGERPRINT
/// (computed over "the message so far") can be added at the right moments.
/// The caller guarantees `capacity`; every append checks it and returns false when full.
public struct STUNWriter {
    public let base: UnsafeMutableRawPointer
    public let capacity: Int
    /// Bytes written so far (the whole message, header included).
    public var length: Int

    /// Starts a message of `type`. The transaction ID is expected at bytes 8..<20
    /// already (answers in place keep the request's) unless `transactionID` is given.
    @inlinable
    public init?(
        _ base: UnsafeMutableRawPointer, capacity: Int, type: UInt16,
        transactionID: UnsafeRawBufferPointer? = nil
    ) {
        guard capacity >= STUN.headerLength else { return nil }
        self.base = base
        self.capacity = capacity
        self.length = STUN.headerLength
        base.storeBE16(type, at: 0)
        base.storeBE16(0, at: 2)
        base.storeBE32(STUN.magicCookie, at: 4)
        if let id = transactionID, id.count == 12 {
            (base + 8).copyMemory(from: id.baseAddress!, byteCount: 12)
        }
    }

    /// Appends a raw attribute (value padded with zeros).
    @inlinable
    public mutating func append(type: UInt16, value: UnsafeRawBufferPointer) -> Bool {
        guard let at = reserve(type: type, valueLength: value.count) else { return false }
        if let v = value.baseAddress, value.count > 0 { (base + at).copyMemory(from: v, byteCount: value.count) }
        return true
    }

    /// Reserves an attribute of `valueLength`, zeroing its padding; returns the value offset.
    @inlinable
    public mutating func reserve(type: UInt16, valueLength: Int) -> Int? {
        let padded = (valueLength + 3) & ~3
        guard length + 4 + padded <= capacity else { return nil }
        base.storeBE16(type, at: length)
        base.storeBE16(UInt16(valueLength), at: length + 2)
        let value = length + 4
        if padded > valueLength { (base + value + valueLength).initializeMemory(as: UInt8.self, repeating: 0, count: padded - valueLength) }
        length = value + padded
        base.storeBE16(UInt16(length - STUN.headerLength), at: 2)
        return value
    }

    @inlinable
    public mutating func appendUInt32(type: UInt16, _ v: UInt32) -> Bool {
        guard let at = reserve(type: type, valueLength: 4) else { return false }
        base.storeBE32(v, at: at)
        return true
    }

    @inlinable
    public mutating func appendUInt64(type: UInt16, _ v: UInt64) -> Bool {
        guard let at = reserve(type: type, valueLength: 8) else { return false }
        base.storeBE64(v, at: at)
        return true
    }

    /// XOR-MAPPED-ADDRESS for `address:port`, XORed with the cookie and transaction ID.
    @inlinable
    public mutating func appendXORMappedAddress(_ address: IPAddress, port: UDPPort) -> Bool {
        let xport = port.rawValue ^ UInt16(STUN.magicCookie >> 16)
        if address.isIPv4 {
            guard let at = reserve(type: STUN.Attribute.xorMappedAddress, valueLength: 8) else { return false }
            base.storeBE16(0x0001, at: at)
            base.storeBE16(xport, at: at + 2)
            base.storeBE32(address.ipv4 ^ STUN.magicCookie, at: at + 4)
        } else {
            guard let at = reserve(type: STUN.Attribute.xorMappedAddress, valueLength: 20) else { return false }
            base.storeBE16(0x0002, at: at)
            base.storeBE16(xport, at: at + 2)
            base.storeBE64(address.high ^ (UInt64(STUN.magicCookie) << 32 | UInt64(base.loadBE32(at: 8))), at: at + 4)
            base.storeBE64(address.low ^ base.loadBE64(at: 12), at: at + 12)
        }
        return true
    }

    /// ERROR-CODE (RFC 8489 §14.8) with a reason phrase.
    @inlinable
    public mutating func appendErrorCode(_ code: Int, reason: StaticString) -> Bool {
        let n = reason.utf8CodeUnitCount
        guard let at = reserve(type: STUN.Attribute.errorCode, valueLength: 4 + n) else { return false }
        base.storeBE16(0, at: at)
        base.storeByte(UInt8(code / 100), at: at + 2)
        base.storeByte(UInt8(code % 100), at: at + 3)
        (base + at + 4).copyMemory(from: reason.utf8Start, byteCount: n)
        return true
    }

    /// Reserves MESSAGE-INTEGRITY and returns the offset of its 20-byte value. The header
    /// length already covers it, so the HMAC input is `base[0..<offset - 4]`.
    @inlinable
    public mutating func reserveMessageIntegrity() -> Int? {
        reserve(type: STUN.Attribute.messageIntegrity, valueLength: 20)
    }

    /// Appends FINGERPRINT over everything written so far.
    @inlinable
    public mutating func appendFingerprint() -> Bool {
        guard let at = reserve(type: STUN.Attribute.fingerprint, valueLength: 4) else { return false }
        base.storeBE32(CRC32.checksum(base, count: at - 4) ^ STUN.fingerprintXOR, at: at)
        return true
    }
}
