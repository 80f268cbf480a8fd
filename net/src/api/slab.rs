//! Slab caches, kmalloc and mempools over HTTP: `/api/slabinfo`,
//! `/proc/slabinfo`, `/api/caches…`, `/api/mempools…`, and the `kmalloc`,
//! `cache` and `mempool` allocation types with their free, fill and
//! checksum.
//!
//! The slab allocator is the kernel's (its global heap runs on kmalloc), so
//! the API reaches it through [`SlabAccess`], which lends it locked. Rule
//! (DESIGN.md): **nothing allocates from or frees to the heap while the
//! slab lock is held** — in the kernel that would re-enter the slab lock.
//! So every closure run under it copies plain data out (into stack values
//! or into vectors whose capacity was reserved before the lock was taken),
//! heap-owning values taken out of `self` are dropped only after the lock is
//! released, and strings and JSON are built afterwards. The host tests run
//! the whole API under a global allocator that fails the test on any
//! allocation under the lock.
//!
//! Object bytes (fill, checksum) are reached through the platform's frame
//! mappings with no lock held: the handle owns its object, nothing else
//! touches it.
//!
//! **Quota.** The API quota (`api_quota=`) is in pages. Slab handles count
//! the bytes they pin, rounded up to pages over their sum: an object
//! counts its cache's stride (`size`, metadata and padding included), a
//! `kmalloc_large` block its whole pages, and a mempool `min_nr` strides
//! for its reserve. Partly used slabs of API caches are not counted (they
//! are bounded by the objects in them).

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use serde::Deserialize;
use serde::Serialize;
use serde::ser::Serializer;

use mm::gfp::GfpFlags;
use mm::kmalloc::{KMALLOC_MAX_SIZE, kmalloc_size_roundup};
use mm::manager::MemoryManager;
use mm::mempool::{self as mp, MAX_MEMPOOLS, MEMPOOL_MAX_NR, MempoolError, Mempools};
use mm::platform::Platform;
use mm::slab::{
    CacheId, CacheInfo, CacheKind, CacheName, ExactPages, MAX_CACHES, ObjectMemory, SlabAllocator,
    SlabError, SlabFlags,
};
use mm::types::{Order, PAGE_OFFSET, PAGE_SHIFT, PAGE_SIZE, Pfn};
use mm::zone::ZoneType;

use super::Api;
use super::alloc_cmd::{
    Checksummed, Filled, find_handle, parse_body, parse_checksum_range, parse_fill, parse_id,
};
use super::text::Bounded;
use super::views::{GfpName, Hex};
use crate::server::error::ApiError;
use crate::server::http::Request;
use crate::server::response::{Response, try_string, try_vec};
use crate::server::router::RouteId;

/// How the API reaches the slab allocator.
///
/// The kernel keeps its one `SlabAllocator` behind a spin lock (the global
/// heap uses it too); host tests keep one over the simulated arena.
pub trait SlabAccess: Sync {
    /// Runs `f` once with the allocator locked and the [`ObjectMemory`] its
    /// objects are reached through; does nothing if there is no allocator
    /// (yet). `f` must not allocate from or free to the heap.
    fn with_slab(&self, f: &mut dyn FnMut(&mut SlabAllocator<'_>, &dyn ObjectMemory));

    /// One `kmalloc(size, GFP_KERNEL)` + `kfree()` pair on the calling CPU
    /// as the kernel's heap makes it — that CPU's fast paths first, the
    /// lock only when they cannot serve — for `POST /api/bench` on several
    /// CPUs. `Err` when the allocation failed or this system has no such
    /// path (the default).
    fn kmalloc_kfree(&self, size: usize) -> Result<(), &'static str> {
        let _ = size;
        Err("no per-CPU kmalloc path here")
    }
}

/// [`ObjectMemory`] over a `dyn` one, for `mm`'s generic entry points
/// (off the hot path: the kernel's heap calls `mm` with its own type).
pub(super) struct DynMem<'m>(&'m dyn ObjectMemory);

impl ObjectMemory for DynMem<'_> {
    fn read_u64(&self, addr: u64) -> u64 {
        self.0.read_u64(addr)
    }
    fn write_u64(&self, addr: u64, v: u64) {
        self.0.write_u64(addr, v)
    }
    fn read_u8(&self, addr: u64) -> u8 {
        self.0.read_u8(addr)
    }
    fn write_u8(&self, addr: u64, v: u8) {
        self.0.write_u8(addr, v)
    }
    fn fill(&self, addr: u64, len: usize, byte: u8) {
        self.0.fill(addr, len, byte)
    }
    fn check(&self, addr: u64, len: usize, byte: u8) -> Option<usize> {
        self.0.check(addr, len, byte)
    }
    fn copy(&self, dst: u64, src: u64, len: usize) {
        self.0.copy(dst, src, len)
    }
}

/// Spare slabs each general-purpose kmalloc cache is given by
/// [`settle_kmalloc_caches`].
pub const KMALLOC_SPARE_SLABS: u64 = 2;

/// Settles the kmalloc caches: every empty slab (the active one included)
/// goes back to the page allocator, then each general-purpose (non-DMA)
/// kmalloc cache is given [`KMALLOC_SPARE_SLABS`] empty slabs of headroom,
/// kept as the cache's reserve (cf. `s->min_partial`). Returns the slabs
/// given back and the slabs taken.
///
/// Why: the kernel's heap is kmalloc, so serving requests allocates and
/// frees kmalloc objects all the time. With headroom that churn goes
/// through slabs the caches already hold, not through the buddy
/// allocator, so `/api/buddyinfo` stays put between requests. The kernel
/// settles the caches once at boot, before it records the "after boot"
/// buddy state; `POST /api/reset` then puts exactly those boot slabs back
/// (see [`Api::settle_slab`]).
///
/// It needs no memory of its own: safe under the slab lock.
pub fn settle_kmalloc_caches<M: ObjectMemory, S: mm::slab::PageSource + ?Sized>(
    slab: &mut SlabAllocator<'_>,
    mem: &M,
    pages: &S,
) -> (usize, u64) {
    let (mut freed, mut taken) = (0, 0);
    let mut ids = [None; MAX_CACHES];
    for (slot, c) in ids
        .iter_mut()
        .zip(slab.caches(mem).filter(|c| c.kind == CacheKind::Kmalloc))
    {
        *slot = Some(c.id);
    }
    for id in ids.into_iter().flatten() {
        let (f, t) = settle_cache(slab, mem, pages, id, None);
        freed += f;
        taken += t;
    }
    (freed, taken)
}

