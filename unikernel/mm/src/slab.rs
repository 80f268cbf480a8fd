//! The slab allocator: `kmem_cache`s of fixed-size objects carved out of
//! buddy pages (cf. `mm/slub.c`, `mm/slab_common.c`).
//!
//! Why it looks the way it does:
//!
//! * **No heap, ever.** The kernel's `#[global_allocator]` is built on
//!   [`kmalloc`](crate::kmalloc), so this layer cannot use one. Cache
//!   descriptors live in a fixed table of [`MAX_CACHES`]; free objects are
//!   chained through a free pointer stored *inside* each free object (SLUB's
//!   `s->offset`); per-slab state lives in a [`SlabMeta`] table indexed by
//!   PFN that the kernel carves from memblock at boot, exactly like
//!   `mem_map` (it is our `struct slab`, which Linux overlays on
//!   `struct page`). The buddy allocator's own [`Page`](crate::page::Page)
//!   descriptors are full (16 bytes, every field used) and sit behind the
//!   zone lock, so the slab layer keeps its overlay beside them: a slab's
//!   frames are still marked `SLAB` with owner `slab` in `mem_map` (the
//!   source of truth for `/api/pagetable` and for refusing a buddy-level free
//!   of a slab page), while `SlabMeta` maps every frame to its cache without
//!   taking the zone lock — `kfree(addr)` finds its cache from the address
//!   alone: `addr → PFN → SlabMeta.cache → cache → slab head (natural
//!   alignment of buddy blocks)`.
//! * **Locks, one order.** The kernel keeps a [`SlabAllocator`] behind a
//!   big-reader lock ([`crate::sync::BrLock`]): a CPU's fast paths and the
//!   slow paths that only move slabs between a cache's lists run under the
//!   CPU's own flag, the latter also under the cache's node `list_lock`
//!   ([`KmemCacheNode`], [`smp`]); everything else takes every flag. Only
//!   the exclusive slow paths (a new slab, returning an empty one,
//!   `kmalloc_large`) call the page allocator, through the [`PageSource`]
//!   passed into every call, which takes the zone lock inside. So the lock
//!   order is CPU flag(s) → `list_lock` → zone, and nothing under any of
//!   them allocates from the heap.
//! * **Fast path as in SLUB.** Each cache has, per CPU, a frozen slab whose
//!   free list sits in the CPU's `kmem_cache_cpu` (an array of
//!   [`NR_CPUS`] inside the cache descriptor): an allocation pops it, a
//!   free of an object of that slab pushes onto it — no list, no slab
//!   metadata, no `dyn` call. Everything else is `___slab_alloc` /
//!   `__slab_free`, out of line (see `cpu.rs`).
//! * **Debug caches take the slow path** (as `kmem_cache_debug()` does in
//!   Linux): `SLAB_RED_ZONE`, `SLAB_POISON` and `SLAB_CONSISTENCY_CHECKS`
//!   caches never freeze a CPU slab, so every operation is checked. A
//!   detected corruption is reported through a hook, counted per cache, the
//!   object is quarantined (left allocated, never handed out again), and the
//!   operation returns an error instead of panicking.
//! * Slab pages are lowmem only: objects need permanent direct-map
//!   addresses, so `__GFP_HIGHMEM` is stripped (cf. `GFP_SLAB_BUG_MASK`).
//!
//! Files: this one holds the per-slab overlay, the cache descriptor and the
//! cache lifecycle (create, shrink, destroy, new and discarded slabs);
//! `cpu` the allocation and free paths; `debug` red zones and poison;
//! `stats` the views and the recount; `source` where pages come from;
//! `geometry` object layout; `flags` and `error` the nouns; `mem` how
//! objects are touched without `unsafe`.

mod cpu;
mod debug;
mod error;
mod flags;
mod geometry;
pub mod mem;
pub mod smp;
mod source;
mod stats;
#[cfg(test)]
pub(crate) mod tests;

use core::fmt;

pub use cpu::NR_CPUS;
pub(crate) use cpu::{CacheSlot, CpuIdx, KmemCacheCpu, SlabCpu};
pub use error::{Corruption, CorruptionCounts, CorruptionKind, InvalidFreeKind, SlabError};
pub use flags::{CacheId, CacheKind, CacheName, Ctor, ReportFn, SlabFlags};
pub(crate) use geometry::{Geometry, calculate_sizes};
#[cfg(any(test, feature = "sim"))]
pub use mem::ArenaMemory;
pub use mem::{ObjectMemory, PlatformMemory};
pub use source::{
    ExactPages, HeapPages, PageSource, SlabPageKind, alloc_slab_pages_from, free_slab_pages_to,
};
pub(crate) use source::{ptr_or_null, trace_kfree, trace_slab_alloc};
pub use stats::{CacheInfo, SlabCheckError};

use crate::fault_inject::{ArmedMut, FailSlab};
use crate::gfp::GfpFlags;
use crate::page::NIL;
use crate::types::{MAX_ORDER, Order, PAGE_OFFSET, PAGE_SHIFT, PAGE_SIZE, Pfn};

