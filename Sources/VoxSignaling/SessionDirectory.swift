import Synchronization

/// The sessions created through this listener, by their unguessable public id: which engine
/// session each is and which subject created it. The engine ends sessions on its own (ICE
/// failure, consent, close_notify), so a subject's count is made of sessions it still has
/// (`SignalingEngine.isLive`), checked when the count matters.
final class SessionDirectory: Sendable {
    struct Entry: Sendable, Equatable {
        var session: UInt64
        var subject: String
    }

    private struct State {
        var entries: [String: Entry] = [:]
        /// POSTs between the cap check and the engine's answer, per subject: counted, so two
        /// concurrent POSTs cannot both take the last place.
        var pending: [String: Int] = [:]
    }

    private let state = Mutex(State())

    /// A new public id: 128 random bits from the system's generator, as 32 lowercase hex digits.
    static func newID() -> String {
        var generator = SystemRandomNumberGenerator()
        let high = generator.next() as UInt64
        let low = generator.next() as UInt64
        return Self.hex(high) + Self.hex(low)
    }

    static func hex(_ value: UInt64) -> String {
        let text = String(value, radix: 16)
        return String(repeating: "0", count: 16 - text.count) + text
    }

    /// Whether `text` has the shape of a public id (so anything else is a 404 without a lookup).
    static func isWellFormed(_ text: Substring) -> Bool {
        text.utf8.count == 32 && text.utf8.allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }
    }

    /// Forgets the subject's sessions the engine no longer has, then reserves a place if the
    /// subject holds fewer than `cap` (live and pending). False: at the cap.
    func reserve(subject: String, cap: Int, engine: some SignalingEngine) async -> Bool {
        let mine = state.withLock { s in s.entries.filter { $0.value.subject == subject } }
        var gone: [String] = []
        for (id, entry) in mine where !(await engine.isLive(entry.session)) { gone.append(id) }
        return state.withLock { s in
            for id in gone { s.entries[id] = nil }
            let held = s.entries.values.count(where: { $0.subject == subject }) + s.pending[subject, default: 0]
            guard held < cap else { return false }
            s.pending[subject, default: 0] += 1
            return true
        }
    }

    /// Ends a reservation: with the created session under a new public id (returned), or
    /// without one (the engine refused).
    func settle(subject: String, created session: UInt64?) -> String? {
        state.withLock { s in
            let left = s.pending[subject, default: 1] - 1
            s.pending[subject] = left > 0 ? left : nil
            guard let session else { return nil }
            var id = Self.newID()
            while s.entries[id] != nil { id = Self.newID() }
            s.entries[id] = Entry(session: session, subject: subject)
            return id
        }
    }

    /// Takes the entry out when it belongs to `subject`; nil when there is none (or another's).
    func take(id: String, subject: String) -> Entry? {
        state.withLock { s in
            guard let entry = s.entries[id], entry.subject == subject else { return nil }
            s.entries[id] = nil
            return entry
        }
    }

    /// Forgets every session the engine no longer has.
    func sweep(engine: some SignalingEngine) async {
        let all = state.withLock { $0.entries }
        var gone: [String] = []
        for (id, entry) in all where !(await engine.isLive(entry.session)) { gone.append(id) }
        state.withLock { s in for id in gone { s.entries[id] = nil } }
    }

    var count: Int { state.withLock { $0.entries.count } }
}
