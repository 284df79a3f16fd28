import VoxWire

/// What `ICELiteAgent.handle` did with a datagram.
public enum ICECheckVerdict: UInt8, Sendable, CaseIterable {
    /// A valid check: the Binding success response was written in place.
    case answered
    /// Not STUN, or malformed.
    case malformed
    /// Not a Binding request (indications and responses are not answered).
    case notBindingRequest
    /// No USERNAME, MESSAGE-INTEGRITY or FINGERPRINT.
    case missingAttributes
    /// USERNAME is not "<our ufrag>:<the client's ufrag>".
    case badUsername
    case badFingerprint
    /// MESSAGE-INTEGRITY does not verify with the session's password.
    case badIntegrity
    /// The agent has failed (connect deadline or consent expired): nothing is answered.
    case closed
    /// The buffer has no room for the response.
    case noRoom
}

/// What a check changed, beside the response.
public struct ICEEvents: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// The session's first valid check: this 5-tuple claims the session (DESIGN §2a).
    public static let connected = ICEEvents(rawValue: 1)
    /// The first check with USE-CANDIDATE: the client has chosen the pair.
    public static let nominated = ICEEvents(rawValue: 2)
    /// The session moved to a new 5-tuple (NAT rebinding, or a renomination).
    public static let pathChanged = ICEEvents(rawValue: 4)
}

/// The result of one datagram: a verdict, the response length when `.answered`, and events.
public struct ICECheckResult: Sendable, Equatable {
    public var verdict: ICECheckVerdict
    public var responseLength: Int
    public var events: ICEEvents

    public init(verdict: ICECheckVerdict, responseLength: Int = 0, events: ICEEvents = []) {
        self.verdict = verdict
        self.responseLength = responseLength
        self.events = events
    }
}

/// The agent's state. `failed` is final.
public enum ICEState: Sendable, Equatable {
    /// Answer sent; no valid check yet.
    case waiting
    /// Valid checks seen; `nominated` once one carried USE-CANDIDATE.
    case connected(nominated: Bool)
    case failed(ICEFailure)
}

public enum ICEFailure: UInt8, Sendable, CaseIterable {
    /// No valid check within `connectTimeout` of the answer.
    case connectTimeout
    /// No valid check for `consentTimeout` (RFC 7675): the client has gone.
    case consentExpired
}

/// The ICE-lite side of one session (RFC 8445 §2.5, §7.3): a sans-IO core that answers the
/// client's connectivity checks and keeps the session's timers. It owns no socket and no
/// clock: time is passed in as nanoseconds on the caller's monotonic clock, the request is
/// answered in the caller's buffer, and the caller acts on the returned events. It holds
/// everything inline (ufrags, the HMAC key's pads), so a worker keeps one per session slot
/// and a check allocates nothing.
///
/// Rules:
/// - A check is valid when USERNAME is "<local ufrag>:<remote ufrag>", MESSAGE-INTEGRITY
///   verifies with the local password and FINGERPRINT matches (RFC 8445 §7.3).
/// - The first valid check selects its 5-tuple (`.connected`). Before nomination a check
///   from another 5-tuple is answered (the client is probing its pairs) but moves the
///   session only when it carries USE-CANDIDATE. After nomination the client checks only
///   the selected pair, so a valid check from any other 5-tuple is a NAT rebinding and
///   moves the session (`.pathChanged`).
/// - `connectTimeout` after the answer without a valid check: `.failed(.connectTimeout)`.
///   After that, `consentTimeout` without a valid check: `.failed(.consentExpired)`;
///   every valid check renews consent (RFC 7675 §5.1: browsers check every 5 s or so).
public struct ICELiteAgent {
    public struct Configuration: Sendable {
        /// `UInt64.max`: no connect deadline (a session whose client is already known).
        public var connectTimeout: UInt64
        public var consentTimeout: UInt64
        /// 10 s to connect (DESIGN: the client starts checking as soon as it has the
        /// answer), 30 s of consent (RFC 7675 §5.1).
        public init(connectTimeout: UInt64 = 10_000_000_000, consentTimeout: UInt64 = 30_000_000_000) {
            self.connectTimeout = connectTimeout
            self.consentTimeout = consentTimeout
        }
    }

