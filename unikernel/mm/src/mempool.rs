//! Memory pools: a guaranteed reserve of objects for allocations that must
//! make progress under memory pressure (cf. `mm/mempool.c`).
//!
//! A pool pre-allocates `min_nr` objects from a slab cache. `mempool_alloc`
//! tries the cache first (without dipping into the page allocator's
//! emergency reserves: `__GFP_NOMEMALLOC | __GFP_NORETRY | __GFP_NOWARN`)
//! and falls back to the pool's reserve only when that fails;
//! `mempool_free` refills the reserve before giving objects back to the
//! cache. Linux would then sleep on `pool->wait` until an element is
//! freed; `mm` has no one to put to sleep, so an empty reserve fails
//! cleanly and the caller sleeps (the API parks the request on a
//! `crate::wait::WaitQueue` keyed by the pool, which `mempool_free`'s
//! caller wakes).
//!
//! The reserve is a fixed array ([`MEMPOOL_MAX_NR`] elements) — no heap,
//! like the rest of the slab layer. [`Mempools`] is a fixed-size registry
//! of named pools for `/api/mempools`.

use core::fmt;

use crate::gfp::GfpFlags;
use crate::slab::{
    CacheId, CacheName, Corruption, ObjectMemory, PageSource, SlabAllocator, SlabError,
};

/// Most elements a pool may reserve.
pub const MEMPOOL_MAX_NR: usize = 64;
/// Most pools in a [`Mempools`] registry.
pub const MAX_MEMPOOLS: usize = 16;

/// Mempool failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MempoolError {
    /// The cache could not supply an element and the reserve is empty —
    /// or, at creation/resize, the reserve could not be filled.
    NoMemory,
    /// `min_nr` above [`MEMPOOL_MAX_NR`], or a bad name.
    Invalid,
    /// No such pool (or its cache is gone).
    NoPool,
    /// A pool of that name exists.
    Exists,
    /// The registry is full.
    TooManyPools,
    /// The element was not accepted by the cache (double or invalid free).
    BadFree(Corruption),
}

impl fmt::Display for MempoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MempoolError::NoMemory => write!(f, "mempool exhausted"),
            MempoolError::Invalid => {
                write!(f, "invalid mempool parameters (min_nr <= {MEMPOOL_MAX_NR})")
            }
            MempoolError::NoPool => write!(f, "no such mempool"),
            MempoolError::Exists => write!(f, "mempool exists"),
            MempoolError::TooManyPools => write!(f, "mempool table full ({MAX_MEMPOOLS})"),
            MempoolError::BadFree(c) => write!(f, "bad free: {c}"),
        }
    }
}

impl From<SlabError> for MempoolError {
    fn from(e: SlabError) -> Self {
        match e {
            SlabError::NoCache => MempoolError::NoPool,
            _ => MempoolError::NoMemory,
        }
    }
}

/// A reserve of objects from one slab cache (cf. `mempool_t` with
/// `mempool_alloc_slab`/`mempool_free_slab`).
#[derive(Clone, Debug)]
pub struct Mempool {
    name: CacheName,
    cache: CacheId,
    min_nr: usize,
    curr_nr: usize,
    elements: [u64; MEMPOOL_MAX_NR],
}

impl Mempool {
    /// Pool name.
    pub fn name(&self) -> &str {
        self.name.as_str()
    }

    /// The cache it allocates from.
    pub fn cache(&self) -> CacheId {
        self.cache
    }

    /// Elements the pool guarantees.
    pub fn min_nr(&self) -> usize {
        self.min_nr
    }

    /// Elements in the reserve now.
    pub fn curr_nr(&self) -> usize {
        self.curr_nr
    }

    fn add_element(&mut self, element: u64) {
        self.elements[self.curr_nr] = element;
        self.curr_nr += 1;
    }

    fn remove_element(&mut self) -> u64 {
        self.curr_nr -= 1;
        self.elements[self.curr_nr]
    }
}

