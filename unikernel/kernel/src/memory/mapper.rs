//! [`PageMapper`] on the live kernel tables: the mechanism under vmalloc,
//! vmap, ioremap, kmap and kmap_atomic (cf. `vmap_pages_range()`,
//! `vunmap_range()`, `flush_tlb_kernel_range()`).
//!
//! - `map_page` installs one 4 KiB PTE with the `x86_64` crate's
//!   `OffsetPageTable::map_to_with_table_flags`. Missing intermediate
//!   tables are zeroed order-0 lowmem frames from the buddy allocator,
//!   tagged `PAGE_TABLE`. They are allocated **outside** the page-table
//!   lock: the lock order is vmap/kmap lock → zone lock → page-table lock
//!   (the zone lock may be held while a HighMem frame is kmap_atomic'ed,
//!   which takes the page-table lock), so the page-table lock is never held
//!   while the zone lock is taken. A map attempt that needs a table fails
//!   with `FrameAllocationFailed`, the lock is dropped, one frame is
//!   allocated, and the attempt repeats (at most three tables per PTE).
//! - `map_pages` and `unmap_pages` (vmalloc, vmap, ioremap, vfree) do a
//!   PTE table's run of pages under one take of the page-table lock and
//!   one walk, as Linux's `vmap_pte_range()` / `vunmap_pte_range()` do;
//!   `map_pages` maps the run's first page through `map_page`, which
//!   builds any missing table.
//! - `unmap_page` clears the PTE without flushing. Unlike Linux, which
//!   keeps kernel page tables forever, a table of the vmalloc window that
//!   becomes empty is detached from its parent and freed after the next
//!   flush of that window: `POST /api/reset` promises that buddyinfo
//!   returns to its boot value, and the tables under a freed vmalloc area
//!   would otherwise stay allocated. The pkmap and fixmap tables, built at
//!   boot, are never detached.
//! - `flush_tlb_range` uses `invlpg` per page, or a CR3 reload above
//!   [`FLUSH_ALL_CEILING`] pages (cf. `tlb_single_page_flush_ceiling`).
//!   None of these mappings is global, so a CR3 reload drops them. Either
//!   instruction also empties the paging-structure caches, which is what
//!   makes freeing detached tables after it safe.
//! - Only the windows of `mm::layout` are served (vmalloc area, pkmap,
//!   fixmap): a bad address can never clobber the direct map or the image.

use core::sync::atomic::{AtomicU64, Ordering};

use spin::{Mutex, Once};
use x86_64::registers::model_specific::{Efer, EferFlags};
use x86_64::structures::paging::mapper::{MapToError, MappedFrame, TranslateResult};
use x86_64::structures::paging::page_table::PageTableEntry;
use x86_64::structures::paging::{
    FrameAllocator, Mapper, Page, PageTable, PageTableFlags as F, PhysFrame, Size4KiB, Translate,
};
use x86_64::{PhysAddr as XPhys, VirtAddr as XVirt};

use mm::gfp::GfpFlags;
use mm::layout::{FIXMAP_BASE, FIXMAP_END, PKMAP_BASE, VMALLOC_MAX_SIZE, VMALLOC_START};
use mm::page::OwnerTag;
use mm::platform::{CacheMode, MapError, MapProt, PageMapper};
use mm::types::{Order, PAGE_SIZE, Pfn, VirtAddr};

use super::highmem::KernelPlatform;
use super::paging::{kernel_page_table, phys_to_virt};

/// Above this many pages a range flush reloads CR3 instead of `invlpg`
/// per page (Linux's default `tlb_single_page_flush_ceiling`).
pub const FLUSH_ALL_CEILING: u64 = 33;

/// Page-table pages allocated from the buddy allocator and not freed
/// (meminfo `PageTables`, with the boot tables).
static TABLE_PAGES: AtomicU64 = AtomicU64::new(0);

/// Tables detached by `unmap_page`, freed after the next flush of the
/// vmalloc window.
const MAX_DETACHED: usize = 512;

struct Detached {
    frames: [Pfn; MAX_DETACHED],
    len: usize,
}

