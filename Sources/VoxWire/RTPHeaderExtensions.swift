/// One RFC 8285 header extension element: its local ID and where its data is, as an
/// offset from the start of the packet.
public struct RTPHeaderExtensionElement: Hashable, Sendable {
    public var id: UInt8
    public var offset: Int
    public var length: Int

    @inlinable
    public init(id: UInt8, offset: Int, length: Int) {
        self.id = id
        self.offset = offset
        self.length = length
    }
}

/// The elements of an RTP header extension (RFC 8285), in order, without allocating:
/// a view over the packet's bytes that walks the extension data once.
///
/// ```
/// one-byte (0xBEDE):    | ID:4 | L:4 | L+1 data bytes |   zero byte = padding, ID 15 = stop
/// two-byte (0x100X):    | ID:8 | L:8 | L data bytes   |   zero byte = padding
/// ```
/// An element that runs past the extension data (or, in the one-byte form, an ID of 0
/// with a non-zero length, which is neither padding nor an element) ends the iteration
/// and sets `isMalformed`; elements before it were yielded. Every yielded element lies
/// inside the extension data. Any other profile yields nothing: it is not ours to read.
public struct RTPHeaderExtensions: Sequence, IteratorProtocol {
    public enum Form: UInt8, Sendable {
        /// No extension, or a profile other than RFC 8285's two.
        case other
        case oneByte
        case twoByte
    }

    public let base: UnsafeRawPointer
    public let form: Form
    /// The next byte to look at, and one past the extension data.
    @usableFromInline var offset: Int
    @usableFromInline let end: Int
    @usableFromInline var _isMalformed = false
    /// An element ran past the end; iteration stopped there.
    @inlinable public var isMalformed: Bool { _isMalformed }

    /// The elements of the extension of `profile` whose data is `length` bytes at `offset`
    /// from `p` (as `RTPHeader.parse` found them).
    @inlinable
    public init(_ p: UnsafeRawPointer, profile: UInt16, offset: Int, length: Int) {
        base = p
        if profile == RTP.oneByteExtensionProfile {
            form = .oneByte
        } else if profile & RTP.twoByteExtensionProfileMask == RTP.twoByteExtensionProfile {
            form = .twoByte
        } else {
            form = .other
        }
        self.offset = offset
        end = form == .other ? offset : offset + length
    }

    @inlinable
    public mutating func next() -> RTPHeaderExtensionElement? {
        switch form {
        case .other:
            return nil
        case .oneByte:
            while offset < end {
                let b = base.loadByte(at: offset)
                if b == 0 {
                    offset += 1
                    continue
                }
                let id = b >> 4
                // ID 15: "processing of the entire extension should terminate" (§4.2).
                if id == 15 { break }
                let dataLength = Int(b & 0x0F) + 1
                guard id != 0, end - offset - 1 >= dataLength else { return malformed() }
                let element = RTPHeaderExtensionElement(id: id, offset: offset + 1, length: dataLength)
                offset += 1 + dataLength
                return element
            }
        case .twoByte:
            while offset < end {
                let id = base.loadByte(at: offset)
                if id == 0 {
                    offset += 1
                    continue
                }
                guard end - offset >= 2 else { return malformed() }
                let dataLength = Int(base.loadByte(at: offset + 1))
                guard end - offset - 2 >= dataLength else { return malformed() }
                let element = RTPHeaderExtensionElement(id: id, offset: offset + 2, length: dataLength)
                offset += 2 + dataLength
                return element
            }
        }
        offset = end
        return nil
    }

    @inlinable
    mutating func malformed() -> RTPHeaderExtensionElement? {
        _isMalformed = true
        offset = end
        return nil
    }

    /// The first element with `id` from here on, or nil. The view is a value, so calling
    /// this on a fresh view searches the whole extension and leaves the caller's view alone.
    @inlinable
    public func find(id: UInt8) -> RTPHeaderExtensionElement? {
        var copy = self
        while let element = copy.next() {
            if element.id == id { return element }
        }
        return nil
    }
}

extension RTPHeader {
    /// The first RFC 8285 element with `id`, or nil.
    @inlinable
    public func headerExtension(id: UInt8, in p: UnsafeRawPointer) -> RTPHeaderExtensionElement? {
        extensions(in: p).find(id: id)
    }
}

