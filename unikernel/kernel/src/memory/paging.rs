//! The kernel's final page tables (cf. `init_mem_mapping()` /
//! `kernel_physical_mapping_init()`), built with the `x86_64` crate's
//! page-table types.
//!
//! While building, the boot identity map is live, so table frames (from
//! memblock, below 4 GiB) are written at their physical address. After the
//! CR3 switch the same tables are reached through the direct map, and the
//! only lower-half mapping left is the kernel image itself.

use spin::{Mutex, Once};
use x86_64::registers::control::{Cr3, Cr3Flags};
use x86_64::registers::model_specific::{Efer, EferFlags};
use x86_64::structures::paging::{
    FrameAllocator, OffsetPageTable, PageSize, PageTable, PageTableFlags as F, PhysFrame, Size1GiB,
    Size2MiB, Size4KiB,
};
use x86_64::{PhysAddr as XPhys, VirtAddr as XVirt};

use mm::memblock::Memblock;
use mm::types::{PAGE_OFFSET, PAGE_SIZE, PhysAddr};

use crate::arch::x86_64::{boot, paging as early};

unsafe extern "C" {
    static __text_start: u8;
    static __rodata_start: u8;
    static __data_start: u8;
}

/// The live kernel page tables, for mapping after boot (fixmap, ioremap,
/// vmalloc). Tables are reached through the direct map.
static KERNEL_PT: Once<Mutex<OffsetPageTable<'static>>> = Once::new();

/// Direct-map page counts (4 KiB, 2 MiB) for meminfo's `DirectMap*` lines.
static DIRECT_MAP_PAGES: Once<(u64, u64)> = Once::new();

/// Direct-map pages by size: (4 KiB pages, 2 MiB pages).
pub fn direct_map_pages() -> (u64, u64) {
    DIRECT_MAP_PAGES.get().copied().unwrap_or((0, 0))
}

/// The longest physical range `[start, end)` the direct map covers.
static DIRECT_MAP_LONGEST: Once<(u64, u64)> = Once::new();

/// The longest physical range `[start, end)` mapped in the direct map
/// (`(0, 0)` before the final page tables): every page of it can be read
/// through [`phys_to_virt`].
pub fn direct_map_longest() -> (u64, u64) {
    DIRECT_MAP_LONGEST.get().copied().unwrap_or((0, 0))
}

/// Kernel virtual address of a lowmem physical address (cf. `__va()`).
pub fn phys_to_virt(phys: u64) -> *mut u8 {
    core::ptr::with_exposed_provenance_mut((PAGE_OFFSET + phys) as usize)
}

/// The live kernel page tables.
pub fn kernel_page_table() -> spin::MutexGuard<'static, OffsetPageTable<'static>> {
    KERNEL_PT.get().expect("final page tables are live").lock()
}

/// Page-table frames from memblock while booting.
struct MemblockFrames<'a> {
    mb: &'a mut Memblock,
    /// Tables must be reachable through the boot identity map now and the
    /// direct map later.
    limit: u64,
}

// SAFETY: every frame returned is a fresh memblock reservation ("page
// table"), so it is unused, page-aligned and never handed out again.
unsafe impl FrameAllocator<Size4KiB> for MemblockFrames<'_> {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        let pa = self
            .mb
            .alloc_named(PAGE_SIZE, PAGE_SIZE, PhysAddr(self.limit), "page table")?;
        Some(PhysFrame::containing_address(XPhys::new(pa.0)))
    }
}

