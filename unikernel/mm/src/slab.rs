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
//! * **Two locks, one order.** The kernel keeps a [`SlabAllocator`] behind its
//!   own lock. Only the slow paths (a new slab, returning an empty one,
//!   `kmalloc_large`) call the page allocator, through the [`PageSource`]
//!   passed into every call, which takes the zone lock inside. So the lock
//!   order is slab → zone, and nothing under either lock allocates from the
//!   heap.
//! * **Fast path as in SLUB.** Each cache has an active ("cpu") slab whose
//!   free list is held in the cache descriptor itself
//!   (`kmem_cache_cpu.freelist`): an allocation pops it with one load, a free
//!   of an object of the active slab pushes with one store — no search, no
//!   list move, no `dyn` call. Everything else is `___slab_alloc` /
//!   `__slab_free`, out of line.
//! * **Debug caches take the slow path** (as `kmem_cache_debug()` does in
//!   Linux): `SLAB_RED_ZONE`, `SLAB_POISON` and `SLAB_CONSISTENCY_CHECKS`
//!   caches never freeze an active slab, so every operation is checked. A
//!   detected corruption is reported through a hook, counted per cache, the
//!   object is quarantined (left allocated, never handed out again), and the
//!   operation returns an error instead of panicking.
//! * Slab pages are lowmem only: objects need permanent direct-map
//!   addresses, so `__GFP_HIGHMEM` is stripped (cf. `GFP_SLAB_BUG_MASK`).

mod debug;
pub mod mem;
mod stats;
#[cfg(test)]
pub(crate) mod tests;

use core::fmt;

#[cfg(any(test, feature = "sim"))]
pub use mem::ArenaMemory;
pub use mem::{ObjectMemory, PlatformMemory};
pub use stats::{CacheInfo, SlabCheckError};

use crate::fault_inject::{ArmedMut, FailSlab};
use crate::gfp::GfpFlags;
use crate::manager::MemoryManager;
use crate::page::{NIL, OwnerTag};
use crate::page_alloc::{AllocError, PageAlloc};
use crate::platform::Platform;
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
// Flags, kinds, names, ids
// ----------------------------------------------------------------------

/// Cache creation flags; values are Linux's (`include/linux/slab.h`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SlabFlags(pub u32);

impl SlabFlags {
    /// No flag.
    pub const NONE: SlabFlags = SlabFlags(0);
    /// `SLAB_CONSISTENCY_CHECKS`: full checks on every alloc/free (slow path,
    /// double-free detection by free-list walk).
    pub const CONSISTENCY_CHECKS: SlabFlags = SlabFlags(0x0000_0100);
    /// `SLAB_RED_ZONE`: guard bytes after each object (and after the requested
    /// size of a kmalloc object), checked on free.
    pub const RED_ZONE: SlabFlags = SlabFlags(0x0000_0400);
    /// `SLAB_POISON`: free objects filled with `0x6b…0xa5`, checked on alloc.
    pub const POISON: SlabFlags = SlabFlags(0x0000_0800);
    /// `SLAB_HWCACHE_ALIGN`: align objects to cache lines.
    pub const HWCACHE_ALIGN: SlabFlags = SlabFlags(0x0000_2000);
    /// `SLAB_CACHE_DMA`: slab pages from ZONE_DMA.
    pub const CACHE_DMA: SlabFlags = SlabFlags(0x0000_4000);
    /// `SLAB_ACCOUNT`: objects are charged to a memory cgroup; set on the
    /// `kmalloc-cg-*` caches.
    pub const ACCOUNT: SlabFlags = SlabFlags(0x0400_0000);
    /// `SLAB_FAILSLAB`: the cache takes part in `failslab` fault injection
    /// when its `cache-filter` is on (cf. `mm/failslab.c`).
    pub const FAILSLAB: SlabFlags = SlabFlags(0x0200_0000);
    /// Flags that send a cache down the checked slow path
    /// (cf. `SLAB_DEBUG_FLAGS`).
    pub const DEBUG_FLAGS: SlabFlags = SlabFlags(0x100 | 0x400 | 0x800);

    const NAMES: [(SlabFlags, &'static str); 6] = [
        (SlabFlags::HWCACHE_ALIGN, "SLAB_HWCACHE_ALIGN"),
        (SlabFlags::CACHE_DMA, "SLAB_CACHE_DMA"),
        (SlabFlags::POISON, "SLAB_POISON"),
        (SlabFlags::RED_ZONE, "SLAB_RED_ZONE"),
        (SlabFlags::CONSISTENCY_CHECKS, "SLAB_CONSISTENCY_CHECKS"),
        (SlabFlags::FAILSLAB, "SLAB_FAILSLAB"),
    ];
    const ALL_BITS: u32 = 0x100 | 0x400 | 0x800 | 0x2000 | 0x4000 | 0x0200_0000;

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: SlabFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any bit of `other` is set.
    pub const fn intersects(self, other: SlabFlags) -> bool {
        self.0 & other.0 != 0
    }

    /// Union.
    pub const fn union(self, other: SlabFlags) -> SlabFlags {
        SlabFlags(self.0 | other.0)
    }

    /// The flag called `name` (`"SLAB_POISON"`…), for the API.
    pub fn from_name(name: &str) -> Option<SlabFlags> {
        SlabFlags::NAMES
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(f, _)| *f)
    }

    /// Names of the set flags, in a fixed order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        SlabFlags::NAMES
            .into_iter()
            .filter(move |(f, _)| self.contains(*f))
            .map(|(_, n)| n)
    }
}

impl core::ops::BitOr for SlabFlags {
    type Output = SlabFlags;
    fn bitor(self, rhs: SlabFlags) -> SlabFlags {
        self.union(rhs)
    }
}