/// Capacity of the cache table (kmalloc caches included).
pub const MAX_CACHES: usize = 64;
/// Longest cache name, in bytes.
pub const CACHE_NAME_MAX: usize = 32;
/// Highest slab order `calculate_order` prefers (cf. `slub_max_order` =
/// `PAGE_ALLOC_COSTLY_ORDER`).
pub const SLUB_MAX_ORDER: u32 = 3;
/// Objects a slab should hold at least: `4 * (fls(nr_cpus) + 1)` with one
/// CPU (cf. `calculate_order()`).
pub const SLUB_MIN_OBJECTS: u32 = 8;
/// Most objects in one slab (cf. `MAX_OBJS_PER_PAGE`).
pub const MAX_OBJS_PER_PAGE: u32 = 32767;
/// Empty slabs a cache keeps for reuse before giving pages back to the buddy
/// allocator (cf. `s->min_partial`, here counted in empty slabs).
pub const SLAB_EMPTY_RESERVE: u32 = 2;
/// Largest object a cache may be created for (one object in an order-10
/// slab).
pub const MAX_OBJECT_SIZE: usize = (PAGE_SIZE as usize) << MAX_ORDER;

/// Byte written over a free object by `SLAB_POISON` (cf. `POISON_FREE`).
pub const POISON_FREE: u8 = 0x6b;
/// Last byte of a poisoned free object (cf. `POISON_END`).
pub const POISON_END: u8 = 0xa5;
/// Red zone of a free object (cf. `SLUB_RED_INACTIVE`).
pub const SLUB_RED_INACTIVE: u8 = 0xbb;
/// Red zone of an allocated object (cf. `SLUB_RED_ACTIVE`).
pub const SLUB_RED_ACTIVE: u8 = 0xcc;

/// `SlabMeta::cache` of the head frame of a `kmalloc_large` block.
pub(crate) const META_LARGE_HEAD: u16 = 0xffff;
/// `SlabMeta::cache` of the other frames of a `kmalloc_large` block.
pub(crate) const META_LARGE_TAIL: u16 = 0xfffe;

// ----------------------------------------------------------------------
// Per-slab state (struct slab)
// ----------------------------------------------------------------------

/// Per-frame slab overlay (cf. `struct slab` over `struct page`): the kernel
/// provides one per lowmem frame (memblock, like `mem_map`), all
/// [`SlabMeta::EMPTY`].
///
/// Every frame of a slab records its cache; the head frame also holds the
/// slab's free list (an offset inside the slab), its in-use count and the
/// links of the cache list it is on. 16 bytes per 4 KiB frame (0.4 %).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlabMeta {
    /// 0: not a slab; `slot + 1` of the owning cache; or a `kmalloc_large`
    /// marker.
    pub(crate) cache: u16,
    /// Objects in use (head frame). For a `kmalloc_large` head: its order.
    pub(crate) inuse: u16,
    /// Offset of the first free object from the slab start, or [`NIL`].
    pub(crate) freelist: u32,
    /// Previous slab (head PFN) on the same cache list, or [`NIL`].
    pub(crate) prev: u32,
    /// Next slab on the same cache list, or [`NIL`].
    pub(crate) next: u32,
}

impl SlabMeta {
    /// A frame that is no slab.
    pub const EMPTY: SlabMeta = SlabMeta {
        cache: 0,
        inuse: 0,
        freelist: NIL,
        prev: NIL,
        next: NIL,
    };
}

/// Bytes of [`SlabMeta`] the kernel must set aside for `lowmem_pfns` frames.
pub const fn slab_meta_bytes(lowmem_pfns: u64) -> u64 {
    lowmem_pfns * core::mem::size_of::<SlabMeta>() as u64
}

/// An intrusive list of slabs, linked through [`SlabMeta::prev`]/`next`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SlabList {
    head: u32,
    tail: u32,
    nr: u32,
}

impl SlabList {
    const EMPTY: SlabList = SlabList {
        head: NIL,
        tail: NIL,
        nr: 0,
    };

    #[inline]
    fn push<A: MetaAccess + ?Sized>(&mut self, metas: &mut A, pfn: u32) {
        let head = self.head;
        let m = metas.at(pfn);
        m.prev = NIL;
        m.next = head;
        if head != NIL {
            metas.at(head).prev = pfn;
        } else {
            self.tail = pfn;
        }
        self.head = pfn;
        self.nr += 1;
    }

    /// Append (cf. `add_partial(…, DEACTIVATE_TO_TAIL)`).
    #[inline]
    fn push_tail<A: MetaAccess + ?Sized>(&mut self, metas: &mut A, pfn: u32) {
        let tail = self.tail;
        let m = metas.at(pfn);
        m.next = NIL;
        m.prev = tail;
        if tail != NIL {
            metas.at(tail).next = pfn;
        } else {
            self.head = pfn;
        }
        self.tail = pfn;
        self.nr += 1;
    }

    /// Take the head off a non-empty list.
    #[inline]
    fn pop<A: MetaAccess + ?Sized>(&mut self, metas: &mut A) -> u32 {
        let pfn = self.head;
        let m = metas.at(pfn);
        let next = m.next;
        m.next = NIL;
        self.head = next;
        if next != NIL {
            metas.at(next).prev = NIL;
        } else {
            self.tail = NIL;
        }
        self.nr -= 1;
        pfn
    }

