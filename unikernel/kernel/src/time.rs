//! Kernel time since entry, and the boot phases measured with it.
//!
//! The clock is the TSC ([`crate::arch::x86_64::tsc`]), whose frequency is
//! only known a few milliseconds into the boot: until then [`now_us`] is
//! `None`, and the logger holds what is logged, stamped with raw TSC ticks,
//! to print it with its real time once the clock runs (as Linux replays its
//! log buffer when a console registers).
//!
//! Boot phases (cf. `initcall_debug`): [`boot_phase`] marks the end of one
//! with a `boot: NAME done` console line, timestamped like every line, and
//! [`boot_summary`] prints the durations of all of them in one line.

use core::fmt::Write;
use core::sync::atomic::{AtomicUsize, Ordering};

use spin::Mutex;

use crate::arch::x86_64::tsc;

/// Whether the clock runs, or will.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClockState {
    /// Calibration under way: timestamps come later.
    Pending,
    /// Calibrated.
    Running,
    /// No reference clock answered: time stands still.
    Absent,
}

/// The clock's state; finishes the calibration if its window is long
/// enough (never waits).
pub fn clock_state() -> ClockState {
    if tsc::clock_ready() {
        ClockState::Running
    } else if tsc::calibration_failed() {
        ClockState::Absent
    } else {
        ClockState::Pending
    }
}

/// Microseconds since kernel entry, or `None` before the clock runs.
pub fn now_us() -> Option<u64> {
    tsc::clock_ready().then(tsc::now_us)
}

/// Milliseconds since kernel entry, or `None` before the clock runs.
pub fn now_ms() -> Option<u64> {
    now_us().map(|us| us / 1000)
}

/// Phases recorded (the boot has about a dozen).
const MAX_PHASES: usize = 24;

/// One phase: its name and the TSC ticks since entry when it ended.
#[derive(Clone, Copy)]
struct Phase {
    name: &'static str,
    ticks: u64,
}

static PHASES: Mutex<[Phase; MAX_PHASES]> = Mutex::new([Phase { name: "", ticks: 0 }; MAX_PHASES]);
static NR_PHASES: AtomicUsize = AtomicUsize::new(0);

/// Marks the end of boot phase `name` (it began where the previous one
/// ended, the first at kernel entry): a `boot: NAME done` line.
pub fn boot_phase(name: &'static str) {
    let ticks = tsc::ticks_since_boot();
    x86_64::instructions::interrupts::without_interrupts(|| {
        let n = NR_PHASES.load(Ordering::Relaxed);
        if n < MAX_PHASES {
            PHASES.lock()[n] = Phase { name, ticks };
            NR_PHASES.store(n + 1, Ordering::Relaxed);
        }
    });
    log::info!("boot: {name} done");
}

/// Every phase's duration so far, in milliseconds, and the total (cf.
/// `systemd-analyze`'s one-liner): `boot: NAME after T ms:` (T: the end
/// of the last phase) and the phases (`cpu 0.123, …`), on as many lines
/// as they need.
pub fn boot_summary(name: &'static str) {
    let ms = |ns: u64| (ns / 1_000_000, (ns / 1000) % 1000);
    let phases = *PHASES.lock();
    let n = NR_PHASES.load(Ordering::Relaxed);
    let end = phases[..n].last().map_or(0, |p| p.ticks);
    let (s, f) = ms(tsc::ticks_to_ns(end));
    let mut line = crate::logger::LineBuf::new();
    let _ = write!(line, "boot: {name} after {s}.{f:03} ms:");
    let mut prev_ns = 0;
    for p in &phases[..n] {
        let ns = tsc::ticks_to_ns(p.ticks);
        let (s, f) = ms(ns.saturating_sub(prev_ns));
        prev_ns = ns;
        if line.len() > 160 {
            log::info!("{},", line.as_str());
            line = crate::logger::LineBuf::new();
            let _ = write!(line, "boot:  ");
        } else if !line.as_str().ends_with(':') {
            let _ = write!(line, ",");
        }
        let _ = write!(line, " {} {s}.{f:03}", p.name);
    }
    log::info!("{}", line.as_str());
}
