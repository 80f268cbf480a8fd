//! Where slab pages come from: the [`PageSource`] trait the slow paths call
//! with the slab lock held (lock order slab → zone), its implementations
//! over the buddy allocator (cf. `alloc_slab_page()`, `__free_slab()`), and
//! the out-of-line tracepoint helpers the inlined fast paths call.

use super::SlabError;
use crate::gfp::GfpFlags;
use crate::manager::MemoryManager;
use crate::page::OwnerTag;
use crate::page_alloc::{AllocError, PageAlloc};
use crate::platform::Platform;
use crate::types::{Order, Pfn};

/// What a block taken by the slab layer is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlabPageKind {
    /// A slab: marked `SLAB` in `mem_map`, owner `slab`.
    Slab,
    /// A `kmalloc_large` block: a plain allocated block, owner `heap`
    /// (Linux does not mark these `PG_slab` either).
    Large,
}

/// Where slabs come from: the buddy allocator, behind whatever lock the
/// caller uses. Called only on slow paths, with the slab lock held (lock
/// order slab → zone).
pub trait PageSource {
    /// Allocate `2^order` frames of lowmem (`gfp` has `__GFP_HIGHMEM` and
    /// `__GFP_ZERO` stripped already) and mark their descriptors for `kind`.
    fn alloc_slab_pages(
        &self,
        gfp: GfpFlags,
        order: Order,
        kind: SlabPageKind,
    ) -> Result<Pfn, AllocError>;
    /// Unmark and free a block obtained from [`PageSource::alloc_slab_pages`].
    fn free_slab_pages(&self, pfn: Pfn, order: Order, kind: SlabPageKind);

    /// Whether tracepoint `id` is on for the memory manager behind this
    /// source (for [`crate::trace_event!`] in kmalloc and the slab paths).
    /// Default: a source with no tracer, never.
    #[inline(always)]
    fn trace_enabled(&self, id: crate::trace::EventId) -> bool {
        let _ = id;
        false
    }

    /// Records `event` (after [`PageSource::trace_enabled`]); never
    /// allocates or blocks.
    fn trace_record(&self, event: crate::trace::TraceEvent) {
        let _ = event;
    }
}

/// The `kmalloc` / `kmem_cache_alloc` tracepoints (`ptr` 0 on failure,
/// as Linux traces a NULL return), out of line so the inlined fast paths
/// keep only the enable test. `bytes` is `(bytes_req, bytes_alloc)`;
/// `accounted` is only printed by `kmem_cache_alloc` (`kmalloc` derives
/// it from `gfp`).
#[cold]
#[inline(never)]
pub(crate) fn trace_slab_alloc<S: PageSource + ?Sized>(
    pages: &S,
    id: crate::trace::EventId,
    ptr: u64,
    bytes: (usize, u64),
    gfp: GfpFlags,
    accounted: bool,
) {
    use crate::trace::TraceEvent;
    let (bytes_req, bytes_alloc) = (bytes.0 as u64, bytes.1);
    pages.trace_record(match id {
        crate::trace::EventId::KmemCacheAlloc => TraceEvent::KmemCacheAlloc {
            call_site: 0,
            ptr,
            bytes_req,
            bytes_alloc,
            gfp,
            accounted,
        },
        _ => TraceEvent::Kmalloc {
            call_site: 0,
            ptr,
            bytes_req,
            bytes_alloc,
            gfp,
        },
    });
}

/// The object a slab allocation returned, 0 (NULL) if it failed: by value,
/// so the fast path's `Result` never has its address taken (which made it
/// go through the stack and cost a store-forwarding stall per call).
#[inline(always)]
pub(crate) fn ptr_or_null(r: &Result<u64, SlabError>) -> u64 {
    match r {
        Ok(p) => *p,
        Err(_) => 0,
    }
}

/// The `kfree` tracepoint, out of line.
#[cold]
#[inline(never)]
pub(crate) fn trace_kfree<S: PageSource + ?Sized>(pages: &S, ptr: u64) {
    pages.trace_record(crate::trace::TraceEvent::Kfree { call_site: 0, ptr });
}

/// The [`PageSource`] tracepoint methods of a source that reaches a
/// [`MemoryManager`] as `$mm`.
macro_rules! trace_via_manager {
    ($mm:ident => $($path:tt)*) => {
        #[inline(always)]
        fn trace_enabled(&self, id: crate::trace::EventId) -> bool {
            let $mm = self;
            MemoryManager::trace_enabled($($path)*, id)
        }

        fn trace_record(&self, event: crate::trace::TraceEvent) {
            let $mm = self;
            MemoryManager::trace_record($($path)*, event)
        }
    };
}

/// The buddy-level half of [`PageSource`], for any way of reaching a
/// `PageAlloc` (cf. `alloc_slab_page()` + `__folio_set_slab()`).
pub fn alloc_slab_pages_from(
    pa: &mut PageAlloc<'_>,
    gfp: GfpFlags,
    order: Order,
    kind: SlabPageKind,
) -> Result<Pfn, AllocError> {
    // Slab and kmalloc_large blocks are compound, as Linux's are.
    let gfp = gfp
        .difference(GfpFlags::HIGHMEM.union(GfpFlags::ZERO))
        .union(GfpFlags::COMP);
    let pfn = pa.alloc_pages(gfp, order, kind.owner())?;
    mark_slab_pages(pa, pfn, order, kind, gfp)
}