/// [`settle_kmalloc_caches`] for one cache: give back every empty slab,
/// then grow to `target_slabs` (default: what the live objects need plus
/// [`KMALLOC_SPARE_SLABS`]) with empty slabs, one at a time from the page
/// allocator (`new_slab()` without handing out an object).
pub(super) fn settle_cache<M: ObjectMemory, S: mm::slab::PageSource + ?Sized>(
    slab: &mut SlabAllocator<'_>,
    mem: &M,
    pages: &S,
    id: CacheId,
    target_slabs: Option<u64>,
) -> (usize, u64) {
    let freed = slab.kmem_cache_shrink(mem, pages, id).unwrap_or(0);
    let Some(info) = slab.cache_info(mem, id) else {
        return (freed, 0);
    };
    // DMA twins are not the heap's; the accounted (`kmalloc-cg-*`) twins
    // hold only API objects: neither keeps spare slabs, so after a reset
    // they hold nothing.
    if info
        .flags
        .intersects(SlabFlags::CACHE_DMA.union(SlabFlags::ACCOUNT))
    {
        return (freed, 0);
    }
    let target = target_slabs.unwrap_or(info.num_slabs + KMALLOC_SPARE_SLABS);
    for _ in info.num_slabs..target {
        if slab
            .grow_empty_slab(mem, pages, id, GfpFlags::GFP_KERNEL)
            .is_err()
        {
            break;
        }
    }
    let taken = slab
        .cache_info(mem, id)
        .map_or(0, |c| c.num_slabs.saturating_sub(info.num_slabs));
    (freed, taken)
}

/// Run `f` under the slab lock; `None` if there is no allocator.
pub(super) fn locked<R>(
    access: &dyn SlabAccess,
    f: impl FnOnce(&mut SlabAllocator<'_>, &DynMem<'_>) -> R,
) -> Option<R> {
    let mut f = Some(f);
    let mut out = None;
    access.with_slab(&mut |slab, mem| {
        if let Some(f) = f.take() {
            out = Some(f(slab, &DynMem(mem)));
        }
    });
    out
}

// ----------------------------------------------------------------------
// State
// ----------------------------------------------------------------------

/// What a slab handle came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlabHandleKind {
    /// `kmalloc` (a kmalloc cache object or a `kmalloc_large` block).
    Kmalloc,
    /// `kmem_cache_alloc` from a named cache.
    Cache,
    /// `mempool_alloc` from a named pool.
    Mempool,
}

impl SlabHandleKind {
    pub const fn name(self) -> &'static str {
        match self {
            SlabHandleKind::Kmalloc => "kmalloc",
            SlabHandleKind::Cache => "cache",
            SlabHandleKind::Mempool => "mempool",
        }
    }
}

/// One live `kmalloc`/`cache`/`mempool` handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlabHandle {
    pub id: u64,
    pub kind: SlabHandleKind,
    /// The object's (direct-map) address.
    pub addr: u64,
    /// Bytes the holder may use: the size asked of kmalloc, or the cache's
    /// `object_size`. Fill and checksum cover exactly these.
    pub size: u64,
    /// `ksize()`: the bytes the allocation really spans.
    pub ksize: u64,
    /// Bytes counted against the quota (see the module docs).
    pub footprint: u64,
    /// The object's cache; `None` for a `kmalloc_large` block.
    pub cache: Option<CacheId>,
    pub cache_name: Option<CacheName>,
    /// The pool of a `mempool` handle.
    pub pool: Option<CacheName>,
    /// Order of the slab (or `kmalloc_large` block) holding the object.
    pub order: Order,
    pub gfp: GfpFlags,
    pub zone: ZoneType,
    pub created_ms: u64,
}

impl SlabHandle {
    fn phys(&self) -> u64 {
        self.addr - PAGE_OFFSET
    }
}

/// The API's slab-side state: access to the allocator, its handles and
/// pools, and what they count against the quota.
pub(super) struct SlabState<'a> {
    access: Option<&'a dyn SlabAccess>,
    pub(super) handles: BTreeMap<u64, SlabHandle>,
    /// Boxed: 16 pools of 64 reserved elements each is ~9 KiB.
    pools: Box<Mempools>,
    /// Quota bytes of each pool's reserve (`min_nr` × stride), by name.
    pool_bytes: BTreeMap<String, u64>,
    /// Sum of the handles' footprints.
    handle_bytes: u64,
    /// Every kmalloc slab when the API was given the allocator (after the
    /// kernel settled the caches, right before the boot buddy state is
    /// recorded): the frames `POST /api/reset` gives back to those caches.
    boot_slabs: Vec<(CacheId, Pfn)>,
}

impl<'a> SlabState<'a> {
    pub(super) fn new() -> Self {
        SlabState {
            access: None,
            handles: BTreeMap::new(),
            pools: Box::new(Mempools::new()),
            pool_bytes: BTreeMap::new(),
            handle_bytes: 0,
            boot_slabs: Vec::new(),
        }
    }

    /// Quota pages pinned by slab handles and pool reserves.
    pub(super) fn quota_pages(&self) -> u64 {
        let bytes = self.handle_bytes + self.pool_bytes.values().sum::<u64>();
        bytes.div_ceil(PAGE_SIZE)
    }
}

// ----------------------------------------------------------------------
// Errors
// ----------------------------------------------------------------------

pub(super) fn slab_error(e: SlabError, what: &str) -> ApiError {
    match e {
        SlabError::NoMemory { order } => {
            ApiError::enomem(format!("{what}: page allocation failure: order:{order}"))
        }
        SlabError::NoCache => ApiError::enoent(format!("{what}: no such cache")),
        SlabError::Exists => ApiError::ebusy(format!("{what}: a cache of that name exists")),
        SlabError::TooManyCaches => {
            ApiError::enomem(format!("{what}: cache table full ({MAX_CACHES} caches)"))
        }
        SlabError::Invalid => ApiError::einval(format!(
            "{what}: invalid parameters (name: 1..=32 printable characters without spaces; \
             size: 1..={}; align: 0 or a power of two up to {PAGE_SIZE})",
            mm::slab::MAX_OBJECT_SIZE
        )),
        SlabError::TooLarge { size } => ApiError::einval(format!(
            "{what}: {size} bytes is over KMALLOC_MAX_SIZE ({KMALLOC_MAX_SIZE})"
        )),
        SlabError::Busy { active_objs } => {
            ApiError::ebusy(format!("{what}: {active_objs} objects are still allocated"))
        }
        SlabError::Permanent => {
            ApiError::ebusy(format!("{what}: kmalloc caches cannot be destroyed"))
        }
    }
}

fn mempool_error(e: MempoolError, what: &str) -> ApiError {
    match e {
        MempoolError::NoMemory => ApiError::enomem(format!("{what}: out of memory")),
        MempoolError::Invalid => ApiError::einval(format!(
            "{what}: invalid parameters (name: 1..=32 printable characters without spaces; \
             min_nr: 0..={MEMPOOL_MAX_NR})"
        )),
        MempoolError::NoPool => ApiError::enoent(format!("{what}: no such mempool")),
        MempoolError::Exists => ApiError::ebusy(format!("{what}: a mempool of that name exists")),
        MempoolError::TooManyPools => {
            ApiError::enomem(format!("{what}: mempool table full ({MAX_MEMPOOLS} pools)"))
        }
        MempoolError::BadFree(c) => ApiError::ebusy(format!("{what}: {c}")),
    }
}

