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

use crate::page_alloc::PageAlloc;
use crate::slab::CacheName;

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