/// Lock order: page-table lock → this (both short).
static DETACHED: Mutex<Detached> = Mutex::new(Detached {
    frames: [Pfn(0); MAX_DETACHED],
    len: 0,
});

/// Live page-table pages taken from the buddy allocator since boot.
pub fn table_pages() -> u64 {
    TABLE_PAGES.load(Ordering::Relaxed)
}

/// `NO_EXECUTE` if EFER.NXE is on (else the bit is reserved and faults).
fn nx() -> F {
    static NX: Once<F> = Once::new();
    *NX.call_once(|| {
        if Efer::read().contains(EferFlags::NO_EXECUTE_ENABLE) {
            F::NO_EXECUTE
        } else {
            F::empty()
        }
    })
}

/// First physical address the CPU cannot address (CPUID 0x8000_0008
/// MAXPHYADDR): a PTE above it sets reserved bits.
fn phys_limit() -> u64 {
    static LIMIT: Once<u64> = Once::new();
    *LIMIT.call_once(|| {
        // CPUID exists on every x86_64 CPU; leaf 0x8000_0008 whenever the
        // max extended leaf says so.
        let cpuid = core::arch::x86_64::__cpuid;
        let bits = if cpuid(0x8000_0000).eax >= 0x8000_0008 {
            cpuid(0x8000_0008).eax & 0xff
        } else {
            36
        };
        1u64 << bits.clamp(32, 52)
    })
}

/// The vmalloc window (vmalloc, vmap, ioremap).
fn in_vmalloc_window(virt: u64) -> bool {
    (VMALLOC_START..VMALLOC_START + VMALLOC_MAX_SIZE).contains(&virt)
}

/// Every window this mapper serves.
fn in_windows(virt: u64) -> bool {
    in_vmalloc_window(virt) || (PKMAP_BASE..FIXMAP_END).contains(&virt)
}

/// PTE flags for `prot` (cf. `pgprot_t` → `_PAGE_*`). Never `GLOBAL`: a CR3
/// reload must be able to drop these translations.
fn pte_flags(prot: MapProt) -> F {
    let mut flags = F::PRESENT;
    if prot.writable {
        flags |= F::WRITABLE;
    }
    if !prot.executable {
        flags |= nx();
    }
    if prot.cache == CacheMode::Uncached {
        flags |= F::NO_CACHE | F::WRITE_THROUGH;
    }
    flags
}

/// Frames for new tables, allocated before the page-table lock was taken.
struct Spares {
    frames: [Option<PhysFrame<Size4KiB>>; 3],
}

// SAFETY: every frame handed out is a fresh order-0 lowmem block from the
// buddy allocator (tagged PAGE_TABLE), owned by nobody else, reached by the
// direct map through which `OffsetPageTable` edits tables, and given out
// once (taken out of the array).
unsafe impl FrameAllocator<Size4KiB> for Spares {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        let frame = self.frames.iter_mut().find_map(Option::take)?;
        TABLE_PAGES.fetch_add(1, Ordering::Relaxed);
        Some(frame)
    }
}

impl Spares {
    fn push(&mut self, frame: PhysFrame<Size4KiB>) -> bool {
        match self.frames.iter_mut().find(|f| f.is_none()) {
            Some(slot) => {
                *slot = Some(frame);
                true
            }
            None => false,
        }
    }

    /// Gives back the frames no table needed (page-table lock not held).
    fn release(&mut self) {
        for frame in self.frames.iter_mut().filter_map(Option::take) {
            let _ = super::mm()
                .free_pages(Pfn(frame.start_address().as_u64() / PAGE_SIZE), Order::ZERO);
        }
    }
}

/// One zeroed lowmem frame for a table, or `None` (zone lock only).
fn alloc_table_frame() -> Option<PhysFrame<Size4KiB>> {
    let gfp = GfpFlags::GFP_KERNEL | GfpFlags::ZERO;
    match super::mm().alloc_pages(gfp, Order::ZERO, OwnerTag::PAGE_TABLE) {
        Ok(pfn) => Some(PhysFrame::containing_address(XPhys::new(pfn.phys().0))),
        Err(e) => {
            log::warn!("paging: no page for a page table: {e}");
            None
        }
    }
}