/// `mempool_create()` over a slab cache: fill the reserve with `min_nr`
/// objects (`GFP_KERNEL`); on failure everything taken is given back.
pub fn mempool_create<M: ObjectMemory, S: PageSource + ?Sized>(
    slab: &mut SlabAllocator<'_>,
    mem: &M,
    pages: &S,
    name: &str,
    min_nr: usize,
    cache: CacheId,
) -> Result<Mempool, MempoolError> {
    let name = CacheName::new(name).ok_or(MempoolError::Invalid)?;
    if min_nr > MEMPOOL_MAX_NR {
        return Err(MempoolError::Invalid);
    }
    slab.cache_info(mem, cache).ok_or(MempoolError::NoPool)?;
    let mut pool = Mempool {
        name,
        cache,
        min_nr,
        curr_nr: 0,
        elements: [0; MEMPOOL_MAX_NR],
    };
    while pool.curr_nr < min_nr {
        match slab.kmem_cache_alloc(mem, pages, cache, GfpFlags::GFP_KERNEL) {
            Ok(e) => pool.add_element(e),
            Err(_) => {
                mempool_destroy(slab, mem, pages, pool);
                return Err(MempoolError::NoMemory);
            }
        }
    }
    Ok(pool)
}

/// `mempool_alloc()`: the cache first, without emergency reserves; the
/// pool's reserve if that fails; [`MempoolError::NoMemory`] when both are
/// empty (the caller decides whether to sleep: see the module doc).
pub fn mempool_alloc<M: ObjectMemory, S: PageSource + ?Sized>(
    pool: &mut Mempool,
    slab: &mut SlabAllocator<'_>,
    mem: &M,
    pages: &S,
    gfp: GfpFlags,
) -> Result<u64, MempoolError> {
    let gfp_temp = gfp
        .difference(GfpFlags::DIRECT_RECLAIM.union(GfpFlags::IO))
        .union(GfpFlags::NOMEMALLOC)
        .union(GfpFlags::NORETRY)
        .union(GfpFlags::NOWARN);
    match slab.kmem_cache_alloc(mem, pages, pool.cache, gfp_temp) {
        Ok(e) => return Ok(e),
        Err(SlabError::NoCache) => return Err(MempoolError::NoPool),
        Err(_) => {}
    }
    if pool.curr_nr > 0 {
        let e = pool.remove_element();
        if gfp.contains(GfpFlags::ZERO)
            && let Some(info) = slab.cache_info(mem, pool.cache)
        {
            mem.fill(e, info.object_size as usize, 0);
        }
        return Ok(e);
    }
    Err(MempoolError::NoMemory)
}

/// `mempool_free()`: refill the reserve if it is below `min_nr`, else give
/// the element back to the cache.
pub fn mempool_free<M: ObjectMemory, S: PageSource + ?Sized>(
    pool: &mut Mempool,
    slab: &mut SlabAllocator<'_>,
    mem: &M,
    pages: &S,
    element: u64,
) -> Result<(), MempoolError> {
    if pool.curr_nr < pool.min_nr {
        if slab.cache_of(element) != Some(pool.cache)
            || pool.elements[..pool.curr_nr].contains(&element)
        {
            // Never let a foreign or duplicate pointer into the reserve:
            // the cache's checks report it.
            return slab
                .kmem_cache_free(mem, pages, pool.cache, element)
                .map_err(MempoolError::BadFree);
        }
        pool.add_element(element);
        return Ok(());
    }
    slab.kmem_cache_free(mem, pages, pool.cache, element)
        .map_err(MempoolError::BadFree)
}

/// `mempool_resize()`: shrinking frees surplus reserve elements; growing
/// allocates up to the new `min_nr`. As in Linux, a failed grow keeps the
/// new `min_nr` (later frees refill it) but reports
/// [`MempoolError::NoMemory`].
pub fn mempool_resize<M: ObjectMemory, S: PageSource + ?Sized>(
    pool: &mut Mempool,
    slab: &mut SlabAllocator<'_>,
    mem: &M,
    pages: &S,
    new_min_nr: usize,
) -> Result<(), MempoolError> {
    if new_min_nr > MEMPOOL_MAX_NR {
        return Err(MempoolError::Invalid);
    }
    pool.min_nr = new_min_nr;
    while pool.curr_nr > new_min_nr {
        let e = pool.remove_element();
        let _ = slab.kmem_cache_free(mem, pages, pool.cache, e);
    }
    while pool.curr_nr < new_min_nr {
        let e = slab.kmem_cache_alloc(mem, pages, pool.cache, GfpFlags::GFP_KERNEL)?;
        pool.add_element(e);
    }
    Ok(())
}