/// Builds the final tables, switches CR3 to them and moves the early
/// physical window to the direct map.
pub fn init_final_tables(mb: &mut Memblock, direct_map_end: u64) {
    let nx = if Efer::read().contains(EferFlags::NO_EXECUTE_ENABLE) {
        F::NO_EXECUTE
    } else {
        F::empty()
    };
    let limit = direct_map_end.min(boot::BOOT_IDENTITY_LIMIT);
    let mut frames = MemblockFrames { mb, limit };
    let pml4_frame = frames
        .allocate_frame()
        .expect("memblock: a frame for the PML4");
    let pml4_ptr: *mut PageTable =
        core::ptr::with_exposed_provenance_mut(pml4_frame.start_address().as_u64() as usize);
    // SAFETY: the frame is a fresh memblock reservation below 4 GiB, so the
    // boot identity map (live) maps it writable at its physical address;
    // nothing else refers to it. Zeroed before being viewed as a table.
    let pml4 = unsafe {
        pml4_ptr.write(PageTable::new());
        &mut *pml4_ptr
    };
    // SAFETY: offset 0 is right while the boot identity map is live, and
    // every table frame comes from `frames` (below 4 GiB, identity-mapped).
    let mut pt = unsafe { OffsetPageTable::new(pml4, XVirt::new(0)) };

    // The direct map: every memblock memory range below lowmem.
    let ranges: heapless_ranges::Ranges = heapless_ranges::collect(frames.mb, direct_map_end);
    let (mut n4k, mut n2m) = (0u64, 0u64);
    let mut longest = (0u64, 0u64);
    for &(start, end) in ranges.as_slice() {
        if end - start > longest.1 - longest.0 {
            longest = (start, end);
        }
        let (a, b) = map_direct(
            &mut pt,
            &mut frames,
            start,
            end,
            F::PRESENT | F::WRITABLE | F::GLOBAL | nx,
        );
        n4k += a;
        n2m += b;
    }
    log::info!(
        "paging: direct map of [0, {direct_map_end:#x}) at {PAGE_OFFSET:#x}: {n2m} x 2M + {n4k} x 4K pages"
    );
    DIRECT_MAP_PAGES.call_once(|| (n4k, n2m));
    DIRECT_MAP_LONGEST.call_once(|| longest);

    // The kernel image, identity-mapped with W^X.
    // Linker symbols: only their addresses are taken.
    let (text, rodata, data) = (
        &raw const __text_start as u64,
        &raw const __rodata_start as u64,
        &raw const __data_start as u64,
    );
    let image = boot::kernel_image();
    let guard = boot::boot_stack_guard();
    map_identity(
        &mut pt,
        &mut frames,
        text..rodata,
        F::PRESENT | F::GLOBAL,
        &guard,
    );
    map_identity(
        &mut pt,
        &mut frames,
        rodata..data,
        F::PRESENT | F::GLOBAL | nx,
        &guard,
    );
    map_identity(
        &mut pt,
        &mut frames,
        data..image.end,
        F::PRESENT | F::WRITABLE | F::GLOBAL | nx,
        &guard,
    );
    log::debug!(
        "paging: kernel text {text:#x}-{rodata:#x} RX, rodata {rodata:#x}-{data:#x} R, data+bss {data:#x}-{:#x} RW; stack guard {:#x} unmapped",
        image.end,
        guard.start
    );

    // Pre-build the tables under the kmap windows, so kmap never allocates.
    super::highmem::prepare_tables(&mut pt, &mut frames);

    // SAFETY: the new tables map everything the kernel touches from here on:
    // its image (code, data, the boot stack and the statics), and lowmem at
    // PAGE_OFFSET for everything reached by physical address. The old
    // identity map of the rest of the first 4 GiB is dropped here on purpose.
    unsafe { Cr3::write(pml4_frame, Cr3Flags::empty()) };
    early::set_phys_window(PAGE_OFFSET, direct_map_end);
    log::info!(
        "paging: CR3 = {:#x}; boot identity map dropped",
        pml4_frame.start_address().as_u64()
    );

    // SAFETY: the PML4 frame is reserved in memblock and now reached through
    // the direct map, which maps every table frame (all below lowmem).
    let pml4: &'static mut PageTable =
        unsafe { &mut *phys_to_virt(pml4_frame.start_address().as_u64()).cast() };
    // SAFETY: PAGE_OFFSET maps all physical memory that holds tables.
    let live = unsafe { OffsetPageTable::new(pml4, XVirt::new(PAGE_OFFSET)) };
    KERNEL_PT.call_once(|| Mutex::new(live));
}

/// Maps `[start, end)` at `PAGE_OFFSET + phys` with 2 MiB pages where
/// aligned and 4 KiB pages at the ragged edges. Returns (4K count, 2M count).
///
/// Entries are written straight into the level they belong to, each
/// table looked up (or made) once per run it covers, as
/// `phys_pud_init()`/`phys_pmd_init()`/`phys_pte_init()` do, rather than a
/// `map_to()` walk from the PML4 per page: the boot maps about 1,400
/// pages here, and the walks were a tenth of its instructions before
/// `READY`.
fn map_direct(
    pt: &mut OffsetPageTable<'_>,
    frames: &mut MemblockFrames<'_>,
    start: u64,
    end: u64,
    flags: F,
) -> (u64, u64) {
    let (mut n4k, mut n2m) = (0, 0);
    let mut pa = start;
    while pa < end {
        let va = PAGE_OFFSET + pa;
        // Everything up to the next 2 MiB boundary (or `end`) lies in one
        // page table, everything up to the next 1 GiB one in one PD.
        let pmd_end = (pa + 1).next_multiple_of(Size2MiB::SIZE).min(end);
        if pa.is_multiple_of(Size2MiB::SIZE) && pa + Size2MiB::SIZE <= end {
            let run_end = (pa + 1)
                .next_multiple_of(Size1GiB::SIZE)
                .min(end & !(Size2MiB::SIZE - 1));
            let pd = table_at(pt, frames, va, 2);
            while pa < run_end {
                let frame = PhysFrame::<Size2MiB>::containing_address(XPhys::new(pa));
                set_unused(
                    &mut pd[pd_index(PAGE_OFFSET + pa)],
                    frame.start_address(),
                    flags | F::HUGE_PAGE,
                );
                pa += Size2MiB::SIZE;
                n2m += 1;
            }
        } else {
            n4k += map_4k_run(pt, frames, pa..pmd_end, va, flags);
            pa = pmd_end;
        }
    }
    (n4k, n2m)
}

