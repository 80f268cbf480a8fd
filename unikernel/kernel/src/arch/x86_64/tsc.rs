//! The time-stamp counter as the kernel's monotonic clock, calibrated at
//! boot against PIT channel 2 (cf. `arch/x86/kernel/tsc.c:pit_calibrate_tsc()`).
//!
//! Channel 2's gate is software-controlled through port 0x61 and its output
//! readable there (bit 5), so it can time a known interval without
//! interrupts: load a count for N ms in mode 0 (OUT goes high at terminal
//! count), spin until OUT is high, and compare TSC readings. The median of a
//! few short runs is kept. Times are counted from [`mark_boot`] (kernel
//! entry), not from machine reset.

use core::sync::atomic::{AtomicU64, Ordering};

use x86_64::instructions::port::Port;

/// PIT input clock (Hz).
const PIT_HZ: u64 = 1_193_182;
/// Length of one calibration run.
const CALIBRATE_MS: u64 = 5;
const RUNS: usize = 3;

static TSC_KHZ: AtomicU64 = AtomicU64::new(0);
static TSC_BOOT: AtomicU64 = AtomicU64::new(0);

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
    let _ = TSC_BOOT.compare_exchange(0, rdtsc(), Ordering::Relaxed, Ordering::Relaxed);
}

/// TSC frequency in kHz, 0 before [`calibrate`].
pub fn tsc_khz() -> u64 {
    TSC_KHZ.load(Ordering::Relaxed)
}

/// Times `ms` milliseconds of PIT channel 2; returns TSC ticks elapsed, or
/// `None` if OUT never rose (no PIT).
fn pit_run(ms: u64) -> Option<u64> {
    let latch = (PIT_HZ * ms / 1000) as u16;
    let mut port61 = Port::<u8>::new(0x61);
    let mut cmd = Port::<u8>::new(0x43);
    let mut ch2 = Port::<u8>::new(0x42);
    // SAFETY: 0x61 (NMI status/control: bit 0 gate 2, bit 1 speaker), 0x43
    // (PIT mode) and 0x42 (channel 2 data) are the PC's fixed PIT ports;
    // channel 2 drives only the speaker, which stays off (bit 1 clear).
    // Interrupts are off: nobody else uses the PIT.
    let t0 = unsafe {
        let v = port61.read();
        port61.write((v & !0x02) | 0x01);
        cmd.write(0xb0); // channel 2, lobyte/hibyte, mode 0, binary
        ch2.write(latch as u8);
        ch2.write((latch >> 8) as u8);
        rdtsc()
    };
    // Far more than `ms` even under slow emulation; bounds a missing PIT.
    let mut spins: u64 = 0;
    // SAFETY: reading port 0x61 has no side effects.
    while unsafe { port61.read() } & 0x20 == 0 {
        spins += 1;
        if spins > 200_000_000 {
            return None;
        }
    }
    Some(rdtsc() - t0)
}

/// Calibrates the TSC and returns its frequency in kHz (0 if the PIT did
/// not answer: then time stands still, which is logged loudly).
pub fn calibrate() -> u64 {
    mark_boot();
    let mut runs = [0u64; RUNS];
    for r in &mut runs {
        match pit_run(CALIBRATE_MS) {
            Some(ticks) => *r = ticks,
            None => {
                log::error!("tsc: PIT channel 2 never reached terminal count; no clock");
                return 0;
            }
        }
    }
    runs.sort_unstable();
    let khz = runs[RUNS / 2] / CALIBRATE_MS;
    TSC_KHZ.store(khz, Ordering::Relaxed);
    let invariant = x86_64_invariant_tsc();
    log::info!(
        "tsc: {}.{:03} MHz (PIT ch2, median of {RUNS} x {CALIBRATE_MS} ms: {:?} ticks){}",
        khz / 1000,
        khz % 1000,
        runs,
        if invariant {
            ", invariant"
        } else {
            ", not flagged invariant"
        }
    );
    khz
}

/// CPUID 0x8000_0007 EDX bit 8.
fn x86_64_invariant_tsc() -> bool {
    // SAFETY: CPUID is available on every x86_64 CPU and only reads.
    #[allow(unused_unsafe)]
    let cpuid = |leaf| unsafe { core::arch::x86_64::__cpuid(leaf) };
    let max_ext = cpuid(0x8000_0000).eax;
    max_ext >= 0x8000_0007 && cpuid(0x8000_0007).edx & (1 << 8) != 0
}

/// Microseconds since kernel entry (0 before calibration).
pub fn now_us() -> u64 {
    let khz = TSC_KHZ.load(Ordering::Relaxed);
    if khz == 0 {
        return 0;
    }
    let ticks = rdtsc().saturating_sub(TSC_BOOT.load(Ordering::Relaxed));
    (u128::from(ticks) * 1000 / u128::from(khz)) as u64
}

/// Nanoseconds since kernel entry (0 before calibration): trace
/// timestamps. No lock, no allocation.
pub fn now_ns() -> u64 {
    let khz = TSC_KHZ.load(Ordering::Relaxed);
    if khz == 0 {
        return 0;
    }
    let ticks = rdtsc().saturating_sub(TSC_BOOT.load(Ordering::Relaxed));
    (u128::from(ticks) * 1_000_000 / u128::from(khz)) as u64
}

/// Milliseconds since kernel entry.
pub fn now_ms() -> u64 {
    now_us() / 1000
}

/// Busy-waits `us` microseconds (calibration of other timers only).
pub fn delay_us(us: u64) {
    let khz = TSC_KHZ.load(Ordering::Relaxed);
    let end = rdtsc().saturating_add(us.saturating_mul(khz) / 1000);
    while rdtsc() < end {
        core::hint::spin_loop();
    }
}
