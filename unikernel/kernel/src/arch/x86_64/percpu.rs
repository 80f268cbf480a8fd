//! Per-CPU identity through the GS base: each CPU's `IA32_GS_BASE` points
//! at its own [`PerCpu`], so "which CPU am I" is one `gs:`-relative load
//! (cf. Linux's `this_cpu_read(cpu_number)` / `pcpu_hot.cpu_number`,
//! reached through `%gs` the same way).
//!
//! This is the identity only: the areas are a small static array, not yet
//! the first chunk of the per-CPU allocator (`alloc_percpu`'s chunks come
//! from the buddy allocator); `mm` keeps its own per-CPU state, indexed by
//! this number. CPU 0 is the boot CPU; the application processors are
//! numbered 1.. in MADT order by `smp`.
//!
//! Until [`init_bsp`] has run (the boot CPU's first log lines, before its
//! GDT is loaded) GS points at nothing, and [`this_cpu_id`] answers 0
//! without touching it: only the boot CPU runs then.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use x86_64::VirtAddr;
use x86_64::registers::model_specific::{GsBase, KernelGsBase};

/// CPUs this kernel brings up (the boot CPU included). More in the MADT
/// are logged and left off. Equal to `mm::types::NR_CPUS`, which sizes
/// the allocators' per-CPU state.
pub const MAX_CPUS: usize = 8;
const _: () = assert!(MAX_CPUS == mm::types::NR_CPUS);

/// One CPU's area, at its GS base. Fields are atomics only so that the
/// array can be a plain `static` written at bring-up; a CPU reads its own
/// through `gs:`.
#[repr(C, align(64))]
pub struct PerCpu {
    /// The area's own address: `gs:[0]`, so a pointer to this CPU's area
    /// is one load (cf. Linux's `this_cpu_off`).
    this: AtomicU64,
    /// Logical CPU number (cf. `cpu_number`).
    cpu: AtomicU32,
    /// Local APIC id (cf. `x86_cpu_to_apicid`).
    apic_id: AtomicU32,
}

impl PerCpu {
    const fn new() -> Self {
        PerCpu {
            this: AtomicU64::new(0),
            cpu: AtomicU32::new(0),
            apic_id: AtomicU32::new(0),
        }
    }
}

static PER_CPU: [PerCpu; MAX_CPUS] = [const { PerCpu::new() }; MAX_CPUS];

/// Set once the boot CPU's GS base points at `PER_CPU[0]`; application
/// processors set theirs before any code that asks.
static GS_READY: AtomicBool = AtomicBool::new(false);

/// Points this CPU's GS base at `PER_CPU[cpu]` after recording its number
/// and APIC id there (cf. the `wrmsr MSR_GS_BASE` of Linux's
/// `secondary_startup_64`). Call after the CPU's GDT is loaded: loading a
/// null GS selector clears the base on Intel CPUs.
pub fn install(cpu: usize, apic_id: u32) {
    let area = &PER_CPU[cpu];
    let addr = core::ptr::from_ref(area) as u64;
    area.this.store(addr, Ordering::Relaxed);
    area.cpu.store(cpu as u32, Ordering::Relaxed);
    area.apic_id.store(apic_id, Ordering::Relaxed);
    // The kernel never runs `swapgs` (no user mode): KERNEL_GS_BASE stays 0
    // so a stray one would fault instead of silently swapping identities.
    KernelGsBase::write(VirtAddr::zero());
    GsBase::write(VirtAddr::new(addr));
}

/// The boot CPU becomes CPU 0 with the APIC id CPUID reports (the local
/// APIC is not mapped yet). Called by `arch::x86_64::init` after the GDT.
pub fn init_bsp() {
    let apic_id = initial_apic_id();
    install(0, apic_id);
    GS_READY.store(true, Ordering::Release);
    log::info!(
        "percpu: CPU 0 (APIC id {apic_id}) at {:#x} (GS base); up to {MAX_CPUS} CPUs",
        core::ptr::from_ref(&PER_CPU[0]) as u64
    );
}

/// CPUID.1:EBX[31:24], the initial (xAPIC) APIC id of the executing CPU.
pub fn initial_apic_id() -> u32 {
    // SAFETY: CPUID leaf 1 exists on every x86_64 CPU and only reads.
    #[allow(unused_unsafe)]
    let leaf1 = unsafe { core::arch::x86_64::__cpuid(1) };
    leaf1.ebx >> 24
}

/// The executing CPU's number (cf. `smp_processor_id()`); 0 before
/// [`init_bsp`]. No lock, no memory but the CPU's own area.
pub fn this_cpu_id() -> usize {
    if !GS_READY.load(Ordering::Acquire) {
        return 0;
    }
    let cpu: u32;
    // SAFETY: once GS_READY is set every running CPU's GS base points at
    // its own `PerCpu` (the boot CPU's since `init_bsp`, an application
    // processor's since `smp`'s entry called `install`, before it runs any
    // code that calls this), so `gs:[offset of cpu]` is that area's `cpu`
    // field, an initialised, aligned u32 in a `static`. Read-only, no stack.
    unsafe {
        core::arch::asm!(
            "mov {cpu:e}, dword ptr gs:[{off}]",
            cpu = out(reg) cpu,
            off = const core::mem::offset_of!(PerCpu, cpu),
            options(nostack, readonly, preserves_flags)
        );
    }
    cpu as usize
}

/// The executing CPU's APIC id, from its area (the boot CPU's CPUID value
/// before [`init_bsp`]).
pub fn this_cpu_apic_id() -> u32 {
    if !GS_READY.load(Ordering::Acquire) {
        return initial_apic_id();
    }
    let apic_id: u32;
    // SAFETY: as in `this_cpu_id`, for the `apic_id` field.
    unsafe {
        core::arch::asm!(
            "mov {id:e}, dword ptr gs:[{off}]",
            id = out(reg) apic_id,
            off = const core::mem::offset_of!(PerCpu, apic_id),
            options(nostack, readonly, preserves_flags)
        );
    }
    apic_id
}