/// `mempool_destroy()`: give the reserve back to the cache. Elements still
/// out are the caller's to free to the cache.
pub fn mempool_destroy<M: ObjectMemory, S: PageSource + ?Sized>(
    slab: &mut SlabAllocator<'_>,
    mem: &M,
    pages: &S,
    mut pool: Mempool,
) {
    while pool.curr_nr > 0 {
        let e = pool.remove_element();
        let _ = slab.kmem_cache_free(mem, pages, pool.cache, e);
    }
}

/// One pool as `/api/mempools` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MempoolInfo {
    /// Pool name.
    pub name: CacheName,
    /// Its cache.
    pub cache: CacheId,
    /// Guaranteed elements.
    pub min_nr: usize,
    /// Elements in the reserve.
    pub curr_nr: usize,
}

/// A fixed-size registry of named pools (no heap).
#[derive(Debug)]
pub struct Mempools {
    pools: [Option<Mempool>; MAX_MEMPOOLS],
}

impl Default for Mempools {
    fn default() -> Self {
        Self::new()
    }
}

impl Mempools {
    /// No pools.
    pub const fn new() -> Self {
        Mempools {
            pools: [const { None }; MAX_MEMPOOLS],
        }
    }

    /// Create and register a pool ([`mempool_create`]); names are unique.
    pub fn create<M: ObjectMemory, S: PageSource + ?Sized>(
        &mut self,
        slab: &mut SlabAllocator<'_>,
        mem: &M,
        pages: &S,
        name: &str,
        min_nr: usize,
        cache: CacheId,
    ) -> Result<(), MempoolError> {
        if self.get_mut(name).is_some() {
            return Err(MempoolError::Exists);
        }
        let free = self
            .pools
            .iter()
            .position(Option::is_none)
            .ok_or(MempoolError::TooManyPools)?;
        self.pools[free] = Some(mempool_create(slab, mem, pages, name, min_nr, cache)?);
        Ok(())
    }