    #[inline]
    fn remove<A: MetaAccess + ?Sized>(&mut self, metas: &mut A, pfn: u32) {
        let m = metas.at(pfn);
        let (prev, next) = (m.prev, m.next);
        m.prev = NIL;
        m.next = NIL;
        if prev == NIL {
            self.head = next;
        } else {
            metas.at(prev).next = next;
        }
        if next != NIL {
            metas.at(next).prev = prev;
        } else {
            self.tail = prev;
        }
        self.nr -= 1;
    }
}

/// How the list operations reach overlay entries: the whole table (the
/// exclusive side) or, under one cache's `list_lock`, that cache's entries
/// one at a time ([`smp::LockedMetas`]).
pub(crate) trait MetaAccess {
    /// The overlay entry of frame `pfn`.
    fn at(&mut self, pfn: u32) -> &mut SlabMeta;
}

impl MetaAccess for [SlabMeta] {
    #[inline(always)]
    fn at(&mut self, pfn: u32) -> &mut SlabMeta {
        &mut self[pfn as usize]
    }
}

impl MetaAccess for smp::MetaTable<'_> {
    #[inline(always)]
    fn at(&mut self, pfn: u32) -> &mut SlabMeta {
        &mut self[pfn as usize]
    }
}

/// Which list a (non-active) slab belongs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ListKind {
    Full,
    Partial,
    Empty,
}

fn list_kind(m: &SlabMeta) -> ListKind {
    if m.inuse == 0 {
        ListKind::Empty
    } else if m.freelist == NIL {
        ListKind::Full
    } else {
        ListKind::Partial
    }
}

/// A cache's slab lists and their counters (cf. `struct kmem_cache_node`,
/// one node here), kept in a [`smp::NodeCell`] beside its `list_lock`.
///
/// What protects what:
/// * these fields, and the overlay entries ([`SlabMeta`] `freelist`,
///   `inuse`, `prev`, `next`) of the cache's slabs that no CPU has frozen,
///   with the free objects on their free lists: the cache's `list_lock`
///   plus one CPU's flag of the slab [`crate::sync::BrLock`] (the shared
///   side, [`smp`]), or the exclusive side (every flag) alone, which no
///   `list_lock` holder can run beside;
/// * a frozen slab's overlay entry (`prev` = [`FROZEN`]): written at
///   freeze and unfreeze only, under the same rule;
/// * `SlabMeta::cache` of every frame, `nr_slabs`, the geometry and the
///   cache's life: the exclusive side only (new slabs and discarded ones
///   go through the page allocator there), read by anyone;
/// * a CPU's `kmem_cache_cpu` and the objects on its free list: that CPU's
///   flag, or the exclusive side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KmemCacheNode {
    /// Full slabs are counted, not linked (as in SLUB without debugging:
    /// nothing ever needs to find one but `kmem_cache_destroy`, which
    /// scans the overlay); `full.head` stays NIL.
    full: SlabList,
    partial: SlabList,
    empty: SlabList,
    /// Sum of `inuse` over the listed slabs (not the CPU slabs, which keep
    /// no count: theirs is `objects` less their CPU free list's length,
    /// walked when asked, see `cpu.rs`).
    list_inuse: u64,
}

impl KmemCacheNode {
    pub(crate) const EMPTY: KmemCacheNode = KmemCacheNode {
        full: SlabList::EMPTY,
        partial: SlabList::EMPTY,
        empty: SlabList::EMPTY,
        list_inuse: 0,
    };

    /// Put an unlinked slab on the list for `kind` (full: just counted).
    #[inline]
    fn list_push<A: MetaAccess + ?Sized>(&mut self, metas: &mut A, kind: ListKind, pfn: u32) {
        match kind {
            ListKind::Full => {
                self.full.nr += 1;
                metas.at(pfn).prev = NIL;
            }
            ListKind::Partial => self.partial.push(metas, pfn),
            ListKind::Empty => self.empty.push(metas, pfn),
        }
    }

    /// Take a slab off the list for `kind` (full: just uncounted).
    #[inline]
    fn list_remove<A: MetaAccess + ?Sized>(&mut self, metas: &mut A, kind: ListKind, pfn: u32) {
        match kind {
            ListKind::Full => self.full.nr -= 1,
            ListKind::Partial => self.partial.remove(metas, pfn),
            ListKind::Empty => self.empty.remove(metas, pfn),
        }
    }
}

/// `SlabMeta::prev` of a CPU's (frozen) slab: on no list, and no other
/// CPU may free into it under the shared side (cf. `slab->frozen`).
pub(crate) const FROZEN: u32 = NIL - 1;

// ----------------------------------------------------------------------
// The cache descriptor
// ----------------------------------------------------------------------

