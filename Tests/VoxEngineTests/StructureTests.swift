import Foundation
import Synchronization
import Testing
import VoxEngine
import VoxRouting
import VoxTestKit
import VoxWire

@Suite struct SPSCRingTests {
    @Test func fifoAndFullBehaviour() {
        let ring = SPSCRing<Int>(capacity: 5)  // rounded up to 8
        #expect(ring.capacity == 8)
        #expect(ring.pop() == nil)
        for i in 0..<8 { #expect(ring.push(i)) }
        #expect(!ring.push(99))  // full: refused, nothing overwritten
        #expect(ring.count == 8)
        for i in 0..<3 { #expect(ring.pop() == i) }
        for i in 8..<11 { #expect(ring.push(i)) }
        #expect(!ring.push(99))
        for i in 3..<11 { #expect(ring.pop() == i) }
        #expect(ring.pop() == nil)
    }

    @Test func orderAcrossThreads() async {
        let ring = SPSCRing<UInt64>(capacity: 64)
        let total: UInt64 = 300_000
        let producer = Thread {
            var i: UInt64 = 0
            while i < total { if ring.push(i) { i += 1 } }
        }
        producer.start()
        var expected: UInt64 = 0
        var outOfOrder = 0
        while expected < total {
            if let v = ring.pop() {
                if v != expected { outOfOrder += 1 }
                expected += 1
            }
        }
        #expect(outOfOrder == 0)
    }
}

@Suite struct TimerWheelTests {
    @Test func timersFireOnAHandDrivenClock() {
        var wheel = TimerWheel(capacity: 16, tick: 1_000_000, slotCount: 64, now: 0)
        let ms: UInt64 = 1_000_000
        wheel.schedule(1, at: 10 * ms)  // ICE connect, say
        wheel.schedule(2, at: 5 * ms)
        wheel.schedule(3, at: 30_000 * ms)  // consent: many revolutions away
        wheel.schedule(4, at: 5 * ms + 1)
        #expect(wheel.nextDeadline() == 5 * ms)
        var out = [Int32](repeating: -1, count: 8)
        func expire(_ now: UInt64) -> [Int32] {
            let n = out.withUnsafeMutableBufferPointer { wheel.expire(upTo: now, into: $0.baseAddress!, max: 8) }
            return Array(out[0..<n]).sorted()
        }
        #expect(expire(4 * ms).isEmpty)
        #expect(expire(5 * ms) == [2])
        #expect(expire(5 * ms + 1) == [4])
        wheel.cancel(1)
        #expect(expire(20 * ms).isEmpty)
        #expect(wheel.nextDeadline() == 30_000 * ms)
        wheel.schedule(1, at: 25 * ms)  // re-arm
        wheel.schedule(1, at: 26 * ms)  // and move
        #expect(wheel.nextDeadline() == 26 * ms)
        #expect(expire(25 * ms).isEmpty)
        #expect(expire(26 * ms) == [1])
        #expect(expire(29_999 * ms).isEmpty)  // the clock jumps far: each slot visited once
        #expect(expire(30_000 * ms) == [3])
        #expect(wheel.scheduled == 0 && wheel.nextDeadline() == nil)
        // A deadline already past fires at the next expire.
        wheel.schedule(5, at: 1)
        #expect(expire(30_000 * ms) == [5])
    }

    @Test func manyTimersAgainstAModel() {
        var wheel = TimerWheel(capacity: 512, tick: 1_000, slotCount: 32, now: 0)
        var model: [Int: UInt64] = [:]
        var rng = SeededRandom(seed: 31)
        var now: UInt64 = 0
        var out = [Int32](repeating: 0, count: 600)
        for _ in 0..<2_000 {
            let id = Int.random(in: 0..<512, using: &rng)
            if Bool.random(using: &rng) {
                let d = now + UInt64.random(in: 0..<200_000, using: &rng)
                wheel.schedule(id, at: d)
                model[id] = d
            } else {
                wheel.cancel(id)
                model[id] = nil
            }
            #expect(wheel.nextDeadline() == model.values.min())
            now += UInt64.random(in: 0..<5_000, using: &rng)
            let n = out.withUnsafeMutableBufferPointer { wheel.expire(upTo: now, into: $0.baseAddress!, max: 600) }
            let fired = Set(out[0..<n].map(Int.init))
            let due = Set(model.filter { $0.value <= now }.keys)
            #expect(fired == due)
            for id in due { model[id] = nil }
        }
    }
}

@Suite struct FixedIndexTests {
    @Test func matchesADictionaryUnderChurn() {
        var index = FixedIndex<UInt32>(capacity: 1000, placeholder: 0)
        var model: [UInt32: Int32] = [:]
        var rng = SeededRandom(seed: 8)
        for step in 0..<200_000 {
            // Keys from a small space, so inserts, replacements and removals collide.
            let key = UInt32.random(in: 0..<1500, using: &rng)
            if Int.random(in: 0..<3, using: &rng) > 0 {
                let inserted = index.insert(key, Int32(step & 0xFFFF))
                #expect(inserted == (model[key] != nil || model.count < 1000))
                if inserted { model[key] = Int32(step & 0xFFFF) }
            } else {
                let removed = index.remove(key)
                #expect(removed == (model.removeValue(forKey: key) != nil))
            }
            if step % 1000 == 0 {
                for k in UInt32(0)..<1500 { #expect(index.find(k) == model[k]) }
            }
        }
        #expect(index.count == model.count)
    }

    @Test func flowKeysAreFound() {
        var index = FixedIndex<FlowKey>(capacity: 4096, placeholder: FlowKey(
            remoteAddress: IPAddress(ipv4: 0), remotePort: UDPPort(0), localAddress: IPAddress(ipv4: 0), localPort: UDPPort(0)))
        let local = IPAddress("198.18.0.1")!
        var keys: [FlowKey] = []
        for i in 0..<4096 {
            let remote: IPAddress =
                i % 2 == 0 ? IPAddress(ipv4: 0xC612_0000 + UInt32(i)) : IPAddress(high: 0x2001_0DB8_0000_0000, low: UInt64(i))
            keys.append(FlowKey(remoteAddress: remote, remotePort: UDPPort(UInt16(1000 + i % 7)), localAddress: local, localPort: UDPPort(40000)))
        }
        var inserted = 0
        for (i, k) in keys.enumerated() where index.insert(k, Int32(i)) { inserted += 1 }
        #expect(inserted == 4096)
        for (i, k) in keys.enumerated() { #expect(index.find(k) == Int32(i)) }
        let extra = index.insert(FlowKey(remoteAddress: local, remotePort: UDPPort(1), localAddress: local, localPort: UDPPort(1)), 0)
        #expect(!extra)
    }
}

/// The backend table's publication: workers pick up a new table at their next burst, and
/// a replaced table is freed only once every worker has moved past it.
@Suite struct BackendDirectoryTests {
    static func backend(_ last: UInt8) -> Backend {
        Backend(address: IPAddress(ipv4: 0xC612_0100 | UInt32(last)), port: UDPPort(5004), mac: MACAddress(2, 0, 0, 0, 0, last))
    }

    static func firstMAC(_ table: Unmanaged<BackendTable>) -> MACAddress { table._withUnsafeGuaranteedRef { $0[0].mac } }

    @Test func replacedTablesWaitForEveryWorker() {
        weak var first: BackendTable?
        weak var second: BackendTable?
        weak var third: BackendTable?
        do {
            let directory: BackendDirectory = {
                let t = BackendTable([Self.backend(1)])
                first = t
                return BackendDirectory(t, workers: 2)
            }()
            #expect(Self.firstMAC(directory.enter(worker: 0)) == MACAddress(2, 0, 0, 0, 0, 1))
            let w1 = directory.enter(worker: 1)
            do {
                let t = BackendTable([Self.backend(2), Self.backend(3)])
                second = t
                directory.publish(t)
            }
            // Both workers may still hold the first table.
            #expect(first != nil)
            #expect(Self.firstMAC(w1) == MACAddress(2, 0, 0, 0, 0, 1))
            let w0 = directory.enter(worker: 0)
            #expect(w0._withUnsafeGuaranteedRef { $0.count } == 2 && Self.firstMAC(w0) == MACAddress(2, 0, 0, 0, 0, 2))
            #expect(directory.reclaim() == 1 && first != nil, "worker 1 has not moved on")
            // A worker that sleeps holds nothing.
            directory.leave(worker: 1)
            #expect(directory.reclaim() == 0 && first == nil)
            do {
                let t = BackendTable([Self.backend(4)])
                third = t
                directory.publish(t)
            }
            _ = directory.enter(worker: 0)
            _ = directory.enter(worker: 1)
            #expect(directory.reclaim() == 0 && second == nil)
            #expect(directory.table.count == 1 && third != nil)
        }
        #expect(third == nil, "the directory releases its current table")
    }

    @Test func workersSeeEveryPublicationWithoutTornTables() async {
        let directory = BackendDirectory(BackendTable([Self.backend(0)]), workers: 2)
        final class Flag: Sendable { let value = Atomic<Bool>(false) }
        let stop = Flag()
        async let readers: [Int] = withTaskGroup(of: Int.self) { group in
            for w in 0..<2 {
                group.addTask {
                    var bad = 0
                    while !stop.value.load(ordering: .acquiring) {
                        // Every table holds copies of one backend: a mix would be torn.
                        bad += directory.enter(worker: w)._withUnsafeGuaranteedRef { t in
                            (0..<t.count).filter { t[$0].mac != t[0].mac }.count
                        }
                    }
                    directory.leave(worker: w)
                    return bad
                }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        for round in 1...2000 {
            let b = Self.backend(UInt8(truncatingIfNeeded: round))
            directory.publish(BackendTable(Array(repeating: b, count: 1 + round % 7)))
        }
        stop.value.store(true, ordering: .releasing)
        #expect(await readers == [0, 0])
        #expect(directory.reclaim() == 0)
    }
}

@Suite struct DoorbellTests {
    @Test func ringsOnlyASleepingWorker() {
        let bell = Doorbell()
        var p = pollfd(fd: bell.fd, events: Int16(POLLIN), revents: 0)
        bell.ring()
        #expect(poll(&p, 1, 0) == 0, "an awake worker is not interrupted")
        bell.willSleep()
        bell.ring()
        #expect(poll(&p, 1, 0) == 1)
        bell.woke()
        #expect(poll(&p, 1, 0) == 0, "waking clears it")
    }
}
