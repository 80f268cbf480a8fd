//! Per-CPU identity through the GS base: each CPU's `IA32_GS_BASE` points
//! at its own [`PerCpu`], so "which CPU am I" is one `gs:`-relative load
//! (cf. Linux's `this_cpu_read(cpu_number)` / `pcpu_hot.cpu_number`,
//! reached through `%gs` the same way).
//!
//! The areas are the static parts of the units of the per-CPU
//! allocator's first chunk ([`setup_per_cpu_areas`], from memblock; the
//! boot CPU starts on a static boot area and moves in), and `alloc_percpu`
//! serves the rest of those units first. `mm` keeps its own per-CPU state,
//! indexed by this number. CPU 0 is the boot CPU; the application
//! processors are numbered 1.. in MADT order by `smp`.
//!
//! Until [`init_bsp`] has run (the boot CPU's first log lines, before its
//! GDT is loaded) GS points at nothing, and [`this_cpu_id`] answers 0
//! without touching it: only the boot CPU runs then.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use mm::percpu::FirstChunkLayout;
use spin::Once;

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

/// The boot area: CPU 0's until [`setup_per_cpu_areas`] moves it into the
/// first chunk (cf. the boot CPU's early per-CPU area before
/// `setup_per_cpu_areas()` switches `%gs`). Also every CPU's area if that
/// never ran.
static PER_CPU: [PerCpu; MAX_CPUS] = [const { PerCpu::new() }; MAX_CPUS];

/// The per-CPU allocator's first chunk: its direct-map address (0 until
/// [`setup_per_cpu_areas`]) and layout. CPU `n`'s area is the start of
/// unit `n` (the static part).
static FIRST_CHUNK: AtomicU64 = AtomicU64::new(0);
static FIRST_CHUNK_LAYOUT: Once<FirstChunkLayout> = Once::new();

/// Bytes of the first dynamic part asked for: Linux's floor for it,
/// `PERCPU_DYNAMIC_EARLY_SIZE`, not 64-bit x86's 28 KiB
/// `PERCPU_DYNAMIC_RESERVE`: nothing here allocates per-CPU memory at
/// boot (the API's objects take chunks of their own once it is full), and
/// the smallest guests need the pages. No modules, so no reserved part
/// (`PERCPU_MODULE_RESERVE` is 0 without `CONFIG_MODULES`).
const PERCPU_DYNAMIC_EARLY_SIZE: usize = 12 << 10;

/// CPU `cpu`'s area: its unit of the first chunk once there is one.
fn area_of(cpu: usize) -> &'static PerCpu {
    let base = FIRST_CHUNK.load(Ordering::Acquire);
    let Some(layout) = FIRST_CHUNK_LAYOUT
        .get()
        .filter(|l| base != 0 && cpu < l.nr_units)
    else {
        return &PER_CPU[cpu];
    };
    // SAFETY: `setup_per_cpu_areas` wrote an initialised `PerCpu` at the
    // start of every unit of the chunk (memblock memory reserved forever,
    // mapped by the direct map, 64-byte aligned since units are page
    // aligned) before publishing `FIRST_CHUNK`, and `cpu` names one of
    // those units.
    unsafe { &*((base + (cpu * layout.unit_size) as u64) as *const PerCpu) }
}

/// The per-CPU areas' first chunk (cf. x86's `setup_per_cpu_areas()` →
/// `pcpu_embed_first_chunk()`): one unit per possible CPU (the MADT's,
/// as the trace rings count them) taken from memblock, each holding that
/// CPU's static area (its [`PerCpu`]) and the first dynamic part that
/// `alloc_percpu` serves before it needs a chunk of its own. The boot CPU
/// moves its GS base there at once; the others start on theirs. Call once
/// the direct map is up and while memblock is still the allocator.
pub fn setup_per_cpu_areas(mb: &mut mm::memblock::Memblock, limit: u64) {
    let nr_possible = crate::acpi::info()
        .map_or(1, |i| i.nr_cpus)
        .clamp(1, MAX_CPUS);
    let layout = match FirstChunkLayout::embed(
        size_of::<PerCpu>(),
        0,
        PERCPU_DYNAMIC_EARLY_SIZE,
        nr_possible,
    ) {
        Ok(l) => l,
        Err(e) => {
            log::error!("percpu: no first chunk layout ({e:?}); areas stay static");
            return;
        }
    };
    let Some(phys) = mb.alloc_named(
        layout.chunk_bytes(),
        mm::types::PAGE_SIZE,
        mm::types::PhysAddr(limit),
        "percpu",
    ) else {
        log::error!(
            "percpu: no {} bytes of memblock for the first chunk; areas stay static",
            layout.chunk_bytes()
        );
        return;
    };
    // Each unit's tail past the dynamic part goes back to memblock (cf.
    // pcpu_embed_first_chunk()'s "copy and return the unused part"), so
    // the buddy allocator gets it; `alloc_percpu` never touches it.
    let used = (layout.pages_per_cpu() as u64) * mm::types::PAGE_SIZE;
    let tail_bytes = layout.unit_size as u64 - used;
    for unit in 0..layout.nr_units as u64 {
        let tail = phys.0 + unit * layout.unit_size as u64 + used;
        if tail_bytes > 0
            && let Err(e) = mb.free(mm::types::PhysAddr(tail), tail_bytes)
        {
            log::warn!("percpu: unit {unit}'s unused {tail_bytes} bytes stay reserved ({e:?})");
        }
    }
    let base = crate::memory::paging::phys_to_virt(phys.0) as u64;
    for unit in 0..layout.nr_units {
        let at = (base + (unit * layout.unit_size) as u64) as *mut PerCpu;
        // SAFETY: `at` is the start of unit `unit` of a fresh, page-aligned
        // memblock reservation of `chunk_bytes` in the direct map, which
        // nothing else references; writing a whole `PerCpu` there makes
        // the area that `area_of` hands out afterwards.
        unsafe { at.write(PerCpu::new()) };
    }
    FIRST_CHUNK_LAYOUT.call_once(|| layout);
    FIRST_CHUNK.store(base, Ordering::Release);
    // The boot CPU moves in (interrupts are off, no other CPU runs yet).
    install(0, this_cpu_apic_id());
    log::info!("percpu: {layout}");
    log::debug!(
        "percpu: first chunk at {:#x} ({} units); CPU 0's GS base {base:#x}",
        phys.0,
        layout.nr_units
    );
}

/// The first chunk as `alloc_percpu` takes it over: its direct-map address
/// and layout, `None` if the areas stayed static.
pub fn first_chunk() -> Option<(u64, FirstChunkLayout)> {
    let base = FIRST_CHUNK.load(Ordering::Acquire);
    Some((base, *FIRST_CHUNK_LAYOUT.get()?)).filter(|_| base != 0)
}

/// Set once the boot CPU's GS base points at `PER_CPU[0]`; application
/// processors set theirs before any code that asks.
static GS_READY: AtomicBool = AtomicBool::new(false);

/// Points this CPU's GS base at its area (its unit of the first chunk, or
/// `PER_CPU[cpu]` before there is one) after recording its number and
/// APIC id there (cf. the `wrmsr MSR_GS_BASE` of Linux's
/// `secondary_startup_64`). Call after the CPU's GDT is loaded: loading a
/// null GS selector clears the base on Intel CPUs.
pub fn install(cpu: usize, apic_id: u32) {
    let area = area_of(cpu);
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
