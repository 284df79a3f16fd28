import VoxMedia
import VoxWire

/// A connectivity check as a worker sees it: `STUNMessage.parse`, the slot in our ufrag,
/// then the session's ICE-lite agent (`verifies`, the claim check; `handle`, the answer).
///
/// Input: one flags byte, then the STUN message. When the message parses and carries
/// MESSAGE-INTEGRITY (and FINGERPRINT), both are recomputed with the agent's password
/// before the agent sees it, so USERNAME, the attributes and the state machine behind the
/// MAC are reached. Flags: bit 0, the client is IPv6; bit 1, the same check arrives again
/// from a second 5-tuple; bit 2, it arrives after the connect deadline.
enum STUNFuzz {
    static let localUfrag = "vx000001fuzzfuzz"
    static let remoteUfrag = "peer"
    static let password = "fuzzpasswordfuzzpassword"
    nonisolated(unsafe) static let authenticator = STUNAuthenticator(password: password)
    static let flowV4 = FlowKey(
        remoteAddress: IPAddress("198.18.0.2")!, remotePort: UDPPort(50000), localAddress: IPAddress("198.18.0.1")!,
        localPort: UDPPort(40000))
    static let flowV6 = FlowKey(
        remoteAddress: IPAddress("2001:db8::2")!, remotePort: UDPPort(50001), localAddress: IPAddress("2001:db8::1")!,
        localPort: UDPPort(40000))

    /// What `Frame` does with a STUN payload: parse, and read what a parsed message offers.
    static func parseOnly(_ data: UnsafeRawBufferPointer) {
        guard let p = data.baseAddress else { return }
        var m = STUNMessage()
        guard STUNMessage.parse(p, length: data.count, into: &m) == .ok else { return }
        checkOffsets(m, count: data.count)
        FuzzCheck.consume(m.fingerprintMatches(p))
        FuzzCheck.consume(m.xorMappedAddress(p))
        FuzzCheck.consume(m.errorCode(p))
        if let user = m.username(p), let u = user.baseAddress { FuzzCheck.consume(IceUfrag.slot(in: u, count: user.count)) }
    }

    static func checkOffsets(_ m: STUNMessage, count: Int) {
        FuzzCheck.expect(m.length == count, "STUN length \(m.length) for \(count) bytes")
        FuzzCheck.expect(
            m.usernameOffset < 0 || (m.usernameOffset >= 24 && m.usernameOffset + m.usernameLength <= count),
            "USERNAME outside the message")
        FuzzCheck.expect(
            m.messageIntegrityOffset < 0 || m.messageIntegrityOffset + 24 <= count, "MESSAGE-INTEGRITY outside the message")
        FuzzCheck.expect(m.fingerprintOffset < 0 || m.fingerprintOffset + 8 == count, "FINGERPRINT not last")
        FuzzCheck.expect(
            m.xorMappedAddressOffset < 0 || m.xorMappedAddressOffset + m.xorMappedAddressLength <= count,
            "XOR-MAPPED-ADDRESS outside the message")
        FuzzCheck.expect(
            m.errorCodeOffset < 0 || m.errorCodeOffset + m.errorCodeLength <= count, "ERROR-CODE outside the message")
    }

    static func run(_ data: UnsafeRawBufferPointer) {
        var reader = FuzzReader(data)
        let flags = reader.byte()
        let message = reader.rest()
        parseOnly(message)
        // Room for the answer after the request, as a frame's buffer has.
        let buffer = FuzzBuffer(message, room: 128)
        let p = buffer.pointer
        var m = STUNMessage()
        if let b = message.baseAddress, STUNMessage.parse(b, length: message.count, into: &m) == .ok {
            sign(p, m)
        }
        let signed = buffer.bytes(message.count)
        var agent = ICELiteAgent(
            local: ICECredentials(ufrag: localUfrag, password: password), remoteUfrag: remoteUfrag, now: 0)!
        let flow = flags & 1 == 0 ? flowV4 : flowV6
        let now: UInt64 = flags & 4 == 0 ? 1_000 : 11_000_000_000
        if STUNMessage.parse(p, length: message.count, into: &m) == .ok {
            FuzzCheck.consume(agent.verifies(p, m))
        }
        let result = agent.handle(now: now, p, length: message.count, capacity: buffer.capacity, from: flow)
        if result.verdict == .answered { checkAnswer(p, result, to: flow) }
        if flags & 2 != 0 {
            let again = FuzzBuffer(signed, room: 128)
            let other = flow == flowV4 ? flowV6 : flowV4
            let second = agent.handle(
                now: now &+ 1_000, again.pointer, length: signed.count, capacity: again.capacity, from: other)
            if second.verdict == .answered {
                checkAnswer(again.pointer, second, to: other)
                FuzzCheck.expect(result.verdict == .answered, "a second copy answered where the first was not")
            }
        }
    }

    /// Recomputes MESSAGE-INTEGRITY and FINGERPRINT where the message has them.
    static func sign(_ p: UnsafeMutableRawPointer, _ m: STUNMessage) {
        if m.messageIntegrityOffset >= 0 {
            authenticator.computeIntegrity(p, integrityOffset: m.messageIntegrityOffset, into: p + m.messageIntegrityOffset + 4)
        }
        if m.fingerprintOffset >= 0 {
            p.storeBE32(CRC32.checksum(p, count: m.fingerprintOffset) ^ STUN.fingerprintXOR, at: m.fingerprintOffset + 4)
        }
    }

    /// An answer is a Binding success response that parses, names the client's address and
    /// port, and verifies with the password.
    static func checkAnswer(_ p: UnsafeMutableRawPointer, _ result: ICECheckResult, to flow: FlowKey) {
        var answer = STUNMessage()
        FuzzCheck.expect(
            STUNMessage.parse(p, length: result.responseLength, into: &answer) == .ok, "the answer does not parse")
        FuzzCheck.expect(answer.type == STUN.bindingSuccess, "the answer is not a Binding success")
        FuzzCheck.expect(answer.fingerprintMatches(p), "the answer's FINGERPRINT is wrong")
        FuzzCheck.expect(authenticator.verifyIntegrity(p, answer), "the answer's MESSAGE-INTEGRITY does not verify")
        let mapped = answer.xorMappedAddress(p)
        FuzzCheck.expect(
            mapped?.address == flow.remoteAddress && mapped?.port == flow.remotePort, "the answer maps another address")
    }
}
