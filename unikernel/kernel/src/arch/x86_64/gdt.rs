//! The kernel GDT (null, code 0x08, data 0x10, TSS) and the TSS whose
//! interrupt stack table gives #DF, NMI and #MC known-good stacks: a kernel
//! stack overflow faults on a guard-less stack, and the double fault that
//! follows must not push onto the same broken stack (cf. Linux
//! `arch/x86/kernel/cpu/common.c` and the IST setup in `idt.c`). Each
//! application processor gets a GDT and TSS of its own ([`init_ap`]).

use spin::Once;
use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, FS, GS, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::registers::segmentation::SegmentSelector;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable};
use x86_64::structures::tss::TaskStateSegment;

use super::percpu::MAX_CPUS;

/// IST slot (0-based, as `EntryOptions::set_stack_index` takes it) for #DF.
pub const IST_DOUBLE_FAULT: u16 = 0;
/// IST slot for NMI.
pub const IST_NMI: u16 = 1;
/// IST slot for #MC.
pub const IST_MACHINE_CHECK: u16 = 2;

/// Bytes of each IST stack.
pub const IST_STACK_SIZE: usize = 16 * 1024;
/// IST stacks per CPU (#DF, NMI, #MC).
pub const NR_IST_STACKS: usize = 3;

#[repr(C, align(16))]
struct IstStacks([[u8; IST_STACK_SIZE]; NR_IST_STACKS]);

/// Written only by the CPU (as stacks); Rust code takes addresses only.
static mut IST_STACKS: IstStacks = IstStacks([[0; IST_STACK_SIZE]; NR_IST_STACKS]);

struct Gdt {
    table: GlobalDescriptorTable,
    code: SegmentSelector,
    data: SegmentSelector,
    tss: SegmentSelector,
}

static TSS: Once<TaskStateSegment> = Once::new();
static GDT: Once<Gdt> = Once::new();

/// Physical range of the IST stacks (part of .bss).
pub fn ist_stacks() -> core::ops::Range<u64> {
    let start = (&raw const IST_STACKS) as u64;
    start..start + (IST_STACK_SIZE * NR_IST_STACKS) as u64
}

/// Builds and loads the boot CPU's GDT and TSS, reloads every segment
/// register.
pub fn init() {
    let base = ist_stacks().start;
    // Stacks grow down: each IST entry is the top of its stack.
    let tops: [u64; NR_IST_STACKS] =
        core::array::from_fn(|slot| base + ((slot + 1) * IST_STACK_SIZE) as u64);
    let gdt = load(&TSS, &GDT, tops);
    log::debug!(
        "GDT loaded (code {:#x}, data {:#x}, tss {:#x}); IST stacks {:#x}-{:#x} for #DF/NMI/#MC",
        gdt.code.0,
        gdt.data.0,
        gdt.tss.0,
        ist_stacks().start,
        ist_stacks().end
    );
}

/// Each application processor's GDT and TSS (index = CPU number; slot 0,
/// the boot CPU's, stays unused: it has [`GDT`] and [`TSS`]). A TSS
/// descriptor is marked busy by `ltr`, so no two CPUs can share one.
static AP_TSS: [Once<TaskStateSegment>; MAX_CPUS] = [const { Once::new() }; MAX_CPUS];
static AP_GDT: [Once<Gdt>; MAX_CPUS] = [const { Once::new() }; MAX_CPUS];

/// An application processor's GDT and TSS, with IST stacks whose tops are
/// `ist_tops` (indexed like [`IST_DOUBLE_FAULT`] …), loaded on the calling
/// CPU (cf. `cpu_init()` → `switch_to_new_gdt()`, `load_TR_desc()`). The
/// selectors equal the boot CPU's, so the shared IDT's gates fit.
pub fn init_ap(cpu: usize, ist_tops: [u64; NR_IST_STACKS]) {
    load(&AP_TSS[cpu], &AP_GDT[cpu], ist_tops);
}

fn load(
    tss: &'static Once<TaskStateSegment>,
    gdt: &'static Once<Gdt>,
    ist_tops: [u64; NR_IST_STACKS],
) -> &'static Gdt {
    let tss = tss.call_once(|| {
        let mut tss = TaskStateSegment::new();
        for (slot, top) in ist_tops.into_iter().enumerate() {
            tss.interrupt_stack_table[slot] = VirtAddr::new(top);
        }
        tss
    });
    let gdt = gdt.call_once(|| {
        let mut table = GlobalDescriptorTable::new();
        let code = table.append(Descriptor::kernel_code_segment());
        let data = table.append(Descriptor::kernel_data_segment());
        let tss = table.append(Descriptor::tss_segment(tss));
        Gdt {
            table,
            code,
            data,
            tss,
        }
    });
    gdt.table.load();
    // SAFETY: the selectors index descriptors of the GDT just loaded, which
    // lives in a `'static` `Once` and is never modified again: `code` is a
    // 64-bit ring-0 code segment, `data` a ring-0 data segment, `tss` an
    // available 64-bit TSS of this CPU alone (ltr marks it busy; each CPU's
    // is loaded once, by that CPU). FS/GS are nulled: the GS base (per-CPU
    // identity, `percpu`) is written after this, as the null selector
    // clears it on Intel CPUs.
    unsafe {
        CS::set_reg(gdt.code);
        SS::set_reg(gdt.data);
        DS::set_reg(gdt.data);
        ES::set_reg(gdt.data);
        FS::set_reg(SegmentSelector(0));
        GS::set_reg(SegmentSelector(0));
        load_tss(gdt.tss);
    }
    gdt
}