    public private(set) var configuration: Configuration
    var authenticator: STUNAuthenticator
    /// USERNAME must be "<local>:<remote>".
    public private(set) var localUfrag: IceUfrag
    public private(set) var remoteUfrag: IceUfrag
    public private(set) var state: ICEState
    /// The 5-tuple media goes to; nil until the first valid check.
    public private(set) var selected: FlowKey? = nil
    /// When the state changes unless a valid check arrives first (`UInt64.max` once failed):
    /// the caller's timer wheel calls `poll(now:)` then.
    public private(set) var deadline: UInt64
    /// The PRIORITY of the last valid check (the client's peer-reflexive priority).
    public private(set) var lastPriority: UInt32 = 0

    /// An agent without credentials, already closed: it answers nothing and keeps no timer
    /// (an empty session slot, or a session that does no ICE).
    public init() {
        configuration = Configuration()
        authenticator = STUNAuthenticator(password: "")
        localUfrag = IceUfrag()
        remoteUfrag = IceUfrag()
        state = .failed(.connectTimeout)
        deadline = .max
    }

    /// `now` is when the answer was sent: the connect deadline counts from there.
    public init(
        localUfrag: IceUfrag, password: UnsafeRawBufferPointer, remoteUfrag: IceUfrag, now: UInt64,
        configuration: Configuration = .init()
    ) {
        self.configuration = configuration
        authenticator = STUNAuthenticator(password: password)
        self.localUfrag = localUfrag
        self.remoteUfrag = remoteUfrag
        state = .waiting
        deadline = configuration.connectTimeout == .max ? .max : now &+ configuration.connectTimeout
    }

    /// nil when a ufrag is shorter than 4 or longer than `IceUfrag.capacity` bytes.
    public init?(local: ICECredentials, remoteUfrag: String, now: UInt64, configuration: Configuration = .init()) {
        guard let l = IceUfrag(local.ufrag), let r = IceUfrag(remoteUfrag) else { return nil }
        var password = local.password
        self = password.withUTF8 {
            ICELiteAgent(localUfrag: l, password: UnsafeRawBufferPointer($0), remoteUfrag: r, now: now, configuration: configuration)
        }
    }

    public var isNominated: Bool { if case .connected(true) = state { return true } else { return false } }

    /// Forgets the password and closes: nothing is answered any more.
    public mutating func close() {
        authenticator.wipe()
        state = .failed(.connectTimeout)
        deadline = .max
        selected = nil
    }

    /// Checks the datagram of `length` bytes at `p`, received on `flow`, and when it is a
    /// valid check overwrites it with the success response (within `capacity` bytes).
    public mutating func handle(
        now: UInt64, _ p: UnsafeMutableRawPointer, length: Int, capacity: Int, from flow: FlowKey
    ) -> ICECheckResult {
        var request = STUNMessage()
        guard STUNMessage.parse(p, length: length, into: &request) == .ok else {
            return ICECheckResult(verdict: .malformed)
        }
        return handle(now: now, p, length: length, capacity: capacity, from: flow, request: &request)
    }

