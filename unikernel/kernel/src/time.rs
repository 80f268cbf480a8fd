//! Kernel clock hook. Boot code has no calibrated timer; whoever brings one
//! up (TSC/APIC timer) registers it with [`set_clock`], and from then on log
//! lines carry a timestamp.

use spin::Mutex;

static CLOCK: Mutex<Option<fn() -> u64>> = Mutex::new(None);

/// Registers the milliseconds-since-boot source used by [`now_ms`].
pub fn set_clock(clock: fn() -> u64) {
    x86_64::instructions::interrupts::without_interrupts(|| *CLOCK.lock() = Some(clock));
}

/// Milliseconds since boot, or `None` before a clock is registered (or
/// while it is being replaced: readers never wait, so a fault inside the
/// logger cannot deadlock here).
pub fn now_ms() -> Option<u64> {
    let clock = (*CLOCK.try_lock()?)?;
    Some(clock())
}
