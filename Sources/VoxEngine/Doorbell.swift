import CVoxLinux
import Glibc
import Synchronization

/// Wakes a worker that sleeps in `poll()` when the control side has pushed it a command:
/// an eventfd the worker polls beside its socket. Ringing costs a system call only while
/// the worker sleeps (it says so with `sleeping`), so a busy worker is never interrupted.
public final class Doorbell: @unchecked Sendable {
    /// Readable when rung; the worker puts it in its poll set.
    public let fd: Int32
    let sleeping = Atomic<Bool>(false)

    public init() {
        fd = vox_eventfd()
        precondition(fd >= 0, "eventfd: \(-fd)")
    }

    deinit { close(fd) }

    /// Control side, after pushing a command.
    public func ring() {
        // The command (or hand-off) was pushed with a release store; order it before the
        // load of `sleeping`, as the worker orders its flag before its look at the rings.
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        guard sleeping.load(ordering: .sequentiallyConsistent) else { return }
        var one: UInt64 = 1
        _ = write(fd, &one, 8)
    }

    /// Rings whether or not the worker sleeps (shutdown).
    public func ringAlways() {
        var one: UInt64 = 1
        _ = write(fd, &one, 8)
    }

    /// Worker side: about to sleep. The worker checks its command ring once more after
    /// this (a command pushed before the flag was seen would otherwise wait for a packet).
    public func willSleep() { sleeping.store(true, ordering: .sequentiallyConsistent) }

    /// Worker side: awake again; clears a pending ring.
    public func woke() {
        sleeping.store(false, ordering: .sequentiallyConsistent)
        var value: UInt64 = 0
        _ = read(fd, &value, 8)
    }
}