pub(super) fn no_slab() -> ApiError {
    ApiError::enoent("the slab allocator is not available in this build")
}

fn parse_gfp(gfp: Option<&str>) -> Result<GfpFlags, ApiError> {
    match gfp {
        None => Ok(GfpFlags::GFP_KERNEL),
        Some(s) => {
            GfpFlags::parse(s).map_err(|e| ApiError::einval(format!("bad gfp \"{s}\": {e}")))
        }
    }
}

/// `kmalloc(0)`: Linux returns `ZERO_SIZE_PTR` (16), a non-NULL
/// pointer that faults on any access, and allocates nothing; `kfree()`
/// of it is a no-op. So the answer is a success (200, not 201: nothing
/// was created, there is no handle to free) that says so.
fn zero_size_ptr() -> Response {
    #[derive(Serialize)]
    struct ZeroSize {
        id: Option<u64>,
        #[serde(rename = "type")]
        kind: &'static str,
        size: u64,
        ksize: u64,
        virt: Hex,
        phys: Option<Hex>,
        note: &'static str,
    }
    Response::json(
        200,
        &ZeroSize {
            id: None,
            kind: "kmalloc",
            size: 0,
            ksize: 0,
            virt: Hex::new(mm::kmalloc::ZERO_SIZE_PTR),
            phys: None,
            note: "ZERO_SIZE_PTR: kmalloc(0) allocates nothing; kfree() of it is a no-op",
        },
    )
}

/// Longest cache or mempool name ([`NAME_PATTERN`]'s bound).
pub const NAME_MAX: usize = 32;

/// The one rule for cache and mempool names, as `/openapi.json` states it:
/// 1..=32 of `A-Z a-z 0-9 . _ -`, so that every name the API creates is
/// one path segment that `DELETE /api/caches/{name}` can address without
/// escaping (`a/b` or `a%20b` never exist). Every kernel cache name
/// (`kmalloc-64`, `dma-kmalloc-8`, …) follows it too.
pub const NAME_PATTERN: &str = "^[A-Za-z0-9._-]{1,32}$";

/// Whether `name` follows [`NAME_PATTERN`].
pub fn valid_name(name: &str) -> bool {
    (1..=NAME_MAX).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && CacheName::new(name).is_some()
}

/// A cache or pool name from a path or body: refused (400) unless it
/// follows [`NAME_PATTERN`], on create and on lookup alike.
fn check_name(name: &str, what: &str) -> Result<(), ApiError> {
    if !valid_name(name) {
        return Err(ApiError::einval(format!(
            "malformed {what} name '{name}' (must match {NAME_PATTERN})"
        )));
    }
    Ok(())
}

// ----------------------------------------------------------------------
// JSON
// ----------------------------------------------------------------------

/// Flag names as a JSON array.
struct FlagNames(SlabFlags);

impl Serialize for FlagNames {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.names())
    }
}

#[derive(Serialize)]
struct SlabsJson {
    full: u64,
    partial: u64,
    empty: u64,
}

#[derive(Serialize)]
struct CorruptionJson {
    red_zone: u64,
    poison: u64,
    double_free: u64,
    free_pointer: u64,
    invalid_free: u64,
    total: u64,
}

/// API.md's `Cache`, plus corruption counters.
#[derive(Serialize)]
struct CacheJson {
    name: String,
    object_size: u32,
    size: u32,
    align: u32,
    objs_per_slab: u32,
    pages_per_slab: u32,
    active_objs: u64,
    num_objs: u64,
    active_slabs: u64,
    num_slabs: u64,
    slabs: SlabsJson,
    flags: FlagNames,
    kind: &'static str,
    corruption: CorruptionJson,
    quarantined: u64,
}

impl From<&CacheInfo> for CacheJson {
    fn from(c: &CacheInfo) -> CacheJson {
        CacheJson {
            name: c.name.as_str().to_string(),
            object_size: c.object_size,
            size: c.size,
            align: c.align,
            objs_per_slab: c.objs_per_slab,
            pages_per_slab: c.pages_per_slab,
            active_objs: c.active_objs,
            num_objs: c.num_objs,
            active_slabs: c.active_slabs,
            num_slabs: c.num_slabs,
            slabs: SlabsJson {
                full: c.slabs_full,
                partial: c.slabs_partial,
                empty: c.slabs_empty,
            },
            flags: FlagNames(c.flags),
            kind: c.kind.name(),
            corruption: CorruptionJson {
                red_zone: c.corruption.red_zone,
                poison: c.corruption.poison,
                double_free: c.corruption.double_free,
                free_pointer: c.corruption.free_pointer,
                invalid_free: c.corruption.invalid_free,
                total: c.corruption.total(),
            },
            quarantined: c.quarantined,
        }
    }
}

/// A `kmalloc`/`cache`/`mempool` handle: API.md's `Handle` fields plus
/// `ksize`, `cache` and `pool`.
#[derive(Serialize)]
pub(super) struct SlabHandleJson {
    id: u64,
    #[serde(rename = "type")]
    kind: &'static str,
    size: u64,
    ksize: u64,
    order: u8,
    nr_pages: u64,
    zone: &'static str,
    pfn: u64,
    phys: Hex,
    virt: Option<Hex>,
    gfp: GfpName,
    created_ms: u64,
    cache: Option<String>,
    pool: Option<String>,
}

impl From<&SlabHandle> for SlabHandleJson {
    fn from(h: &SlabHandle) -> SlabHandleJson {
        SlabHandleJson {
            id: h.id,
            kind: h.kind.name(),
            size: h.size,
            ksize: h.ksize,
            order: h.order.get(),
            nr_pages: h.order.nr_pages(),
            zone: h.zone.name(),
            pfn: h.phys() >> PAGE_SHIFT,
            phys: Hex::new(h.phys()),
            virt: Some(Hex::new(h.addr)),
            gfp: GfpName(h.gfp),
            created_ms: h.created_ms,
            cache: h.cache_name.map(|n| n.as_str().to_string()),
            pool: h.pool.map(|n| n.as_str().to_string()),
        }
    }
}

#[derive(Serialize)]
struct PoolJson {
    name: String,
    cache: String,
    min_nr: usize,
    curr_nr: usize,
}

// ----------------------------------------------------------------------
// Request bodies
// ----------------------------------------------------------------------

#[derive(Deserialize)]
struct SlabAllocBody<'b> {
    size: Option<u64>,
    #[serde(borrow)]
    gfp: Option<&'b str>,
    #[serde(borrow)]
    cache: Option<&'b str>,
    #[serde(borrow)]
    pool: Option<&'b str>,
}

#[derive(Deserialize)]
struct CacheBody<'b> {
    #[serde(borrow)]
    name: Option<&'b str>,
    size: Option<u64>,
    align: Option<u64>,
    #[serde(borrow)]
    flags: Option<Vec<&'b str>>,
}