/// A cache of equally sized objects (cf. `struct kmem_cache` with its one
/// `kmem_cache_node`, and its `kmem_cache_cpu` for each CPU). The first
/// cache line holds everything the fast paths touch: where the free
/// pointer is, how to check that an address is an object start, and CPU
/// 0's slab (the per-CPU array sits inside the descriptor, as SLAB's
/// `array_cache *array[NR_CPUS]` did, so one base register reaches both).
#[derive(Clone, Debug)]
#[repr(C, align(64))] // the fast-path fields share one cache line
pub(crate) struct KmemCache {
    // --- read by the fast paths ---
    /// Bytes per slab minus one: `addr & slab_mask` is an address's offset
    /// in its slab, `addr - offset` the slab's start.
    slab_mask: u64,
    /// `ceil(2^64 / size)`: `off * div_magic < div_magic` (wrapping) iff
    /// `off` is a multiple of `size` (Lemire, Kaser and Kurz, "Faster
    /// remainder by direct computation", 2019; exact for `off`, `size` <
    /// 2^32): one multiply instead of SLUB's `reciprocal_size` two.
    div_magic: u64,
    /// Free pointer offset inside an object (cf. `s->offset`).
    offset: u32,
    /// Object stride including metadata and padding (cf. `s->size`).
    size: u32,
    /// `objects * size`: offsets at or past it are slab leftover.
    objs_end: u32,
    /// `objs_end` for a plain cache, 0 for a debug one: the general free's
    /// bound ([`KmemCache::is_plain_object_offset`]), which so also says
    /// "not a debug cache" without testing the flags.
    plain_end: u32,
    /// Bytes the user may use (cf. `s->object_size`).
    object_size: u32,
    flags: SlabFlags,
    objects: u32,

    // --- geometry and identity ---
    /// Frames per slab minus one.
    pfn_mask: u32,
    /// End of object plus red zone (cf. `s->inuse`).
    inuse_off: u32,
    /// Where the requested size is stored when red-zoning (0 = not).
    orig_off: u32,
    align: u32,
    order: u8,
    allocflags: GfpFlags,
    ctor: Option<Ctor>,
    kind: CacheKind,
    name: CacheName,
    live: bool,
    generation: u16,
    /// Creation sequence number: `/proc/slabinfo` lists newest first, as
    /// Linux walks `slab_caches`.
    seq: u32,

    // --- slab lists and counters (cf. kmem_cache_node) ---
    /// The node: slab lists and their counters, behind `list_lock` (see
    /// [`KmemCacheNode`] for what protects what).
    node: smp::NodeCell,
    /// Slabs owned, the CPU slabs included.
    nr_slabs: u64,
    /// Objects taken out of circulation after a detected corruption.
    quarantined: u64,
    errors: CorruptionCounts,
}

impl KmemCache {
    // A template, copied into each slot (its `NodeCell` fresh each time).
    #[allow(clippy::declare_interior_mutable_const)]
    const EMPTY: KmemCache = KmemCache {
        slab_mask: 0,
        div_magic: 0,
        offset: 0,
        size: 0,
        objs_end: 0,
        plain_end: 0,
        object_size: 0,
        flags: SlabFlags::NONE,
        objects: 0,
        pfn_mask: 0,
        inuse_off: 0,
        orig_off: 0,
        align: 0,
        order: 0,
        allocflags: GfpFlags::empty(),
        ctor: None,
        kind: CacheKind::Kernel,
        name: CacheName::EMPTY,
        live: false,
        generation: 0,
        seq: 0,
        node: smp::NodeCell::new(),
        nr_slabs: 0,
        quarantined: 0,
        errors: CorruptionCounts {
            red_zone: 0,
            poison: 0,
            double_free: 0,
            free_pointer: 0,
            invalid_free: 0,
        },
    };

    /// Whether `off`, an offset inside one of this cache's slabs, is an
    /// object's first byte (cf. `check_valid_pointer()`, which SLUB runs
    /// only when debugging; here every free runs it, so a bad pointer is
    /// refused instead of corrupting a free list).
    ///
    /// The bound is tested first: `kfree` tries its hint's CPU slab with
    /// this, and an object of another slab of the same cache is often at a
    /// multiple of the stride from that slab, but never within it.
    #[inline(always)]
    fn is_object_offset(&self, off: u64) -> bool {
        off < self.objs_end as u64 && off.wrapping_mul(self.div_magic) < self.div_magic
    }

    /// [`Self::is_object_offset`] and not a debug cache, in the same two
    /// comparisons (see `plain_end`): what the general free asks before
    /// it pushes an object without checks.
    #[inline(always)]
    fn is_plain_object_offset(&self, off: u64) -> bool {
        off < self.plain_end as u64 && off.wrapping_mul(self.div_magic) < self.div_magic
    }

    #[inline]
    fn is_debug(&self) -> bool {
        self.flags.intersects(SlabFlags::DEBUG_FLAGS)
    }
}

// ----------------------------------------------------------------------
// The allocator
// ----------------------------------------------------------------------

