//! Starting the application processors (cf. Linux `arch/x86/kernel/smpboot.c`,
//! `arch/x86/realmode/rm/trampoline_64.S`, `head_64.S:secondary_startup_64`).
//!
//! ```text
//!  boot CPU (CPU 0)                        application processor
//!  memblock: a page below 1 MiB            (after firmware: halted)
//!  init: trampoline copied there, stacks
//!  vmalloc'd, CPUs numbered in MADT order
//!  INIT assert + deassert ───────────────► reset; waits for a SIPI
//!  0 or 10 ms (init_udelay)
//!  SIPI, wait, SIPI, wait ───────────────► real mode at page:0 (the trampoline):
//!                                          lidt 0, lgdt, CR0.PE, ljmpl
//!                                        → 32-bit, in the kernel image: CR4, CR3
//!                                          (the kernel's own tables), EFER.LME|NXE,
//!                                          CR0.PG → compatibility mode, ljmp
//!                                        → 64-bit: APIC id (CPUID) → its stack
//!                                          ap_main: claims its slot, GDT+TSS,
//!                                          GS base, the shared IDT, LAPIC
//!  start() returns: device probe,
//!  network stack (meanwhile) ◄─────────── "smp: CPU n (APIC id m) online"
//!  finish(): waits (bounded) for the rest   idle: its work queue, else sti; hlt
//! ```
//!
//! Only the boot CPU allocates during bring-up (the stacks, before any
//! SIPI). Once online, an AP runs only what is queued on it
//! (`ipi::queue_work_on`: bench workers, shootdowns); the allocators count
//! it after [`finish`] (`cpus_online` in `main.rs`). Each AP finds its own
//! stack from its APIC id (as Linux 6.5+'s parallel bring-up does with
//! `STARTUP_READ_APICID`), so nothing is handed over through a shared
//! slot, and a late AP the boot CPU gave up on halts on finding its slot
//! abandoned instead of running.

use core::arch::global_asm;
use core::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use mm::memblock::Memblock;
use mm::types::{PAGE_SIZE, PhysAddr};
use x86_64::instructions::interrupts;
use x86_64::registers::control::{Cr0, Cr3, Cr4};
use x86_64::registers::model_specific::Msr;

use super::gdt::{IST_STACK_SIZE, NR_IST_STACKS};
use super::percpu::{self, MAX_CPUS};
use super::{apic, gdt, idt, tsc};

/// Each AP's kernel stack (cf. `THREAD_SIZE`, 16 KiB on x86_64).
pub const AP_STACK_SIZE: u64 = 16 * 1024;
/// SIPI vectors are page numbers below 1 MiB.
const TRAMPOLINE_LIMIT: u64 = 1 << 20;
/// INIT to SIPI on CPUs that need it (SDM 8.4.4.1; Linux's
/// `UDELAY_10MS_DEFAULT`).
const LEGACY_INIT_DELAY_US: u64 = 10_000;
/// After each SIPI with the legacy INIT delay (SDM 8.4.4.1), and without
/// it (`udelay(10)` in `wakeup_secondary_cpu_via_init()`).
const LEGACY_SIPI_DELAY_US: u64 = 200;
const MODERN_SIPI_DELAY_US: u64 = 10;
/// How long an IPI may sit in the ICR (cf. `safe_apic_wait_icr_idle()`).
const ICR_TIMEOUT_US: u64 = 100_000;
/// How long the boot CPU waits, after the last SIPI, for every AP to come
/// online: 10 s, as Linux waits for a first sign of life (`do_boot_cpu()`).
/// A healthy AP here needs well under a millisecond of its own time, but
/// under TCG on a loaded host a vCPU thread may not run for seconds (2 s
/// left APs offline in test runs beside heavy builds); the wait ends as
/// soon as every AP is online.
const ONLINE_TIMEOUT_US: u64 = 10_000_000;
/// Largest xAPIC physical destination (0xff is the broadcast).
const MAX_XAPIC_ID: u32 = 0xfe;