    /// As above, for a message the caller has parsed already (`STUNMessage.parse` of the
    /// same bytes): STUN is parsed once per check.
    public mutating func handle(
        now: UInt64, _ p: UnsafeMutableRawPointer, length: Int, capacity: Int, from flow: FlowKey,
        request: inout STUNMessage
    ) -> ICECheckResult {
        _ = poll(now: now)
        if case .failed = state { return ICECheckResult(verdict: .closed) }
        guard request.type == STUN.bindingRequest else { return ICECheckResult(verdict: .notBindingRequest) }
        guard request.usernameOffset >= 0 else { return ICECheckResult(verdict: .missingAttributes) }
        guard usernameMatches(p + request.usernameOffset, count: request.usernameLength) else {
            return ICECheckResult(verdict: .badUsername)
        }
        var responseLength = 0
        let verdict = authenticator.answerBindingRequest(
            p, length: length, capacity: capacity, remote: flow.remoteAddress, remotePort: flow.remotePort,
            request: &request, responseLength: &responseLength)
        switch verdict {
        case .answered: break
        case .malformed: return ICECheckResult(verdict: .malformed)
        case .notBindingRequest: return ICECheckResult(verdict: .notBindingRequest)
        case .missingAttributes: return ICECheckResult(verdict: .missingAttributes)
        case .badFingerprint: return ICECheckResult(verdict: .badFingerprint)
        case .badIntegrity: return ICECheckResult(verdict: .badIntegrity)
        case .noRoom: return ICECheckResult(verdict: .noRoom)
        }
        return ICECheckResult(
            verdict: .answered, responseLength: responseLength,
            events: validCheck(
                now: now, from: flow, useCandidate: request.useCandidate, priority: request.priority ?? 0))
    }

    /// True when the parsed check at `p` names this agent's ufrags and its
    /// MESSAGE-INTEGRITY verifies: what a worker asks before claiming a session that has no
    /// owner yet. Changes nothing and writes nothing.
    public func verifies(_ p: UnsafeRawPointer, _ request: STUNMessage) -> Bool {
        request.type == STUN.bindingRequest && request.usernameOffset >= 0
            && usernameMatches(p + request.usernameOffset, count: request.usernameLength)
            && authenticator.verifyIntegrity(p, request)
    }

    /// "<local>:<remote>", compared in place.
    func usernameMatches(_ user: UnsafeRawPointer, count: Int) -> Bool {
        let l = Int(localUfrag.length)
        return count == l + 1 + Int(remoteUfrag.length) && localUfrag.matches(user, count: l)
            && user.loadByte(at: l) == 0x3A && remoteUfrag.matches(user + l + 1, count: count - l - 1)
    }

    /// Bookkeeping for a check that verified.
    mutating func validCheck(now: UInt64, from flow: FlowKey, useCandidate: Bool, priority: UInt32) -> ICEEvents {
        var events: ICEEvents = []
        deadline = now &+ configuration.consentTimeout
        lastPriority = priority
        switch state {
        case .waiting:
            events.insert(.connected)
            selected = flow
            state = .connected(nominated: useCandidate)
            if useCandidate { events.insert(.nominated) }
        case .connected(let nominated):
            if selected != flow && (nominated || useCandidate) {
                selected = flow
                events.insert(.pathChanged)
            }
            if useCandidate && !nominated {
                state = .connected(nominated: true)
                events.insert(.nominated)
            }
        case .failed:
            break
        }
        return events
    }

    /// Authenticated SRTP or SRTCP from the client at `now` renews consent like a valid
    /// check: Debian 12's libnice (GStreamer) keeps a call alive with Binding Indications
    /// and media only, so a check-only rule would cut its calls at `consentTimeout`. The
    /// packet's authentication tag is the proof of consent here. Called per packet: a
    /// compare and a store.
    @inline(__always)
    public mutating func mediaReceived(now: UInt64) {
        if case .connected = state { deadline = now &+ configuration.consentTimeout }
    }

    /// Applies the timers up to `now`; returns the failure when it happens at this call.
    public mutating func poll(now: UInt64) -> ICEFailure? {
        guard now >= deadline else { return nil }
        deadline = .max
        switch state {
        case .waiting:
            state = .failed(.connectTimeout)
            return .connectTimeout
        case .connected:
            state = .failed(.consentExpired)
            return .consentExpired
        case .failed:
            return nil
        }
    }
}