/// Appends one-byte header extension elements (RFC 8285 §4.2) to a packet being built,
/// right after its fixed header and CSRCs and before its payload.
///
/// ```
///  headerOffset      headerOffset + 4                          end (multiple of 4 past headerOffset)
///  | 0xBEDE | words | ID|L data | ID|L data | ... | 0 padding |  payload goes here
/// ```
/// After every append the block is complete: the word count is current and the padding
/// zeroed, so `end` is always where the payload may start. `init` sets the packet's
/// X bit. Appends check `capacity` and return false when the element does not fit.
public struct RTPOneByteExtensionWriter {
    public let base: UnsafeMutableRawPointer
    public let capacity: Int
    /// Where the 4-byte extension header is.
    public let headerOffset: Int
    /// One past the last element byte written (padding not included).
    @usableFromInline var cursor: Int

    /// Starts an empty extension at `offset` (12 + 4 × CC) in the packet at `packet`.
    /// Nil when the 4-byte extension header does not fit.
    @inlinable
    public init?(_ packet: UnsafeMutableRawPointer, capacity: Int, at offset: Int) {
        guard offset >= RTP.fixedHeaderLength, capacity - offset >= 4 else { return nil }
        base = packet
        self.capacity = capacity
        headerOffset = offset
        cursor = offset + 4
        packet.storeByte(packet.loadByte(at: 0) | 0x10, at: 0)
        packet.storeBE16(RTP.oneByteExtensionProfile, at: offset)
        packet.storeBE16(0, at: offset + 2)
    }

    /// One past the padded block: where the payload starts.
    @inlinable
    public var end: Int { headerOffset + 4 + ((cursor - headerOffset - 4 + 3) & ~3) }

    /// Appends element `id` (1...14) with 1...16 bytes of data.
    @inlinable
    public mutating func append(id: UInt8, value: UnsafeRawBufferPointer) -> Bool {
        guard let at = reserve(id: id, length: value.count) else { return false }
        (base + at).copyMemory(from: value.baseAddress!, byteCount: value.count)
        return true
    }

    /// Reserves element `id` (1...14) of `length` (1...16) bytes, padding the block;
    /// returns the offset of its data for the caller to fill, or nil.
    @inlinable
    public mutating func reserve(id: UInt8, length: Int) -> Int? {
        guard id >= 1, id <= 14, length >= 1, length <= 16 else { return nil }
        let newCursor = cursor + 1 + length
        let newEnd = headerOffset + 4 + ((newCursor - headerOffset - 4 + 3) & ~3)
        guard newEnd <= capacity else { return nil }
        base.storeByte(id << 4 | UInt8(length - 1), at: cursor)
        let at = cursor + 1
        cursor = newCursor
        if newEnd > newCursor {
            (base + newCursor).initializeMemory(as: UInt8.self, repeating: 0, count: newEnd - newCursor)
        }
        base.storeBE16(UInt16((newEnd - headerOffset - 4) / 4), at: headerOffset + 2)
        return at
    }

    /// The client-to-mixer audio level (RFC 6464 §3): the V flag and the level in −dBov
    /// (0 is loudest, 127 silence), in one byte.
    @inlinable
    public mutating func appendAudioLevel(id: UInt8, voiceActivity: Bool, level: UInt8) -> Bool {
        guard let at = reserve(id: id, length: 1) else { return false }
        base.storeByte(RTPAudioLevel(voiceActivity: voiceActivity, level: level).rawValue, at: at)
        return true
    }
}

/// The RFC 6464 audio level byte: `V:1 | level:7`, the level in −dBov (0...127).
public struct RTPAudioLevel: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt8
    @inlinable public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// Levels above 127 are clamped to 127 (silence).
    @inlinable
    public init(voiceActivity: Bool, level: UInt8) {
        rawValue = (voiceActivity ? 0x80 : 0) | min(level, 127)
    }

    @inlinable public var voiceActivity: Bool { rawValue & 0x80 != 0 }
    /// −dBov: 0 is the loudest a codec can carry, 127 is silence.
    @inlinable public var level: UInt8 { rawValue & 0x7F }

    /// The level in `element` of the packet at `p`. The RFC 8285 one-byte form gives it one
    /// byte; a two-byte-form element may carry more, of which the first byte counts.
    @inlinable
    public static func load(from p: UnsafeRawPointer, _ element: RTPHeaderExtensionElement) -> RTPAudioLevel? {
        guard element.length >= 1 else { return nil }
        return RTPAudioLevel(rawValue: p.loadByte(at: element.offset))
    }
}