/// Where a CPU is in its bring-up (cf. Linux's `cpu_callout_mask` /
/// `cpu_callin_mask` / `cpu_online_mask`, one word per CPU).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum State {
    /// Not started (or not to be).
    Absent = 0,
    /// SIPIs sent; the boot CPU waits for it.
    Kicked = 1,
    /// Running its own set-up on its own stack.
    CalledIn = 2,
    /// Up and idle.
    Online = 3,
    /// The boot CPU stopped waiting before it called in; if it ever does,
    /// it halts.
    Abandoned = 4,
    /// Could not be started, or failed its set-up; halted.
    Failed = 5,
}

impl State {
    fn from_u8(v: u8) -> State {
        match v {
            1 => State::Kicked,
            2 => State::CalledIn,
            3 => State::Online,
            4 => State::Abandoned,
            5 => State::Failed,
            _ => State::Absent,
        }
    }
}

/// One logical CPU: its APIC id, state and IST stack tops, filled by the
/// boot CPU before the SIPI (its kernel stack is in [`AP_STACK_TOP`]).
struct CpuSlot {
    apic_id: AtomicU32,
    state: AtomicU8,
    ist_tops: [AtomicU64; NR_IST_STACKS],
}

impl CpuSlot {
    const fn new() -> Self {
        CpuSlot {
            apic_id: AtomicU32::new(0),
            state: AtomicU8::new(State::Absent as u8),
            ist_tops: [const { AtomicU64::new(0) }; NR_IST_STACKS],
        }
    }

    fn state(&self) -> State {
        State::from_u8(self.state.load(Ordering::Acquire))
    }

    fn set(&self, s: State) {
        self.state.store(s as u8, Ordering::Release);
    }