/// Identity-maps `range` with 4 KiB pages, leaving out `hole`.
fn map_identity(
    pt: &mut OffsetPageTable<'_>,
    frames: &mut MemblockFrames<'_>,
    range: core::ops::Range<u64>,
    flags: F,
    hole: &core::ops::Range<u64>,
) {
    let mut pa = range.start & !(PAGE_SIZE - 1);
    let end = range.end.next_multiple_of(PAGE_SIZE);
    while pa < end {
        let pmd_end = (pa + 1).next_multiple_of(Size2MiB::SIZE).min(end);
        // The hole splits a run into the part below it and the part above.
        let below = pa..pmd_end.min(hole.start).max(pa);
        let above = hole.end.max(pa).min(pmd_end)..pmd_end;
        for run in [below, above] {
            if run.start < run.end {
                map_4k_run(pt, frames, run.clone(), run.start, flags);
            }
        }
        pa = pmd_end;
    }
}

/// Maps the 4 KiB frames of `phys` (inside one 2 MiB-aligned region) at
/// `va` onwards, through one page table. Returns the pages mapped.
fn map_4k_run(
    pt: &mut OffsetPageTable<'_>,
    frames: &mut MemblockFrames<'_>,
    phys: core::ops::Range<u64>,
    va: u64,
    flags: F,
) -> u64 {
    let table = table_at(pt, frames, va, 1);
    let mut n = 0;
    for pa in phys.step_by(PAGE_SIZE as usize) {
        let v = va + n * PAGE_SIZE;
        set_unused(&mut table[pt_index(v)], XPhys::new(pa), flags);
        n += 1;
    }
    n
}

/// The level-`level` table (1: page table, 2: page directory) that maps
/// `va`, with the tables above it made where missing: zeroed frames from
/// memblock, linked present and writable (the leaf entries carry the
/// restrictions, as `map_to()` links them).
fn table_at<'t>(
    pt: &mut OffsetPageTable<'_>,
    frames: &mut MemblockFrames<'_>,
    va: u64,
    level: u8,
) -> &'t mut PageTable {
    let v = XVirt::new(va);
    let indices = [v.p4_index(), v.p3_index(), v.p2_index()];
    let mut table: *mut PageTable = pt.level_4_table_mut();
    for &index in &indices[..(4 - level) as usize] {
        // SAFETY: `table` is the PML4 or a table frame made below; while
        // the final tables are built the boot identity map is live, so a
        // table frame (below 4 GiB, from memblock) is reached at its
        // physical address, and no other reference to it exists.
        let entry = unsafe { &mut (&mut *table)[index] };
        if entry.is_unused() {
            let frame = frames
                .allocate_frame()
                .expect("memblock: a frame for a page table");
            let fresh: *mut PageTable =
                core::ptr::with_exposed_provenance_mut(frame.start_address().as_u64() as usize);
            // SAFETY: a fresh memblock reservation, identity-mapped and
            // unused: zeroed before it is linked.
            unsafe { fresh.write(PageTable::new()) };
            entry.set_frame(frame, F::PRESENT | F::WRITABLE);
        } else if entry.flags().contains(F::HUGE_PAGE) {
            panic!("paging: boot mapping of {va:#x} overlaps a huge page");
        }
        table = core::ptr::with_exposed_provenance_mut(entry.addr().as_u64() as usize);
    }
    // SAFETY: as above: a table frame, identity-mapped, referred to only
    // through this builder.
    unsafe { &mut *table }
}

/// Fills an entry that must still be empty: an overlap is a bug in the
/// layout, fatal at boot.
fn set_unused(
    entry: &mut x86_64::structures::paging::page_table::PageTableEntry,
    addr: XPhys,
    flags: F,
) {
    if !entry.is_unused() {
        panic!("paging: boot mapping of {addr:#x} overlaps an existing one");
    }
    entry.set_addr(addr, flags);
}

fn pd_index(va: u64) -> x86_64::structures::paging::PageTableIndex {
    XVirt::new(va).p2_index()
}

fn pt_index(va: u64) -> x86_64::structures::paging::PageTableIndex {
    XVirt::new(va).p1_index()
}

/// Memory ranges to direct-map, copied out of memblock so that memblock can
/// be mutated (table frames) while they are mapped.
mod heapless_ranges {
    use mm::memblock::Memblock;
    use mm::types::PAGE_SIZE;

    const MAX: usize = 128;

    pub struct Ranges {
        items: [(u64, u64); MAX],
        len: usize,
    }

    impl Ranges {
        pub fn as_slice(&self) -> &[(u64, u64)] {
            &self.items[..self.len]
        }
    }

    /// Page-aligned memory ranges below `limit`.
    pub fn collect(mb: &Memblock, limit: u64) -> Ranges {
        let mut r = Ranges {
            items: [(0, 0); MAX],
            len: 0,
        };
        for region in mb.memory_regions() {
            let start = region.base.0.next_multiple_of(PAGE_SIZE);
            let end = (region.end().0 & !(PAGE_SIZE - 1)).min(limit);
            if start < end && r.len < MAX {
                r.items[r.len] = (start, end);
                r.len += 1;
            }
        }
        r
    }
}
