//! `GET /api/selfcheck`'s engine: an O(memory) consistency walk over every
//! allocator that reports *all* the problems it finds, not just the first
//! (cf. `CONFIG_DEBUG_VM`'s `check_new_page()` / `bad_page()`, SLUB's
//! `validate_slab_cache()` / `check_object()`, `vmalloc_dump_obj()`).
//!
//! `mm` has no heap, so problems go to a caller-supplied sink
//! (`&mut dyn FnMut(Problem)`) and what was walked is counted in
//! [`Checked`]. Each check takes only the structures it reads, so the HTTP
//! layer calls them one at a time under each structure's own lock (slab →
//! zone is the only nesting, as everywhere else). The walks that need a
//! structure's private state live beside it (`PageAlloc::check_each` in
//! `page_alloc/check.rs`, `SlabAllocator::check_each` in `slab/stats.rs`,
//! `VmapAreaAllocator::check_each` in `vmalloc.rs`); their
//! `check_invariants` are the first problem of the same walk.

use core::fmt;

use crate::highmem::{KmapAtomicStack, Pkmap, fixmap_addr_cpu, pkmap_addr};
use crate::layout::{LAST_PKMAP, NR_FIX_KMAP};
use crate::page::OwnerTag;
use crate::page_alloc::PageAlloc;
use crate::platform::PageMapper;
use crate::slab::{CacheName, ObjectMemory, SlabAllocator};
use crate::types::{PAGE_SIZE, VirtAddr};
use crate::vmalloc::{VmapAreaAllocator, VmapKind};

#[cfg(test)]
mod tests;

/// [`Problem::subsystem`] of the buddy allocator and `mem_map`; its
/// problems' `addr` is a PFN.
pub const BUDDY: &str = "buddy";
/// [`Problem::subsystem`] of the slab allocator; `addr` is a slab or object
/// address.
pub const SLAB: &str = "slab";
/// [`Problem::subsystem`] of the vmalloc area; `addr` is a virtual address.
pub const VMALLOC: &str = "vmalloc";
/// [`Problem::subsystem`] of the persistent kmap pool; `addr` is the slot's
/// virtual address.
pub const PKMAP: &str = "pkmap";
/// [`Problem::subsystem`] of the kmap_atomic fixmap slots; `addr` is the
/// slot's virtual address.
pub const KMAP_ATOMIC: &str = "kmap_atomic";

/// One inconsistency found by a check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Which structure: [`BUDDY`], [`SLAB`], [`VMALLOC`], [`PKMAP`] or
    /// [`KMAP_ATOMIC`].
    pub subsystem: &'static str,
    /// What disagrees, as a fixed sentence (tests match on it).
    pub what: &'static str,
    /// The PFN (buddy) or virtual address (everything else) it concerns.
    pub addr: Option<u64>,
    /// The slab cache it concerns, for slab problems that have one.
    pub cache: Option<CacheName>,
}

impl Problem {
    /// A problem of `subsystem` at `addr`, concerning no cache.
    pub const fn new(subsystem: &'static str, what: &'static str, addr: Option<u64>) -> Problem {
        Problem {
            subsystem,
            what,
            addr,
            cache: None,
        }
    }

    /// The same problem, concerning `addr`.
    pub const fn at(self, addr: u64) -> Problem {
        Problem {
            addr: Some(addr),
            ..self
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.subsystem)?;
        if let Some(c) = &self.cache {
            write!(f, "{c}: ")?;
        }
        write!(f, "{}", self.what)?;
        match self.addr {
            Some(pfn) if self.subsystem == BUDDY => write!(f, " (pfn {pfn})"),
            Some(addr) => write!(f, " (at {addr:#x})"),
            None => Ok(()),
        }
    }
}

/// What the checks walked, so a clean report shows it looked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Checked {
    /// `mem_map` descriptors walked.
    pub pages: u64,
    /// Of those, reserved (firmware, kernel, memblock, holes).
    pub reserved_pages: u64,
    /// Free blocks on the buddy free lists.
    pub free_blocks: u64,
    /// Frames in those blocks.
    pub free_pages: u64,
    /// Allocated blocks (HEAD frames).
    pub allocated_blocks: u64,
    /// Live slab caches.
    pub caches: u64,
    /// Slabs (active and listed).
    pub slabs: u64,
    /// Object capacity of those slabs.
    pub objects: u64,
    /// Objects found on free lists.
    pub free_objects: u64,
    /// Free objects whose poison and red zone were verified.
    pub poison_checked: u64,
    /// Live vmap areas.
    pub vmap_areas: u64,
    /// Present PTEs verified (vmalloc area, pkmap, fixmap).
    pub ptes: u64,
    /// Guard pages verified unmapped.
    pub guard_pages: u64,
    /// pkmap slots examined.
    pub pkmap_slots: u64,
    /// kmap_atomic slots examined.
    pub kmap_atomic_slots: u64,
}

