//! The time-stamp counter as the kernel's monotonic clock, calibrated
//! without a busy wait on the boot path.
//!
//! Neither CPUID leaf 0x15/0x16 nor a hypervisor leaf gives the TSC
//! frequency under QEMU TCG, so it is measured against a reference clock.
//! Linux waits for it (`pit_hpet_ptimer_calibrate_cpu()` spins 10 ms or
//! more against the PIT, with the ACPI PM timer as the reference); here the
//! reference is read once early ([`start_calibration`], right after ACPI)
//! and once more when the clock is first wanted at least
//! [`CALIBRATE_MIN_US`] later ([`clock_ready`]): the boot keeps working in
//! between, so calibration costs two port reads. Whatever the boot logs
//! before then is held by the logger and printed with its real timestamp
//! once the frequency is known. At the end of boot [`refine`] measures again
//! over the whole boot (cf. `tsc_refine_calibration_work()`), rebasing so
//! that time never runs backwards.
//!
//! The reference is the ACPI PM timer (3.579545 MHz, 24 or 32 bits, from the
//! FADT; q35 and pc both have one). Without it (QEMU `microvm`, whose ACPI
//! is hardware-reduced or off, and Firecracker) the same two readings are
//! taken of the PIT's channel 0, counting down once from 0xffff in mode 0:
//! the read-back command latches its count and its OUT pin, which rises at
//! terminal count, 54.9 ms on, so a window that long is seen as such and
//! started again rather than misread (cf. `pit_hpet_ptimer_calibrate_cpu()`,
//! which uses channel 2 — gated through port 0x61, which `microvm` lacks).
//! Only if the PIT does not count either does the kernel run without a clock.
//! Times are counted from [`mark_boot`] (kernel entry), not from machine
//! reset.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use x86_64::instructions::port::Port;

/// PIT input clock (Hz).
const PIT_HZ: u64 = 1_193_182;
/// ACPI PM timer clock (Hz), fixed by the ACPI spec (§4.8.3.3).
const PM_TIMER_HZ: u64 = 3_579_545;
/// Shortest window the PM-timer calibration accepts: one PM tick and the
/// read skew (about a microsecond under TCG) stay below 0.05 %.
pub const CALIBRATE_MIN_US: u64 = 2_000;
/// PIT channel 0's initial count: the longest window, 54.9 ms.
const PIT_START: u16 = 0xffff;

/// Set when no reference clock answered: time stands still.
static NO_CLOCK: AtomicBool = AtomicBool::new(false);
/// Calibrated frequency in kHz; 0 until calibrated.
static TSC_KHZ: AtomicU64 = AtomicU64::new(0);
/// The TSC at kernel entry: time zero.
static TSC_BOOT: AtomicU64 = AtomicU64::new(0);
/// `now = BASE_NS + (tsc - BASE_TSC) / khz`: [`refine`] moves the base so a
/// new frequency applies from now on, without a jump.
static BASE_TSC: AtomicU64 = AtomicU64::new(0);
static BASE_NS: AtomicU64 = AtomicU64::new(0);
/// The PM timer's I/O port (0: none) and counter mask.
static PM_PORT: AtomicU64 = AtomicU64::new(0);
static PM_MASK: AtomicU64 = AtomicU64::new(0);
/// The (TSC, PM timer) pair taken by [`start_calibration`].
static CAL_TSC0: AtomicU64 = AtomicU64::new(0);
static CAL_PM0: AtomicU64 = AtomicU64::new(0);
/// PM ticks the first calibration measured over.
static CAL_PM_TICKS: AtomicU64 = AtomicU64::new(0);
/// Set when the reference is PIT channel 0 (no PM timer).
static PIT_REF: AtomicBool = AtomicBool::new(false);

/// The current TSC.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC only reads the counter; every x86_64 CPU has it and the
    // kernel never sets CR4.TSD in a way that matters at CPL 0.
    #[allow(unused_unsafe)]
    unsafe {
        core::arch::x86_64::_rdtsc()
    }
}

/// Records the TSC at kernel entry: time zero for [`now_us`].
pub fn mark_boot() {
    let now = rdtsc();
    if TSC_BOOT
        .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed)
        .is_ok()
    {
        BASE_TSC.store(now, Ordering::Relaxed);
    }
}