impl fmt::Debug for SlabFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SlabFlags(")?;
        for (i, n) in self.names().enumerate() {
            write!(f, "{}{n}", if i > 0 { "|" } else { "" })?;
        }
        write!(f, ")")
    }
}

/// Who created a cache (API.md `Cache.kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum CacheKind {
    /// One of the `kmalloc-*` / `dma-kmalloc-*` caches.
    Kmalloc,
    /// Created through the HTTP API; `POST /api/reset` destroys these.
    Api,
    /// Created by kernel code.
    #[default]
    Kernel,
}

impl CacheKind {
    /// `"kmalloc"`, `"api"` or `"kernel"`.
    pub const fn name(self) -> &'static str {
        match self {
            CacheKind::Kmalloc => "kmalloc",
            CacheKind::Api => "api",
            CacheKind::Kernel => "kernel",
        }
    }
}

/// A cache name stored inline (no heap): printable ASCII without spaces, so
/// `/proc/slabinfo` stays parseable by whitespace splitting.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CacheName {
    bytes: [u8; CACHE_NAME_MAX],
    len: u8,
}

impl CacheName {
    const EMPTY: CacheName = CacheName {
        bytes: [0; CACHE_NAME_MAX],
        len: 0,
    };

    /// `None` if empty, longer than [`CACHE_NAME_MAX`], or not graphic ASCII.
    pub fn new(name: &str) -> Option<CacheName> {
        let mut n = CacheName::EMPTY;
        fmt::Write::write_str(&mut n, name).ok()?;
        (n.len > 0).then_some(n)
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("?")
    }
}

impl fmt::Write for CacheName {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let at = self.len as usize;
        if at + s.len() > CACHE_NAME_MAX || !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(fmt::Error);
        }
        self.bytes[at..at + s.len()].copy_from_slice(s.as_bytes());
        self.len += s.len() as u8;
        Ok(())
    }
}

impl fmt::Debug for CacheName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for CacheName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Handle of a cache (cf. `struct kmem_cache *`): a table slot plus a
/// generation, so a handle kept past `kmem_cache_destroy` is refused rather
/// than aliasing a later cache in the same slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CacheId {
    slot: u8,
    generation: u16,
}

impl CacheId {
    /// Table slot (stable while the cache lives).
    pub const fn slot(self) -> usize {
        self.slot as usize
    }
}

/// Object constructor (cf. the `ctor` of `kmem_cache_create()`): called once
/// per object when its slab is created, with the object's address and
/// `object_size`. Objects must be returned to the cache in constructed
/// state; a cache with a constructor keeps its free pointer outside the
/// object and is never poisoned (as in SLUB).
pub type Ctor = fn(mem: &dyn ObjectMemory, addr: u64, object_size: usize);

/// Corruption reporter: called with the cache name (or `"?"` for an address
/// in no cache) for every detected corruption, while the slab lock is held —
/// it must not allocate (the kernel's prints to serial).
pub type ReportFn = fn(cache: &str, corruption: &Corruption);

// ----------------------------------------------------------------------
// Errors and corruption reports
// ----------------------------------------------------------------------

/// Why a slab operation failed. A failed call changes no state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlabError {
    /// The page allocator could not supply a slab (or a `kmalloc_large`
    /// block) — or, from a mempool, neither the cache nor the reserve could.
    NoMemory {
        /// Order asked of the page allocator.
        order: Order,
    },
    /// No live cache with this id or name.
    NoCache,
    /// A cache of that name exists already.
    Exists,
    /// Every slot of the cache table is taken.
    TooManyCaches,
    /// Bad size, alignment, flags or name.
    Invalid,
    /// `kmalloc` of more than [`KMALLOC_MAX_SIZE`](crate::kmalloc::KMALLOC_MAX_SIZE).
    TooLarge {
        /// Bytes requested.
        size: usize,
    },
    /// `kmem_cache_destroy` while objects are live (API: 409).
    Busy {
        /// Objects still allocated (quarantined ones excluded).
        active_objs: u64,
    },
    /// The kmalloc caches are permanent.
    Permanent,
}

impl fmt::Display for SlabError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SlabError::NoMemory { order } => write!(f, "out of memory (order {order})"),
            SlabError::NoCache => write!(f, "no such cache"),
            SlabError::Exists => write!(f, "cache exists"),
            SlabError::TooManyCaches => write!(f, "cache table full ({MAX_CACHES})"),
            SlabError::Invalid => write!(f, "invalid cache parameters"),
            SlabError::TooLarge { size } => write!(f, "kmalloc of {size} bytes is too large"),
            SlabError::Busy { active_objs } => write!(f, "cache has {active_objs} live objects"),
            SlabError::Permanent => write!(f, "kmalloc caches cannot be destroyed"),
        }
    }
}

/// Why a free was judged invalid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InvalidFreeKind {
    /// The address is in no slab and heads no `kmalloc_large` block.
    NotSlab,
    /// Inside a slab (or large block) but not at an object's first byte.
    NotObjectStart,
    /// `kmem_cache_free` named another cache than the object's
    /// (cf. `cache_from_obj()`: "Wrong slab cache").
    WrongCache,
}

/// What the debug checks found (cf. the `slab_err`/`object_err` messages).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CorruptionKind {
    /// A red zone byte changed: after the object, or between a kmalloc
    /// object's requested size and its class size ("Right Redzone
    /// overwritten").
    RedZone,
    /// A free object's poison changed: a write after free ("Poison
    /// overwritten").
    Poison,
    /// The object is already free ("Object already free").
    DoubleFree,
    /// A free pointer leads outside its slab or off an object boundary
    /// ("Freepointer corrupt"); the rest of that free list is isolated.
    FreePointer,
    /// A bad pointer was freed.
    InvalidFree(InvalidFreeKind),
}

