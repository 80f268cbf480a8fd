//! Kernel clock hook. Boot code has no calibrated timer; whoever brings one
//! up (TSC/APIC timer) registers it with [`set_clock`], and from then on log
//! lines carry a timestamp.

use spin::Once;

/// Set once; read lock-free by every CPU (a lock here would make a CPU
/// that finds it held by another log without a timestamp).
static CLOCK: Once<fn() -> u64> = Once::new();

/// Registers the milliseconds-since-boot source used by [`now_ms`]. The
/// first registration wins: the clock never changes under a reader.
pub fn set_clock(clock: fn() -> u64) {
    CLOCK.call_once(|| clock);
}

/// Milliseconds since boot, or `None` before a clock is registered.
/// Readers never wait, so a fault inside the logger cannot deadlock here.
pub fn now_ms() -> Option<u64> {
    Some(CLOCK.get()?())
}
