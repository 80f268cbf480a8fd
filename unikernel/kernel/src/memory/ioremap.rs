//! `ioremap()`: device memory (PCIe ECAM, BARs, the local and I/O APICs)
//! mapped uncached into the vmalloc area (cf. `arch/x86/mm/ioremap.c`).
//!
//! There is no identity map below lowmem except the kernel image, so every
//! MMIO access in the kernel goes through an address handed out here.
//!
//! Interim allocator: a bump pointer over `[VMALLOC_START, +1 GiB)` with one
//! unmapped guard page after each area, and a fixed list of the areas for
//! `/api/vmallocinfo`. Areas are never unmapped (the devices we drive live
//! forever). A later issue replaces the bump pointer with a real `vmap_area`
//! allocator shared with vmalloc; [`ioremap`]'s signature stays.
//!
//! Mappings are `PCD|PWT` (UC- with the default PAT: strong uncached for
//! registers that have side effects), `NX`, global. Page-table pages come
//! from the buddy allocator, tagged `PAGE_TABLE`. RAM the buddy allocator
//! owns (free or allocated) is refused: mapping it uncached would alias
//! cached direct-map entries (cf. the `walk_system_ram_range()` check in
//! `__ioremap_caller()`); reserved and not-RAM frames are fine.

use spin::Mutex;
use x86_64::structures::paging::{
    FrameAllocator, Mapper, Page, PageTableFlags as F, PhysFrame, Size4KiB,
};
use x86_64::{PhysAddr as XPhys, VirtAddr as XVirt};

use mm::gfp::GfpFlags;
use mm::layout::VMALLOC_START;
use mm::page::OwnerTag;
use mm::types::{Order, PAGE_SIZE, Pfn, VirtAddr};

use super::paging::kernel_page_table;

/// Bytes of the vmalloc area the interim ioremap may use.
pub const IOREMAP_SPACE: u64 = 1 << 30;
/// Areas the list can hold.
pub const MAX_IOREMAP_AREAS: usize = 32;

/// One live mapping, for `/api/vmallocinfo` (kind `"ioremap"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoremapArea {
    /// Physical address asked for (not rounded).
    pub phys: u64,
    /// Virtual address returned (same offset into its page as `phys`).
    pub virt: u64,
    /// Bytes asked for.
    pub size: u64,
    /// First virtual address of the mapped pages.
    pub area_start: u64,
    /// Pages mapped (the guard page after them is not counted).
    pub nr_pages: u64,
    /// Who asked ("PCIe ECAM", "LAPIC", …), as Linux's `caller` column.
    pub caller: &'static str,
}

/// Why a range was not mapped; nothing is left mapped on error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoremapError {
    /// Size 0, or the range wraps or is beyond the physical address width.
    BadRange { phys: u64, size: u64 },
    /// The range covers RAM the buddy allocator manages.
    Ram { pfn: u64 },
    /// The 1 GiB window is used up.
    NoVirtualSpace { size: u64 },
    /// The area list is full.
    TooManyAreas,
    /// No page for a page table, or the mapping collided (a bug).
    MapFailed { virt: u64 },
}

impl core::fmt::Display for IoremapError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            IoremapError::BadRange { phys, size } => write!(f, "bad range {phys:#x}+{size:#x}"),
            IoremapError::Ram { pfn } => write!(f, "pfn {pfn:#x} is RAM owned by the page allocator"),
            IoremapError::NoVirtualSpace { size } => write!(f, "no virtual space for {size:#x} bytes"),
            IoremapError::TooManyAreas => write!(f, "more than {MAX_IOREMAP_AREAS} ioremap areas"),
            IoremapError::MapFailed { virt } => write!(f, "mapping {virt:#x} failed"),
        }
    }
}

struct State {
    /// Next free virtual address (page-aligned).
    next: u64,
    areas: [Option<IoremapArea>; MAX_IOREMAP_AREAS],
}

static STATE: Mutex<State> = Mutex::new(State {
    next: VMALLOC_START,
    areas: [None; MAX_IOREMAP_AREAS],
});

/// The live areas, in the order they were made.
#[allow(dead_code, reason = "read by /api/vmallocinfo (issue #4)")]
pub fn areas() -> [Option<IoremapArea>; MAX_IOREMAP_AREAS] {
    STATE.lock().areas
}

/// An existing area that covers `[phys, phys + size)`, as the virtual
/// address of `phys` (drivers that learn sub-ranges of a BAR mapped whole).
pub fn find(phys: u64, size: u64) -> Option<VirtAddr> {
    let end = phys.checked_add(size)?;
    STATE
        .lock()
        .areas
        .iter()
        .flatten()
        .find(|a| a.phys <= phys && end <= a.phys + a.size)
        .map(|a| VirtAddr(a.virt + (phys - a.phys)))
}