/// The table an entry points at, through the direct map.
///
/// # Safety
/// `entry` must be a present, non-huge entry of a live kernel table, and
/// the caller must hold the page-table lock for as long as the reference
/// lives (nothing else edits the tables then).
unsafe fn next_table<'t>(entry: u64) -> &'t mut PageTable {
    // SAFETY: per the contract, the entry points at a table frame, which
    // is in lowmem and so mapped writable by the direct map.
    unsafe { &mut *phys_to_virt(entry & 0x000f_ffff_ffff_f000).cast::<PageTable>() }
}

/// A present entry that points at a lower table (not a huge page).
fn is_table(entry: &PageTableEntry) -> bool {
    entry.flags().contains(F::PRESENT) && !entry.flags().contains(F::HUGE_PAGE)
}

/// The PTE table (level 1) that maps `virt`, if the tables above it are
/// present (page-table lock held: `pt` is borrowed from its guard).
fn pte_table_locked(
    pt: &mut x86_64::structures::paging::OffsetPageTable<'_>,
    virt: u64,
) -> Option<*mut PageTable> {
    let idx = |shift: u32| ((virt >> shift) & 511) as usize;
    let mut table: *mut PageTable = pt.level_4_table_mut();
    for shift in [39, 30, 21] {
        // SAFETY: `table` is the live root or a table reached from a
        // present, non-huge entry checked just before, and we hold the
        // page-table lock, so `next_table`'s contract holds.
        unsafe {
            let entry = &(&*table)[idx(shift)];
            if !is_table(entry) {
                return None;
            }
            table = next_table(entry.addr().as_u64());
        }
    }
    Some(table)
}

/// Clears the PTEs of the `count` pages from `virt`, all mapped by one PTE
/// table (page-table lock held: `pt` is borrowed from its guard), tells
/// `each` the frame each page mapped, and, in the vmalloc window, detaches
/// every table the removal left empty, bottom-up.
fn unmap_run_locked(
    pt: &mut x86_64::structures::paging::OffsetPageTable<'_>,
    virt: u64,
    count: u64,
    each: &mut dyn FnMut(u64, Option<Pfn>),
) {
    debug_assert!(count >= 1 && (virt >> 12) % 512 + count <= 512);
    let idx = |shift: u32| ((virt >> shift) & 511) as usize;
    let Some(l1) = pte_table_locked(pt, virt) else {
        (0..count).for_each(|k| each(k, None));
        return;
    };
    let mut cleared = false;
    for k in 0..count {
        // SAFETY: `l1` is the live PTE table mapping `virt`, whose run of
        // `count` entries stays inside it; the page-table lock is held.
        let pte = unsafe { &mut (&mut *l1)[idx(12) + k as usize] };
        if !pte.flags().contains(F::PRESENT) {
            each(k, None);
            continue;
        }
        let pfn = Pfn(pte.addr().as_u64() / PAGE_SIZE);
        pte.set_unused();
        cleared = true;
        each(k, Some(pfn));
    }
    if !cleared || !in_vmalloc_window(virt) {
        return;
    }
    let l4: *mut PageTable = pt.level_4_table_mut();
    // SAFETY: as in `pte_table_locked`, which found these three tables
    // present a moment ago under the same lock: each is reached from a
    // present, non-huge entry of its parent.
    unsafe {
        let l3: *mut PageTable = next_table((&*l4)[idx(39)].addr().as_u64());
        let l2: *mut PageTable = next_table((&*l3)[idx(30)].addr().as_u64());
        let empty = |t: *mut PageTable| (&*t).iter().all(|e| e.is_unused());
        let mut detached = DETACHED.lock();
        // Level by level: a table is detached only if it is empty and
        // there is room to remember it until the flush.
        for (table, parent, slot) in [(l1, l2, idx(21)), (l2, l3, idx(30)), (l3, l4, idx(39))] {
            if !empty(table) || detached.len == MAX_DETACHED {
                break;
            }
            let frame = Pfn((&*parent)[slot].addr().as_u64() / PAGE_SIZE);
            (&mut *parent)[slot].set_unused();
            let n = detached.len;
            detached.frames[n] = frame;
            detached.len += 1;
        }
    }
}

