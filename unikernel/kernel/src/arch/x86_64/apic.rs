//! The local APIC in xAPIC mode (MMIO through `ioremap`): enabled with a
//! spurious vector, its one-shot timer calibrated against the TSC, EOI.
//! (cf. `arch/x86/kernel/apic/apic.c`: `setup_local_APIC()`,
//! `calibrate_APIC_clock()`, `lapic_next_event()`).
//!
//! Linux's `calibrate_APIC_clock()` waits out a tick (100 ms of jiffies);
//! here the timer is started counting down, masked, in [`init`], and read
//! the first time it is armed ([`arm_oneshot_us`], when the main loop first
//! goes idle): the rest of the boot is the calibration window, and nothing
//! waits for it.
//!
//! The timer is the idle loop's alarm clock: the main loop arms it for the
//! network stack's next deadline and sleeps in `hlt`; the interrupt only
//! records that it fired. No periodic tick exists.

use core::sync::atomic::{AtomicU64, Ordering};

use x86_64::registers::model_specific::Msr;

use super::idt::{self, TrapFrame};

/// Vector of the APIC timer (as Linux's `LOCAL_TIMER_VECTOR`).
pub const TIMER_VECTOR: u8 = 0xec;
/// Vector of APIC internal errors (`ERROR_APIC_VECTOR`).
pub const ERROR_VECTOR: u8 = 0xfe;
/// Spurious-interrupt vector (`SPURIOUS_APIC_VECTOR`); never EOI'd.
pub const SPURIOUS_VECTOR: u8 = 0xff;

const IA32_APIC_BASE: u32 = 0x1b;
const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_BASE_X2APIC: u64 = 1 << 10;

const REG_ID: usize = 0x20;
const REG_VERSION: usize = 0x30;
const REG_TPR: usize = 0x80;
const REG_EOI: usize = 0xb0;
const REG_SVR: usize = 0xf0;
const REG_ESR: usize = 0x280;
const REG_LVT_TIMER: usize = 0x320;
const REG_LVT_LINT0: usize = 0x350;
const REG_LVT_LINT1: usize = 0x360;
const REG_LVT_ERROR: usize = 0x370;
const REG_TIMER_INIT: usize = 0x380;
const REG_TIMER_CURRENT: usize = 0x390;
const REG_TIMER_DIVIDE: usize = 0x3e0;

const LVT_MASKED: u32 = 1 << 16;
const SVR_ENABLE: u32 = 1 << 8;
/// Divide configuration 0b0011: the bus clock / 16.
const DIVIDE_BY_16: u32 = 0x3;

/// Virtual address of the register page (0 until [`init`]).
static BASE: AtomicU64 = AtomicU64::new(0);
/// Timer ticks per millisecond at divide-by-16; 0 until calibrated.
static TICKS_PER_MS: AtomicU64 = AtomicU64::new(0);
/// TSC nanoseconds when the calibration count-down started.
static CAL_START_NS: AtomicU64 = AtomicU64::new(0);
/// Shortest calibration window accepted (the boot always gives more).
const CALIBRATE_MIN_NS: u64 = 1_000_000;
static TIMER_IRQS: AtomicU64 = AtomicU64::new(0);

fn read(reg: usize) -> u32 {
    let base = BASE.load(Ordering::Relaxed);
    debug_assert_ne!(base, 0);
    // SAFETY: `base` is the ioremap (uncached) mapping of the 4 KiB xAPIC
    // register page, set once by `init` before any caller; `reg` is one of
    // the aligned register offsets above, inside that page. Volatile:
    // device registers.
    unsafe { core::ptr::with_exposed_provenance::<u32>(base as usize + reg).read_volatile() }
}

fn write(reg: usize, value: u32) {
    let base = BASE.load(Ordering::Relaxed);
    debug_assert_ne!(base, 0);
    // SAFETY: as in `read`.
    unsafe {
        core::ptr::with_exposed_provenance_mut::<u32>(base as usize + reg).write_volatile(value)
    }
}

/// Signals end of interrupt to the local APIC (all non-spurious vectors).
pub fn eoi() {
    write(REG_EOI, 0);
}

