//! Demand paging: resolving a page fault inside a lazy vmalloc area (cf.
//! `mm/memory.c`: `handle_mm_fault()` → `handle_pte_fault()` →
//! `do_anonymous_page()`, and `do_wp_page()` for the write after a read).
//!
//! A lazy area ([`crate::vmalloc::vmalloc_lazy`]) is reserved with nothing
//! mapped. The kernel's #PF handler passes each fault at a kernel address
//! to [`handle_vmalloc_fault`]:
//!
//! | PTE now | read | write |
//! |---|---|---|
//! | none | map the zero page read-only | map a zeroed frame read/write |
//! | the zero page | spurious | replace it with a zeroed frame |
//! | a frame of its own | spurious | spurious |
//!
//! "Spurious" means the translation is already what the access needs: a
//! stale TLB entry, flushed and retried (cf. `spurious_kernel_fault()`).
//! Every fault handled here counts `pgfault`, as `count_vm_event(PGFAULT)`
//! does on entry to `handle_mm_fault()`. A frame that cannot be allocated
//! is [`FaultError::Oom`] (`VM_FAULT_OOM`): the handler must not reclaim
//! (it runs with interrupts off, inside whatever touched the page), so the
//! caller recovers like `pagefault_out_of_memory()` — reclaim, then the OOM
//! killer — and touches the page again.
//!
//! Lock order, as for vmalloc: the vmap-area allocator (the caller holds
//! it) → zone lock (frame allocation, `pgfault`) → page-table lock (inside
//! the mapper).

use crate::gfp::GfpFlags;
use crate::manager::MemoryManager;
use crate::page::OwnerTag;
use crate::platform::{MapError, MapProt, PageMapper, Platform};
use crate::types::{Order, PAGE_SIZE, Pfn, VirtAddr};
use crate::vmalloc::VmapAreaAllocator;
use crate::vmstat::VmEvent;

/// The GFP of a demand-zero frame: what vmalloc uses (HighMem first),
/// zeroed — cf. `alloc_zeroed_user_highpage_movable()` in
/// `do_anonymous_page()`, which also prefers HighMem.
pub const LAZY_FAULT_GFP: GfpFlags = GfpFlags::GFP_KERNEL
    .union(GfpFlags::HIGHMEM)
    .union(GfpFlags::ZERO);

/// The access that faulted (from the #PF error code's W bit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultAccess {
    /// A load.
    Read,
    /// A store (including the write half of a read-modify-write).
    Write,
}

/// How a fault was resolved; the access can be retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultResolution {
    /// A read of an untouched page: the zero page is now mapped read-only.
    ZeroPage,
    /// A write: this zeroed frame now backs the page, mapped read/write.
    NewFrame(Pfn),
    /// The PTE already allowed the access (a stale TLB entry, flushed).
    Spurious,
}

/// Why a fault could not be resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultError {
    /// Not inside the usable part of a lazy vmalloc area (a guard page, an
    /// eager area, no area at all): a kernel bug, reported as such.
    BadArea,
    /// No frame for the page, or none for a page table under it
    /// (`VM_FAULT_OOM`). Nothing changed but `pgfault`.
    Oom,
}

/// Resolves a fault at `addr` in a lazy vmalloc area of `areas` (see the
/// module doc); the caller holds `areas`' lock and no zone lock.
pub fn handle_vmalloc_fault<P: Platform, const N: usize, const F: usize>(
    areas: &mut VmapAreaAllocator<N, F>,
    mm: &MemoryManager<'_, P>,
    mapper: &impl PageMapper,
    addr: VirtAddr,
    access: FaultAccess,
) -> Result<FaultResolution, FaultError> {
    let zero = areas.zero_page().ok_or(FaultError::BadArea)?;
    let area = areas
        .area_containing_mut(addr)
        .filter(|a| a.lazy)
        .ok_or(FaultError::BadArea)?;
    mm.lock().vm_events_mut().inc(VmEvent::PgFault);
    let page = VirtAddr(addr.0 & !(PAGE_SIZE - 1));
    let next = VirtAddr(page.0 + PAGE_SIZE);
    let now = mapper.translate(page);
    match (now, access) {
        (None, FaultAccess::Read) => {
            mapper
                .map_page(page, zero, MapProt::KERNEL_RO)
                .map_err(|_: MapError| FaultError::Oom)?;
            Ok(FaultResolution::ZeroPage)
        }
        (Some(pfn), FaultAccess::Write) if pfn == zero => {
            // cf. do_wp_page() → wp_page_copy() on the zero page: a fresh
            // zeroed frame, no copy needed.
            let frame = mm
                .alloc_pages(LAZY_FAULT_GFP, Order::ZERO, OwnerTag::VMALLOC)
                .map_err(|_| FaultError::Oom)?;
            let _ = mapper.unmap_page(page);
            mapper.flush_tlb_range(page, next);
            if mapper.map_page(page, frame, MapProt::KERNEL).is_err() {
                // The table under the page exists (the zero page was in
                // it), so this cannot fail; put the zero page back anyway.
                let _ = mm.free_pages(frame, Order::ZERO);
                let _ = mapper.map_page(page, zero, MapProt::KERNEL_RO);
                return Err(FaultError::Oom);
            }
            area.resident += 1;
            Ok(FaultResolution::NewFrame(frame))
        }
        (None, FaultAccess::Write) => {
            let frame = mm
                .alloc_pages(LAZY_FAULT_GFP, Order::ZERO, OwnerTag::VMALLOC)
                .map_err(|_| FaultError::Oom)?;
            if mapper.map_page(page, frame, MapProt::KERNEL).is_err() {
                let _ = mm.free_pages(frame, Order::ZERO);
                return Err(FaultError::Oom);
            }
            area.resident += 1;
            Ok(FaultResolution::NewFrame(frame))
        }
        (Some(_), _) => {
            mapper.flush_tlb_range(page, next);
            Ok(FaultResolution::Spurious)
        }
    }
}

#[cfg(test)]
mod tests;