    /// The pool called `name`.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Mempool> {
        self.pools.iter_mut().flatten().find(|p| p.name() == name)
    }

    /// Unregister and [`mempool_destroy`] the pool called `name`.
    pub fn destroy<M: ObjectMemory, S: PageSource + ?Sized>(
        &mut self,
        slab: &mut SlabAllocator<'_>,
        mem: &M,
        pages: &S,
        name: &str,
    ) -> Result<(), MempoolError> {
        let i = self
            .pools
            .iter()
            .position(|p| p.as_ref().is_some_and(|p| p.name() == name));
        let pool = i
            .and_then(|i| self.pools[i].take())
            .ok_or(MempoolError::NoPool)?;
        mempool_destroy(slab, mem, pages, pool);
        Ok(())
    }

    /// Whether any pool draws from `cache` (a cache with a pool is busy).
    pub fn uses_cache(&self, cache: CacheId) -> bool {
        self.pools.iter().flatten().any(|p| p.cache == cache)
    }

    /// Every pool, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = MempoolInfo> + '_ {
        self.pools.iter().flatten().map(|p| MempoolInfo {
            name: p.name,
            cache: p.cache,
            min_nr: p.min_nr,
            curr_nr: p.curr_nr,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slab::SlabFlags;
    use crate::slab::tests::{FailingPages, Fixture};

    #[test]
    fn reserve_serves_min_nr_when_the_cache_cannot_grow() {
        let mut fx = Fixture::new(24);
        let f = &mut fx;
        let cache = f
            .slab
            .kmem_cache_create("pool_objs", 200, 64, SlabFlags::NONE, None)
            .unwrap();
        let objs = f.slab.cache_info(&f.mem, cache).unwrap().objs_per_slab as usize;
        let mut pool = mempool_create(&mut f.slab, &f.mem, &f.pages, "pool", 4, cache).unwrap();
        assert_eq!((pool.min_nr(), pool.curr_nr()), (4, 4));
        // Fill the cache's only slab, then make the page allocator fail.
        let failing = FailingPages::new(&f.pages);
        let mut held = std::vec::Vec::new();
        for _ in 0..objs - 4 {
            held.push(
                mempool_alloc(
                    &mut pool,
                    &mut f.slab,
                    &f.mem,
                    &failing,
                    GfpFlags::GFP_KERNEL,
                )
                .unwrap(),
            );
        }
        assert_eq!(pool.curr_nr(), 4, "the cache served those");
        failing.fail(true);
        for i in 0..4 {
            let e = mempool_alloc(
                &mut pool,
                &mut f.slab,
                &f.mem,
                &failing,
                GfpFlags::GFP_KERNEL,
            )
            .unwrap();
            assert_eq!(pool.curr_nr(), 3 - i);
            held.push(e);
        }
        assert_eq!(
            mempool_alloc(
                &mut pool,
                &mut f.slab,
                &f.mem,
                &failing,
                GfpFlags::GFP_KERNEL
            ),
            Err(MempoolError::NoMemory)
        );
        let mut sorted = held.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            held.len(),
            "reserve elements are distinct objects"
        );
        // Frees refill the reserve first, then go to the cache.
        for (i, e) in held.drain(..).enumerate() {
            mempool_free(&mut pool, &mut f.slab, &f.mem, &failing, e).unwrap();
            assert_eq!(pool.curr_nr(), (i + 1).min(4));
        }
        mempool_resize(&mut pool, &mut f.slab, &f.mem, &f.pages, 2).unwrap();
        assert_eq!((pool.min_nr(), pool.curr_nr()), (2, 2));
        mempool_resize(&mut pool, &mut f.slab, &f.mem, &f.pages, 6).unwrap();
        assert_eq!(pool.curr_nr(), 6);
        assert!(matches!(
            f.slab.kmem_cache_destroy(&f.mem, &f.pages, cache),
            Err(SlabError::Busy { active_objs: 6 })
        ));
        mempool_destroy(&mut f.slab, &f.mem, &f.pages, pool);
        f.slab.kmem_cache_destroy(&f.mem, &f.pages, cache).unwrap();
        f.slab.check_invariants(&f.mem).unwrap();
        f.assert_buddy_restored();
    }

    #[test]
    fn buddy_exhaustion_falls_back_to_the_reserve() {
        let mut fx = Fixture::new(24);
        let f = &mut fx;
        let cache = f
            .slab
            .kmem_cache_create("big_objs", 3000, 0, SlabFlags::NONE, None)
            .unwrap();
        let mut pools = Mempools::new();
        pools
            .create(&mut f.slab, &f.mem, &f.pages, "p", 3, cache)
            .unwrap();
        assert_eq!(
            pools.create(&mut f.slab, &f.mem, &f.pages, "p", 3, cache),
            Err(MempoolError::Exists)
        );
        // Exhaust the buddy allocator (single pages: every zone, down to MIN).
        let hog = f.exhaust_buddy();
        let pool = pools.get_mut("p").unwrap();
        let mut got = std::vec::Vec::new();
        loop {
            match mempool_alloc(pool, &mut f.slab, &f.mem, &f.pages, GfpFlags::GFP_KERNEL) {
                Ok(e) => got.push(e),
                Err(e) => {
                    assert_eq!(e, MempoolError::NoMemory);
                    break;
                }
            }
        }
        assert_eq!(pool.curr_nr(), 0);
        let objs = f.slab.cache_info(&f.mem, cache).unwrap().objs_per_slab as usize;
        assert_eq!(
            got.len(),
            objs,
            "the slab's other objects, then the 3 reserved"
        );
        for e in got {
            let pool = pools.get_mut("p").unwrap();
            mempool_free(pool, &mut f.slab, &f.mem, &f.pages, e).unwrap();
        }
        f.release(hog);
        let info: std::vec::Vec<_> = pools.iter().collect();
        assert_eq!((info[0].min_nr, info[0].curr_nr), (3, 3));
        assert!(pools.uses_cache(cache));
        pools.destroy(&mut f.slab, &f.mem, &f.pages, "p").unwrap();
        f.slab.kmem_cache_destroy(&f.mem, &f.pages, cache).unwrap();
        f.assert_buddy_restored();
    }
}