#[derive(Deserialize)]
struct PoolBody<'b> {
    #[serde(borrow)]
    name: Option<&'b str>,
    #[serde(borrow)]
    cache: Option<&'b str>,
    min_nr: Option<u64>,
}

#[derive(Deserialize)]
struct ResizeBody {
    min_nr: Option<u64>,
}

fn parse_min_nr(v: Option<u64>) -> Result<usize, ApiError> {
    let v =
        v.ok_or_else(|| ApiError::einval(format!("missing \"min_nr\" (0..={MEMPOOL_MAX_NR})")))?;
    usize::try_from(v)
        .ok()
        .filter(|&n| n <= MEMPOOL_MAX_NR)
        .ok_or_else(|| ApiError::einval(format!("min_nr {v} is out of range 0..={MEMPOOL_MAX_NR}")))
}

/// What the lock hands back about a fresh object.
#[derive(Clone, Copy)]
struct Placed {
    addr: u64,
    ksize: u64,
    cache: Option<(CacheId, CacheName, u32)>,
    order: Order,
}

/// Describe the object at `addr` (under the lock: no allocation).
fn place(slab: &SlabAllocator<'_>, mem: &DynMem<'_>, addr: u64) -> Placed {
    let ksize = slab.ksize(addr).unwrap_or(0) as u64;
    match slab.cache_of(addr).and_then(|id| slab.cache_info(mem, id)) {
        Some(info) => Placed {
            addr,
            ksize,
            cache: Some((info.id, info.name, info.size)),
            order: Order::new(info.pages_per_slab.trailing_zeros() as u8).unwrap_or(Order::ZERO),
        },
        None => Placed {
            addr,
            ksize,
            cache: None,
            order: Order::from_size_bytes(ksize.max(1)).unwrap_or(Order::ZERO),
        },
    }
}

// ----------------------------------------------------------------------
// The handlers
// ----------------------------------------------------------------------