/// Enables the local APIC and calibrates its timer against the TSC (which
/// must be calibrated). Returns false, with a log line, if the APIC cannot
/// be used (x2APIC-only firmware state, ioremap refused).
pub fn init(acpi_base: u64) -> bool {
    // SAFETY: IA32_APIC_BASE exists on every CPU with an APIC (all x86_64).
    let msr = unsafe { Msr::new(IA32_APIC_BASE).read() };
    if msr & APIC_BASE_X2APIC != 0 {
        log::error!("apic: firmware left x2APIC mode on; xAPIC MMIO unusable, no timer/IRQs");
        return false;
    }
    let phys = msr & 0x000f_ffff_ffff_f000;
    if phys != acpi_base {
        log::warn!(
            "apic: MADT says LAPIC at {acpi_base:#x}, IA32_APIC_BASE {phys:#x}; using the MSR"
        );
    }
    if msr & APIC_BASE_ENABLE == 0 {
        // SAFETY: setting the global enable bit with the same base.
        unsafe { Msr::new(IA32_APIC_BASE).write(msr | APIC_BASE_ENABLE) };
    }
    let virt = match crate::memory::ioremap::ioremap_caller(phys, 0x1000, "LAPIC") {
        Ok(v) => v.0,
        Err(e) => {
            log::error!("apic: ioremap of {phys:#x}: {e}");
            return false;
        }
    };
    BASE.store(virt, Ordering::Relaxed);

    idt::set_irq_handler(TIMER_VECTOR, timer_interrupt);
    idt::set_irq_handler(ERROR_VECTOR, error_interrupt);
    idt::set_irq_handler(SPURIOUS_VECTOR, spurious_interrupt);

    write(REG_TPR, 0);
    // The 8259s are masked: LINT0 (ExtINT) and LINT1 (NMI) are not used.
    write(REG_LVT_LINT0, LVT_MASKED);
    write(REG_LVT_LINT1, LVT_MASKED);
    write(REG_LVT_ERROR, u32::from(ERROR_VECTOR));
    write(REG_ESR, 0);
    write(REG_SVR, SVR_ENABLE | u32::from(SPURIOUS_VECTOR));

    // Calibration: count down from the top, masked; read in `calibrate()`
    // once the boot has gone on for a while.
    write(REG_TIMER_DIVIDE, DIVIDE_BY_16);
    write(REG_LVT_TIMER, LVT_MASKED | u32::from(TIMER_VECTOR));
    write(REG_TIMER_INIT, u32::MAX);
    CAL_START_NS.store(super::tsc::now_ns(), Ordering::Relaxed);

    let version = read(REG_VERSION);
    log::info!(
        "apic: LAPIC id {} version {:#x} ({} LVTs) at phys {phys:#x} (ioremap {virt:#x}); timer at /16 one-shot, vectors timer {TIMER_VECTOR:#x} error {ERROR_VECTOR:#x} spurious {SPURIOUS_VECTOR:#x}",
        read(REG_ID) >> 24,
        version & 0xff,
        ((version >> 16) & 0xff) + 1,
    );
    true
}

/// The local APIC id of this CPU (for IOAPIC destinations).
pub fn id() -> u8 {
    (read(REG_ID) >> 24) as u8
}

/// Arms the one-shot timer to fire in `us` microseconds (rounded up to a
/// tick, capped at the 32-bit counter: ~68 s at 1 GHz / 16).
pub fn arm_oneshot_us(us: u64) {
    let per_ms = match TICKS_PER_MS.load(Ordering::Relaxed) {
        0 => calibrate(),
        n => n,
    };
    let ticks = (u128::from(us) * u128::from(per_ms)).div_ceil(1000);
    let ticks = ticks.clamp(1, u128::from(u32::MAX)) as u32;
    write(REG_LVT_TIMER, u32::from(TIMER_VECTOR));
    write(REG_TIMER_INIT, ticks);
}

/// Ends the calibration started by [`init`]: timer ticks counted down
/// against TSC time elapsed (waiting only if less than
/// [`CALIBRATE_MIN_NS`] went by, which the boot never allows).
fn calibrate() -> u64 {
    let t0 = CAL_START_NS.load(Ordering::Relaxed);
    while super::tsc::now_ns().saturating_sub(t0) < CALIBRATE_MIN_NS {
        core::hint::spin_loop();
    }
    let current = read(REG_TIMER_CURRENT);
    let elapsed_ns = super::tsc::now_ns() - t0;
    write(REG_TIMER_INIT, 0);
    write(REG_LVT_TIMER, u32::from(TIMER_VECTOR)); // one-shot, unmasked
    let counted = u64::from(u32::MAX - current);
    let per_ms = ((u128::from(counted) * 1_000_000) / u128::from(elapsed_ns.max(1))) as u64;
    let per_ms = per_ms.max(1);
    TICKS_PER_MS.store(per_ms, Ordering::Relaxed);
    log::info!(
        "apic: timer {per_ms} kHz at /16, calibrated against the TSC over {} us of boot",
        elapsed_ns / 1000
    );
    per_ms
}

/// Stops the timer (writing 0 to the initial count).
pub fn cancel_timer() {
    if TICKS_PER_MS.load(Ordering::Relaxed) == 0 {
        return; // still counting for the calibration
    }
    write(REG_TIMER_INIT, 0);
}

/// Timer interrupts since boot.
pub fn timer_irqs() -> u64 {
    TIMER_IRQS.load(Ordering::Relaxed)
}

fn timer_interrupt(_frame: &mut TrapFrame) {
    TIMER_IRQS.fetch_add(1, Ordering::Relaxed);
    eoi();
}

fn error_interrupt(_frame: &mut TrapFrame) {
    // ESR must be written before reading (SDM 11.5.3).
    write(REG_ESR, 0);
    let esr = read(REG_ESR);
    eoi();
    log::warn!("apic: error interrupt, ESR {esr:#x}");
}