impl Checked {
    /// Every counter by name, in declaration order, for serializers that
    /// need not know the fields.
    pub fn fields(&self) -> [(&'static str, u64); 15] {
        [
            ("pages", self.pages),
            ("reserved_pages", self.reserved_pages),
            ("free_blocks", self.free_blocks),
            ("free_pages", self.free_pages),
            ("allocated_blocks", self.allocated_blocks),
            ("caches", self.caches),
            ("slabs", self.slabs),
            ("objects", self.objects),
            ("free_objects", self.free_objects),
            ("poison_checked", self.poison_checked),
            ("vmap_areas", self.vmap_areas),
            ("ptes", self.ptes),
            ("guard_pages", self.guard_pages),
            ("pkmap_slots", self.pkmap_slots),
            ("kmap_atomic_slots", self.kmap_atomic_slots),
        ]
    }
}

/// The buddy allocator against `mem_map` (everything
/// [`PageAlloc::check_invariants`] checks, all of it): free lists vs
/// `nr_free` and `free_pages`, block alignment and zones, every frame of a
/// free block free and unowned, allocated blocks well formed, reserved
/// frames in no block (cf. `check_new_page()` / `free_page_is_bad()` under
/// `CONFIG_DEBUG_VM`, applied to every frame at once).
pub fn check_buddy(pa: &PageAlloc<'_>, sink: &mut dyn FnMut(Problem), checked: &mut Checked) {
    pa.check_each(sink, checked);
}

/// The slab allocator: lists and counters recounted, each slab's free list
/// inside its slab and acyclic, free + in use = objects, and for
/// `SLAB_POISON` / `SLAB_RED_ZONE` caches every free object's poison and
/// red zone intact (cf. `validate_slab_cache()` → `validate_slab()` →
/// `check_object()`).
pub fn check_slab<M: ObjectMemory>(
    slab: &SlabAllocator<'_>,
    mem: &M,
    sink: &mut dyn FnMut(Problem),
    checked: &mut Checked,
) {
    slab.check_each(mem, sink, checked);
}

/// The slab overlay against `mem_map`: every slab frame is allocated,
/// marked `SLAB` and owned by `slab`; every `kmalloc_large` frame is
/// allocated and owned by `heap` (cf. `PageSlab()` checks in
/// `virt_to_slab()` / `free_large_kmalloc()`). Needs both locks
/// (slab → zone).
pub fn check_slab_pages(
    slab: &SlabAllocator<'_>,
    pa: &PageAlloc<'_>,
    sink: &mut dyn FnMut(Problem),
    _checked: &mut Checked,
) {
    slab.for_each_frame(|pfn, large, cache| {
        let addr = Some(crate::slab::slab_va(pfn.0 as u32));
        let report = |what| Problem {
            cache,
            ..Problem::new(SLAB, what, addr)
        };
        let Some(page) = pa.page(pfn) else {
            sink(report("slab frame past max_pfn"));
            return;
        };
        if !page.is_allocated() {
            sink(report("slab frame is not allocated in mem_map"));
        } else if large {
            if page.owner != OwnerTag::HEAP || page.is_slab() {
                sink(report("kmalloc_large frame not a heap block in mem_map"));
            }
        } else if !page.is_slab() || page.owner != OwnerTag::SLAB {
            sink(report("slab frame not marked SLAB in mem_map"));
        }
    });
}

/// The vmalloc area against the page table and `mem_map`: areas sorted,
/// disjoint and inside the range (the area allocator's own walk); each
/// vmalloc page mapped to an allocated frame owned by `vmalloc`, each vmap
/// page mapped to a frame that is not free, each ioremap page mapped to
/// exactly `phys + i * PAGE_SIZE` and never to managed RAM, and every guard
/// page unmapped (cf. what `vmalloc_dump_obj()` / `vread_iter()` rely on).
/// A lazy area's pages are unmapped, the zero page, or a frame of their own
/// — as many of those as the area's `resident` count.
pub fn check_vmap_areas<const N: usize, const F: usize>(
    areas: &VmapAreaAllocator<N, F>,
    mapper: &impl PageMapper,
    pa: &PageAlloc<'_>,
    sink: &mut dyn FnMut(Problem),
    checked: &mut Checked,
) {
    areas.check_each(sink, checked);
    let zero = areas.zero_page();
    for a in areas.iter() {
        checked.vmap_areas += 1;
        let mut own_frames = 0;
        for i in 0..a.nr_pages {
            let virt = VirtAddr(a.start.0 + i * PAGE_SIZE);
            let at = Some(virt.0);
            let Some(pfn) = mapper.translate(virt) else {
                if !a.lazy {
                    sink(Problem::new(VMALLOC, "page of an area is not mapped", at));
                }
                continue;
            };
            checked.ptes += 1;
            if a.lazy && Some(pfn) == zero {
                continue;
            }
            own_frames += 1;
            if i == 0 && !a.lazy && a.kind != VmapKind::Ioremap && pfn.phys() != a.phys {
                sink(Problem::new(
                    VMALLOC,
                    "first page does not map the area's phys",
                    at,
                ));
            }
            let page = pa.page(pfn);
            let what = match a.kind {
                VmapKind::Vmalloc => match page {
                    None => Some("vmalloc page maps a frame past max_pfn"),
                    Some(p) if !p.is_head() => {
                        Some("vmalloc page maps a frame that is not allocated")
                    }
                    Some(p) if p.owner != OwnerTag::VMALLOC => {
                        Some("vmalloc page maps a frame not owned by vmalloc")
                    }
                    Some(_) => None,
                },
                VmapKind::Vmap => match page {
                    Some(p) if !p.is_reserved() && pa.compound_head(pfn).is_none() => {
                        Some("vmap page maps a free frame")
                    }
                    _ => None,
                },
                VmapKind::Ioremap => {
                    if pfn.phys().0 != a.phys.0 + i * PAGE_SIZE {
                        Some("ioremap page does not map phys + offset")
                    } else if page.is_some_and(|p| !p.is_reserved() && !p.is_nomap()) {
                        Some("ioremap page maps RAM managed by the page allocator")
                    } else {
                        None
                    }
                }
            };
            if let Some(what) = what {
                sink(Problem::new(VMALLOC, what, at));
            }
        }
        if a.lazy && own_frames != a.resident {
            sink(Problem::new(
                VMALLOC,
                "resident count disagrees with the frames mapped",
                Some(a.start.0),
            ));
        }
        checked.guard_pages += 1;
        if mapper.translate(a.guard_page()).is_some() {
            sink(Problem::new(
                VMALLOC,
                "guard page is mapped",
                Some(a.guard_page().0),
            ));
        }
    }
}

/// The pkmap window against the page table: a slot with a mapping (users,
/// or count 1 awaiting `flush_all_zero_pkmaps()`) has a PTE to its HighMem
/// frame; a free slot has none (cf. the `BUG_ON(!pte_none(...))` in
/// `map_new_virtual()` and `kmap_high()`'s `BUG_ON(pkmap_count < 2)`).
/// `nr_used` / `nr_mapped` are computed from the counts themselves, so
/// there is no stored counter to disagree.
pub fn check_pkmap(
    pkmap: &Pkmap,
    mapper: &impl PageMapper,
    sink: &mut dyn FnMut(Problem),
    checked: &mut Checked,
) {
    for nr in 0..LAST_PKMAP {
        checked.pkmap_slots += 1;
        let virt = pkmap_addr(nr);
        let at = Some(virt.0);
        let (count, pfn) = pkmap.slot_state(nr);
        match (count, mapper.translate(virt)) {
            (0, None) => {}
            (0, Some(_)) => sink(Problem::new(PKMAP, "free slot has a PTE", at)),
            (_, None) => sink(Problem::new(PKMAP, "mapped slot has no PTE", at)),
            (_, Some(p)) => {
                checked.ptes += 1;
                if p != pfn {
                    sink(Problem::new(PKMAP, "slot PTE maps another frame", at));
                }
                if pkmap.page_address(pfn) != Some(virt) {
                    sink(Problem::new(
                        PKMAP,
                        "slot maps a lowmem frame or one kmapped twice",
                        at,
                    ));
                }
            }
        }
    }
}

/// The kmap_atomic stack against the fixmap: slots below the depth are
/// mapped to the frames pushed, slots at or above it are not (cf.
/// `kmap_local_idx_push()` / `kunmap_local_indexed()`, which keep exactly
/// that invariant).
pub fn check_kmap_atomic(
    stack: &KmapAtomicStack,
    mapper: &impl PageMapper,
    sink: &mut dyn FnMut(Problem),
    checked: &mut Checked,
) {
    for idx in 0..NR_FIX_KMAP {
        checked.kmap_atomic_slots += 1;
        let virt = fixmap_addr_cpu(stack.cpu(), idx);
        let at = Some(virt.0);
        match (stack.slot(idx), mapper.translate(virt)) {
            (None, None) => {}
            (None, Some(_)) => sink(Problem::new(
                KMAP_ATOMIC,
                "slot above the stack has a PTE",
                at,
            )),
            (Some(_), None) => sink(Problem::new(KMAP_ATOMIC, "stacked slot has no PTE", at)),
            (Some(want), Some(got)) => {
                checked.ptes += 1;
                if want != got {
                    sink(Problem::new(KMAP_ATOMIC, "slot PTE maps another frame", at));
                }
            }
        }
    }
}

/// Collects into a fixed buffer: the first `N` problems and how many there
/// were in all. For callers without a heap (the selftest, tests).
pub struct Problems<const N: usize> {
    buf: [Option<Problem>; N],
    /// Problems reported, including those past the buffer.
    pub total: usize,
}

impl<const N: usize> Default for Problems<N> {
    fn default() -> Self {
        Problems {
            buf: [None; N],
            total: 0,
        }
    }
}

impl<const N: usize> Problems<N> {
    /// Records one problem (a sink: `&mut |p| problems.push(p)`).
    pub fn push(&mut self, p: Problem) {
        if let Some(slot) = self.buf.get_mut(self.total) {
            *slot = Some(p);
        }
        self.total += 1;
    }

    /// The problems kept, in report order.
    pub fn iter(&self) -> impl Iterator<Item = &Problem> + '_ {
        self.buf.iter().flatten()
    }

    /// The first problem, if any.
    pub fn first(&self) -> Option<Problem> {
        self.buf[..].first().copied().flatten()
    }
}