impl SlabPageKind {
    /// The owner tag its frames carry.
    const fn owner(self) -> OwnerTag {
        match self {
            SlabPageKind::Slab => OwnerTag::SLAB,
            SlabPageKind::Large => OwnerTag::HEAP,
        }
    }
}

/// Label a fresh block as a slab (cf. `__folio_set_slab()`), or give it
/// back and fail.
fn mark_slab_pages(
    pa: &mut PageAlloc<'_>,
    pfn: Pfn,
    order: Order,
    kind: SlabPageKind,
    gfp: GfpFlags,
) -> Result<Pfn, AllocError> {
    if kind == SlabPageKind::Slab && pa.set_slab(pfn, true).is_err() {
        let _ = pa.free_pages(pfn, order);
        return Err(AllocError::NoMemory { order, gfp });
    }
    Ok(pfn)
}

/// The kernel heap's page source: [`PageAlloc::alloc_heap_pages`] with
/// `__GFP_MEMALLOC`, so after boot the heap grows into the kernel reserve
/// before the zones, and the zones' last resort is the reserve too.
pub struct HeapPages<'m, 'a, P: Platform>(pub &'m MemoryManager<'a, P>);

impl<P: Platform> PageSource for HeapPages<'_, '_, P> {
    #[track_caller]
    fn alloc_slab_pages(
        &self,
        gfp: GfpFlags,
        order: Order,
        kind: SlabPageKind,
    ) -> Result<Pfn, AllocError> {
        let gfp = gfp
            .difference(GfpFlags::HIGHMEM.union(GfpFlags::ZERO))
            .union(GfpFlags::MEMALLOC.union(GfpFlags::COMP));
        let pfn = {
            let mut pa = self.0.lock();
            let pfn = pa.alloc_heap_pages(gfp, order, kind.owner())?;
            mark_slab_pages(&mut pa, pfn, order, kind, gfp)?
        };
        self.0.trace_page_alloc(pfn, order, gfp);
        Ok(pfn)
    }

    fn free_slab_pages(&self, pfn: Pfn, order: Order, kind: SlabPageKind) {
        free_slab_pages_to(&mut self.0.lock(), pfn, order, kind);
        self.0.trace_page_free(pfn, order);
    }
    trace_via_manager!(s => s.0);
}

/// A page source that hands out exactly one given block, taken off the
/// buddy free lists ([`PageAlloc::take_page_off_buddy`]); for
/// [`SlabAllocator::grow_empty_slab`](super::SlabAllocator::grow_empty_slab) when `POST /api/reset` puts a cache's
/// boot-time slabs back on their boot frames. Frees go to the buddy.
pub struct ExactPages<'m, 'a, P: Platform> {
    pub mm: &'m MemoryManager<'a, P>,
    pub pfn: Pfn,
}

impl<P: Platform> PageSource for ExactPages<'_, '_, P> {
    fn alloc_slab_pages(
        &self,
        gfp: GfpFlags,
        order: Order,
        kind: SlabPageKind,
    ) -> Result<Pfn, AllocError> {
        let mut pa = self.mm.lock();
        pa.take_page_off_buddy(self.pfn, order, kind.owner())?;
        if order.get() > 0 {
            pa.prep_compound_page(self.pfn, order);
        }
        mark_slab_pages(&mut pa, self.pfn, order, kind, gfp)
    }

    fn free_slab_pages(&self, pfn: Pfn, order: Order, kind: SlabPageKind) {
        free_slab_pages_to(&mut self.mm.lock(), pfn, order, kind);
        self.mm.trace_page_free(pfn, order);
    }
    trace_via_manager!(s => s.mm);
}

/// Inverse of [`alloc_slab_pages_from`] (cf. `__free_slab()`).
pub fn free_slab_pages_to(pa: &mut PageAlloc<'_>, pfn: Pfn, order: Order, kind: SlabPageKind) {
    if kind == SlabPageKind::Slab {
        let _ = pa.set_slab(pfn, false);
    }
    let freed = pa.free_pages(pfn, order);
    debug_assert!(
        freed.is_ok(),
        "slab freed a block it does not own: {freed:?}"
    );
}

impl PageSource for spin::Mutex<PageAlloc<'_>> {
    fn alloc_slab_pages(
        &self,
        gfp: GfpFlags,
        order: Order,
        kind: SlabPageKind,
    ) -> Result<Pfn, AllocError> {
        alloc_slab_pages_from(&mut self.lock(), gfp, order, kind)
    }

    fn free_slab_pages(&self, pfn: Pfn, order: Order, kind: SlabPageKind) {
        free_slab_pages_to(&mut self.lock(), pfn, order, kind)
    }
}

impl<P: Platform> PageSource for MemoryManager<'_, P> {
    #[track_caller]
    fn alloc_slab_pages(
        &self,
        gfp: GfpFlags,
        order: Order,
        kind: SlabPageKind,
    ) -> Result<Pfn, AllocError> {
        let pfn = alloc_slab_pages_from(&mut self.lock(), gfp, order, kind)?;
        self.trace_page_alloc(pfn, order, gfp);
        Ok(pfn)
    }

    fn free_slab_pages(&self, pfn: Pfn, order: Order, kind: SlabPageKind) {
        free_slab_pages_to(&mut self.lock(), pfn, order, kind);
        self.trace_page_free(pfn, order);
    }
    trace_via_manager!(s => s);
}