impl CorruptionKind {
    /// Linux's wording.
    pub const fn message(self) -> &'static str {
        match self {
            CorruptionKind::RedZone => "Right Redzone overwritten",
            CorruptionKind::Poison => "Poison overwritten",
            CorruptionKind::DoubleFree => "Object already free",
            CorruptionKind::FreePointer => "Freepointer corrupt",
            CorruptionKind::InvalidFree(InvalidFreeKind::NotSlab) => {
                "Invalid free: not a slab object"
            }
            CorruptionKind::InvalidFree(InvalidFreeKind::NotObjectStart) => {
                "Invalid free: not at an object boundary"
            }
            CorruptionKind::InvalidFree(InvalidFreeKind::WrongCache) => "Wrong slab cache",
        }
    }
}

/// One detected corruption.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Corruption {
    /// What was found.
    pub kind: CorruptionKind,
    /// The object (or freed pointer) concerned.
    pub addr: u64,
    /// Offset of the first bad byte from `addr`, where one applies.
    pub offset: Option<u32>,
    /// The cache the address belongs to, if any.
    pub cache: Option<CacheId>,
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {:#x}", self.kind.message(), self.addr)?;
        if let Some(off) = self.offset {
            write!(f, " (offset {off})")?;
        }
        Ok(())
    }
}

/// Per-cache corruption counters (`/api/slabinfo`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CorruptionCounts {
    /// [`CorruptionKind::RedZone`] reports.
    pub red_zone: u64,
    /// [`CorruptionKind::Poison`] reports.
    pub poison: u64,
    /// [`CorruptionKind::DoubleFree`] reports.
    pub double_free: u64,
    /// [`CorruptionKind::FreePointer`] reports.
    pub free_pointer: u64,
    /// [`CorruptionKind::InvalidFree`] reports.
    pub invalid_free: u64,
}

impl CorruptionCounts {
    fn count(&mut self, kind: CorruptionKind) {
        match kind {
            CorruptionKind::RedZone => self.red_zone += 1,
            CorruptionKind::Poison => self.poison += 1,
            CorruptionKind::DoubleFree => self.double_free += 1,
            CorruptionKind::FreePointer => self.free_pointer += 1,
            CorruptionKind::InvalidFree(_) => self.invalid_free += 1,
        }
    }

    /// Sum over every kind.
    pub fn total(&self) -> u64 {
        self.red_zone + self.poison + self.double_free + self.free_pointer + self.invalid_free
    }
}