/// Frees the detached tables; only after a flush (page-table lock not held).
fn free_detached() {
    loop {
        let frame = {
            let mut d = DETACHED.lock();
            match d.len.checked_sub(1) {
                Some(n) => {
                    d.len = n;
                    d.frames[n]
                }
                None => return,
            }
        };
        match super::mm().free_pages(frame, Order::ZERO) {
            Ok(()) => {
                TABLE_PAGES.fetch_sub(1, Ordering::Relaxed);
            }
            // A boot-time (memblock) table: detached and left reserved.
            Err(e) => log::debug!("paging: page table {:#x} not freed: {e:?}", frame.phys().0),
        }
    }
}

impl PageMapper for KernelPlatform {
    fn map_page(&self, virt: VirtAddr, pfn: Pfn, prot: MapProt) -> Result<(), MapError> {
        if !virt.0.is_multiple_of(PAGE_SIZE) || !in_windows(virt.0) || pfn.phys().0 >= phys_limit()
        {
            return Err(MapError::BadAddress { virt });
        }
        let page = Page::<Size4KiB>::containing_address(XVirt::new(virt.0));
        let frame = PhysFrame::<Size4KiB>::containing_address(XPhys::new(pfn.phys().0));
        let flags = pte_flags(prot);
        let mut spares = Spares { frames: [None; 3] };
        let result = loop {
            let attempt = {
                let mut pt = kernel_page_table();
                // SAFETY: `virt` is in one of mm's windows, which only mm's
                // vmalloc/kmap code maps, and it checks the PTE is empty
                // (`PageAlreadyMapped` otherwise), so no existing reference
                // changes meaning. The caller owns `pfn` (vmalloc, vmap,
                // kmap) or it is device memory or reserved RAM (ioremap).
                unsafe {
                    pt.map_to_with_table_flags(
                        page,
                        frame,
                        flags,
                        F::PRESENT | F::WRITABLE,
                        &mut spares,
                    )
                }
            };
            match attempt {
                // A fresh entry: not-present translations are never cached.
                Ok(flush) => {
                    flush.ignore();
                    break Ok(());
                }
                Err(MapToError::FrameAllocationFailed) => match alloc_table_frame() {
                    Some(f) if spares.push(f) => {}
                    Some(f) => {
                        let _ = super::mm()
                            .free_pages(Pfn(f.start_address().as_u64() / PAGE_SIZE), Order::ZERO);
                        break Err(MapError::NoMemory { virt });
                    }
                    None => break Err(MapError::NoMemory { virt }),
                },
                Err(MapToError::ParentEntryHugePage) => break Err(MapError::NoMemory { virt }),
                Err(MapToError::PageAlreadyMapped(old)) => {
                    break Err(MapError::AlreadyMapped {
                        virt,
                        pfn: Pfn(old.start_address().as_u64() / PAGE_SIZE),
                    });
                }
            }
        };
        spares.release();
        result
    }