/// TSC ticks since kernel entry: what the logger stamps a record with
/// before the frequency is known.
pub fn ticks_since_boot() -> u64 {
    rdtsc().saturating_sub(TSC_BOOT.load(Ordering::Relaxed))
}

/// Whether calibration failed for good (no PM timer, no PIT).
pub fn calibration_failed() -> bool {
    NO_CLOCK.load(Ordering::Relaxed)
}

/// TSC frequency in kHz, 0 before calibration.
pub fn tsc_khz() -> u64 {
    TSC_KHZ.load(Ordering::Relaxed)
}

/// A TSC rate no machine this boots on exceeds (5 GHz): with no calibrated
/// rate, [`delay_us`] counts ticks at it, so it waits at least as long as
/// asked.
const DELAY_FALLBACK_KHZ: u64 = 5_000_000;

/// Busy-waits at least `us` microseconds on the TSC (cf. `udelay()`), for
/// the waits a device protocol prescribes, such as the SDM's INIT–SIPI
/// delays of AP bring-up; nothing on the boot path calls it otherwise.
/// Finishes the calibration first if it can.
pub fn delay_us(us: u64) {
    let khz = if clock_ready() {
        tsc_khz()
    } else {
        DELAY_FALLBACK_KHZ
    };
    let end = rdtsc().saturating_add(us.saturating_mul(khz) / 1000);
    while rdtsc() < end {
        core::hint::spin_loop();
    }
}

/// One (TSC, PM timer) reading, the TSC read right after the port.
fn pm_pair(port: u16) -> (u64, u64) {
    let mut p = Port::<u32>::new(port);
    // SAFETY: `port` is the FADT's PM_TMR_BLK, a read-only 32-bit counter
    // register with no side effects on read.
    let pm = unsafe { p.read() };
    (rdtsc(), u64::from(pm))
}

/// Starts the calibration against the ACPI PM timer at I/O port `port`
/// (`bits`: 24, or 32 with the FADT's TMR_VAL_EXT): one reading now, the
/// other when the clock is first wanted. With `None` the PIT fallback runs
/// at once.
pub fn start_calibration(pm_timer: Option<(u16, u8)>) {
    mark_boot();
    let Some((port, bits)) = pm_timer else {
        log::info!("tsc: no ACPI PM timer; calibrating against PIT channel 0");
        pit_start();
        return;
    };
    let (tsc, pm) = pm_pair(port);
    PM_MASK.store(
        if bits >= 32 {
            u64::from(u32::MAX)
        } else {
            0xff_ffff
        },
        Ordering::Relaxed,
    );
    CAL_TSC0.store(tsc, Ordering::Relaxed);
    CAL_PM0.store(pm, Ordering::Relaxed);
    PM_PORT.store(u64::from(port), Ordering::Relaxed);
}

/// Reference ticks (at `hz`) and TSC ticks since [`start_calibration`],
/// from whichever reference runs.
fn ref_window() -> Option<(u64, u64, u64)> {
    if PIT_REF.load(Ordering::Relaxed) {
        return pit_window().map(|(pit, tsc)| (pit, tsc, PIT_HZ));
    }
    pm_window().map(|(pm, tsc)| (pm, tsc, PM_TIMER_HZ))
}

/// PM ticks and TSC ticks since [`start_calibration`].
fn pm_window() -> Option<(u64, u64)> {
    let port = PM_PORT.load(Ordering::Relaxed) as u16;
    if port == 0 {
        return None;
    }
    let (tsc, pm) = pm_pair(port);
    let mask = PM_MASK.load(Ordering::Relaxed);
    let pm_ticks = pm.wrapping_sub(CAL_PM0.load(Ordering::Relaxed)) & mask;
    Some((pm_ticks, tsc.wrapping_sub(CAL_TSC0.load(Ordering::Relaxed))))
}