impl<'a, P: Platform> Api<'a, P> {
    /// Serve the slab routes and the `kmalloc`/`cache`/`mempool` handles
    /// through `access` (the kernel's slab allocator, or a test's).
    ///
    /// Give it the allocator once the kernel has settled the kmalloc caches
    /// ([`settle_kmalloc_caches`]), right before the boot buddy state is
    /// recorded: the kmalloc slabs' frames now are what `POST /api/reset`
    /// gives those caches back.
    pub fn with_slab(mut self, access: &'a dyn SlabAccess) -> Self {
        self.slab.access = Some(access);
        // Nothing may allocate under the slab lock: count, reserve outside
        // (with room for slabs the reservation itself may add), then fill.
        fn kmalloc_heads<'s>(
            slab: &'s SlabAllocator<'_>,
            mem: &DynMem<'_>,
        ) -> impl Iterator<Item = (CacheId, Pfn)> + 's {
            let mut kmalloc = [None; MAX_CACHES];
            for c in slab.caches(mem).filter(|c| c.kind == CacheKind::Kmalloc) {
                kmalloc[c.id.slot()] = Some(c.id);
            }
            slab.slab_heads()
                .filter(move |(id, _)| kmalloc[id.slot()] == Some(*id))
        }
        // Each slab has one head: the caches' slab counts say how many
        // there are, and the walk of the overlay stops at the last one
        // (boot's slabs sit low) instead of reading every lowmem frame's.
        let count = locked(access, |slab, mem| {
            slab.caches(mem)
                .filter(|c| c.kind == CacheKind::Kmalloc)
                .map(|c| c.num_slabs as usize)
                .sum::<usize>()
        })
        .unwrap_or(0);
        let mut boot = Vec::with_capacity(count + 64);
        locked(access, |slab, mem| {
            for head in kmalloc_heads(slab, mem).take(count) {
                boot.push(head);
            }
        });
        self.slab.boot_slabs = boot;
        self
    }

    pub(super) fn slab_access(&self) -> Result<&'a dyn SlabAccess, ApiError> {
        self.slab.access.ok_or_else(no_slab)
    }

    /// Frames held by slabs and `kmalloc_large` blocks (meminfo `Slab`).
    pub(super) fn slab_pages(&self) -> Option<u64> {
        locked(self.slab.access?, |slab, _| slab.slab_pages())
    }

    /// Pages counted against the quota: page handles plus slab handles and
    /// pool reserves.
    pub(super) fn quota_held_pages(&self) -> u64 {
        self.held_pages + self.slab.quota_pages()
    }

    pub(super) fn check_quota(&self, extra_bytes: u64) -> Result<(), ApiError> {
        let held = self.quota_held_pages();
        let after = self.held_pages
            + (self.slab.handle_bytes + self.slab.pool_bytes.values().sum::<u64>() + extra_bytes)
                .div_ceil(PAGE_SIZE);
        if after > self.quota_pages {
            return Err(ApiError::equota(format!(
                "API quota reached: {held} of {} pages ({} % of managed memory) held, {extra_bytes} more bytes asked",
                self.quota_pages, self.quota_pct
            )));
        }
        Ok(())
    }

    /// The last step of `POST /api/reset`, once every handle of every kind
    /// is freed: every kmalloc cache gives back its empty slabs (to the
    /// zones, or to the kernel reserve the heap grew into after boot), then
    /// each boot-time slab that is gone is rebuilt, empty, on exactly its
    /// boot frames ([`PageAlloc::take_page_off_buddy`] through
    /// [`ExactPages`]). The buddy allocator always coalesces fully, so its
    /// free lists are a function of which frames are allocated: the same
    /// frames back means `/api/buddyinfo` is its boot value again, however
    /// the heap's slabs were reshuffled meanwhile — the API's objects in
    /// `kmalloc-cg-*`, the kernel's on its behalf (a table of thousands of
    /// handles, a connection's buffers) in the reserve.
    ///
    /// [`PageAlloc::take_page_off_buddy`]: mm::page_alloc::PageAlloc::take_page_off_buddy
    pub(super) fn settle_slab(&mut self) {
        let Some(access) = self.slab.access else {
            return;
        };
        let mm = self.mm;
        let boot = &self.slab.boot_slabs;
        locked(access, |slab, mem| {
            let mut kmalloc = [None; MAX_CACHES];
            for c in slab.caches(mem).filter(|c| c.kind == CacheKind::Kmalloc) {
                kmalloc[c.id.slot()] = Some(c.id);
            }
            for id in kmalloc.into_iter().flatten() {
                let _ = slab.kmem_cache_shrink(mem, mm, id);
            }
            for &(id, pfn) in boot {
                if slab.cache_of_pfn(pfn) == Some(id) {
                    continue; // still there, holding live objects
                }
                // Taken by something live since (only when the reserve
                // overflowed): nothing better to do than leave it.
                let _ =
                    slab.grow_empty_slab(mem, &ExactPages { mm, pfn }, id, GfpFlags::GFP_KERNEL);
            }
        });
    }

    /// kswapd's slab shrinker: every empty slab of the API's caches, the
    /// accounted and DMA kmalloc twins goes back (the kernel heap's own
    /// kmalloc caches keep their spare slabs). Returns slabs freed.
    pub(super) fn shrink_slab_caches(&mut self) -> usize {
        let Some(access) = self.slab.access else {
            return 0;
        };
        let mm = self.mm;
        locked(access, |slab, mem| {
            let mut ids = [None; MAX_CACHES];
            for c in slab.caches(mem) {
                let heap = c.kind == CacheKind::Kmalloc
                    && !c
                        .flags
                        .intersects(SlabFlags::CACHE_DMA.union(SlabFlags::ACCOUNT));
                if !heap && c.kind != CacheKind::Kernel {
                    ids[c.id.slot()] = Some(c.id);
                }
            }
            ids.into_iter()
                .flatten()
                .map(|id| slab.kmem_cache_shrink(mem, mm, id).unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
    }

    /// Whether `id` names a live slab handle.
    pub(super) fn is_slab_handle(&self, id: &str) -> bool {
        parse_id(id).is_ok_and(|id| self.slab.handles.contains_key(&id))
    }

    // ------------------------------------------------------------------
    // Views
    // ------------------------------------------------------------------

    /// Every cache's record, copied under the lock into a vector reserved
    /// before it.
    fn cache_infos(&self) -> Result<Vec<CacheInfo>, ApiError> {
        let access = self.slab_access()?;
        let mut infos = try_vec(MAX_CACHES)?;
        locked(access, |slab, mem| {
            for info in slab.caches(mem).take(MAX_CACHES) {
                infos.push(info);
            }
        })
        .ok_or_else(no_slab)?;
        Ok(infos)
    }

    /// `/metrics`' slab families: per cache (label `cache`) the objects in
    /// use and in total, the slabs and the corruption reports by kind, as
    /// in `/api/slabinfo`; plus the frames all slabs hold. Nothing when
    /// this build has no slab allocator.
    pub(super) fn slab_metrics(&self, out: &mut super::metrics::MetricsOut) {
        use super::metrics::{family, label_value};
        use core::fmt::Write;
        let Ok(infos) = self.cache_infos() else {
            return;
        };
        /// A per-cache gauge: name, help, and how to read it.
        type CacheGauge = (&'static str, &'static str, fn(&CacheInfo) -> u64);
        let per_cache: [CacheGauge; 5] = [
            (
                "pagezone_slab_active_objects",
                "Objects in use per slab cache (active_objs).",
                |c| c.active_objs,
            ),
            (
                "pagezone_slab_objects",
                "Objects per slab cache, in use or free (num_objs).",
                |c| c.num_objs,
            ),
            (
                "pagezone_slab_slabs",
                "Slabs per slab cache (num_slabs).",
                |c| c.num_slabs,
            ),
            (
                "pagezone_slab_object_size_bytes",
                "Object size per slab cache, as asked at creation.",
                |c| u64::from(c.object_size),
            ),
            (
                "pagezone_slab_quarantined_objects",
                "Objects left allocated after a detected corruption, per slab cache.",
                |c| c.quarantined,
            ),
        ];
        for (name, help, get) in per_cache {
            family(out, name, "gauge", help);
            for c in &infos {
                let _ = writeln!(
                    out,
                    "{name}{{cache=\"{}\"}} {}",
                    label_value(c.name.as_str()),
                    get(c)
                );
            }
        }
        family(
            out,
            "pagezone_slab_corruptions_total",
            "counter",
            "Corruptions detected per slab cache and kind (red zone, poison, double free, free pointer, invalid free).",
        );
        for c in &infos {
            let k = &c.corruption;
            for (kind, n) in [
                ("red_zone", k.red_zone),
                ("poison", k.poison),
                ("double_free", k.double_free),
                ("free_pointer", k.free_pointer),
                ("invalid_free", k.invalid_free),
            ] {
                let _ = writeln!(
                    out,
                    "pagezone_slab_corruptions_total{{cache=\"{}\",kind=\"{kind}\"}} {n}",
                    label_value(c.name.as_str())
                );
            }
        }
        if let Some(pages) = self.slab_pages() {
            family(
                out,
                "pagezone_slab_pages",
                "gauge",
                "Frames held by slabs and kmalloc_large blocks (meminfo Slab).",
            );
            let _ = writeln!(out, "pagezone_slab_pages {pages}");
        }
    }

    /// `GET /api/slabinfo`.
    pub(super) fn slabinfo(&self) -> Result<Response, ApiError> {
        let infos = self.cache_infos()?;
        let (pages, (large_allocs, large_pages), stray) = locked(self.slab_access()?, |slab, _| {
            (slab.slab_pages(), slab.large_stats(), slab.stray_frees())
        })
        .ok_or_else(no_slab)?;
        #[derive(Serialize)]
        struct Large {
            allocs: u64,
            pages: u64,
        }
        #[derive(Serialize)]
        struct Slabinfo {
            caches: Vec<CacheJson>,
            slab_pages: u64,
            kmalloc_large: Large,
            stray_frees: u64,
        }
        Ok(Response::json(
            200,
            &Slabinfo {
                caches: infos.iter().map(CacheJson::from).collect(),
                slab_pages: pages,
                kmalloc_large: Large {
                    allocs: large_allocs,
                    pages: large_pages,
                },
                stray_frees: stray,
            },
        ))
    }

    /// `GET /proc/slabinfo`: `mm`'s 2.1 formatter into a buffer reserved
    /// before the lock (doubled and retried should it not fit).
    pub(super) fn proc_slabinfo(&self) -> Result<Response, ApiError> {
        Ok(Response::text(200, self.slabinfo_text()?))
    }

    /// `/proc/slabinfo`'s text (also parsed by `/metrics`).
    pub(super) fn slabinfo_text(&self) -> Result<String, ApiError> {
        let access = self.slab_access()?;
        let mut capacity = 16 * 1024;
        while capacity <= 1 << 20 {
            let mut text = try_string(capacity)?;
            let done = locked(access, |slab, mem| {
                slab.slabinfo(mem, &mut Bounded(&mut text)).is_ok()
            })
            .ok_or_else(no_slab)?;
            if done {
                return Ok(text);
            }
            capacity *= 2;
        }
        Err(ApiError::enomem("view too large to render"))
    }

    /// `GET /api/mempools`.
    pub(super) fn mempool_list(&self) -> Result<Response, ApiError> {
        let access = self.slab_access()?;
        let mut pools: Vec<(mp::MempoolInfo, Option<CacheName>)> = Vec::with_capacity(MAX_MEMPOOLS);
        let registry = &self.slab.pools;
        locked(access, |slab, mem| {
            for info in registry.iter().take(MAX_MEMPOOLS) {
                let cache = slab.cache_info(mem, info.cache).map(|c| c.name);
                pools.push((info, cache));
            }
        })
        .ok_or_else(no_slab)?;
        #[derive(Serialize)]
        struct Pools {
            pools: Vec<PoolJson>,
        }
        let pools = pools
            .iter()
            .map(|(p, cache)| PoolJson {
                name: p.name.as_str().to_string(),
                cache: cache.map_or_else(String::new, |c| c.as_str().to_string()),
                min_nr: p.min_nr,
                curr_nr: p.curr_nr,
            })
            .collect();
        Ok(Response::json(200, &Pools { pools }))
    }

    // ------------------------------------------------------------------
    // Caches
    // ------------------------------------------------------------------

    /// The live cache called `name` (404 otherwise) and its record.
    pub(super) fn find_cache(&self, name: &str) -> Result<CacheInfo, ApiError> {
        check_name(name, "cache")?;
        let access = self.slab_access()?;
        locked(access, |slab, mem| {
            slab.find_cache(name)
                .and_then(|id| slab.cache_info(mem, id))
        })
        .ok_or_else(no_slab)?
        .ok_or_else(|| ApiError::enoent(format!("no cache named '{name}'")))
    }

    /// `POST /api/caches`: `kmem_cache_create()` of an `api` cache.
    pub(super) fn cache_create(&mut self, body: &[u8]) -> Result<Response, ApiError> {
        super::alloc_cmd::check_fields(body, &["name", "size", "align", "flags"], "a cache")?;
        let body: CacheBody<'_> = parse_body(body)?;
        let name = body
            .name
            .ok_or_else(|| ApiError::einval("missing \"name\""))?;
        check_name(name, "cache")?;
        let size = body
            .size
            .ok_or_else(|| ApiError::einval("missing \"size\" (bytes per object)"))?;
        let size = usize::try_from(size)
            .ok()
            .filter(|&s| (1..=mm::slab::MAX_OBJECT_SIZE).contains(&s))
            .ok_or_else(|| {
                ApiError::einval(format!(
                    "size {size} is out of range 1..={}",
                    mm::slab::MAX_OBJECT_SIZE
                ))
            })?;
        let align = body.align.unwrap_or(0);
        let align = usize::try_from(align)
            .ok()
            .filter(|&a| a == 0 || (a.is_power_of_two() && a as u64 <= PAGE_SIZE))
            .ok_or_else(|| {
                ApiError::einval(format!(
                    "align {align} must be 0 or a power of two up to {PAGE_SIZE}"
                ))
            })?;
        let mut flags = SlabFlags::NONE;
        for f in body.flags.iter().flatten() {
            let flag = SlabFlags::from_name(f)
                .filter(|&fl| fl != SlabFlags::CONSISTENCY_CHECKS)
                .ok_or_else(|| {
                    ApiError::einval(format!(
                        "unknown flag \"{f}\" (SLAB_HWCACHE_ALIGN, SLAB_CACHE_DMA, SLAB_POISON, SLAB_RED_ZONE)"
                    ))
                })?;
            flags = flags | flag;
        }
        let access = self.slab_access()?;
        let info = locked(access, |slab, mem| {
            slab.kmem_cache_create_kind(name, size, align, flags, None, CacheKind::Api)
                .map(|id| slab.cache_info(mem, id))
        })
        .ok_or_else(no_slab)?
        .map_err(|e| slab_error(e, &format!("kmem_cache_create({name})")))?
        .ok_or_else(no_slab)?;
        Ok(Response::json(201, &CacheJson::from(&info)))
    }

    /// `DELETE /api/caches/{name}`: `kmem_cache_destroy()` of an `api`
    /// cache with no live object and no mempool.
    pub(super) fn cache_destroy(&mut self, name: &str) -> Result<Response, ApiError> {
        let info = self.find_cache(name)?;
        if info.kind != CacheKind::Api {
            return Err(ApiError::ebusy(format!(
                "cache '{name}' is a {} cache: only caches created through the API can be destroyed",
                info.kind.name()
            )));
        }
        if self.slab.pools.uses_cache(info.id) {
            return Err(ApiError::ebusy(format!(
                "cache '{name}' backs a mempool: destroy the pool first"
            )));
        }
        let access = self.slab_access()?;
        let mm = self.mm;
        locked(access, |slab, mem| {
            slab.kmem_cache_destroy(mem, mm, info.id)
        })
        .ok_or_else(no_slab)?
        .map_err(|e| slab_error(e, &format!("kmem_cache_destroy({name})")))?;
        #[derive(Serialize)]
        struct Destroyed<'n> {
            destroyed: &'n str,
            freed_slabs: u64,
        }
        Ok(Response::json(
            200,
            &Destroyed {
                destroyed: name,
                freed_slabs: info.num_slabs,
            },
        ))
    }

    /// `POST /api/caches/{name}/shrink`: `kmem_cache_shrink()`.
    pub(super) fn cache_shrink(&mut self, name: &str) -> Result<Response, ApiError> {
        let info = self.find_cache(name)?;
        let access = self.slab_access()?;
        let mm = self.mm;
        // The heap's own kmalloc caches keep their spare slabs (see
        // `settle_kmalloc_caches`): a user's shrink cannot make the next
        // kernel allocation go to the buddy allocator, and reset need not
        // take pages back for them.
        let heap_cache = info.kind == CacheKind::Kmalloc
            && !info
                .flags
                .intersects(SlabFlags::CACHE_DMA.union(SlabFlags::ACCOUNT));
        let freed = locked(access, |slab, mem| {
            if heap_cache {
                slab.kmem_cache_shrink_keep(mm, info.id, KMALLOC_SPARE_SLABS as u32)
            } else {
                slab.kmem_cache_shrink(mem, mm, info.id)
            }
        })
        .ok_or_else(no_slab)?
        .map_err(|e| slab_error(e, &format!("kmem_cache_shrink({name})")))?;
        #[derive(Serialize)]
        struct Shrunk {
            freed_slabs: usize,
        }
        Ok(Response::json(200, &Shrunk { freed_slabs: freed }))
    }

    // ------------------------------------------------------------------
    // Mempools
    // ------------------------------------------------------------------

    fn pool_json(&self, name: &str) -> Result<PoolJson, ApiError> {
        let access = self.slab_access()?;
        let registry = &self.slab.pools;
        let (info, cache) = locked(access, |slab, mem| {
            registry
                .iter()
                .find(|p| p.name.as_str() == name)
                .map(|p| (p, slab.cache_info(mem, p.cache).map(|c| c.name)))
        })
        .ok_or_else(no_slab)?
        .ok_or_else(|| ApiError::enoent(format!("no mempool named '{name}'")))?;
        Ok(PoolJson {
            name: info.name.as_str().to_string(),
            cache: cache.map_or_else(String::new, |c| c.as_str().to_string()),
            min_nr: info.min_nr,
            curr_nr: info.curr_nr,
        })
    }

    /// `POST /api/mempools`: `mempool_create()` over a cache.
    pub(super) fn mempool_create(&mut self, body: &[u8]) -> Result<Response, ApiError> {
        super::alloc_cmd::check_fields(body, &["name", "cache", "min_nr"], "a mempool")?;
        let body: PoolBody<'_> = parse_body(body)?;
        let name = body
            .name
            .ok_or_else(|| ApiError::einval("missing \"name\""))?;
        check_name(name, "mempool")?;
        let cache_name = body
            .cache
            .ok_or_else(|| ApiError::einval("missing \"cache\""))?;
        let min_nr = parse_min_nr(body.min_nr)?;
        let cache = self.find_cache(cache_name)?;
        let reserve_bytes = min_nr as u64 * u64::from(cache.size);
        self.check_quota(reserve_bytes)?;
        let access = self.slab_access()?;
        let mm = self.mm;
        let registry = &mut self.slab.pools;
        locked(access, |slab, mem| {
            registry.create(slab, mem, mm, name, min_nr, cache.id)
        })
        .ok_or_else(no_slab)?
        .map_err(|e| mempool_error(e, &format!("mempool_create({name})")))?;
        self.slab.pool_bytes.insert(name.to_string(), reserve_bytes);
        Ok(Response::json(201, &self.pool_json(name)?))
    }

    /// Live handles drawn from pool `name`.
    fn pool_users(&self, name: &str) -> usize {
        self.slab
            .handles
            .values()
            .filter(|h| h.pool.is_some_and(|p| p.as_str() == name))
            .count()
    }

    /// `DELETE /api/mempools/{name}`: `mempool_destroy()`, refused while
    /// elements it handed out are live.
    pub(super) fn mempool_destroy(&mut self, name: &str) -> Result<Response, ApiError> {
        check_name(name, "mempool")?;
        if self.slab.pools.get_mut(name).is_none() {
            return Err(ApiError::enoent(format!("no mempool named '{name}'")));
        }
        let users = self.pool_users(name);
        if users > 0 {
            return Err(ApiError::ebusy(format!(
                "mempool '{name}' has {users} elements allocated: free them first"
            )));
        }
        let access = self.slab_access()?;
        let mm = self.mm;
        let registry = &mut self.slab.pools;
        locked(access, |slab, mem| registry.destroy(slab, mem, mm, name))
            .ok_or_else(no_slab)?
            .map_err(|e| mempool_error(e, &format!("mempool_destroy({name})")))?;
        self.slab.pool_bytes.remove(name);
        // Its sleepers retry and find it gone (404).
        self.wake_mempool_waiters(name);
        #[derive(Serialize)]
        struct Destroyed<'n> {
            destroyed: &'n str,
        }
        Ok(Response::json(200, &Destroyed { destroyed: name }))
    }

    /// `POST /api/mempools/{name}/resize`: `mempool_resize()`. As in Linux,
    /// a grow that cannot be filled keeps the new `min_nr` (frees refill
    /// it) and answers 507.
    pub(super) fn mempool_resize(&mut self, name: &str, body: &[u8]) -> Result<Response, ApiError> {
        check_name(name, "mempool")?;
        super::alloc_cmd::check_fields(body, &["min_nr"], "a resize")?;
        let body: ResizeBody = parse_body(body)?;
        let min_nr = parse_min_nr(body.min_nr)?;
        let cache = {
            let pool = self
                .slab
                .pools
                .get_mut(name)
                .ok_or_else(|| ApiError::enoent(format!("no mempool named '{name}'")))?;
            pool.cache()
        };
        let access = self.slab_access()?;
        let stride = locked(access, |slab, mem| {
            slab.cache_info(mem, cache).map(|c| c.size)
        })
        .ok_or_else(no_slab)?
        .ok_or_else(|| ApiError::enoent(format!("the cache of mempool '{name}' is gone")))?;
        let reserve_bytes = min_nr as u64 * u64::from(stride);
        let old_bytes = self.slab.pool_bytes.get(name).copied().unwrap_or(0);
        if reserve_bytes > old_bytes {
            self.check_quota(reserve_bytes - old_bytes)?;
        }
        let mm = self.mm;
        let registry = &mut self.slab.pools;
        let result = locked(access, |slab, mem| match registry.get_mut(name) {
            Some(pool) => mp::mempool_resize(pool, slab, mem, mm, min_nr),
            None => Err(MempoolError::NoPool),
        })
        .ok_or_else(no_slab)?;
        if let Some(bytes) = self.slab.pool_bytes.get_mut(name) {
            *bytes = reserve_bytes;
        }
        // A grown reserve may hold elements for its sleepers.
        self.wake_mempool_waiters(name);
        result.map_err(|e| mempool_error(e, &format!("mempool_resize({name}, {min_nr})")))?;
        Ok(Response::json(200, &self.pool_json(name)?))
    }

    // ------------------------------------------------------------------
    // Handles
    // ------------------------------------------------------------------

    /// `POST /api/alloc` with `"type"` `kmalloc`, `cache` or `mempool`.
    pub(super) fn alloc_slab(&mut self, kind: &str, body: &[u8]) -> Result<Response, ApiError> {
        let body: SlabAllocBody<'_> = parse_body(body)?;
        let gfp = parse_gfp(body.gfp)?;
        let access = self.slab_access()?;
        let mm = self.mm;
        let (kind, size, pool_name, placed) = match kind {
            "kmalloc" => {
                let size = body.size.ok_or_else(|| {
                    ApiError::einval(format!("missing \"size\" (0..={KMALLOC_MAX_SIZE})"))
                })?;
                if size == 0 {
                    return Ok(zero_size_ptr());
                }
                let size = usize::try_from(size)
                    .ok()
                    .filter(|&s| (1..=KMALLOC_MAX_SIZE).contains(&s))
                    .ok_or_else(|| {
                        ApiError::einval(format!(
                            "size {size} is out of range 0..={KMALLOC_MAX_SIZE}"
                        ))
                    })?;
                let footprint = kmalloc_size_roundup(size).map_or_else(
                    || Order::from_size_bytes(size as u64).map_or(0, |o| o.size_bytes()),
                    |s| s as u64,
                );
                self.check_quota(footprint)?;
                let placed = locked(access, |slab, mem| {
                    slab.kmalloc(mem, mm, size, gfp | GfpFlags::ACCOUNT)
                        .map(|addr| place(slab, mem, addr))
                })
                .ok_or_else(no_slab)?
                .map_err(|e| slab_error(e, &format!("kmalloc({size}, {gfp})")))?;
                (SlabHandleKind::Kmalloc, size as u64, None, placed)
            }
            "cache" => {
                let name = body
                    .cache
                    .ok_or_else(|| ApiError::einval("missing \"cache\""))?;
                let info = self.find_cache(name)?;
                self.check_quota(u64::from(info.size))?;
                let placed = locked(access, |slab, mem| {
                    slab.kmem_cache_alloc(mem, mm, info.id, gfp)
                        .map(|addr| place(slab, mem, addr))
                })
                .ok_or_else(no_slab)?
                .map_err(|e| slab_error(e, &format!("kmem_cache_alloc({name}, {gfp})")))?;
                (
                    SlabHandleKind::Cache,
                    u64::from(info.object_size),
                    None,
                    placed,
                )
            }
            _ => {
                let name = body
                    .pool
                    .ok_or_else(|| ApiError::einval("missing \"pool\""))?;
                check_name(name, "mempool")?;
                let cache = self
                    .slab
                    .pools
                    .get_mut(name)
                    .map(|p| p.cache())
                    .ok_or_else(|| ApiError::enoent(format!("no mempool named '{name}'")))?;
                let info = locked(access, |slab, mem| slab.cache_info(mem, cache))
                    .ok_or_else(no_slab)?
                    .ok_or_else(|| {
                        ApiError::enoent(format!("the cache of mempool '{name}' is gone"))
                    })?;
                self.check_quota(u64::from(info.size))?;
                let registry = &mut self.slab.pools;
                let placed = locked(access, |slab, mem| match registry.get_mut(name) {
                    Some(pool) => mp::mempool_alloc(pool, slab, mem, mm, gfp)
                        .map(|addr| place(slab, mem, addr)),
                    None => Err(MempoolError::NoPool),
                })
                .ok_or_else(no_slab)?
                .map_err(|e| mempool_error(e, &format!("mempool_alloc({name}, {gfp})")))?;
                (
                    SlabHandleKind::Mempool,
                    u64::from(info.object_size),
                    CacheName::new(name),
                    placed,
                )
            }
        };
        let pfn = Pfn((placed.addr - PAGE_OFFSET) >> PAGE_SHIFT);
        let zone = mm.lock().zone_of(pfn).unwrap_or(ZoneType::Normal);
        let handle = SlabHandle {
            id: self.next_id,
            kind,
            addr: placed.addr,
            size,
            ksize: placed.ksize,
            footprint: placed
                .cache
                .map_or(placed.ksize, |(_, _, stride)| u64::from(stride)),
            cache: placed.cache.map(|(id, _, _)| id),
            cache_name: placed.cache.map(|(_, n, _)| n),
            pool: pool_name,
            order: placed.order,
            gfp,
            zone,
            created_ms: self.system.uptime_ms(),
        };
        self.next_id += 1;
        self.slab.handle_bytes += handle.footprint;
        self.slab.handles.insert(handle.id, handle);
        Ok(Response::json(201, &SlabHandleJson::from(&handle)))
    }

    /// Give one slab handle's object back (under the lock: no allocation).
    fn release(
        slab: &mut SlabAllocator<'_>,
        mem: &DynMem<'_>,
        mm: &MemoryManager<'_, P>,
        pools: &mut Mempools,
        h: &SlabHandle,
    ) -> Result<(), MempoolError> {
        match (h.kind, h.cache, h.pool) {
            (SlabHandleKind::Mempool, _, Some(pool)) => match pools.get_mut(pool.as_str()) {
                Some(pool) => mp::mempool_free(pool, slab, mem, mm, h.addr),
                None => Err(MempoolError::NoPool),
            },
            (SlabHandleKind::Cache, Some(cache), _) => slab
                .kmem_cache_free(mem, mm, cache, h.addr)
                .map_err(MempoolError::BadFree),
            _ => slab.kfree(mem, mm, h.addr).map_err(MempoolError::BadFree),
        }
    }

    fn forget_slab(&mut self, id: u64) {
        if let Some(h) = self.slab.handles.remove(&id) {
            self.slab.handle_bytes -= h.footprint;
        }
    }

    /// `DELETE /api/alloc/{id}`, `POST …/fill`, `GET …/checksum` on a slab
    /// handle.
    pub(super) fn slab_handle_cmd(
        &mut self,
        route: RouteId,
        id: &str,
        req: &Request,
    ) -> Result<Response, ApiError> {
        let (id, h) = find_handle(&self.slab.handles, id)?;
        match route {
            RouteId::Free => {
                if req.query_param("order").is_some() {
                    return Err(ApiError::einval(format!(
                        "?order= applies to pages handles; allocation {id} is a {} handle",
                        h.kind.name()
                    )));
                }
                let access = self.slab_access()?;
                let mm = self.mm;
                let pools = &mut self.slab.pools;
                let result = locked(access, |slab, mem| Self::release(slab, mem, mm, pools, &h))
                    .ok_or_else(no_slab)?;
                // Whatever the slab layer said, the object is no longer the
                // API's: freed, or quarantined after a reported corruption.
                self.forget_slab(id);
                result.map_err(|e| mempool_error(e, &format!("free of allocation {id}")))?;
                if let Some(pool) = h.pool {
                    // mempool_free(): wake_up(&pool->wait).
                    self.wake_mempool_waiters(pool.as_str());
                }
                #[derive(Serialize)]
                struct Freed {
                    freed: u64,
                    size: u64,
                }
                Ok(Response::json(
                    200,
                    &Freed {
                        freed: id,
                        size: h.size,
                    },
                ))
            }
            RouteId::Fill => {
                let (byte, touch) = parse_fill(&req.body, h.size)?;
                self.mm
                    .with_bytes(h.phys() + touch.offset, touch.length, &mut |bytes| {
                        bytes.fill(byte)
                    });
                Ok(Response::json(200, &Filled::new(touch)))
            }
            _ => {
                let touch = parse_checksum_range(req, h.size)?;
                let mut crc = mm::crc32::Crc32::new();
                self.mm
                    .with_bytes(h.phys() + touch.offset, touch.length, &mut |bytes| {
                        crc.update(bytes)
                    });
                Ok(Response::json(200, &Checksummed::new(touch, crc.finish())))
            }
        }
    }

    /// `POST /api/reset`, slab side: free every slab handle (mempool
    /// elements back to their pool), destroy every pool, then every `api`
    /// cache. Returns the number of handles freed.
    pub(super) fn reset_slab(&mut self) -> u64 {
        let handles = core::mem::take(&mut self.slab.handles);
        let freed = handles.len() as u64;
        self.slab.handle_bytes = 0;
        let Some(access) = self.slab.access else {
            return freed;
        };
        let mm = self.mm;
        let pools = &mut self.slab.pools;
        locked(access, |slab, mem| {
            for h in handles.values() {
                let _ = Self::release(slab, mem, mm, pools, h);
            }
            let mut names = [None; MAX_MEMPOOLS];
            for (slot, info) in names.iter_mut().zip(pools.iter()) {
                *slot = Some(info.name);
            }
            for name in names.iter().flatten() {
                let _ = pools.destroy(slab, mem, mm, name.as_str());
            }
            let mut api_caches = [None; MAX_CACHES];
            for (slot, info) in api_caches
                .iter_mut()
                .zip(slab.caches(mem).filter(|c| c.kind == CacheKind::Api))
            {
                *slot = Some(info.id);
            }
            for id in api_caches.into_iter().flatten() {
                // Every object of an API cache was an API handle, freed
                // above, so this cannot be refused.
                let _ = slab.kmem_cache_destroy(mem, mm, id);
            }
        });
        // Heap memory is released only now, with the slab lock dropped.
        drop(handles);
        self.slab.pool_bytes.clear();
        freed
    }
}