/// Every cache, the kmalloc ones included, plus the per-frame slab overlay.
///
/// Not internally locked: the kernel keeps it behind one spin lock (see the
/// module docs for the lock order). Every operation takes the
/// [`ObjectMemory`] to touch objects with and the [`PageSource`] to grow or
/// shrink with.
pub struct SlabAllocator<'a> {
    pub(crate) metas: smp::MetaTable<'a>,
    pub(crate) caches: [KmemCache; MAX_CACHES],
    next_seq: u32,
    report: Option<ReportFn>,
    /// Invalid frees of addresses in no cache.
    pub(crate) stray_frees: u64,
    /// Live `kmalloc_large` blocks and their pages.
    pub(crate) large_allocs: u64,
    pub(crate) large_pages: u64,
    /// `failslab` fault injection, checked before every object allocation.
    failslab: FailSlab,
    /// `failslab.is_armed()`, cached for the fast path (see `ArmedMut`).
    failslab_armed: bool,
    /// Each CPU's `kmem_cache_cpu` of every cache and its free hint, one
    /// slot per CPU on cache lines of its own (cf. `s->cpu_slab`, which
    /// Linux keeps in each CPU's per-CPU area); see [`cpu`].
    pub(crate) pcpu: [crate::sync::PcpCell<SlabCpu>; NR_CPUS],
    /// The CPU the exclusive holder runs on, whose slot the locked paths
    /// use (set by the lock, cf. `smp_processor_id()`).
    pub(crate) cur_cpu: CpuIdx,
    /// Scratch overlay entry, written and never read: where `__slab_free`
    /// sends the list stores of a free that moves no slab, so that both
    /// outcomes run the same few stores without a branch (see there).
    pub(crate) sink: SlabMeta,
}

impl fmt::Debug for SlabAllocator<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlabAllocator")
            .field("caches", &self.caches.iter().filter(|c| c.live).count())
            .field("lowmem_frames", &self.metas.capacity())
            .finish_non_exhaustive()
    }
}

/// `ceil(2^64 / size)` for [`KmemCache::is_object_offset`] (`size` ≥ 2).
pub(crate) const fn div_magic(size: u32) -> u64 {
    (u64::MAX / size as u64).wrapping_add(1)
}

/// Direct-map address of a slab's first byte.
#[inline(always)]
pub(crate) const fn slab_va(pfn: u32) -> u64 {
    PAGE_OFFSET + ((pfn as u64) << PAGE_SHIFT)
}

impl<'a> SlabAllocator<'a> {
    /// An allocator over `metas` (one per lowmem frame, PFN 0 up; the slab
    /// layer uses no frame at or beyond `metas.len()`), with the kmalloc
    /// caches created and empty (cf. `kmem_cache_init()` +
    /// `create_kmalloc_caches()`). `kmalloc_debug` is applied to every
    /// kmalloc cache (cf. `slub_debug=` on the command line).
    ///
    /// `metas` need not be initialised: an entry is written when the slab
    /// layer first reaches its frame or one near it ([`smp::MetaTable`]).
    pub fn new(metas: &'a mut [SlabMeta], kmalloc_debug: SlabFlags) -> Self {
        let mut s = SlabAllocator {
            metas: smp::MetaTable::new(metas),
            caches: [const { KmemCache::EMPTY }; MAX_CACHES],
            next_seq: 0,
            report: None,
            stray_frees: 0,
            large_allocs: 0,
            large_pages: 0,
            failslab: FailSlab::new(),
            failslab_armed: false,
            pcpu: [const { crate::sync::PcpCell::new(SlabCpu::EMPTY) }; NR_CPUS],
            cur_cpu: CpuIdx::C0,
            sink: SlabMeta::EMPTY,
        };
        s.create_kmalloc_caches(kmalloc_debug);
        s
    }

    /// Install the corruption reporter.
    pub fn set_report_hook(&mut self, hook: ReportFn) {
        self.report = Some(hook);
    }

    /// `failslab` fault injection (disabled by default).
    pub fn failslab(&self) -> &FailSlab {
        &self.failslab
    }