/// Whether the clock runs; finishes the calibration if its window is long
/// enough. Never waits.
pub fn clock_ready() -> bool {
    if TSC_KHZ.load(Ordering::Relaxed) != 0 {
        return true;
    }
    // A PIT sample is a dozen port accesses (each an exit to QEMU's device
    // model): none until the window can have reached its length with a TSC
    // of 1 GHz or more, i.e. about half of it on these 2 GHz hosts.
    if PIT_REF.load(Ordering::Relaxed)
        && rdtsc().wrapping_sub(CAL_TSC0.load(Ordering::Relaxed)) < CALIBRATE_MIN_US * 1_000
    {
        return false;
    }
    let Some((ref_ticks, tsc_ticks, hz)) = ref_window() else {
        return false;
    };
    if ref_ticks * 1_000_000 < CALIBRATE_MIN_US * hz {
        return false;
    }
    let khz = (u128::from(tsc_ticks) * u128::from(hz) / u128::from(ref_ticks) / 1000) as u64;
    // In PM-timer ticks, whichever clock measured (the log's "over N us").
    CAL_PM_TICKS.store(ref_ticks * PM_TIMER_HZ / hz, Ordering::Relaxed);
    TSC_KHZ.store(khz.max(1), Ordering::Relaxed);
    true
}

/// Finishes the calibration now, waiting out what is left of
/// [`CALIBRATE_MIN_US`] if the boot got here sooner (it normally does not).
/// Returns the frequency in kHz, 0 if there is no clock.
pub fn finish_calibration() -> u64 {
    let pit = PIT_REF.load(Ordering::Relaxed);
    if PM_PORT.load(Ordering::Relaxed) == 0 && !pit {
        return tsc_khz();
    }
    // Bounded: 2 ms of reference ticks, or a reference that never moves.
    for _ in 0..10_000_000u32 {
        if clock_ready() {
            break;
        }
        core::hint::spin_loop();
    }
    let khz = tsc_khz();
    let reference = if pit {
        "PIT channel 0"
    } else {
        "the ACPI PM timer"
    };
    if khz == 0 {
        NO_CLOCK.store(true, Ordering::Relaxed);
        log::error!("tsc: {reference} does not move; no clock");
        return 0;
    }
    log::info!(
        "tsc: {}.{:03} MHz (against {reference} over {} us of boot, no wait){}",
        khz / 1000,
        khz % 1000,
        CAL_PM_TICKS.load(Ordering::Relaxed) * 1_000_000 / PM_TIMER_HZ,
        invariant_note()
    );
    khz
}

/// Measures the frequency again over everything since
/// [`start_calibration`] (cf. `tsc_refine_calibration_work()`), and applies
/// it from now on. Call once, at the end of boot.
pub fn refine() {
    // With the PIT, a window past 54.9 ms has wrapped and `ref_window`
    // says so (`None`): a longer boot keeps the first figure.
    let Some((pm_ticks, tsc_ticks, hz)) = ref_window() else {
        return;
    };
    let old = tsc_khz();
    // The 24-bit PM timer wraps after 4.7 s: a longer boot keeps the first
    // figure.
    if old == 0 || pm_ticks == 0 || tsc_ticks / old >= 4_000 {
        return;
    }
    let khz = (u128::from(tsc_ticks) * u128::from(hz) / u128::from(pm_ticks) / 1000) as u64;
    let (now_tsc, now_ns) = (rdtsc(), now_ns_at(rdtsc()));
    BASE_NS.store(now_ns, Ordering::Relaxed);
    BASE_TSC.store(now_tsc, Ordering::Relaxed);
    TSC_KHZ.store(khz.max(1), Ordering::Relaxed);
    log::info!(
        "tsc: refined to {}.{:03} MHz over {} ms of boot (was {}.{:03})",
        khz / 1000,
        khz % 1000,
        pm_ticks * 1000 / hz,
        old / 1000,
        old % 1000
    );
}

fn invariant_note() -> &'static str {
    if x86_64_invariant_tsc() {
        ", invariant"
    } else {
        ", not flagged invariant"
    }
}

/// Read-backs per PIT sample; the one with the tightest TSC bracket wins.
const PIT_TRIES: usize = 3;