/// Maps `[phys, phys + size)` uncached; see the module doc.
#[allow(dead_code, reason = "API for POST /api/alloc type ioremap")]
pub fn ioremap(phys: u64, size: u64) -> Result<VirtAddr, IoremapError> {
    ioremap_caller(phys, size, "ioremap")
}

/// [`ioremap`] recording `caller` for `/api/vmallocinfo`.
pub fn ioremap_caller(
    phys: u64,
    size: u64,
    caller: &'static str,
) -> Result<VirtAddr, IoremapError> {
    const MAX_PHYS: u64 = 1 << 52;
    let bad = IoremapError::BadRange { phys, size };
    let end = phys.checked_add(size).filter(|&e| size > 0 && e <= MAX_PHYS).ok_or(bad)?;
    let first_pfn = phys / PAGE_SIZE;
    let end_pfn = end.div_ceil(PAGE_SIZE);
    let nr_pages = end_pfn - first_pfn;

    // Not RAM the buddy allocator owns.
    {
        let pages = super::mm().lock();
        for pfn in first_pfn..end_pfn {
            if let Some(page) = pages.page(Pfn(pfn))
                && !page.is_nomap()
                && (!page.is_reserved() || page.is_allocated() || page.is_buddy())
            {
                return Err(IoremapError::Ram { pfn });
            }
        }
    }

    let mut state = STATE.lock();
    let slot = state.areas.iter().position(Option::is_none).ok_or(IoremapError::TooManyAreas)?;
    let area_start = state.next;
    let area_end = nr_pages
        .checked_add(1) // guard page
        .and_then(|n| n.checked_mul(PAGE_SIZE))
        .and_then(|bytes| area_start.checked_add(bytes))
        .filter(|&e| e <= VMALLOC_START + IOREMAP_SPACE)
        .ok_or(IoremapError::NoVirtualSpace { size })?;

    let flags = F::PRESENT | F::WRITABLE | F::NO_CACHE | F::WRITE_THROUGH | F::NO_EXECUTE | F::GLOBAL;
    let mut pt = kernel_page_table();
    for i in 0..nr_pages {
        let virt = area_start + i * PAGE_SIZE;
        let page = Page::<Size4KiB>::containing_address(XVirt::new(virt));
        let frame = PhysFrame::<Size4KiB>::containing_address(XPhys::new((first_pfn + i) * PAGE_SIZE));
        // SAFETY: `virt` lies in the part of the ioremap window past the bump
        // pointer, which nothing has mapped or referenced (the window is
        // reserved for ioremap, the pointer only grows, and we hold the
        // state lock); `frame` is device memory or reserved RAM (checked
        // above), so no Rust object lives there and the new uncached alias
        // cannot change the meaning of any existing reference.
        match unsafe { pt.map_to(page, frame, flags, &mut BuddyFrames) } {
            Ok(flush) => flush.flush(),
            Err(e) => {
                log::error!("ioremap: mapping {virt:#x} -> {:#x}: {e:?}", frame.start_address());
                // Undo what was mapped; the page-table pages stay (harmless,
                // the next area reuses them).
                for j in 0..i {
                    let page = Page::<Size4KiB>::containing_address(XVirt::new(area_start + j * PAGE_SIZE));
                    if let Ok((_, flush)) = pt.unmap(page) {
                        flush.flush();
                    }
                }
                return Err(IoremapError::MapFailed { virt });
            }
        }
    }
    drop(pt);

    let virt = area_start + phys % PAGE_SIZE;
    state.next = area_end;
    state.areas[slot] = Some(IoremapArea { phys, virt, size, area_start, nr_pages, caller });
    log::debug!("ioremap: {phys:#x}+{size:#x} at {virt:#x} ({caller})");
    Ok(VirtAddr(virt))
}

/// Page-table pages for ioremap from the buddy allocator (zeroed lowmem,
/// so the direct map, through which `OffsetPageTable` edits tables,
/// reaches them).
struct BuddyFrames;

// SAFETY: each frame is a fresh order-0 block from the buddy allocator,
// tagged PAGE_TABLE and never freed, so it is unused and handed out once.
unsafe impl FrameAllocator<Size4KiB> for BuddyFrames {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        let gfp = GfpFlags::GFP_KERNEL | GfpFlags::ZERO;
        match super::mm().alloc_pages(gfp, Order::ZERO, OwnerTag::PAGE_TABLE) {
            Ok(pfn) => Some(PhysFrame::containing_address(XPhys::new(pfn.phys().0))),
            Err(e) => {
                log::error!("ioremap: no page for a page table: {e}");
                None
            }
        }
    }
}