    /// `from` → `to` if nobody moved it first (the AP calling in races the
    /// boot CPU giving up).
    fn advance(&self, from: State, to: State) -> bool {
        self.state
            .compare_exchange(from as u8, to as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

/// Logical CPUs, index = CPU number; CPU 0 is the boot CPU.
static CPUS: [CpuSlot; MAX_CPUS] = [const { CpuSlot::new() }; MAX_CPUS];
/// CPUs numbered in `CPUS` (cf. `num_present_cpus()`).
static NR_PRESENT: AtomicUsize = AtomicUsize::new(0);
/// CPUs online (cf. `num_online_cpus()`).
static NR_ONLINE: AtomicUsize = AtomicUsize::new(0);
/// Bit n: CPU n is online (cf. `cpu_online_mask`).
static ONLINE_MASK: AtomicU64 = AtomicU64::new(0);
/// APs given stacks (for meminfo's `KernelStack`).
static NR_AP_STACKS: AtomicUsize = AtomicUsize::new(0);

/// Stack top per APIC id, read by `pz_smp_ap_start64` before any Rust runs
/// on the AP; 0 = no stack, halt.
static AP_STACK_TOP: [AtomicU64; 256] = [const { AtomicU64::new(0) }; 256];

/// Physical address of the trampoline page, 0 if none was reserved.
static TRAMPOLINE_PHYS: AtomicU64 = AtomicU64::new(0);

/// The boot CPU's control registers for the APs' 32-bit code (cf. Linux's
/// `struct trampoline_header`: `tr_cr4`, `tr_efer`; CR3 there is a
/// trampoline table, here the kernel's own, which maps the kernel image
/// at its physical address).
#[repr(C)]
struct TrampolineHeader {
    cr0: AtomicU64,
    cr3: AtomicU64,
    cr4: AtomicU64,
    efer: AtomicU64,
}

static TR_HEADER: TrampolineHeader = TrampolineHeader {
    cr0: AtomicU64::new(0),
    cr3: AtomicU64::new(0),
    cr4: AtomicU64::new(0),
    efer: AtomicU64::new(0),
};

// The real-mode entry, copied to the trampoline page (cf. Linux's
// `trampoline_start`): with CS = page << 8 and IP = 0, it loads a null IDT
// (any exception now shuts the CPU down rather than run garbage) and the
// GDT below by CS-relative address, enters protected mode and far-jumps
// straight into the kernel image, which the identity-linked image makes a
// plain 32-bit address. It uses no stack. Nothing in it depends on where
// it is copied.
global_asm!(
    r#"
    .pushsection .rodata.pz_smp_trampoline, "a"
    .balign 16
    .global pz_smp_trampoline_start
pz_smp_trampoline_start:
    .code16
    cli
    cld
    lidtl %cs:(.Lpz_tr_idtr - pz_smp_trampoline_start)
    lgdtl %cs:(.Lpz_tr_gdtr - pz_smp_trampoline_start)
    movl %cr0, %eax
    orl $1, %eax                    /* PE */
    movl %eax, %cr0
    ljmpl $0x08, $pz_smp_ap_start32
    .balign 8
.Lpz_tr_gdtr:
    .word pz_smp_tr_gdt_end - pz_smp_tr_gdt - 1
    .long pz_smp_tr_gdt
    .balign 8
.Lpz_tr_idtr:
    .word 0
    .long 0
    .global pz_smp_trampoline_end
pz_smp_trampoline_end:
    .code64
    .popsection

    /* The APs' boot GDT (cf. Linux's `tr_gdt`): 32-bit code 0x08, data
       0x10, 64-bit code 0x18. Accessed bits preset: it lives in .rodata,
       which the kernel's tables map read-only. */
    .pushsection .rodata.pz_smp_tr_gdt, "a"
    .balign 16
pz_smp_tr_gdt:
    .quad 0
    .quad 0x00cf9b000000ffff        /* 0x08: D=1 P=1 DPL=0 code, 4 GiB */
    .quad 0x00cf93000000ffff        /* 0x10: P=1 DPL=0 data, 4 GiB */
    .quad 0x00af9b000000ffff        /* 0x18: L=1 P=1 DPL=0 code */
pz_smp_tr_gdt_end:
    .popsection
    "#,
    options(att_syntax)
);

// 32-bit, then 64-bit code in the kernel image (cf. Linux's `startup_32`
// in trampoline_64.S and `secondary_startup_64`). Paging is switched on
// with the kernel's own CR3: it maps this code and the GDT at their
// physical addresses (the image's identity map), so the instruction after
// `mov %eax, %cr0` is fetched at the same address through the new tables.
// The 64-bit code finds this CPU's stack by its initial APIC id and calls
// `ap_main(apic_id)`.
global_asm!(
    r#"
    .pushsection .text.pz_smp_ap_entry, "ax"
    .code32
    .global pz_smp_ap_start32
pz_smp_ap_start32:
    movl $0x10, %eax
    movl %eax, %ds
    movl %eax, %es
    movl %eax, %ss
    movl %eax, %fs
    movl %eax, %gs
    movl {hdr}+{cr4}, %eax
    movl %eax, %cr4                 /* PAE and the boot CPU's features */
    movl {hdr}+{cr3}, %eax
    movl %eax, %cr3                 /* the kernel's PML4, below 4 GiB */
    movl $0xc0000080, %ecx          /* IA32_EFER: LME (+ NXE as on CPU 0) */
    movl {hdr}+{efer}, %eax
    movl {hdr}+{efer}+4, %edx
    wrmsr
    movl {hdr}+{cr0}, %eax
    movl %eax, %cr0                 /* PG: compatibility mode */
    ljmpl $0x18, $pz_smp_ap_start64

    .code64
pz_smp_ap_start64:
    movl $0x10, %eax
    movl %eax, %ds
    movl %eax, %es
    movl %eax, %ss
    xorl %eax, %eax
    movl %eax, %fs
    movl %eax, %gs
    movl $1, %eax
    cpuid
    shrl $24, %ebx                  /* CPUID.1:EBX[31:24]: initial APIC id */
    leaq {stacks}(%rip), %rax
    movq (%rax,%rbx,8), %rsp        /* page-aligned top: ABI-aligned call */
    testq %rsp, %rsp
    jz 1f                           /* no stack for this APIC id */
    xorl %ebp, %ebp
    movl %ebx, %edi
    call {ap_main}
1:  cli
    hlt
    jmp 1b
    .popsection
    "#,
    hdr = sym TR_HEADER,
    cr0 = const core::mem::offset_of!(TrampolineHeader, cr0),
    cr3 = const core::mem::offset_of!(TrampolineHeader, cr3),
    cr4 = const core::mem::offset_of!(TrampolineHeader, cr4),
    efer = const core::mem::offset_of!(TrampolineHeader, efer),
    stacks = sym AP_STACK_TOP,
    ap_main = sym ap_main,
    options(att_syntax)
);

unsafe extern "C" {
    static pz_smp_trampoline_start: u8;
    static pz_smp_trampoline_end: u8;
}

/// Reserves the trampoline's page below 1 MiB in memblock, named
/// "smp trampoline" (cf. `reserve_real_mode()`), when the MADT lists CPUs
/// to start. Called from memblock set-up, before the buddy allocator takes
/// the free memory.
pub fn reserve_trampoline(mb: &mut Memblock) {
    if crate::acpi::info().is_none_or(|i| i.nr_cpus <= 1) {
        return;
    }
    match mb.alloc_named(
        PAGE_SIZE,
        PAGE_SIZE,
        PhysAddr(TRAMPOLINE_LIMIT),
        "smp trampoline",
    ) {
        Some(pa) => TRAMPOLINE_PHYS.store(pa.0, Ordering::Relaxed),
        None => log::error!(
            "smp: no free page below 1 MiB for the AP trampoline; only the boot CPU will run"
        ),
    }
}

/// When [`start`] kicked the APs (TSC µs) and with what INIT delay;
/// [`finish`] waits for them and reports. `u64::MAX`: nothing to wait for.
static KICKED_AT_US: AtomicU64 = AtomicU64::new(u64::MAX);
static INIT_UDELAY_US: AtomicU64 = AtomicU64::new(0);
/// When the last AP went online (TSC µs; the TSCs of QEMU's vCPUs agree).
static LAST_ONLINE_US: AtomicU64 = AtomicU64::new(0);

/// Starts every enabled CPU of the MADT, up to [`MAX_CPUS`] (cf.
/// `native_smp_prepare_cpus()` + the INIT-SIPI-SIPI of `native_cpu_up()`
/// for each), and returns while they start: the boot CPU goes on booting
/// and [`finish`] waits for them (as Linux 6.5+'s parallel bring-up kicks
/// every AP before waiting for any). Call once on the boot CPU, after
/// memory management, the local APIC and the TSC are up, with interrupts
/// off.
pub fn start(cpu_init_udelay: Option<u32>) {
    let bsp_apic = if apic::is_mapped() {
        u32::from(apic::id())
    } else {
        percpu::initial_apic_id()
    };
    CPUS[0].apic_id.store(bsp_apic, Ordering::Relaxed);
    CPUS[0].set(State::Online);
    NR_PRESENT.store(1, Ordering::Release);
    NR_ONLINE.store(1, Ordering::Release);
    ONLINE_MASK.store(1, Ordering::Release);

    let Some(info) = crate::acpi::info().filter(|i| i.nr_cpus > 1) else {
        log::info!("smp: 1 CPU (the boot CPU, APIC id {bsp_apic}); no other CPU in the MADT");
        return;
    };
    log::info!(
        "smp: Bringing up secondary CPUs: {} enabled in the MADT, boot CPU APIC id {bsp_apic}, at most {MAX_CPUS}",
        info.nr_cpus
    );
    let t0 = tsc::now_us();
    if let Err(why) = prerequisites() {
        log::error!("smp: {why}; only the boot CPU will run");
        return;
    }
    number_cpus(info, bsp_apic);
    let nr_present = NR_PRESENT.load(Ordering::Acquire);
    if nr_present == 1 {
        return;
    }
    let vector = install_trampoline();
    for (cpu, slot) in aps(nr_present) {
        if let Err(e) = alloc_stacks(slot) {
            log::error!(
                "smp: CPU {cpu} (APIC id {}): no memory for its stacks ({e}); left offline",
                slot.apic_id.load(Ordering::Relaxed)
            );
            slot.set(State::Failed);
        }
    }
    let udelay = init_udelay(cpu_init_udelay);
    wake_all(nr_present, vector, udelay);
    INIT_UDELAY_US.store(udelay, Ordering::Relaxed);
    KICKED_AT_US.store(t0, Ordering::Release);
}

/// Waits (bounded) until every AP [`start`] kicked is online or given up
/// on, and logs the bring-up (cf. the end of `smp_init()`). A no-op if
/// nothing was kicked; call once, on the boot CPU, before anything
/// counts the online CPUs for good.
pub fn finish() {
    let t0 = KICKED_AT_US.swap(u64::MAX, Ordering::AcqRel);
    if t0 == u64::MAX {
        return;
    }
    let nr_present = NR_PRESENT.load(Ordering::Acquire);
    let udelay = INIT_UDELAY_US.load(Ordering::Relaxed);
    let vector = (TRAMPOLINE_PHYS.load(Ordering::Relaxed) >> 12) as u8;
    let waited_from = tsc::now_us();
    wait_online(nr_present);
    let waited_us = tsc::now_us().saturating_sub(waited_from);
    let online = NR_ONLINE.load(Ordering::Acquire);
    log::info!(
        "smp: Brought up 1 node, {online} CPU{} in {} us (INIT-SIPI-SIPI to {} AP{}, init_udelay {udelay} us, {waited_us} us waited for; trampoline at {:#x}, SIPI vector {vector:#04x})",
        if online == 1 { "" } else { "s" },
        LAST_ONLINE_US.load(Ordering::Acquire).saturating_sub(t0),
        nr_present - 1,
        if nr_present == 2 { "" } else { "s" },
        TRAMPOLINE_PHYS.load(Ordering::Relaxed),
    );
}

/// What the APs' start-up path needs of the boot CPU, or why it is missing.
fn prerequisites() -> Result<(), &'static str> {
    if !apic::is_mapped() {
        return Err("no local APIC to send INIT/SIPI through");
    }
    if tsc::tsc_khz() == 0 {
        return Err("no calibrated TSC to time the INIT-SIPI-SIPI delays with");
    }
    if TRAMPOLINE_PHYS.load(Ordering::Relaxed) == 0 {
        return Err("no trampoline page");
    }
    let cr3 = Cr3::read_raw().0.start_address().as_u64();
    if cr3 >= 1 << 32 {
        return Err("the kernel's PML4 lies above 4 GiB, beyond the 32-bit trampoline's reach");
    }
    Ok(())
}

/// Logical numbers for the MADT's enabled CPUs: the boot CPU is 0, the
/// others follow in MADT order (cf. `generic_processor_info()`). CPUs past
/// [`MAX_CPUS`], or whose APIC id an xAPIC cannot address, are logged and
/// left off.
fn number_cpus(info: &crate::acpi::AcpiInfo, bsp_apic: u32) {
    let listed = info.nr_cpus.min(crate::acpi::MAX_CPUS);
    let mut n = 1;
    for &apic_id in &info.cpu_apic_ids[..listed] {
        if apic_id == bsp_apic {
            continue;
        }
        if apic_id > MAX_XAPIC_ID {
            log::warn!("smp: APIC id {apic_id} is beyond xAPIC addressing; left off");
        } else if n >= MAX_CPUS {
            log::warn!("smp: APIC id {apic_id}: MAX_CPUS ({MAX_CPUS}) reached; left off");
        } else {
            CPUS[n].apic_id.store(apic_id, Ordering::Relaxed);
            n += 1;
        }
    }
    if info.nr_cpus > listed {
        log::warn!(
            "smp: {} more enabled CPUs in the MADT than the {listed} recorded; left off",
            info.nr_cpus - listed
        );
    }
    NR_PRESENT.store(n, Ordering::Release);
}

/// Copies the real-mode entry into the reserved page and records the boot
/// CPU's CR0/CR3/CR4/EFER for the 32-bit code (cf. `setup_real_mode()`).
/// Returns the SIPI vector (the page number).
fn install_trampoline() -> u8 {
    let phys = TRAMPOLINE_PHYS.load(Ordering::Relaxed);
    let start = (&raw const pz_smp_trampoline_start) as u64;
    let len = (&raw const pz_smp_trampoline_end) as u64 - start;
    assert!(len <= PAGE_SIZE, "smp: the trampoline outgrew its page");
    // SAFETY: `phys` is a page memblock reserved for this alone ("smp
    // trampoline", never handed to the buddy allocator), RAM below 1 MiB
    // and so inside the direct map, writable; the source is the blob of
    // `len` bytes the first `global_asm!` above puts in .rodata. The two
    // cannot overlap (the image starts at 1 MiB).
    unsafe {
        core::ptr::copy_nonoverlapping(
            core::ptr::with_exposed_provenance::<u8>(start as usize),
            crate::memory::paging::phys_to_virt(phys),
            len as usize,
        );
    }

    const CR4_PAE: u64 = 1 << 5;
    const CR4_PCIDE: u64 = 1 << 17; // only settable in long mode
    const EFER_LME: u64 = 1 << 8;
    const EFER_LMA: u64 = 1 << 10; // set by the CPU, not by us
    // SAFETY: IA32_EFER exists on every x86_64 CPU; reading has no effect.
    let efer = unsafe { Msr::new(0xc000_0080).read() };
    let (cr3, _) = Cr3::read_raw();
    TR_HEADER.cr0.store(Cr0::read_raw(), Ordering::Relaxed);
    TR_HEADER
        .cr3
        .store(cr3.start_address().as_u64(), Ordering::Relaxed);
    TR_HEADER
        .cr4
        .store((Cr4::read_raw() & !CR4_PCIDE) | CR4_PAE, Ordering::Relaxed);
    TR_HEADER
        .efer
        .store((efer & !EFER_LMA) | EFER_LME, Ordering::SeqCst);
    (phys >> 12) as u8
}

/// The AP's kernel stack and its IST stacks, each a vmalloc area of its
/// own, so an overflow runs into the guard page below (cf.
/// `CONFIG_VMAP_STACK`). Allocated by the boot CPU: the AP never allocates.
fn alloc_stacks(slot: &CpuSlot) -> Result<(), mm::vmalloc::VmallocError> {
    // One word each, like the function names Linux's /proc/vmallocinfo
    // shows as callers.
    const IST_NAMES: [&str; NR_IST_STACKS] = [
        "smp_exception_stack_df",
        "smp_exception_stack_nmi",
        "smp_exception_stack_mc",
    ];
    for (i, name) in IST_NAMES.into_iter().enumerate() {
        let area = crate::memory::vmalloc::vmalloc(IST_STACK_SIZE as u64, name)?;
        slot.ist_tops[i].store(area.start.0 + area.size, Ordering::Relaxed);
    }
    let area = crate::memory::vmalloc::vmalloc(AP_STACK_SIZE, "smp_idle_stack")?;
    let top = area.start.0 + area.size;
    let apic_id = slot.apic_id.load(Ordering::Relaxed) as usize;
    AP_STACK_TOP[apic_id].store(top, Ordering::SeqCst);
    NR_AP_STACKS.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// The INIT → STARTUP delay in µs (cf. `smp_quirk_init_udelay()`):
/// `cpu_init_udelay=` if given; none on the CPUs Linux calls modern
/// (Intel family 6, AMD family 0xf and later, Hygon 0x18 and later), whose
/// INIT completes at once; the SDM's 10 ms on anything older.
fn init_udelay(cmdline: Option<u32>) -> u64 {
    if let Some(us) = cmdline {
        return u64::from(us);
    }
    // SAFETY: CPUID leaves 0 and 1 exist on every x86_64 CPU and only read.
    #[allow(unused_unsafe)]
    let (leaf0, leaf1) = unsafe {
        (
            core::arch::x86_64::__cpuid(0),
            core::arch::x86_64::__cpuid(1),
        )
    };
    let mut vendor = [0u8; 12];
    vendor[..4].copy_from_slice(&leaf0.ebx.to_le_bytes());
    vendor[4..8].copy_from_slice(&leaf0.edx.to_le_bytes());
    vendor[8..].copy_from_slice(&leaf0.ecx.to_le_bytes());
    // cf. `x86_family()`: the extended family adds on when the base is 0xf.
    let base = (leaf1.eax >> 8) & 0xf;
    let family = if base == 0xf {
        base + ((leaf1.eax >> 20) & 0xff)
    } else {
        base
    };
    let modern = match &vendor {
        b"GenuineIntel" => family == 6,
        b"AuthenticAMD" => family >= 0xf,
        b"HygonGenuine" => family >= 0x18,
        _ => false,
    };
    if modern { 0 } else { LEGACY_INIT_DELAY_US }
}

/// INIT to every AP that has stacks, one wait of `init_udelay` µs (see
/// [`init_udelay`]), then SIPI, wait, SIPI, wait to each (cf.
/// `wakeup_secondary_cpu_via_init()`, which does this per CPU; sending
/// every INIT first shares the wait, as Linux 6.5+'s parallel bring-up
/// shares its waits).
fn wake_all(nr_present: usize, vector: u8, init_udelay: u64) {
    let sipi_delay_us = if init_udelay == 0 {
        MODERN_SIPI_DELAY_US
    } else {
        LEGACY_SIPI_DELAY_US
    };
    let init = apic::ICR_TRIGGER_LEVEL | apic::ICR_LEVEL_ASSERT | apic::ICR_DM_INIT;
    let deassert = apic::ICR_TRIGGER_LEVEL | apic::ICR_DM_INIT;
    for (cpu, slot) in aps(nr_present) {
        if slot.state() != State::Absent {
            continue;
        }
        let apic_id = slot.apic_id.load(Ordering::Relaxed) as u8;
        apic::clear_esr();
        let sent = apic::send_ipi(apic_id, init, ICR_TIMEOUT_US)
            .and_then(|()| apic::send_ipi(apic_id, deassert, ICR_TIMEOUT_US));
        if sent.is_err() {
            log::error!(
                "smp: CPU {cpu} (APIC id {apic_id}): INIT not delivered within {} ms (ICR busy); left offline",
                ICR_TIMEOUT_US / 1000
            );
            slot.set(State::Failed);
        }
    }
    tsc::delay_us(init_udelay);
    for (cpu, slot) in aps(nr_present) {
        if slot.state() != State::Absent {
            continue;
        }
        let apic_id = slot.apic_id.load(Ordering::Relaxed) as u8;
        slot.set(State::Kicked);
        for n in 1..=2 {
            apic::clear_esr();
            let sent = apic::send_ipi(
                apic_id,
                apic::ICR_DM_STARTUP | u32::from(vector),
                ICR_TIMEOUT_US,
            );
            tsc::delay_us(sipi_delay_us);
            // Bits other than 4 (send accept error, as Linux masks with 0xEF).
            let esr = apic::clear_esr() & 0xef;
            if sent.is_err() || esr != 0 {
                log::error!(
                    "smp: CPU {cpu} (APIC id {apic_id}): STARTUP IPI #{n} {} (ESR {esr:#x}); left offline",
                    if sent.is_err() {
                        "not delivered (ICR busy)"
                    } else {
                        "not accepted"
                    },
                );
                // If it starts anyway, it finds its slot failed and halts.
                slot.advance(State::Kicked, State::Failed);
                break;
            }
        }
    }
}

/// Waits until no AP is still starting, [`ONLINE_TIMEOUT_US`] at most
/// (cf. `do_boot_cpu()`'s wait on `cpu_callin_mask`). One that never called
/// in is abandoned (it halts if it ever arrives); one that called in but is
/// not online yet is left to finish on its own.
fn wait_online(nr_present: usize) {
    let deadline = tsc::now_us().saturating_add(ONLINE_TIMEOUT_US);
    let starting =
        || aps(nr_present).any(|(_, slot)| matches!(slot.state(), State::Kicked | State::CalledIn));
    while starting() {
        if tsc::now_us() >= deadline {
            break;
        }
        core::hint::spin_loop();
    }
    for (cpu, slot) in aps(nr_present) {
        let apic_id = slot.apic_id.load(Ordering::Relaxed);
        if slot.advance(State::Kicked, State::Abandoned) {
            log::error!(
                "smp: CPU {cpu} (APIC id {apic_id}) did not respond to INIT-SIPI-SIPI within {} ms; left offline",
                ONLINE_TIMEOUT_US / 1000
            );
        } else if slot.state() == State::CalledIn {
            log::warn!(
                "smp: CPU {cpu} (APIC id {apic_id}) called in but is not online after {} ms; not waiting longer",
                ONLINE_TIMEOUT_US / 1000
            );
        }
    }
}

/// The application processors among the first `nr_present` CPUs, with
/// their numbers.
fn aps(nr_present: usize) -> impl Iterator<Item = (usize, &'static CpuSlot)> {
    CPUS.iter().enumerate().take(nr_present).skip(1)
}

/// The logical number of the CPU with `apic_id`, among those numbered.
fn cpu_of_apic(apic_id: u32) -> Option<usize> {
    (1..NR_PRESENT.load(Ordering::Acquire))
        .find(|&c| CPUS[c].apic_id.load(Ordering::Relaxed) == apic_id)
}

/// First Rust code on an application processor, on its own stack, with
/// the kernel's page tables and interrupts off (cf. `start_secondary()`:
/// `cpu_init()`, `smp_callin()`, `set_cpu_online()`, then
/// `cpu_startup_entry()`). It touches nothing shared but its own slot,
/// the shared IDT (read-only), the console and the log ring.
extern "C" fn ap_main(apic_id: u32) -> ! {
    let Some(cpu) = cpu_of_apic(apic_id) else {
        halt();
    };
    let slot = &CPUS[cpu];
    // Call in; if the boot CPU already gave up on us, stay out of its way.
    if !slot.advance(State::Kicked, State::CalledIn) {
        halt();
    }
    let ist_tops = core::array::from_fn(|i| slot.ist_tops[i].load(Ordering::Relaxed));
    gdt::init_ap(cpu, ist_tops);
    // After the GDT: its null GS selector clears the GS base on Intel.
    percpu::install(cpu, apic_id);
    if !idt::load_ap() {
        fail(slot, cpu, apic_id, "no IDT to load");
    }
    match apic::init_ap() {
        Ok(id) if u32::from(id) == apic_id => {}
        Ok(id) => log::warn!("smp: CPU {cpu}: LAPIC id {id} differs from CPUID's {apic_id}"),
        Err(why) => fail(slot, cpu, apic_id, why),
    }
    log::info!("smp: CPU {cpu} (APIC id {apic_id}) online");
    LAST_ONLINE_US.fetch_max(tsc::now_us(), Ordering::AcqRel);
    ONLINE_MASK.fetch_or(1 << cpu, Ordering::AcqRel);
    NR_ONLINE.fetch_add(1, Ordering::AcqRel);
    slot.set(State::Online);
    // Under TCG, the softmmu TLB the boot CPU's boot gave it (see `tcg`).
    let entries = super::tcg::grow_softmmu_tlb();
    if entries > 0 {
        log::info!("smp: CPU {cpu}: TCG softmmu TLB grown to {entries} entries");
    }
    // cf. `do_idle()` → `default_idle()`, with this CPU's work queue.
    super::ipi::ap_idle(cpu)
}

fn fail(slot: &CpuSlot, cpu: usize, apic_id: u32, why: &str) -> ! {
    log::error!("smp: CPU {cpu} (APIC id {apic_id}): {why}; halting it");
    slot.set(State::Failed);
    halt()
}

/// Interrupts off, `hlt` forever: a CPU that must not run.
fn halt() -> ! {
    interrupts::disable();
    loop {
        x86_64::instructions::hlt();
    }
}

/// Online CPUs as (CPU number, APIC id), in CPU order (cf.
/// `for_each_online_cpu`). Before [`init`], the boot CPU alone.
pub fn online_cpus() -> impl Iterator<Item = (usize, u32)> {
    let mask = ONLINE_MASK.load(Ordering::Acquire);
    let present = NR_PRESENT.load(Ordering::Acquire);
    let before_init = present == 0;
    (0..present.max(1)).filter_map(move |cpu| {
        if before_init {
            return Some((0, percpu::this_cpu_apic_id()));
        }
        (mask & (1 << cpu) != 0).then(|| (cpu, CPUS[cpu].apic_id.load(Ordering::Relaxed)))
    })
}

/// Bytes of AP kernel stacks allocated (IST stacks not counted, as Linux's
/// `KernelStack` counts thread stacks only).
pub fn ap_stack_bytes() -> u64 {
    NR_AP_STACKS.load(Ordering::Relaxed) as u64 * AP_STACK_SIZE
}