/// Latches and reads PIT channel 0 with the read-back command (8254
/// datasheet, "Read-Back Command"): OUT (status bit 7) and the count, with
/// the TSC at the latch. The latch is bracketed by two TSC reads and the
/// tightest of [`PIT_TRIES`] brackets is kept (cf. `pit_expect_msb()`'s
/// bracketing): on a busy host the vCPU may be descheduled for
/// milliseconds, which would otherwise land inside the 2 ms window.
fn pit_read() -> (u64, bool, u16) {
    let mut cmd = Port::<u8>::new(0x43);
    let mut ch0 = Port::<u8>::new(0x40);
    let mut best: Option<(u64, u64, bool, u16)> = None;
    for _ in 0..PIT_TRIES {
        // SAFETY: 0x43 (mode/command) and 0x40 (channel 0 data) are the
        // PC's fixed PIT ports; read-back 0xc2 latches channel 0's status
        // and count, which the next three reads return. Interrupts are off
        // and nothing else uses the PIT (IRQ 0 stays masked at the 8259
        // and the IOAPIC).
        let (before, after, status, lo, hi) = unsafe {
            let before = rdtsc();
            cmd.write(0xc2);
            let after = rdtsc();
            (before, after, ch0.read(), ch0.read(), ch0.read())
        };
        let width = after.wrapping_sub(before);
        if best.is_none_or(|(w, ..)| width < w) {
            let mid = before + width / 2;
            best = Some((
                width,
                mid,
                status & 0x80 != 0,
                u16::from(lo) | u16::from(hi) << 8,
            ));
        }
    }
    let (_, tsc, out, count) = best.unwrap_or((0, rdtsc(), true, 0));
    (tsc, out, count)
}

/// Starts PIT channel 0 counting down once from [`PIT_START`] (mode 0:
/// OUT low until terminal count) and takes the first (TSC, count) pair.
fn pit_start() {
    let mut cmd = Port::<u8>::new(0x43);
    let mut ch0 = Port::<u8>::new(0x40);
    // SAFETY: as in `pit_read`; 0x30 = channel 0, lobyte/hibyte, mode 0,
    // binary, then the count. Its interrupt (IRQ 0) is masked everywhere.
    unsafe {
        cmd.write(0x30);
        ch0.write(PIT_START as u8);
        ch0.write((PIT_START >> 8) as u8);
    }
    let (tsc, _, count) = pit_read();
    CAL_TSC0.store(tsc, Ordering::Relaxed);
    CAL_PM0.store(u64::from(count), Ordering::Relaxed);
    PIT_REF.store(true, Ordering::Relaxed);
}

/// PIT ticks and TSC ticks since [`pit_start`]; if channel 0 already
/// reached terminal count (the window passed 54.9 ms, and the count
/// wrapped), the window starts again and this says `None`.
fn pit_window() -> Option<(u64, u64)> {
    let (tsc, out, count) = pit_read();
    if out {
        pit_start();
        return None;
    }
    let ticks = CAL_PM0
        .load(Ordering::Relaxed)
        .saturating_sub(u64::from(count));
    Some((ticks, tsc.wrapping_sub(CAL_TSC0.load(Ordering::Relaxed))))
}

/// CPUID 0x8000_0007 EDX bit 8.
fn x86_64_invariant_tsc() -> bool {
    // SAFETY: CPUID is available on every x86_64 CPU and only reads.
    #[allow(unused_unsafe)]
    let cpuid = |leaf| unsafe { core::arch::x86_64::__cpuid(leaf) };
    let max_ext = cpuid(0x8000_0000).eax;
    max_ext >= 0x8000_0007 && cpuid(0x8000_0007).edx & (1 << 8) != 0
}

/// Nanoseconds since kernel entry at TSC reading `tsc` (which may lie
/// before the base [`refine`] moved).
fn now_ns_at(tsc: u64) -> u64 {
    let khz = TSC_KHZ.load(Ordering::Relaxed);
    if khz == 0 {
        return 0;
    }
    let (base_tsc, base_ns) = (
        BASE_TSC.load(Ordering::Relaxed),
        BASE_NS.load(Ordering::Relaxed),
    );
    let ns = |ticks: u64| (u128::from(ticks) * 1_000_000 / u128::from(khz)) as u64;
    if tsc >= base_tsc {
        base_ns + ns(tsc - base_tsc)
    } else {
        base_ns.saturating_sub(ns(base_tsc - tsc))
    }
}

/// Nanoseconds since kernel entry of a TSC reading taken `ticks` after
/// entry (the logger's held records), 0 before calibration.
pub fn ticks_to_ns(ticks: u64) -> u64 {
    now_ns_at(TSC_BOOT.load(Ordering::Relaxed).saturating_add(ticks))
}

/// Microseconds since kernel entry (0 before calibration).
pub fn now_us() -> u64 {
    now_ns() / 1000
}

/// Nanoseconds since kernel entry (0 before calibration): trace
/// timestamps. No lock, no allocation.
pub fn now_ns() -> u64 {
    now_ns_at(rdtsc())
}

/// Milliseconds since kernel entry.
pub fn now_ms() -> u64 {
    now_us() / 1000
}
