import COpenSSL
import VoxWire

/// What happened to a STUN datagram offered to `STUNAuthenticator`.
public enum STUNCheckVerdict: UInt8, Sendable, CaseIterable {
    /// A valid Binding request; the success response was written in place.
    case answered
    /// Not STUN, or malformed.
    case malformed
    /// Not a Binding request (responses and indications are not answered).
    case notBindingRequest
    /// No USERNAME, MESSAGE-INTEGRITY or FINGERPRINT (ICE requires all three).
    case missingAttributes
    /// FINGERPRINT does not match.
    case badFingerprint
    /// MESSAGE-INTEGRITY does not verify with the password.
    case badIntegrity
    /// The frame has no room for the response.
    case noRoom
}

/// Short-term-credential STUN for ICE-lite (RFC 8445 §7.3, RFC 8489 §9.1): checks
/// MESSAGE-INTEGRITY and FINGERPRINT of a request with the local ICE password and
/// writes the signed Binding success response over it, in the same buffer.
///
/// The HMAC key is precomputed once per password (one per session).
public struct STUNAuthenticator {
    @usableFromInline var key: HMACSHA1Key

    /// `password` is the local `a=ice-pwd` (short-term credentials use it as the key as is).
    public init(password: UnsafeRawBufferPointer) {
        key = HMACSHA1Key(key: password)
    }

    public init(password: String) {
        var p = password
        key = p.withUTF8 { HMACSHA1Key(key: UnsafeRawBufferPointer($0)) }
    }

    public mutating func wipe() { key.wipe() }

    /// HMAC-SHA1 over the message up to the MESSAGE-INTEGRITY attribute at
    /// `integrityOffset`, with the header length field counting through that attribute
    /// (RFC 8489 §14.5), written to `out` (20 bytes).
    @inlinable
    public func computeIntegrity(_ p: UnsafeRawPointer, integrityOffset: Int, into out: UnsafeMutableRawPointer) {
        var header = (UInt64(0), UInt64(0), UInt32(0))
        withUnsafeMutableBytes(of: &header) { h in
            h.baseAddress!.copyMemory(from: p, byteCount: 20)
            h.baseAddress!.storeBE16(UInt16(integrityOffset + 24 - STUN.headerLength), at: 2)
            var state = key.begin()
            HMACSHA1Key.update(&state, h.baseAddress!, count: 20)
            HMACSHA1Key.update(&state, p + 20, count: integrityOffset - 20)
            key.finish(&state, into: out)
        }
    }

    /// True when `message` (parsed from `p`) has a MESSAGE-INTEGRITY that verifies.
    @inlinable
    public func verifyIntegrity(_ p: UnsafeRawPointer, _ message: STUNMessage) -> Bool {
        guard message.messageIntegrityOffset >= 0 else { return false }
        var digest: Digest20 = (0, 0, 0)
        return withUnsafeMutableBytes(of: &digest) { d in
            computeIntegrity(p, integrityOffset: message.messageIntegrityOffset, into: d.baseAddress!)
            return constantTimeEqual(d.baseAddress!, p + message.messageIntegrityOffset + 4, count: 20)
        }
    }

    /// Checks the Binding request in the `length` bytes at `p` and, when it is valid,
    /// overwrites it with the success response (XOR-MAPPED-ADDRESS of `remote`,
    /// MESSAGE-INTEGRITY, FINGERPRINT) within `capacity` bytes. On `.answered`,
    /// `responseLength` holds the response's length and `request` what the request said
    /// (USE-CANDIDATE, PRIORITY, ...; its offsets no longer point at anything).
    @inlinable
    public func answerBindingRequest(
        _ p: UnsafeMutableRawPointer, length: Int, capacity: Int,
        remote: IPAddress, remotePort: UDPPort,
        request: inout STUNMessage, responseLength: inout Int
    ) -> STUNCheckVerdict {
        guard STUNMessage.parse(p, length: length, into: &request) == .ok else { return .malformed }
        guard request.type == STUN.bindingRequest else { return .notBindingRequest }
        guard request.usernameOffset >= 0, request.messageIntegrityOffset >= 0, request.fingerprintOffset >= 0
        else { return .missingAttributes }
        guard request.fingerprintMatches(p) else { return .badFingerprint }
        guard verifyIntegrity(p, request) else { return .badIntegrity }
        let needed = STUN.headerLength + (remote.isIPv4 ? 12 : 24) + 24 + 8
        guard capacity >= needed else { return .noRoom }
        guard var w = STUNWriter(p, capacity: capacity, type: STUN.bindingSuccess) else { return .noRoom }
        _ = w.appendXORMappedAddress(remote, port: remotePort)
        guard let mi = w.reserveMessageIntegrity() else { return .noRoom }
        computeIntegrity(p, integrityOffset: mi - 4, into: p + mi)
        _ = w.appendFingerprint()
        responseLength = w.length
        return .answered
    }

    /// Signs a message being written: reserves MESSAGE-INTEGRITY, computes it, then
    /// appends FINGERPRINT. Returns false when the buffer is full.
    @inlinable
    public func sign(_ writer: inout STUNWriter) -> Bool {
        guard let mi = writer.reserveMessageIntegrity() else { return false }
        computeIntegrity(writer.base, integrityOffset: mi - 4, into: writer.base + mi)
        return writer.appendFingerprint()
    }
}