    /// A page at a time through [`PageMapper::map_page`] where a PTE table
    /// may be missing (the first page of each table's run), then the rest
    /// of that table's run by direct PTE writes under one take of the
    /// page-table lock (cf. `vmap_pte_range()`): one walk per 2 MiB, not
    /// one per page.
    fn map_pages(
        &self,
        virt: VirtAddr,
        nr: u64,
        pfn_at: &dyn Fn(u64) -> Pfn,
        prot: MapProt,
    ) -> Result<(), (u64, MapError)> {
        let flags = pte_flags(prot);
        let mut i = 0;
        while i < nr {
            let first = virt.0 + i * PAGE_SIZE;
            self.map_page(VirtAddr(first), pfn_at(i), prot)
                .map_err(|e| (i, e))?;
            i += 1;
            // The pages after `first` that the same PTE table maps.
            let in_table = 511 - (first >> 12) % 512;
            let end = nr.min(i + in_table);
            if i == end {
                continue;
            }
            let mut pt = kernel_page_table();
            let Some(l1) = pte_table_locked(&mut pt, first) else {
                // Unreachable: `first` was just mapped through this table.
                continue;
            };
            while i < end {
                let v = virt.0 + i * PAGE_SIZE;
                let pfn = pfn_at(i);
                if !in_windows(v) || pfn.phys().0 >= phys_limit() {
                    return Err((i, MapError::BadAddress { virt: VirtAddr(v) }));
                }
                // SAFETY: `l1` is the live PTE table mapping `first`, and
                // `v` lies in the same 2 MiB, so its entry is in it; the
                // page-table lock (`pt`) is held. The entry is written only
                // if unused, and the page is in one of mm's windows, which
                // only mm's vmalloc/kmap code maps, so no existing
                // reference changes meaning (as in `map_page`).
                let pte = unsafe { &mut (&mut *l1)[((v >> 12) % 512) as usize] };
                if !pte.is_unused() {
                    let old = Pfn(pte.addr().as_u64() / PAGE_SIZE);
                    return Err((
                        i,
                        MapError::AlreadyMapped {
                            virt: VirtAddr(v),
                            pfn: old,
                        },
                    ));
                }
                // A fresh entry: not-present translations are never cached.
                pte.set_addr(XPhys::new(pfn.phys().0), flags);
                i += 1;
            }
        }
        Ok(())
    }

    fn unmap_page(&self, virt: VirtAddr) -> Option<Pfn> {
        if !in_windows(virt.0) {
            return None;
        }
        let mut old = None;
        let page = virt.0 & !(PAGE_SIZE - 1);
        unmap_run_locked(&mut kernel_page_table(), page, 1, &mut |_, pfn| old = pfn);
        old
    }

    /// A PTE table's run of pages at a time under one take of the
    /// page-table lock (cf. `vunmap_pte_range()`); a run that leaves mm's
    /// windows goes a page at a time, as `unmap_page` checks each.
    fn unmap_pages(&self, virt: VirtAddr, nr: u64, each: &mut dyn FnMut(u64, Option<Pfn>)) {
        let base = virt.0 & !(PAGE_SIZE - 1);
        let mut i = 0;
        while i < nr {
            let v = base + i * PAGE_SIZE;
            let run = (512 - (v >> 12) % 512).min(nr - i);
            if in_windows(v) && in_windows(v + (run - 1) * PAGE_SIZE) {
                let mut pt = kernel_page_table();
                unmap_run_locked(&mut pt, v, run, &mut |k, old| each(i + k, old));
            } else {
                for k in 0..run {
                    each(i + k, self.unmap_page(VirtAddr(v + k * PAGE_SIZE)));
                }
            }
            i += run;
        }
    }

    fn flush_tlb_range(&self, start: VirtAddr, end: VirtAddr) {
        let first = start.0 & !(PAGE_SIZE - 1);
        let nr_pages = end.0.saturating_sub(first).div_ceil(PAGE_SIZE);
        crate::arch::x86_64::ipi::flush_local(first, nr_pages);
        // cf. flush_tlb_kernel_range(): every other CPU too, before the
        // range or its frames can be reused — but for a kmap_atomic slot,
        // which only its own CPU ever maps (cf. `arch_kmap_local_post_unmap()`:
        // a local flush).
        if !(FIXMAP_BASE..FIXMAP_END).contains(&first) {
            crate::arch::x86_64::ipi::flush_tlb_kernel_range_others(first, nr_pages);
        }
        if nr_pages != 0 && in_vmalloc_window(first) {
            free_detached();
        }
    }

    fn translate(&self, virt: VirtAddr) -> Option<Pfn> {
        let v = XVirt::try_new(virt.0).ok()?;
        match kernel_page_table().translate(v) {
            TranslateResult::Mapped {
                frame: MappedFrame::Size4KiB(f),
                ..
            } => Some(Pfn(f.start_address().as_u64() / PAGE_SIZE)),
            _ => None,
        }
    }
}