fn spurious_interrupt(_frame: &mut TrapFrame) {
    // No EOI for the spurious vector (SDM 11.9).
}

// ---------------------------------------------------------------------------
// Secondary CPUs and inter-processor interrupts (used by `smp`). Every CPU
// reaches its own local APIC at the same physical (and so the same
// ioremap) address.

const REG_ICR_LOW: usize = 0x300;
const REG_ICR_HIGH: usize = 0x310;
/// ICR delivery status: the previous IPI is still being sent.
const ICR_BUSY: u32 = 1 << 12;

/// ICR delivery mode INIT (`APIC_DM_INIT`).
pub const ICR_DM_INIT: u32 = 0b101 << 8;
/// ICR delivery mode Start-Up (`APIC_DM_STARTUP`); the vector is the page
/// number of the real-mode entry point.
pub const ICR_DM_STARTUP: u32 = 0b110 << 8;
/// ICR level: assert (`APIC_INT_ASSERT`).
pub const ICR_LEVEL_ASSERT: u32 = 1 << 14;
/// ICR trigger mode: level (`APIC_INT_LEVELTRIG`).
pub const ICR_TRIGGER_LEVEL: u32 = 1 << 15;

/// True once [`init`] has mapped the register page.
pub fn is_mapped() -> bool {
    BASE.load(Ordering::Relaxed) != 0
}

/// Clears the error status register and returns what it then holds (cf.
/// the `apic_write(APIC_ESR, 0); apic_read(APIC_ESR)` pairs around
/// Linux's IPIs): non-zero after an IPI means it was not accepted.
pub fn clear_esr() -> u32 {
    write(REG_ESR, 0);
    read(REG_ESR)
}

/// The ICR never went idle within its time bound.
#[derive(Clone, Copy, Debug)]
pub struct IcrBusy;

/// Waits up to `timeout_us` for the ICR's delivery status to clear (cf.
/// `native_safe_apic_wait_icr_idle()`, which gives up after 100 ms).
pub fn wait_icr_idle(timeout_us: u64) -> Result<(), IcrBusy> {
    let deadline = super::tsc::now_us().saturating_add(timeout_us);
    while read(REG_ICR_LOW) & ICR_BUSY != 0 {
        if super::tsc::now_us() >= deadline {
            return Err(IcrBusy);
        }
        core::hint::spin_loop();
    }
    Ok(())
}

/// Sends the IPI `icr_low` (delivery mode, level, trigger, vector) to the
/// physical APIC id `dest` and waits up to `timeout_us` for it to leave
/// (cf. `apic_icr_write()` + `safe_apic_wait_icr_idle()`). Interrupts are
/// held off between the two ICR writes: the high half is a destination
/// another sender on this CPU would overwrite.
pub fn send_ipi(dest: u8, icr_low: u32, timeout_us: u64) -> Result<(), IcrBusy> {
    x86_64::instructions::interrupts::without_interrupts(|| {
        write(REG_ICR_HIGH, u32::from(dest) << 24);
        write(REG_ICR_LOW, icr_low);
    });
    wait_icr_idle(timeout_us)
}

/// Enables this application processor's local APIC as [`init`] did the
/// boot CPU's (cf. `setup_local_APIC()` on a secondary): TPR 0, LINT0 and
/// LINT1 masked (the 8259s are masked; NMI is not wired to APs), error
/// vector, the spurious vector with the software enable, and the timer in
/// one-shot mode at the boot CPU's divider and calibration, not armed.
/// Returns its APIC id, or why it cannot be used.
pub fn init_ap() -> Result<u8, &'static str> {
    if !is_mapped() {
        return Err("the boot CPU has no local APIC mapping");
    }
    // SAFETY: IA32_APIC_BASE exists on every CPU with an APIC (all x86_64).
    let msr = unsafe { Msr::new(IA32_APIC_BASE).read() };
    if msr & APIC_BASE_X2APIC != 0 {
        return Err("x2APIC mode is on; xAPIC MMIO unusable");
    }
    if msr & APIC_BASE_ENABLE == 0 {
        // SAFETY: setting the global enable bit with the same base.
        unsafe { Msr::new(IA32_APIC_BASE).write(msr | APIC_BASE_ENABLE) };
    }
    write(REG_TPR, 0);
    write(REG_LVT_LINT0, LVT_MASKED);
    write(REG_LVT_LINT1, LVT_MASKED);
    write(REG_LVT_ERROR, u32::from(ERROR_VECTOR));
    write(REG_ESR, 0);
    write(REG_SVR, SVR_ENABLE | u32::from(SPURIOUS_VECTOR));
    write(REG_TIMER_DIVIDE, DIVIDE_BY_16);
    write(REG_TIMER_INIT, 0);
    write(REG_LVT_TIMER, u32::from(TIMER_VECTOR));
    Ok(id())
}
