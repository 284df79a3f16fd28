import Glibc

/// `CLOCK_MONOTONIC` in nanoseconds: the one clock the workers, the control thread and the
/// tools read. Workers read it once per burst and pass it into the sans-IO cores.
public enum MonotonicClock {
    /// Nanoseconds since an arbitrary fixed point. The corresponding C function is `clock_gettime`.
    @inlinable
    public static func now() -> UInt64 {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return UInt64(t.tv_sec) &* 1_000_000_000 &+ UInt64(t.tv_nsec)
    }

    /// Sleeps until `ns` on this clock. The corresponding C function is `clock_nanosleep`.
    public static func sleep(until ns: UInt64) {
        var t = timespec(tv_sec: Int(ns / 1_000_000_000), tv_nsec: Int(ns % 1_000_000_000))
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, nil)
    }
}