    /// `failslab`, to arm or tune (the debugfs files in Linux).
    pub fn failslab_mut(&mut self) -> ArmedMut<'_, FailSlab> {
        ArmedMut::new(&mut self.failslab, &mut self.failslab_armed)
    }

    /// Lowmem frames covered by the overlay.
    pub fn nr_frames(&self) -> usize {
        self.metas.capacity()
    }

    /// Fill `slot` with a new cache; the caller checked the slot is free.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn setup_cache(
        &mut self,
        slot: usize,
        name: CacheName,
        object_size: usize,
        geo: Geometry,
        flags: SlabFlags,
        ctor: Option<Ctor>,
        kind: CacheKind,
    ) -> CacheId {
        let generation = self.caches[slot].generation;
        let allocflags = if flags.contains(SlabFlags::CACHE_DMA) {
            GfpFlags::DMA
        } else {
            GfpFlags::empty()
        };
        self.caches[slot] = KmemCache {
            offset: geo.offset,
            size: geo.size,
            slab_mask: (PAGE_SIZE << geo.order) - 1,
            div_magic: div_magic(geo.size),
            objs_end: geo.objects * geo.size,
            plain_end: if flags.intersects(SlabFlags::DEBUG_FLAGS) {
                0
            } else {
                geo.objects * geo.size
            },
            pfn_mask: (1u32 << geo.order) - 1,
            object_size: object_size as u32,
            inuse_off: geo.inuse_off,
            orig_off: geo.orig_off,
            align: geo.align,
            objects: geo.objects,
            order: geo.order as u8,
            flags,
            allocflags,
            ctor,
            kind,
            name,
            live: true,
            generation,
            seq: self.next_seq,
            ..KmemCache::EMPTY
        };
        self.copy_geometry_to_cpus(slot);
        self.next_seq += 1;
        CacheId {
            slot: slot as u8,
            generation,
        }
    }

    /// Every CPU's copy of cache `slot`'s fast-path geometry
    /// ([`KmemCacheCpu::set_geometry`]), after the cache's own changed.
    fn copy_geometry_to_cpus(&mut self, slot: usize) {
        let c = &self.caches[slot];
        for pc in &mut self.pcpu {
            pc.slabs[slot].set_geometry(c);
        }
    }

    /// `kmem_cache_create()` for kernel code ([`CacheKind::Kernel`]).
    pub fn kmem_cache_create(
        &mut self,
        name: &str,
        size: usize,
        align: usize,
        flags: SlabFlags,
        ctor: Option<Ctor>,
    ) -> Result<CacheId, SlabError> {
        self.kmem_cache_create_kind(name, size, align, flags, ctor, CacheKind::Kernel)
    }

    /// Create a cache of `size`-byte objects aligned to `align` (0 = word;
    /// a power of two up to a page) (cf. `kmem_cache_create()`,
    /// `__kmem_cache_create()`). Nothing is allocated until the first
    /// object is. Names are unique (the API addresses caches by name).
    pub fn kmem_cache_create_kind(
        &mut self,
        name: &str,
        size: usize,
        align: usize,
        flags: SlabFlags,
        ctor: Option<Ctor>,
        kind: CacheKind,
    ) -> Result<CacheId, SlabError> {
        let name = CacheName::new(name).ok_or(SlabError::Invalid)?;
        if size == 0
            || size > MAX_OBJECT_SIZE
            || (align != 0 && (!align.is_power_of_two() || align > PAGE_SIZE as usize))
            || flags.0 & !SlabFlags::ALL_BITS != 0
        {
            return Err(SlabError::Invalid);
        }
        if self.find_cache(name.as_str()).is_some() {
            return Err(SlabError::Exists);
        }
        let first = crate::kmalloc::NR_KMALLOC_SLOTS;
        let slot = (first..MAX_CACHES)
            .find(|&i| !self.caches[i].live)
            .ok_or(SlabError::TooManyCaches)?;
        let geo = calculate_sizes(size, align, flags, ctor.is_some());
        if geo.order as usize > MAX_ORDER || geo.objects == 0 {
            return Err(SlabError::Invalid);
        }
        Ok(self.setup_cache(slot, name, size, geo, flags, ctor, kind))
    }

    /// The live cache called `name`.
    pub fn find_cache(&self, name: &str) -> Option<CacheId> {
        self.caches
            .iter()
            .enumerate()
            .find(|(_, c)| c.live && c.name.as_str() == name)
            .map(|(i, c)| CacheId {
                slot: i as u8,
                generation: c.generation,
            })
    }

    /// Slot of a live cache.
    #[inline]
    fn resolve(&self, id: CacheId) -> Result<usize, SlabError> {
        let c = &self.caches[id.slot as usize & (MAX_CACHES - 1)];
        if c.live && c.generation == id.generation {
            Ok(id.slot as usize)
        } else {
            Err(SlabError::NoCache)
        }
    }

    pub(crate) fn id_of(&self, slot: usize) -> CacheId {
        CacheId {
            slot: slot as u8,
            generation: self.caches[slot].generation,
        }
    }

    /// `kmem_cache_destroy()`: refused while objects are live
    /// ([`SlabError::Busy`]; quarantined objects do not count — their slabs
    /// go back to the buddy allocator with the cache). kmalloc caches are
    /// [`SlabError::Permanent`].
    pub fn kmem_cache_destroy<M: ObjectMemory + ?Sized, S: PageSource + ?Sized>(
        &mut self,
        mem: &M,
        pages: &S,
        id: CacheId,
    ) -> Result<(), SlabError> {
        let slot = self.resolve(id)?;
        if self.caches[slot].kind == CacheKind::Kmalloc {
            return Err(SlabError::Permanent);
        }
        // Saturating: a corrupt CPU free list may count fewer in use.
        let active = self
            .active_objs(mem, slot)
            .saturating_sub(self.caches[slot].quarantined);
        if active > 0 {
            return Err(SlabError::Busy {
                active_objs: active,
            });
        }
        self.flush_all(mem, pages, slot);
        for kind in [ListKind::Partial, ListKind::Empty] {
            loop {
                let c = &mut self.caches[slot];
                let list = if kind == ListKind::Partial {
                    &mut c.node.partial
                } else {
                    &mut c.node.empty
                };
                if list.head == NIL {
                    break;
                }
                let pfn = list.pop(&mut self.metas);
                self.discard_slab(pages, slot, pfn);
            }
        }
        // Full slabs (their objects quarantined) are not linked: find their
        // heads in the overlay (slabs are naturally aligned).
        let step = 1usize << self.caches[slot].order;
        let mut pfn = 0;
        while self.caches[slot].node.full.nr > 0 && pfn < self.metas.len() {
            if self.metas[pfn].cache as usize == slot + 1 {
                self.caches[slot].node.full.nr -= 1;
                self.discard_slab(pages, slot, pfn as u32);
            }
            pfn += step;
        }
        let generation = self.caches[slot].generation.wrapping_add(1);
        self.caches[slot] = KmemCache {
            generation,
            ..KmemCache::EMPTY
        };
        self.copy_geometry_to_cpus(slot);
        Ok(())
    }

    /// `kmem_cache_shrink()`: flush the CPU slabs (cf. `flush_all()`) and
    /// give every empty slab back to the buddy allocator. Returns the
    /// number freed.
    pub fn kmem_cache_shrink<M: ObjectMemory + ?Sized, S: PageSource + ?Sized>(
        &mut self,
        mem: &M,
        pages: &S,
        id: CacheId,
    ) -> Result<usize, SlabError> {
        let slot = self.resolve(id)?;
        Ok(self.shrink_slot(mem, pages, slot))
    }

    pub(crate) fn shrink_slot<M: ObjectMemory + ?Sized, S: PageSource + ?Sized>(
        &mut self,
        mem: &M,
        pages: &S,
        slot: usize,
    ) -> usize {
        let before = self.caches[slot].nr_slabs;
        // An empty CPU slab may go straight back to the buddy allocator
        // here (past the reserve): count what left, not what was listed.
        self.flush_all(mem, pages, slot);
        while self.caches[slot].node.empty.head != NIL {
            let pfn = self.caches[slot].node.empty.head;
            self.caches[slot].node.empty.remove(&mut self.metas, pfn);
            self.discard_slab(pages, slot, pfn);
        }
        (before - self.caches[slot].nr_slabs) as usize
    }

    /// [`SlabAllocator::kmem_cache_shrink`] that leaves up to `keep` empty
    /// slabs in place, the most recently emptied going first, and the
    /// CPU slabs as they are (cf. SLUB keeping `min_partial` slabs). For
    /// caches whose spare slabs are policy: the kernel heap's kmalloc
    /// caches keep theirs when a user shrinks them. Returns slabs freed.
    pub fn kmem_cache_shrink_keep<S: PageSource + ?Sized>(
        &mut self,
        pages: &S,
        id: CacheId,
        keep: u32,
    ) -> Result<usize, SlabError> {
        let slot = self.resolve(id)?;
        let mut freed = 0;
        while self.caches[slot].node.empty.nr > keep && self.caches[slot].node.empty.head != NIL {
            let pfn = self.caches[slot].node.empty.head;
            self.caches[slot].node.empty.remove(&mut self.metas, pfn);
            self.discard_slab(pages, slot, pfn);
            freed += 1;
        }
        Ok(freed)
    }

    /// Add one empty slab to cache `id`, its pages from `pages` (cf.
    /// `new_slab()` without handing out an object). `POST /api/reset` uses
    /// it with a page source that returns one given block, to put the
    /// kernel heap's boot-time slabs back on exactly their boot frames.
    pub fn grow_empty_slab<M: ObjectMemory, S: PageSource + ?Sized>(
        &mut self,
        mem: &M,
        pages: &S,
        id: CacheId,
        gfp: GfpFlags,
    ) -> Result<Pfn, SlabError> {
        let slot = self.resolve(id)?;
        let pfn = self.new_slab(mem, pages, slot, gfp)?;
        let c = &mut self.caches[slot];
        c.node.list_push(&mut self.metas, ListKind::Empty, pfn);
        Ok(Pfn(u64::from(pfn)))
    }

    /// Every slab's head frame with its cache, in frame order: one pass
    /// over the overlay (full slabs are counted, not linked, so lists
    /// alone would miss them).
    pub fn slab_heads(&self) -> impl Iterator<Item = (CacheId, Pfn)> + '_ {
        self.metas.iter().enumerate().filter_map(|(pfn, m)| {
            let slot = (m.cache as usize).wrapping_sub(1);
            let c = self.caches.get(slot)?;
            (c.live && pfn & ((1usize << c.order) - 1) == 0)
                .then(|| (self.id_of(slot), Pfn(pfn as u64)))
        })
    }

    /// The cache whose slab frame `pfn` is, if any.
    pub fn cache_of_pfn(&self, pfn: Pfn) -> Option<CacheId> {
        let slot = (self.metas.get(pfn.index())?.cache as usize).wrapping_sub(1);
        (slot < MAX_CACHES).then(|| self.id_of(slot))
    }

    /// Shrink every cache (cf. `kmem_cache_shrink_all()`); slabs freed.
    pub fn shrink_all<M: ObjectMemory + ?Sized, S: PageSource + ?Sized>(
        &mut self,
        mem: &M,
        pages: &S,
    ) -> usize {
        let mut freed = 0;
        for slot in 0..MAX_CACHES {
            if self.caches[slot].live {
                freed += self.shrink_slot(mem, pages, slot);
            }
        }
        freed
    }

    /// cf. `allocate_slab()` + `shuffle_freelist()`-less `setup_object()`s:
    /// take pages, label every frame with the cache, run constructors,
    /// initialise debug state and chain every object onto the free list.
    #[inline(never)]
    fn new_slab<M: ObjectMemory, S: PageSource + ?Sized>(
        &mut self,
        mem: &M,
        pages: &S,
        slot: usize,
        gfp: GfpFlags,
    ) -> Result<u32, SlabError> {
        let c = &self.caches[slot];
        let order = Order::new(c.order).ok_or(SlabError::Invalid)?;
        // The cache decides the zone; the caller only how hard to try
        // (cf. GFP_SLAB_BUG_MASK and s->allocflags).
        let gfp = gfp
            .difference(GfpFlags::ZONEMASK.union(GfpFlags::ZERO))
            .union(c.allocflags);
        let pfn = pages
            .alloc_slab_pages(gfp, order, SlabPageKind::Slab)
            .map_err(|_| SlabError::NoMemory { order })?;
        let nr = order.nr_pages() as usize;
        if !self.metas.extend_to(pfn.index() + nr) {
            pages.free_slab_pages(pfn, order, SlabPageKind::Slab);
            return Err(SlabError::NoMemory { order });
        }
        for m in &mut self.metas[pfn.index()..pfn.index() + nr] {
            *m = SlabMeta {
                cache: slot as u16 + 1,
                ..SlabMeta::EMPTY
            };
        }
        let pfn = pfn.0 as u32;
        self.metas[pfn as usize].freelist = 0;
        let c = &self.caches[slot];
        let base = slab_va(pfn);
        let debug = c.is_debug();
        for i in 0..c.objects {
            let p = base + (i * c.size) as u64;
            if let Some(ctor) = c.ctor {
                ctor(mem, p, c.object_size as usize);
            }
            if debug {
                debug::init_object(c, mem, p, false);
            }
            let next = if i + 1 < c.objects {
                p + c.size as u64
            } else {
                0
            };
            mem.write_u64(p + c.offset as u64, next);
        }
        self.caches[slot].nr_slabs += 1;
        Ok(pfn)
    }

    /// Move a slab to the list its state calls for, after a change from
    /// `before`; an empty slab beyond the reserve goes back to the buddy
    /// allocator (cf. the tail of `__slab_free()` / `discard_slab()`).
    fn relist<S: PageSource + ?Sized>(
        &mut self,
        pages: &S,
        slot: usize,
        pfn: u32,
        before: ListKind,
    ) {
        let now = list_kind(&self.metas[pfn as usize]);
        if now == before {
            return;
        }
        let c = &mut self.caches[slot];
        c.node.list_remove(&mut self.metas, before, pfn);
        if now == ListKind::Empty && c.node.empty.nr >= SLAB_EMPTY_RESERVE {
            self.discard_slab(pages, slot, pfn);
        } else {
            c.node.list_push(&mut self.metas, now, pfn);
        }
    }

    /// Unlabel a slab (already off every list) and free its pages.
    #[inline(never)]
    fn discard_slab<S: PageSource + ?Sized>(&mut self, pages: &S, slot: usize, pfn: u32) {
        let c = &mut self.caches[slot];
        c.nr_slabs -= 1;
        c.node.list_inuse -= self.metas[pfn as usize].inuse as u64;
        let order = c.order;
        let nr = 1usize << order;
        self.metas[pfn as usize..pfn as usize + nr].fill(SlabMeta::EMPTY);
        if let Some(order) = Order::new(order) {
            pages.free_slab_pages(Pfn(pfn as u64), order, SlabPageKind::Slab);
        }
    }

    /// Count and report a corruption in cache `slot`.
    fn corrupt(
        &mut self,
        slot: usize,
        kind: CorruptionKind,
        addr: u64,
        offset: Option<u32>,
    ) -> Corruption {
        let c = &mut self.caches[slot];
        c.errors.count(kind);
        let corruption = Corruption {
            kind,
            addr,
            offset,
            cache: Some(CacheId {
                slot: slot as u8,
                generation: c.generation,
            }),
        };
        if let Some(report) = self.report {
            report(c.name.as_str(), &corruption);
        }
        corruption
    }

    /// Report an invalid free of an address in no cache.
    pub(crate) fn stray_free(&mut self, kind: InvalidFreeKind, addr: u64) -> Corruption {
        self.stray_frees += 1;
        let corruption = Corruption {
            kind: CorruptionKind::InvalidFree(kind),
            addr,
            offset: None,
            cache: None,
        };
        if let Some(report) = self.report {
            report("?", &corruption);
        }
        corruption
    }

    /// A free of an address whose frame is no slab: a `kmalloc_large` block
    /// when `kfree`d at its first byte, an invalid free otherwise.
    fn free_not_slab<S: PageSource + ?Sized>(
        &mut self,
        pages: &S,
        addr: u64,
        expect: Option<CacheId>,
    ) -> Result<(), Corruption> {
        if expect.is_none() {
            return self.free_large(pages, addr);
        }
        Err(self.stray_free(InvalidFreeKind::NotSlab, addr))
    }

    /// `object_size` of cache `slot` if `phys` is one of its object starts.
    pub(crate) fn object_size_at(&self, slot: usize, phys: u64) -> Option<usize> {
        let c = self.caches.get(slot)?;
        (c.live && c.is_object_offset(phys & c.slab_mask)).then_some(c.object_size as usize)
    }

    /// The cache an address belongs to (cf. `virt_to_cache()`), whether or
    /// not it is an object boundary.
    pub fn cache_of(&self, addr: u64) -> Option<CacheId> {
        let pfn = (addr.wrapping_sub(PAGE_OFFSET) >> PAGE_SHIFT) as usize;
        let slot = (self.metas.get(pfn)?.cache as usize).wrapping_sub(1);
        (slot < MAX_CACHES).then(|| self.id_of(slot))
    }
}
