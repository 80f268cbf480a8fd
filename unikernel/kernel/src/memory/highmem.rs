//! Reaching frames that have no permanent mapping: the fixmap's
//! `kmap_atomic` slots (cf. `kmap_local_page()` and `arch/x86/mm/highmem_32.c`),
//! and the [`KernelPlatform`] that lends `mm` a mapping of any frame.
//!
//! A HighMem frame is never in the direct map. To zero, fill or checksum
//! one, the kernel maps it into the next free fixmap slot (a stack: nested
//! maps unmap in reverse order), uses it, unmaps it and flushes that TLB
//! entry. Interrupts stay off meanwhile, as Linux disables preemption and
//! page faults: the slot belongs to this CPU until it is released.

use core::sync::atomic::{AtomicUsize, Ordering};

use x86_64::instructions::interrupts;
use x86_64::instructions::tlb;
use x86_64::structures::paging::{
    FrameAllocator, Mapper, OffsetPageTable, Page, PageTableFlags as F, PhysFrame, Size4KiB,
};
use x86_64::{PhysAddr as XPhys, VirtAddr as XVirt};

use mm::layout::{FIXMAP_BASE, LAST_PKMAP, NR_FIX_KMAP, PKMAP_BASE};
use mm::platform::{FRAME_BYTES, Platform};
use mm::types::{PAGE_SIZE, Pfn};

use super::paging::{kernel_page_table, phys_to_virt};
use crate::arch::x86_64::paging as early;

/// Slots of the kmap_atomic stack in use (cf. `kmap_local_idx`).
static KMAP_ATOMIC_DEPTH: AtomicUsize = AtomicUsize::new(0);

/// Creates the page tables under the pkmap and fixmap windows at boot, so
/// that mapping a slot later is a single PTE write and never allocates.
pub(super) fn prepare_tables(
    pt: &mut OffsetPageTable<'_>,
    frames: &mut impl FrameAllocator<Size4KiB>,
) {
    let first = Page::<Size4KiB>::containing_address(XVirt::new(PKMAP_BASE));
    let last = Page::<Size4KiB>::containing_address(XVirt::new(
        FIXMAP_BASE + (NR_FIX_KMAP as u64 - 1) * PAGE_SIZE,
    ));
    // Touch one page per 2 MiB: a map then unmap leaves its PT in place.
    let mut page = first;
    let dummy = PhysFrame::<Size4KiB>::containing_address(XPhys::new(0));
    while page <= last {
        // SAFETY: a transient mapping in tables that are not live yet; it is
        // removed again at once, only the intermediate tables remain.
        unsafe {
            match pt.map_to(page, dummy, F::PRESENT, frames) {
                Ok(flush) => flush.ignore(),
                Err(e) => panic!("paging: kmap window tables: {e:?}"),
            }
        }
        if let Ok((_, flush)) = pt.unmap(page) {
            flush.ignore();
        }
        page += 512;
    }
    let _ = LAST_PKMAP;
}

/// Tables already exist under the windows: any request for a new one is a bug.
struct NoFrames;

// SAFETY: never returns a frame.
unsafe impl FrameAllocator<Size4KiB> for NoFrames {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        None
    }
}

/// Maps `pfn` into the next kmap_atomic slot, runs `f` on its bytes, and
/// unmaps it (cf. `kmap_atomic()` / `kunmap_atomic()`).
pub fn with_kmap_atomic<R>(pfn: Pfn, f: impl FnOnce(&mut [u8]) -> R) -> R {
    interrupts::without_interrupts(|| {
        let idx = KMAP_ATOMIC_DEPTH.fetch_add(1, Ordering::Relaxed);
        assert!(
            idx < NR_FIX_KMAP,
            "kmap_atomic: more than {NR_FIX_KMAP} nested maps"
        );
        let vaddr = FIXMAP_BASE + idx as u64 * PAGE_SIZE;
        let page = Page::<Size4KiB>::containing_address(XVirt::new(vaddr));
        let frame = PhysFrame::<Size4KiB>::containing_address(XPhys::new(pfn.phys().0));
        {
            let mut pt = kernel_page_table();
            // SAFETY: the slot is ours (the depth counter reserved it, and
            // interrupts are off), its previous mapping was removed and
            // flushed on release, and the caller owns `pfn`.
            match unsafe {
                pt.map_to(
                    page,
                    frame,
                    F::PRESENT | F::WRITABLE | F::NO_EXECUTE,
                    &mut NoFrames,
                )
            } {
                Ok(flush) => flush.flush(),
                Err(e) => panic!("kmap_atomic slot {idx}: {e:?}"),
            }
        }
        // SAFETY: the slot now maps exactly this one frame, writable, and
        // nothing else refers to the slot's address until it is unmapped
        // below; the caller owns the frame.
        let bytes = unsafe {
            core::slice::from_raw_parts_mut(
                core::ptr::with_exposed_provenance_mut::<u8>(vaddr as usize),
                FRAME_BYTES,
            )
        };
        let r = f(bytes);
        {
            let mut pt = kernel_page_table();
            match pt.unmap(page) {
                Ok((_, flush)) => flush.flush(),
                Err(e) => panic!("kunmap_atomic slot {idx}: {e:?}"),
            }
        }
        tlb::flush(XVirt::new(vaddr));
        let prev = KMAP_ATOMIC_DEPTH.fetch_sub(1, Ordering::Relaxed);
        debug_assert_eq!(prev, idx + 1, "kunmap_atomic out of order");
        r
    })
}

/// Number of kmap_atomic slots in use right now.
#[allow(dead_code, reason = "read by /api/kmap (issue #5)")]
pub fn kmap_atomic_used() -> usize {
    KMAP_ATOMIC_DEPTH.load(Ordering::Relaxed)
}

/// `mm`'s view of the machine: frames through the direct map when it
/// reaches them, through kmap_atomic otherwise.
pub struct KernelPlatform {
    _private: (),
}

impl KernelPlatform {
    pub(super) const fn new() -> Self {
        KernelPlatform { _private: () }
    }
}

impl Platform for KernelPlatform {
    fn with_frame(&self, pfn: Pfn, f: &mut dyn FnMut(&mut [u8])) {
        let phys = pfn.phys().0;
        if early::phys_accessible(phys, PAGE_SIZE) {
            // SAFETY: the frame lies inside the direct map (checked), which
            // maps it writable; `Platform::with_frame`'s contract is that the
            // caller owns the frame, so no other reference to it exists.
            let bytes = unsafe { core::slice::from_raw_parts_mut(phys_to_virt(phys), FRAME_BYTES) };
            f(bytes);
        } else {
            with_kmap_atomic(pfn, |bytes| f(bytes));
        }
    }
}