// ----------------------------------------------------------------------
// Page source
// ----------------------------------------------------------------------

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
/// [`SlabAllocator::grow_empty_slab`] when `POST /api/reset` puts a cache's
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
    fn push(&mut self, metas: &mut [SlabMeta], pfn: u32) {
        let m = &mut metas[pfn as usize];
        m.prev = NIL;
        m.next = self.head;
        if self.head != NIL {
            metas[self.head as usize].prev = pfn;
        } else {
            self.tail = pfn;
        }
        self.head = pfn;
        self.nr += 1;
    }

    /// Append (cf. `add_partial(…, DEACTIVATE_TO_TAIL)`).
    #[inline]
    fn push_tail(&mut self, metas: &mut [SlabMeta], pfn: u32) {
        let m = &mut metas[pfn as usize];
        m.next = NIL;
        m.prev = self.tail;
        if self.tail != NIL {
            metas[self.tail as usize].next = pfn;
        } else {
            self.head = pfn;
        }
        self.tail = pfn;
        self.nr += 1;
    }

    /// Take the head off a non-empty list.
    #[inline]
    fn pop(&mut self, metas: &mut [SlabMeta]) -> u32 {
        let pfn = self.head;
        let next = metas[pfn as usize].next;
        metas[pfn as usize].next = NIL;
        self.head = next;
        if next != NIL {
            metas[next as usize].prev = NIL;
        } else {
            self.tail = NIL;
        }
        self.nr -= 1;
        pfn
    }

    #[inline]
    fn remove(&mut self, metas: &mut [SlabMeta], pfn: u32) {
        let (prev, next) = (metas[pfn as usize].prev, metas[pfn as usize].next);
        if prev == NIL {
            self.head = next;
        } else {
            metas[prev as usize].next = next;
        }
        if next != NIL {
            metas[next as usize].prev = prev;
        } else {
            self.tail = prev;
        }
        metas[pfn as usize].prev = NIL;
        metas[pfn as usize].next = NIL;
        self.nr -= 1;
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

// ----------------------------------------------------------------------
// The cache descriptor
// ----------------------------------------------------------------------

/// A cache of equally sized objects (cf. `struct kmem_cache` with its single
/// `kmem_cache_cpu`). Hot fields first.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))] // the fast-path fields share one cache line
pub(crate) struct KmemCache {
    // --- fast path (cf. kmem_cache_cpu) ---
    /// First free object of the active slab (address; 0 = none).
    freelist: u64,
    /// Head PFN of the active ("frozen") slab, or NIL.
    cpu_slab: u32,
    /// Free pointer offset inside an object (cf. `s->offset`).
    offset: u32,
    /// Objects of the active slab in use (quarantined included).
    cpu_inuse: u32,
    /// Object stride including metadata and padding (cf. `s->size`).
    size: u32,
    /// `ceil(2^32 / size)`: object index by multiply (cf. `reciprocal_size`).
    recip: u32,
    /// `objects * size`: offsets at or past it are slab leftover.
    objs_end: u32,
    /// Frames per slab minus one.
    pfn_mask: u32,
    /// Bytes the user may use (cf. `s->object_size`).
    object_size: u32,

    // --- geometry and identity ---
    /// End of object plus red zone (cf. `s->inuse`).
    inuse_off: u32,
    /// Where the requested size is stored when red-zoning (0 = not).
    orig_off: u32,
    align: u32,
    objects: u32,
    order: u8,
    flags: SlabFlags,
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
    /// Full slabs are counted, not linked (as in SLUB without debugging:
    /// nothing ever needs to find one but `kmem_cache_destroy`, which
    /// scans the overlay); `full.head` stays NIL.
    full: SlabList,
    partial: SlabList,
    empty: SlabList,
    /// Sum of `inuse` over slabs on the lists (not the active slab).
    list_inuse: u64,
    /// Slabs owned, the active one included.
    nr_slabs: u64,
    /// Objects taken out of circulation after a detected corruption.
    quarantined: u64,
    errors: CorruptionCounts,
}

impl KmemCache {
    const EMPTY: KmemCache = KmemCache {
        freelist: 0,
        cpu_slab: NIL,
        offset: 0,
        cpu_inuse: 0,
        size: 0,
        recip: 0,
        objs_end: 0,
        pfn_mask: 0,
        object_size: 0,
        inuse_off: 0,
        orig_off: 0,
        align: 0,
        objects: 0,
        order: 0,
        flags: SlabFlags::NONE,
        allocflags: GfpFlags::empty(),
        ctor: None,
        kind: CacheKind::Kernel,
        name: CacheName::EMPTY,
        live: false,
        generation: 0,
        seq: 0,
        full: SlabList::EMPTY,
        partial: SlabList::EMPTY,
        empty: SlabList::EMPTY,
        list_inuse: 0,
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

    #[inline]
    fn is_debug(&self) -> bool {
        self.flags.intersects(SlabFlags::DEBUG_FLAGS)
    }

    fn active_objs(&self) -> u64 {
        self.list_inuse + self.cpu_inuse as u64
    }

    /// Put an unlinked slab on the list for `kind` (full: just counted).
    #[inline]
    fn list_push(&mut self, metas: &mut [SlabMeta], kind: ListKind, pfn: u32) {
        match kind {
            ListKind::Full => self.full.nr += 1,
            ListKind::Partial => self.partial.push(metas, pfn),
            ListKind::Empty => self.empty.push(metas, pfn),
        }
    }

    /// Take a slab off the list for `kind` (full: just uncounted).
    #[inline]
    fn list_remove(&mut self, metas: &mut [SlabMeta], kind: ListKind, pfn: u32) {
        match kind {
            ListKind::Full => self.full.nr -= 1,
            ListKind::Partial => self.partial.remove(metas, pfn),
            ListKind::Empty => self.empty.remove(metas, pfn),
        }
    }
}

/// Object layout and slab geometry for a cache (cf. `calculate_sizes()`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub size: u32,
    pub align: u32,
    pub offset: u32,
    pub inuse_off: u32,
    pub orig_off: u32,
    pub order: u32,
    pub objects: u32,
}

/// cf. `calculate_alignment()`: at least word alignment; cache-line
/// alignment for `SLAB_HWCACHE_ALIGN`, halved while two objects fit a line.
pub(crate) fn calculate_alignment(flags: SlabFlags, align: usize, size: usize) -> usize {
    let mut align = align.max(8);
    if flags.contains(SlabFlags::HWCACHE_ALIGN) {
        let mut ralign = 64;
        while size <= ralign / 2 && ralign > 8 {
            ralign /= 2;
        }
        align = align.max(ralign);
    }
    align
}

/// Objects in a slab of `order` (cf. `order_objects()`).
const fn order_objects(order: u32, size: u32) -> u32 {
    ((PAGE_SIZE as u32) << order) / size
}

/// Smallest `order >= min_order` whose leftover is at most
/// `slab_size / fract_leftover` (cf. `calc_slab_order()`); `max_order + 1`
/// if none.
const fn calc_slab_order(size: u32, min_order: u32, max_order: u32, fract_leftover: u32) -> u32 {
    let mut order = min_order;
    while order <= max_order {
        let slab_size = (PAGE_SIZE as u32) << order;
        if slab_size % size <= slab_size / fract_leftover {
            break;
        }
        order += 1;
    }
    order
}

/// `get_order()` of a byte count.
const fn get_order(bytes: u64) -> u32 {
    let mut order = 0;
    while (PAGE_SIZE << order) < bytes {
        order += 1;
    }
    order
}

/// The slab order for objects of stride `size` (cf. `calculate_order()`):
/// the smallest order from the `min_objects`-derived one up to
/// `slub_max_order` that wastes at most 1/16 of the slab, then 1/8, then
/// 1/4, then anything; objects too big for `slub_max_order` get
/// `get_order(size)`.
pub(crate) const fn calculate_order(size: u32) -> u32 {
    let max_objects = {
        let m = order_objects(SLUB_MAX_ORDER, size);
        if m == 0 { 1 } else { m }
    };
    let min_objects = if SLUB_MIN_OBJECTS < max_objects {
        SLUB_MIN_OBJECTS
    } else {
        max_objects
    };
    let min_order = get_order(min_objects as u64 * size as u64);
    if order_objects(min_order, size) > MAX_OBJS_PER_PAGE {
        return get_order(size as u64 * MAX_OBJS_PER_PAGE as u64) - 1;
    }
    let mut fraction = 16;
    while fraction > 1 {
        let order = calc_slab_order(size, min_order, SLUB_MAX_ORDER, fraction);
        if order <= SLUB_MAX_ORDER {
            return order;
        }
        fraction /= 2;
    }
    get_order(size as u64)
}

/// cf. `calculate_sizes()`: object, red zone, out-of-object free pointer
/// (debug or constructor), tracked request size (red zone), padding.
pub(crate) fn calculate_sizes(
    object_size: usize,
    align: usize,
    flags: SlabFlags,
    has_ctor: bool,
) -> Geometry {
    let align = calculate_alignment(flags, align, object_size) as u32;
    let object_size = object_size as u32;
    let red_zone = flags.contains(SlabFlags::RED_ZONE);
    let mut size = object_size.next_multiple_of(8);
    if red_zone && size == object_size {
        size += 8; // at least one word of red zone (cf. "size += sizeof(void *)")
    }
    let inuse_off = size;
    let offset = if red_zone || flags.contains(SlabFlags::POISON) || has_ctor {
        size += 8; // free pointer after the object: poison and ctor state survive
        inuse_off
    } else {
        // Middle of the object, so a small overflow from the previous object
        // does not hit it (cf. "s->offset = ALIGN_DOWN(s->object_size / 2, …)").
        (object_size / 2) & !7
    };
    let orig_off = if red_zone {
        size += 8; // cf. set_orig_size()
        size - 8
    } else {
        0
    };
    let size = size.next_multiple_of(align);
    let order = calculate_order(size);
    Geometry {
        size,
        align,
        offset,
        inuse_off,
        orig_off,
        order,
        objects: order_objects(order, size),
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
    pub(crate) metas: &'a mut [SlabMeta],
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
}

impl fmt::Debug for SlabAllocator<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlabAllocator")
            .field("caches", &self.caches.iter().filter(|c| c.live).count())
            .field("lowmem_frames", &self.metas.len())
            .finish_non_exhaustive()
    }
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
    pub fn new(metas: &'a mut [SlabMeta], kmalloc_debug: SlabFlags) -> Self {
        metas.fill(SlabMeta::EMPTY);
        let mut s = SlabAllocator {
            metas,
            caches: [KmemCache::EMPTY; MAX_CACHES],
            next_seq: 0,
            report: None,
            stray_frees: 0,
            large_allocs: 0,
            large_pages: 0,
            failslab: FailSlab::new(),
            failslab_armed: false,
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
        self.metas.len()
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
            recip: (1u64 << 32).div_ceil(geo.size as u64) as u32,
            objs_end: geo.objects * geo.size,
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
        self.next_seq += 1;
        CacheId {
            slot: slot as u8,
            generation,
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
    pub fn kmem_cache_destroy<S: PageSource + ?Sized>(
        &mut self,
        pages: &S,
        id: CacheId,
    ) -> Result<(), SlabError> {
        let slot = self.resolve(id)?;
        let c = &self.caches[slot];
        if c.kind == CacheKind::Kmalloc {
            return Err(SlabError::Permanent);
        }
        let active = c.active_objs() - c.quarantined;
        if active > 0 {
            return Err(SlabError::Busy {
                active_objs: active,
            });
        }
        self.deactivate_slab(slot);
        for kind in [ListKind::Partial, ListKind::Empty] {
            loop {
                let c = &mut self.caches[slot];
                let list = if kind == ListKind::Partial {
                    &mut c.partial
                } else {
                    &mut c.empty
                };
                if list.head == NIL {
                    break;
                }
                let pfn = list.pop(self.metas);
                self.discard_slab(pages, slot, pfn);
            }
        }
        // Full slabs (their objects quarantined) are not linked: find their
        // heads in the overlay (slabs are naturally aligned).
        let step = 1usize << self.caches[slot].order;
        let mut pfn = 0;
        while self.caches[slot].full.nr > 0 && pfn < self.metas.len() {
            if self.metas[pfn].cache as usize == slot + 1 {
                self.caches[slot].full.nr -= 1;
                self.discard_slab(pages, slot, pfn as u32);
            }
            pfn += step;
        }
        let generation = self.caches[slot].generation.wrapping_add(1);
        self.caches[slot] = KmemCache {
            generation,
            ..KmemCache::EMPTY
        };
        Ok(())
    }

    /// `kmem_cache_shrink()`: flush the active slab and give every empty
    /// slab back to the buddy allocator. Returns the number freed.
    pub fn kmem_cache_shrink<S: PageSource + ?Sized>(
        &mut self,
        pages: &S,
        id: CacheId,
    ) -> Result<usize, SlabError> {
        let slot = self.resolve(id)?;
        Ok(self.shrink_slot(pages, slot))
    }

    pub(crate) fn shrink_slot<S: PageSource + ?Sized>(&mut self, pages: &S, slot: usize) -> usize {
        self.deactivate_slab(slot);
        let mut freed = 0;
        while self.caches[slot].empty.head != NIL {
            let pfn = self.caches[slot].empty.head;
            self.caches[slot].empty.remove(self.metas, pfn);
            self.discard_slab(pages, slot, pfn);
            freed += 1;
        }
        freed
    }

    /// [`SlabAllocator::kmem_cache_shrink`] that leaves up to `keep` empty
    /// slabs in place, the most recently emptied going first, and the
    /// active slab as it is (cf. SLUB keeping `min_partial` slabs). For
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
        while self.caches[slot].empty.nr > keep && self.caches[slot].empty.head != NIL {
            let pfn = self.caches[slot].empty.head;
            self.caches[slot].empty.remove(self.metas, pfn);
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
        c.list_push(self.metas, ListKind::Empty, pfn);
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
    pub fn shrink_all<S: PageSource + ?Sized>(&mut self, pages: &S) -> usize {
        let mut freed = 0;
        for slot in 0..MAX_CACHES {
            if self.caches[slot].live {
                freed += self.shrink_slot(pages, slot);
            }
        }
        freed
    }

    // ------------------------------------------------------------------
    // Allocation
    // ------------------------------------------------------------------

    /// `kmem_cache_alloc()`: one object, `__GFP_ZERO` honoured.
    #[inline]
    pub fn kmem_cache_alloc<M: ObjectMemory, S: PageSource + ?Sized>(
        &mut self,
        mem: &M,
        pages: &S,
        id: CacheId,
        gfp: GfpFlags,
    ) -> Result<u64, SlabError> {
        let slot = self.resolve(id)?;
        let orig = self.caches[slot].object_size as usize;
        let r = self.slab_alloc(mem, pages, slot, gfp, orig);
        if pages.trace_enabled(crate::trace::EventId::KmemCacheAlloc) {
            // `accounted`: __GFP_ACCOUNT or SLAB_ACCOUNT.
            let accounted = gfp.contains(GfpFlags::ACCOUNT)
                || self.caches[slot].flags.contains(SlabFlags::ACCOUNT);
            let stride = self.cache_stride(slot);
            let id = crate::trace::EventId::KmemCacheAlloc;
            trace_slab_alloc(pages, id, ptr_or_null(&r), (orig, stride), gfp, accounted);
        }
        r
    }

    /// `s->size` of cache `slot` (the object stride), for the `kmalloc`
    /// and `kmem_cache_alloc` tracepoints.
    pub(crate) fn cache_stride(&self, slot: usize) -> u64 {
        u64::from(self.caches[slot & (MAX_CACHES - 1)].size)
    }

    /// The fast path (cf. `slab_alloc_node()`): pop the active slab's free
    /// list. `orig_size` is what the caller asked for (tracked with red
    /// zones, cf. `kmalloc_redzone`). `failslab` is asked first, as
    /// `slab_pre_alloc_hook()` does for every cache, kmalloc's included;
    /// an injected failure changes nothing but the injection counters.
    #[inline(always)]
    pub(crate) fn slab_alloc<M: ObjectMemory, S: PageSource + ?Sized>(
        &mut self,
        mem: &M,
        pages: &S,
        slot: usize,
        gfp: GfpFlags,
        orig_size: usize,
    ) -> Result<u64, SlabError> {
        if self.failslab_armed {
            self.should_failslab(slot & (MAX_CACHES - 1), gfp)?;
        }
        let c = &mut self.caches[slot & (MAX_CACHES - 1)];
        let obj = c.freelist;
        if obj != 0 {
            c.freelist = mem.read_u64(obj + c.offset as u64);
            c.cpu_inuse += 1;
            if gfp.contains(GfpFlags::ZERO) {
                mem.fill(obj, c.object_size as usize, 0);
            }
            return Ok(obj);
        }
        self.slab_alloc_slow(mem, pages, slot & (MAX_CACHES - 1), gfp, orig_size)
    }

    /// cf. `should_failslab()`: `Err` (as if the cache could not grow)
    /// when `failslab` injects a failure for this cache and `gfp`.
    #[cold]
    #[inline(never)]
    fn should_failslab(&mut self, slot: usize, gfp: GfpFlags) -> Result<(), SlabError> {
        let c = &self.caches[slot];
        let (flags, object_size, order) = (c.flags, c.object_size, c.order);
        let fail = self
            .failslab
            .should_failslab(flags, u64::from(object_size), gfp);
        // `times` may have run out.
        self.failslab_armed = self.failslab.attr.is_armed();
        if fail {
            return Err(SlabError::NoMemory {
                order: Order::new(order).unwrap_or(Order::ZERO),
            });
        }
        Ok(())
    }

    /// cf. `___slab_alloc()`: the active slab is exhausted (or there is
    /// none). Retire it to the full list, then freeze a partial slab, an
    /// empty one, or a new one. Debug caches allocate one checked object
    /// straight from the lists instead.
    #[cold]
    #[inline(never)]
    fn slab_alloc_slow<M: ObjectMemory, S: PageSource + ?Sized>(
        &mut self,
        mem: &M,
        pages: &S,
        slot: usize,
        gfp: GfpFlags,
        orig_size: usize,
    ) -> Result<u64, SlabError> {
        let slot = slot & (MAX_CACHES - 1);
        let c = &mut self.caches[slot];
        if c.is_debug() {
            return self.alloc_debug(mem, pages, slot, gfp, orig_size);
        }
        let metas = &mut *self.metas;
        // Retire the exhausted active slab: with its free list empty, every
        // object is in use (or quarantined), so it goes to the full list
        // (cf. deactivate_slab() of a slab without free objects).
        let old = c.cpu_slab;
        if old != NIL {
            match metas.get_mut(old as usize) {
                Some(m) if c.freelist == 0 && c.cpu_inuse == c.objects => {
                    m.freelist = NIL;
                    m.inuse = c.cpu_inuse as u16;
                    c.list_inuse += c.cpu_inuse as u64;
                    c.cpu_inuse = 0;
                    c.cpu_slab = NIL;
                    c.full.nr += 1;
                }
                _ => self.deactivate_slab(slot),
            }
        }
        // The first partial slab, else an empty one, else a new one
        // (cf. get_partial() + new_slab()), taken off its list.
        let c = &mut self.caches[slot];
        let metas = &mut *self.metas;
        let pfn = if c.partial.head != NIL {
            c.partial.pop(metas)
        } else if c.empty.head != NIL {
            c.empty.pop(metas)
        } else {
            self.new_slab(mem, pages, slot, gfp)?
        };
        // Freeze it (cf. get_freelist()/freeze_slab()) and pop its first
        // object.
        let c = &mut self.caches[slot];
        let Some(m) = self.metas.get_mut(pfn as usize) else {
            unreachable!("slab {pfn} outside the overlay")
        };
        let obj = slab_va(pfn) + m.freelist as u64;
        c.cpu_inuse = m.inuse as u32 + 1;
        c.list_inuse -= m.inuse as u64;
        c.cpu_slab = pfn;
        m.freelist = NIL;
        m.inuse = c.objects as u16;
        c.freelist = mem.read_u64(obj + c.offset as u64);
        if gfp.contains(GfpFlags::ZERO) {
            mem.fill(obj, c.object_size as usize, 0);
        }
        Ok(obj)
    }

    /// A slab with a free object, on its list: the first partial one, else
    /// an empty one, else a new one (cf. `get_partial()` + `new_slab()`).
    fn get_slab<M: ObjectMemory, S: PageSource + ?Sized>(
        &mut self,
        mem: &M,
        pages: &S,
        slot: usize,
        gfp: GfpFlags,
    ) -> Result<u32, SlabError> {
        let c = &self.caches[slot];
        if c.partial.head != NIL {
            return Ok(c.partial.head);
        }
        if c.empty.head != NIL {
            return Ok(c.empty.head);
        }
        let pfn = self.new_slab(mem, pages, slot, gfp)?;
        self.caches[slot].empty.push(self.metas, pfn);
        Ok(pfn)
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
        if pfn.index() + nr > self.metas.len() {
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
        c.list_remove(self.metas, before, pfn);
        if now == ListKind::Empty && c.empty.nr >= SLAB_EMPTY_RESERVE {
            self.discard_slab(pages, slot, pfn);
        } else {
            c.list_push(self.metas, now, pfn);
        }
    }

    /// Unlabel a slab (already off every list) and free its pages.
    #[inline(never)]
    fn discard_slab<S: PageSource + ?Sized>(&mut self, pages: &S, slot: usize, pfn: u32) {
        let c = &mut self.caches[slot];
        c.nr_slabs -= 1;
        c.list_inuse -= self.metas[pfn as usize].inuse as u64;
        let order = c.order;
        let nr = 1usize << order;
        self.metas[pfn as usize..pfn as usize + nr].fill(SlabMeta::EMPTY);
        if let Some(order) = Order::new(order) {
            pages.free_slab_pages(Pfn(pfn as u64), order, SlabPageKind::Slab);
        }
    }

    /// cf. `deactivate_slab()`: hand the active slab's free list back to its
    /// head frame and put it on the list its state calls for.
    pub(crate) fn deactivate_slab(&mut self, slot: usize) {
        let c = &mut self.caches[slot];
        let pfn = c.cpu_slab;
        if pfn == NIL {
            return;
        }
        let m = &mut self.metas[pfn as usize];
        m.freelist = if c.freelist == 0 {
            NIL
        } else {
            (c.freelist - slab_va(pfn)) as u32
        };
        m.inuse = c.cpu_inuse as u16;
        c.list_inuse += c.cpu_inuse as u64;
        c.cpu_inuse = 0;
        c.freelist = 0;
        c.cpu_slab = NIL;
        let kind = list_kind(m);
        c.list_push(self.metas, kind, pfn);
    }

    // ------------------------------------------------------------------
    // Free
    // ------------------------------------------------------------------

    /// `kmem_cache_free()`: the object must belong to `id`
    /// ([`InvalidFreeKind::WrongCache`] otherwise, nothing freed).
    #[inline]
    pub fn kmem_cache_free<M: ObjectMemory, S: PageSource + ?Sized>(
        &mut self,
        mem: &M,
        pages: &S,
        id: CacheId,
        addr: u64,
    ) -> Result<(), Corruption> {
        if pages.trace_enabled(crate::trace::EventId::KmemCacheFree) {
            self.trace_cache_free(pages, id, addr);
        }
        self.slab_free(mem, pages, addr, Some(id))
    }

    /// The `kmem_cache_free` tracepoint, out of line (it copies the name).
    #[cold]
    fn trace_cache_free<S: PageSource + ?Sized>(&self, pages: &S, id: CacheId, addr: u64) {
        let name = self
            .resolve(id)
            .map_or(CacheName::EMPTY, |slot| self.caches[slot].name);
        pages.trace_record(crate::trace::TraceEvent::KmemCacheFree {
            call_site: 0,
            ptr: addr,
            name,
        });
    }

    /// The free fast path (cf. `slab_free()` → `do_slab_free()`): address →
    /// frame → cache → object index by reciprocal multiply; an object of the
    /// active slab is pushed onto its free list. `expect` is the cache named
    /// by `kmem_cache_free`, `None` for `kfree`.
    #[inline(always)]
    pub(crate) fn slab_free<M: ObjectMemory, S: PageSource + ?Sized>(
        &mut self,
        mem: &M,
        pages: &S,
        addr: u64,
        expect: Option<CacheId>,
    ) -> Result<(), Corruption> {
        let phys = addr.wrapping_sub(PAGE_OFFSET);
        let pfn = (phys >> PAGE_SHIFT) as usize;
        let Some(meta) = self.metas.get(pfn) else {
            return self.free_not_slab(pages, addr, expect);
        };
        let slot = (meta.cache as usize).wrapping_sub(1);
        if slot >= MAX_CACHES {
            return self.free_not_slab(pages, addr, expect);
        }
        if let Some(e) = expect
            && (e.slot as usize != slot || e.generation != self.caches[slot].generation)
        {
            return Err(self.corrupt(
                slot,
                CorruptionKind::InvalidFree(InvalidFreeKind::WrongCache),
                addr,
                None,
            ));
        }
        let c = &mut self.caches[slot];
        let head = (pfn as u32) & !c.pfn_mask;
        let off = phys & (((c.pfn_mask as u64) + 1) * PAGE_SIZE - 1);
        let idx = (off * c.recip as u64) >> 32;
        if idx * c.size as u64 != off || off >= c.objs_end as u64 {
            let kind = CorruptionKind::InvalidFree(InvalidFreeKind::NotObjectStart);
            return Err(self.corrupt(slot, kind, addr, None));
        }
        if head == c.cpu_slab && c.freelist != addr {
            mem.write_u64(addr + c.offset as u64, c.freelist);
            c.freelist = addr;
            c.cpu_inuse -= 1;
            return Ok(());
        }
        self.slab_free_slow(mem, pages, slot, head, addr)
    }

    /// cf. `__slab_free()`: a free to a slab other than the active one, in
    /// a plain cache. The slab's list changes only on full → partial and
    /// partial → empty, each done directly. Debug caches and double frees
    /// go on to [`Self::slab_free_checked`].
    #[inline(never)]
    fn slab_free_slow<M: ObjectMemory, S: PageSource + ?Sized>(
        &mut self,
        mem: &M,
        pages: &S,
        slot: usize,
        head: u32,
        addr: u64,
    ) -> Result<(), Corruption> {
        let slot = slot & (MAX_CACHES - 1);
        let c = &mut self.caches[slot];
        let metas = &mut *self.metas;
        let base = slab_va(head);
        let Some(m) = metas.get_mut(head as usize) else {
            return self.slab_free_checked(mem, pages, slot, head, addr);
        };
        let first = m.freelist;
        if head == c.cpu_slab || c.is_debug() || base + first as u64 == addr || m.inuse == 0 {
            return self.slab_free_checked(mem, pages, slot, head, addr);
        }
        let was_full = first == NIL;
        mem.write_u64(
            addr + c.offset as u64,
            if was_full { 0 } else { base + first as u64 },
        );
        m.freelist = (addr - base) as u32;
        m.inuse -= 1;
        c.list_inuse -= 1;
        let now_empty = m.inuse == 0;
        if !was_full && !now_empty {
            return Ok(()); // stays partial
        }
        if was_full {
            c.full.nr -= 1;
        } else {
            c.partial.remove(metas, head);
        }
        if !now_empty {
            // To the tail, as `__slab_free()` does with a slab that was
            // full: it then collects more frees before it is reused, so
            // the next freeze finds more than one free object in it.
            c.partial.push_tail(metas, head);
        } else if c.empty.nr < SLAB_EMPTY_RESERVE {
            c.empty.push(metas, head);
        } else {
            self.discard_slab(pages, slot, head);
        }
        Ok(())
    }

    /// The general `__slab_free()` with `free_debug_processing()`: a free
    /// to a debug cache, or a double free (of the active free list's head,
    /// of a slab's free list head, or into an empty slab).
    #[cold]
    #[inline(never)]
    fn slab_free_checked<M: ObjectMemory, S: PageSource + ?Sized>(
        &mut self,
        mem: &M,
        pages: &S,
        slot: usize,
        head: u32,
        addr: u64,
    ) -> Result<(), Corruption> {
        let c = &mut self.caches[slot];
        if head == c.cpu_slab {
            // Only reached when `addr` heads the active free list: freeing it
            // again is a double free (cf. set_freepointer()'s BUG_ON). Pop it
            // and keep it out of circulation.
            c.freelist = mem.read_u64(addr + c.offset as u64);
            c.cpu_inuse += 1;
            c.quarantined += 1;
            return Err(self.corrupt(slot, CorruptionKind::DoubleFree, addr, None));
        }
        let before = list_kind(&self.metas[head as usize]);
        if c.is_debug() {
            if let Err(e) = self.free_debug_checks(mem, pages, slot, head, addr) {
                self.relist(pages, slot, head, before);
                return Err(e);
            }
        } else {
            let m = &self.metas[head as usize];
            if m.freelist != NIL && slab_va(head) + m.freelist as u64 == addr {
                self.quarantine_free_object(mem, slot, head, addr);
                self.relist(pages, slot, head, before);
                return Err(self.corrupt(slot, CorruptionKind::DoubleFree, addr, None));
            }
        }
        let c = &mut self.caches[slot];
        let m = &mut self.metas[head as usize];
        let old = if m.freelist == NIL {
            0
        } else {
            slab_va(head) + m.freelist as u64
        };
        mem.write_u64(addr + c.offset as u64, old);
        m.freelist = (addr - slab_va(head)) as u32;
        m.inuse -= 1;
        c.list_inuse -= 1;
        self.relist(pages, slot, head, before);
        Ok(())
    }

    /// Take the free object `addr` off its (non-active) slab's free list and
    /// count it in use and quarantined.
    fn quarantine_free_object<M: ObjectMemory>(
        &mut self,
        mem: &M,
        slot: usize,
        head: u32,
        addr: u64,
    ) {
        let c = &mut self.caches[slot];
        let base = slab_va(head);
        let m = &mut self.metas[head as usize];
        let target = addr - base;
        let next_of = |p: u64| mem.read_u64(p + c.offset as u64);
        if m.freelist == target as u32 {
            let next = next_of(addr);
            m.freelist = if next == 0 { NIL } else { (next - base) as u32 };
        } else {
            let mut cur = m.freelist;
            let mut steps = 0;
            while cur != NIL && steps < c.objects {
                let p = base + cur as u64;
                let next = next_of(p);
                if next == addr {
                    mem.write_u64(p + c.offset as u64, next_of(addr));
                    break;
                }
                cur = if next == 0 { NIL } else { (next - base) as u32 };
                steps += 1;
            }
        }
        m.inuse += 1;
        c.list_inuse += 1;
        c.quarantined += 1;
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
        let off = phys & (((c.pfn_mask as u64) + 1) * PAGE_SIZE - 1);
        (c.live && off.is_multiple_of(c.size as u64) && off < c.objs_end as u64)
            .then_some(c.object_size as usize)
    }

    /// The cache an address belongs to (cf. `virt_to_cache()`), whether or
    /// not it is an object boundary.
    pub fn cache_of(&self, addr: u64) -> Option<CacheId> {
        let pfn = (addr.wrapping_sub(PAGE_OFFSET) >> PAGE_SHIFT) as usize;
        let slot = (self.metas.get(pfn)?.cache as usize).wrapping_sub(1);
        (slot < MAX_CACHES).then(|| self.id_of(slot))
    }
}
