//! The per-CPU half of SLUB: each CPU's `kmem_cache_cpu` of every cache,
//! the inlined fast paths over it, and the out-of-line slow paths behind
//! them (cf. `slab_alloc_node()`, `___slab_alloc()`, `do_slab_free()`,
//! `__slab_free()`, `deactivate_slab()`, `flush_all()` in `mm/slub.c`).
//!
//! A CPU's slab of a cache is *frozen*: its whole free list has moved into
//! the CPU's [`KmemCacheCpu::freelist`], its overlay entry says "no free
//! object, every object in use" (as Linux sets `slab->inuse =
//! slab->objects` on freezing), and it is on no list. So:
//!
//! * **alloc fast path** ([`SlabAllocator::slab_alloc`]) — pop `freelist`:
//!   one load of the free pointer inside the object, one store of the new
//!   head;
//! * **free fast path** ([`SlabAllocator::slab_free`]) — if the object lies
//!   on this CPU's slab of the cache named by `kmem_cache_free` (for
//!   `kfree`: of the cache this CPU used last), at an object start, push:
//!   a store into the object (skipped when the word holds the value
//!   already, [`set_freepointer_fast`]), one of the new head. That test
//!   is arithmetic on the address (one multiply, no load that depends on
//!   it); see `slab_free` for why it beats looking the cache up first.
//!
//! Neither touches a slab list, a slab's overlay entry, or a cache counter.
//! Behind them: [`SlabAllocator::___slab_alloc`], out of line, when the
//! free list is empty (the CPU slab is full: it goes to the full count, and
//! the first partial, empty or new slab is frozen in its place); and for
//! any other free [`SlabAllocator::slab_free_lookup`]: the cache from the
//! overlay (cf. `virt_to_slab()`), then a push onto that cache's CPU free
//! list or [`SlabAllocator::__slab_free`] into the object's own slab.
//! Those two are inlined into `kfree`: with objects freed in random order
//! they are the common case (measured: 20 % fewer instructions per random
//! free than behind a call), and only list moves, errors and debug caches
//! stay out of line.
//!
//! **Exact counts, with no count on the fast paths.** As in SLUB, the fast
//! paths touch only `freelist` and the free pointer inside the object:
//! a frozen slab keeps no in-use count (Linux's overlay says `inuse =
//! objects` while frozen, and its `/proc/slabinfo` counts every object of
//! a CPU slab as active, free or not). Ours shows exact counts all the
//! same: a CPU slab's objects in use (handed out, or quarantined) are
//! `objects` less the length of its CPU free list, which
//! [`KmemCacheCpu::walk_freelist`] walks through the object memory when a
//! count is asked for (cf. `count_free()` / `on_freelist()`, and
//! `deactivate_slab()`, which walks the CPU free list to hand it back).
//! So `active_objs`, `/proc/slabinfo`, `/api/slab`, the full/partial/empty
//! split, `kmem_cache_destroy`'s busy test, the flushes and the recount
//! are the same numbers as when the fast paths counted, at every moment.
//! Every caller of a count — the views, the flushes, destroy, shrink —
//! runs on the exclusive side (every CPU's flag held), so no CPU's list
//! changes under the walk, and passes the [`ObjectMemory`] it walks.
//! Cost: at most `objects` loads per CPU slab per view (one per free
//! object: up to 512 for kmalloc-8; a cache has at most [`NR_CPUS`] CPU
//! slabs). The walk is bounded: each pointer is checked to be an object
//! start of the slab before it is followed, and a list longer than the
//! slab is a cycle; a broken list counts as what the flush will keep of
//! it, and the flush cuts it there and reports it
//! ([`CorruptionKind::FreePointer`], as the debug checks do). Measured
//! (h-slab6, `docs/benchmarks.md`): without the count the LIFO 64 B pair
//! runs 2 instructions fewer; with [`set_freepointer_fast`] 1 fewer than
//! with the count, and 0.4–0.9 ns faster on both bench rows.
//!
//! **Where CPU slabs are flushed** ([`SlabAllocator::flush_all`], cf.
//! `flush_all()` → `__flush_cpu_slab()` → `deactivate_slab()`): before a
//! shrink gives empty slabs back (`kmem_cache_shrink`, so also `POST
//! /api/reset` and the reclaim shrinkers, which shrink), and before
//! `kmem_cache_destroy`. The views need no flush: they count the CPU slabs
//! from their `kmem_cache_cpu`.
//!
//! **No per-CPU partial list.** SLUB's `put_cpu_partial()` keeps slabs that
//! regain a free object on a per-CPU list, to spare the node's
//! `list_lock`. With one CPU and one slab lock that list would be the
//! cache's partial list under another name (and would hold empty slabs
//! beyond [`SLAB_EMPTY_RESERVE`] until drained), so a slab that regains a
//! free object goes to the tail of the partial list directly, as SLUB does
//! without `CONFIG_SLUB_CPU_PARTIAL`.

use super::*;

#[cfg(test)]
mod tests;

/// CPUs with a `kmem_cache_cpu`: the kernel-wide [`crate::types::NR_CPUS`].
pub use crate::types::NR_CPUS;

/// A CPU number below [`NR_CPUS`], as a type whose range the compiler
/// knows ([`SlabAllocator::smp_processor_id`]: the exclusive paths index
/// `pcpu` with it, twice per kmalloc/kfree pair, without a mask).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum CpuIdx {
    C0,
    C1,
    C2,
    C3,
    C4,
    C5,
    C6,
    C7,
}

impl CpuIdx {
    /// Every CPU, in order: one per slot of `pcpu`.
    pub(crate) const ALL: [CpuIdx; NR_CPUS] = [
        CpuIdx::C0,
        CpuIdx::C1,
        CpuIdx::C2,
        CpuIdx::C3,
        CpuIdx::C4,
        CpuIdx::C5,
        CpuIdx::C6,
        CpuIdx::C7,
    ];
}

/// One CPU's state for one cache (cf. `struct kmem_cache_cpu`): its frozen
/// slab and that slab's free list, and a copy of the three geometry
/// fields the fast paths read, so that neither reaches the cache's
/// descriptor ([`KmemCacheCpu::set_geometry`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct KmemCacheCpu {
    /// First free object of `slab` (its address), 0 if none (cf.
    /// `c->freelist`). The free pointer inside each free object leads to
    /// the next, 0 ending the list.
    pub(crate) freelist: u64,
    /// Direct-map address of the frozen slab's first byte, 0 if none (cf.
    /// `c->slab`). An address, not a PFN: the free fast path compares it
    /// with `addr - (addr & slab_mask)` directly.
    pub(crate) slab: u64,
    /// The cache's `div_magic` (copy).
    pub(crate) div_magic: u64,
    /// Head PFN of `slab` (valid while `slab` is non-zero), kept beside
    /// its address: a refill deactivating the slab reaches its overlay
    /// entry with one load instead of five instructions of address
    /// arithmetic.
    pub(crate) pfn: u32,
    /// The cache's free pointer offset (`offset`, copy).
    pub(crate) offset: u32,
    /// The cache's `objs_end` (copy) while `slab` is a frozen slab, else
    /// 0: the free fast path's bound then refuses every address. Without
    /// it an address below a small stride's `objs_end` (`ZERO_SIZE_PTR`,
    /// 16, is a multiple of 8) would pass as an "offset" from slab 0.
    pub(crate) objs_end: u32,
}

// Five words: a 64 B class's state and its geometry in one cache line
// for most slots (SLUB's `kmem_cache_cpu` is four words, its geometry a
// load away in `struct kmem_cache`).
const _: () = assert!(core::mem::size_of::<KmemCacheCpu>() == 40);

impl KmemCacheCpu {
    /// No CPU slab, no cache.
    pub(crate) const EMPTY: KmemCacheCpu = KmemCacheCpu {
        freelist: 0,
        slab: 0,
        div_magic: 0,
        pfn: 0,
        offset: 0,
        objs_end: 0,
    };

    /// Head PFN of the frozen slab (`slab` must be non-zero).
    #[inline]
    pub(crate) fn slab_pfn(&self) -> u32 {
        debug_assert_eq!(self.pfn as u64, (self.slab - PAGE_OFFSET) >> PAGE_SHIFT);
        self.pfn
    }

    /// Takes the CPU slab state away (cf. `flush_slab()`'s `c->slab =
    /// NULL; c->freelist = NULL`), leaving no CPU slab and the geometry
    /// copy as it was: the state it had.
    #[inline]
    pub(crate) fn take_slab(&mut self) -> KmemCacheCpu {
        let old = *self;
        *self = KmemCacheCpu {
            freelist: 0,
            slab: 0,
            pfn: 0,
            objs_end: 0,
            ..old
        };
        old
    }

    /// Copies cache `c`'s fast-path geometry (`KmemCache::EMPTY`'s zeros
    /// for a slot no live cache holds). Written by the exclusive side
    /// whenever the cache's own fields are (`setup_cache`, destroy), with
    /// no CPU slab; `objs_end` follows when a slab is frozen.
    pub(crate) fn set_geometry(&mut self, c: &KmemCache) {
        debug_assert_eq!(self.slab, 0);
        self.div_magic = c.div_magic;
        self.offset = c.offset;
        self.objs_end = 0;
    }

    /// A bounded walk of the free list (cf. `on_freelist()`, and
    /// `count_free()` in `mm/slub.c`), for the exclusive side: at most
    /// `objects` loads, one per free object, each pointer checked to be an
    /// object start of the slab first. A corrupt list — a pointer off the
    /// slab's objects, or more than `objects` of them (a cycle) — ends the
    /// walk; see [`CpuFreelist`] for what is counted then.
    pub(crate) fn walk_freelist<M: ObjectMemory + ?Sized>(
        &self,
        mem: &M,
        objects: u32,
    ) -> CpuFreelist {
        let mut p = self.freelist;
        let mut last = 0;
        let mut free = 0;
        while p != 0 {
            if !self.is_object_offset(p.wrapping_sub(self.slab)) {
                return CpuFreelist {
                    free,
                    bad: Some(last),
                };
            }
            if free == objects {
                return CpuFreelist {
                    free: 0,
                    bad: Some(0),
                };
            }
            free += 1;
            last = p;
            p = mem.read_u64(p + u64::from(self.offset));
        }
        CpuFreelist { free, bad: None }
    }

    /// [`KmemCache::is_object_offset`] on the copy.
    #[inline(always)]
    pub(crate) fn is_object_offset(&self, off: u64) -> bool {
        off < self.objs_end as u64 && off.wrapping_mul(self.div_magic) < self.div_magic
    }
}

/// The free fast paths' `set_freepointer()`: store `head` into the free
/// pointer word at `fp` unless the word holds it already — as it does for
/// an object freed right after its allocation (a LIFO pair), whose word
/// still names the object the allocation made the list's head. Then the
/// next allocation's load of the word reads the cache line instead of
/// waiting on a store.
#[inline(always)]
pub(crate) fn set_freepointer_fast<M: ObjectMemory>(mem: &M, fp: u64, head: u64) {
    if mem.read_u64(fp) != head {
        mem.write_u64(fp, head);
    }
}

/// What [`KmemCacheCpu::walk_freelist`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CpuFreelist {
    /// Free objects on the list: its length if it is proper; if not, what
    /// [`SlabAllocator::deactivate_slab`] will keep of it (so the views
    /// count now what the slab will hold then).
    pub(crate) free: u32,
    /// `None` for a proper list. `Some(obj)`: `obj`'s free pointer leads
    /// off the slab's objects (cf. "Freechain corrupt"), and the list is
    /// the `free` objects up to `obj`. `Some(0)`: the head is no object of
    /// the slab, or the list is longer than the slab (a cycle): nothing of
    /// it can be trusted (cf. "Freepointer corrupt" → "Freelist cleared"),
    /// `free` is 0.
    pub(crate) bad: Option<u64>,
}

/// A cache slot (below [`MAX_CACHES`]) as a type whose range the
/// compiler knows: a CPU's free hint, read by every `kfree`, indexes its
/// `kmem_cache_cpu` array without a mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
#[rustfmt::skip]
pub(crate) enum CacheSlot {
    S0,
    S1,
    S2,
    S3,
    S4,
    S5,
    S6,
    S7,
    S8,
    S9,
    S10,
    S11,
    S12,
    S13,
    S14,
    S15,
    S16,
    S17,
    S18,
    S19,
    S20,
    S21,
    S22,
    S23,
    S24,
    S25,
    S26,
    S27,
    S28,
    S29,
    S30,
    S31,
    S32,
    S33,
    S34,
    S35,
    S36,
    S37,
    S38,
    S39,
    S40,
    S41,
    S42,
    S43,
    S44,
    S45,
    S46,
    S47,
    S48,
    S49,
    S50,
    S51,
    S52,
    S53,
    S54,
    S55,
    S56,
    S57,
    S58,
    S59,
    S60,
    S61,
    S62,
    S63,
}

const _: () = assert!(MAX_CACHES == 64 && CacheSlot::S63 as usize == MAX_CACHES - 1);

impl CacheSlot {
    /// Slot `slot & (MAX_CACHES - 1)`. The match maps each value to
    /// itself, so it compiles to nothing (and the mask to nothing where
    /// the compiler knows `slot` is in range).
    #[inline(always)]
    #[rustfmt::skip]
    pub(crate) fn new(slot: usize) -> CacheSlot {
        match slot & (MAX_CACHES - 1) {
            0 => CacheSlot::S0,
            1 => CacheSlot::S1,
            2 => CacheSlot::S2,
            3 => CacheSlot::S3,
            4 => CacheSlot::S4,
            5 => CacheSlot::S5,
            6 => CacheSlot::S6,
            7 => CacheSlot::S7,
            8 => CacheSlot::S8,
            9 => CacheSlot::S9,
            10 => CacheSlot::S10,
            11 => CacheSlot::S11,
            12 => CacheSlot::S12,
            13 => CacheSlot::S13,
            14 => CacheSlot::S14,
            15 => CacheSlot::S15,
            16 => CacheSlot::S16,
            17 => CacheSlot::S17,
            18 => CacheSlot::S18,
            19 => CacheSlot::S19,
            20 => CacheSlot::S20,
            21 => CacheSlot::S21,
            22 => CacheSlot::S22,
            23 => CacheSlot::S23,
            24 => CacheSlot::S24,
            25 => CacheSlot::S25,
            26 => CacheSlot::S26,
            27 => CacheSlot::S27,
            28 => CacheSlot::S28,
            29 => CacheSlot::S29,
            30 => CacheSlot::S30,
            31 => CacheSlot::S31,
            32 => CacheSlot::S32,
            33 => CacheSlot::S33,
            34 => CacheSlot::S34,
            35 => CacheSlot::S35,
            36 => CacheSlot::S36,
            37 => CacheSlot::S37,
            38 => CacheSlot::S38,
            39 => CacheSlot::S39,
            40 => CacheSlot::S40,
            41 => CacheSlot::S41,
            42 => CacheSlot::S42,
            43 => CacheSlot::S43,
            44 => CacheSlot::S44,
            45 => CacheSlot::S45,
            46 => CacheSlot::S46,
            47 => CacheSlot::S47,
            48 => CacheSlot::S48,
            49 => CacheSlot::S49,
            50 => CacheSlot::S50,
            51 => CacheSlot::S51,
            52 => CacheSlot::S52,
            53 => CacheSlot::S53,
            54 => CacheSlot::S54,
            55 => CacheSlot::S55,
            56 => CacheSlot::S56,
            57 => CacheSlot::S57,
            58 => CacheSlot::S58,
            59 => CacheSlot::S59,
            60 => CacheSlot::S60,
            61 => CacheSlot::S61,
            62 => CacheSlot::S62,
            _ => CacheSlot::S63,
        }
    }
}

/// One CPU's slab state: its `kmem_cache_cpu` of every cache (cf. the
/// per-CPU area `s->cpu_slab` points into) and its free hint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SlabCpu {
    /// The cache this CPU last allocated from, or last freed to by the
    /// general free: where `kfree` looks first (see
    /// [`SlabAllocator::slab_free`]).
    pub(crate) hint: CacheSlot,
    /// Its `kmem_cache_cpu` of each cache, by cache slot.
    pub(crate) slabs: [KmemCacheCpu; MAX_CACHES],
}

impl SlabCpu {
    pub(crate) const EMPTY: SlabCpu = SlabCpu {
        hint: CacheSlot::S0,
        slabs: [KmemCacheCpu::EMPTY; MAX_CACHES],
    };
}

impl SlabAllocator<'_> {
    /// The CPU this code runs on (cf. `smp_processor_id()`): the lock
    /// holder's ([`SlabAllocator::set_this_cpu`]).
    #[inline(always)]
    pub(crate) fn smp_processor_id(&self) -> usize {
        // A `CpuIdx`: the compiler knows it is below NR_CPUS, so
        // `pcpu[cpu]` needs neither a bounds check nor a mask.
        self.cur_cpu as usize
    }

    /// Says which CPU holds the slab lock now; out-of-range CPUs use CPU
    /// 0's slots.
    #[inline(always)]
    pub fn set_this_cpu(&mut self, cpu: usize) {
        self.cur_cpu = CpuIdx::ALL.get(cpu).copied().unwrap_or(CpuIdx::C0);
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

    /// The fast path (cf. `slab_alloc_node()`): pop this CPU's free list of
    /// cache `slot`. `orig_size` is what the caller asked for (tracked with
    /// red zones, cf. `kmalloc_redzone`). `failslab` is asked first, as
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
        let slot = slot & (MAX_CACHES - 1);
        // `failslab` never fails `__GFP_NOFAIL` (cf. `__should_failslab()`),
        // so for constant flags with it the test compiles away.
        if self.failslab_armed && !gfp.contains(GfpFlags::NOFAIL) {
            return self.slab_alloc_armed(mem, pages, slot, gfp, orig_size);
        }
        // Every way out but the common one is a tail call: nothing is live
        // after it, so the fast path saves no registers (measured with
        // callgrind on the random kmalloc workload: the prologue and
        // epilogue were a sixth of `kmalloc`'s instructions).
        let obj = self.pop_cpu_freelist(mem, slot);
        if obj == 0 {
            // The refill returns the object in a register (0: none), not
            // a `Result` through memory: 5 instructions fewer a refill.
            return match self.slab_alloc_slow(mem, pages, slot, gfp, orig_size) {
                0 => Err(self.slab_alloc_error(slot)),
                obj => Ok(obj),
            };
        }
        if gfp.contains(GfpFlags::ZERO) {
            return self.zero_object(mem, slot, obj);
        }
        Ok(obj)
    }

    /// Pop this CPU's free list of cache `slot`: the object, or 0 when the
    /// list is empty (nothing changed but the hint).
    #[inline(always)]
    fn pop_cpu_freelist<M: ObjectMemory>(&mut self, mem: &M, slot: usize) -> u64 {
        let slot = slot & (MAX_CACHES - 1);
        let cpu_id = self.smp_processor_id();
        let pc = &mut *self.pcpu[cpu_id];
        let cpu = &mut pc.slabs[slot];
        let obj = cpu.freelist;
        if obj != 0 {
            cpu.freelist = mem.read_u64(obj + cpu.offset as u64);
        }
        // After the pop, as `kmalloc_cpu` does: measured 0.46 instructions
        // fewer a random kmalloc op on the exclusive row (callgrind), the
        // same on every other.
        pc.hint = CacheSlot::new(slot);
        obj
    }

    /// `__GFP_ZERO` on an object the fast path popped.
    #[inline(never)]
    fn zero_object<M: ObjectMemory>(
        &self,
        mem: &M,
        slot: usize,
        obj: u64,
    ) -> Result<u64, SlabError> {
        let c = &self.caches[slot & (MAX_CACHES - 1)];
        mem.fill(obj, c.object_size as usize, 0);
        Ok(obj)
    }

    /// [`Self::slab_alloc`] with `failslab` armed: asked first, as
    /// `slab_pre_alloc_hook()` does for every cache, kmalloc's included.
    #[cold]
    #[inline(never)]
    fn slab_alloc_armed<M: ObjectMemory, S: PageSource + ?Sized>(
        &mut self,
        mem: &M,
        pages: &S,
        slot: usize,
        gfp: GfpFlags,
        orig_size: usize,
    ) -> Result<u64, SlabError> {
        self.should_failslab(slot, gfp)?;
        match self.pop_cpu_freelist(mem, slot) {
            0 => match self.slab_alloc_slow(mem, pages, slot, gfp, orig_size) {
                0 => Err(self.slab_alloc_error(slot)),
                obj => Ok(obj),
            },
            obj if gfp.contains(GfpFlags::ZERO) => self.zero_object(mem, slot, obj),
            obj => Ok(obj),
        }
    }

    /// The fast path's miss: [`Self::___slab_alloc`], out of line. Its
    /// object, or 0 when no slab could be had (the caller makes the error,
    /// [`Self::slab_alloc_error`]); called only with this CPU's free list
    /// of `slot` empty.
    #[inline(never)]
    fn slab_alloc_slow<M: ObjectMemory, S: PageSource + ?Sized>(
        &mut self,
        mem: &M,
        pages: &S,
        slot: usize,
        gfp: GfpFlags,
        orig_size: usize,
    ) -> u64 {
        self.___slab_alloc(mem, pages, slot, gfp, orig_size)
    }

    /// Why [`Self::___slab_alloc`] failed: the page allocator could not
    /// supply a slab (the only way it fails).
    #[cold]
    fn slab_alloc_error(&self, slot: usize) -> SlabError {
        let order = self.caches[slot & (MAX_CACHES - 1)].order;
        SlabError::NoMemory {
            order: Order::new(order).unwrap_or(Order::ZERO),
        }
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

    /// cf. `___slab_alloc()`: this CPU's free list of cache `slot` is empty.
    /// Deactivate the CPU slab (every object of it is in use, so it goes to
    /// the full count, on no list), then freeze the first partial slab,
    /// else an empty one, else a new one (cf. `get_partial()`,
    /// `new_slab()`), taking its whole free list (cf. `get_freelist()`),
    /// and hand out its first object. Debug caches never freeze a slab:
    /// they allocate one checked object straight from the lists. The
    /// object, or 0 when no slab could be had (returned in a register: the
    /// caller makes the error).
    #[inline(always)] // into slab_alloc_slow, its one caller
    fn ___slab_alloc<M: ObjectMemory, S: PageSource + ?Sized>(
        &mut self,
        mem: &M,
        pages: &S,
        slot: usize,
        gfp: GfpFlags,
        orig_size: usize,
    ) -> u64 {
        let slot = slot & (MAX_CACHES - 1);
        let cpu = self.smp_processor_id();
        let cc = self.pcpu[cpu].slabs[slot];
        let c = &mut self.caches[slot];
        // The common case, kept lean: a plain cache whose CPU slab (if any)
        // ran out, and a partial slab waiting. Its callers pop first: the
        // free list is empty.
        debug_assert_eq!(cc.freelist, 0);
        if c.is_debug() || c.node.partial.head == NIL {
            return self.___slab_alloc_other(mem, pages, slot, gfp, orig_size);
        }
        if cc.slab != 0 {
            // Every object handed out: the slab's overlay entry already says
            // so (no free list, all in use: how it was frozen), so it only
            // moves to the full count (cf. deactivate_slab()'s
            // M_FULL_NOLIST).
            c.node.list_inuse += c.objects as u64;
            c.node.full.nr += 1;
            self.metas[cc.slab_pfn() as usize].prev = NIL;
        }
        let pfn = c.node.partial.pop(&mut self.metas);
        self.freeze_slab(mem, slot, cpu, pfn, gfp)
    }

    /// The rest of [`Self::___slab_alloc`]: a debug cache (one checked
    /// object from the lists), a CPU slab to deactivate that still has free
    /// objects (a caller other than the fast path), or no partial slab: an
    /// empty one, else a new one (cf. `new_slab()`).
    #[cold]
    #[inline(never)]
    fn ___slab_alloc_other<M: ObjectMemory, S: PageSource + ?Sized>(
        &mut self,
        mem: &M,
        pages: &S,
        slot: usize,
        gfp: GfpFlags,
        orig_size: usize,
    ) -> u64 {
        let slot = slot & (MAX_CACHES - 1);
        if self.caches[slot].is_debug() {
            return self
                .alloc_debug(mem, pages, slot, gfp, orig_size)
                .unwrap_or(0);
        }
        let cpu = self.smp_processor_id();
        let cc = self.pcpu[cpu].slabs[slot];
        let c = &mut self.caches[slot];
        if cc.slab != 0 && cc.freelist == 0 {
            // As in ___slab_alloc(): full, and its overlay entry says so.
            c.node.list_inuse += c.objects as u64;
            c.node.full.nr += 1;
            self.metas[cc.slab_pfn() as usize].prev = NIL;
            self.pcpu[cpu].slabs[slot].take_slab();
        } else {
            self.deactivate_slab(mem, pages, cpu, slot);
        }
        let c = &mut self.caches[slot];
        let pfn = if c.node.partial.head != NIL {
            c.node.partial.pop(&mut self.metas)
        } else if c.node.empty.head != NIL {
            c.node.empty.pop(&mut self.metas)
        } else {
            match self.new_slab(mem, pages, slot, gfp) {
                Ok(pfn) => pfn,
                Err(_) => return 0,
            }
        };
        self.freeze_slab(mem, slot, cpu, pfn, gfp)
    }

    /// Freeze slab `pfn` (off every list, with a free object) as CPU
    /// `cpu`'s slab of cache `slot`, taking its whole free list (cf.
    /// `get_freelist()`), and hand out its first object.
    #[inline(always)]
    fn freeze_slab<M: ObjectMemory>(
        &mut self,
        mem: &M,
        slot: usize,
        cpu: usize,
        pfn: u32,
        gfp: GfpFlags,
    ) -> u64 {
        let slot = slot & (MAX_CACHES - 1);
        let c = &mut self.caches[slot];
        let Some(m) = self.metas.get_mut(pfn as usize) else {
            unreachable!("slab {pfn} outside the overlay")
        };
        let base = slab_va(pfn);
        let obj = base + m.freelist as u64;
        let cc = &mut self.pcpu[cpu].slabs[slot];
        cc.freelist = mem.read_u64(obj + c.offset as u64);
        cc.slab = base;
        cc.objs_end = c.objs_end;
        cc.pfn = pfn;
        c.node.list_inuse -= m.inuse as u64;
        m.freelist = NIL;
        m.inuse = c.objects as u16;
        m.prev = FROZEN;
        if gfp.contains(GfpFlags::ZERO) {
            mem.fill(obj, c.object_size as usize, 0);
        }
        obj
    }

    /// A slab with a free object, on its list: the first partial one, else
    /// an empty one, else a new one (cf. `get_partial()` + `new_slab()`).
    pub(super) fn get_slab<M: ObjectMemory, S: PageSource + ?Sized>(
        &mut self,
        mem: &M,
        pages: &S,
        slot: usize,
        gfp: GfpFlags,
    ) -> Result<u32, SlabError> {
        let c = &self.caches[slot];
        if c.node.partial.head != NIL {
            return Ok(c.node.partial.head);
        }
        if c.node.empty.head != NIL {
            return Ok(c.node.empty.head);
        }
        let pfn = self.new_slab(mem, pages, slot, gfp)?;
        self.caches[slot].node.empty.push(&mut self.metas, pfn);
        Ok(pfn)
    }

    // ------------------------------------------------------------------
    // Deactivation and flushing
    // ------------------------------------------------------------------

    /// cf. `deactivate_slab()` (with `flush_slab()`'s taking the slab away
    /// from the CPU): unfreeze CPU `cpu`'s slab of cache `slot` — its free
    /// list goes back to the overlay, its count (`objects` less the list's
    /// length, walked: the fast paths keep no count) to the list counters —
    /// and put it where its state says: the full count, the head of the
    /// partial list, the empty list, or back to the buddy allocator when
    /// that already holds [`SLAB_EMPTY_RESERVE`] slabs (cf. `M_FREE`).
    /// No-op without a CPU slab. The CPU's free list is a proper list of
    /// the slab's free objects (the free fast path keeps it so), so unlike
    /// Linux there is nothing to splice: the head becomes the slab's. A
    /// corrupt list is cut where the walk found it broken, and reported
    /// ([`Self::cpu_freelist_corrupt`]).
    #[inline(never)]
    pub(crate) fn deactivate_slab<M: ObjectMemory + ?Sized, S: PageSource + ?Sized>(
        &mut self,
        mem: &M,
        pages: &S,
        cpu: usize,
        slot: usize,
    ) {
        let cc = self.pcpu[cpu].slabs[slot].take_slab();
        if cc.slab == 0 {
            return;
        }
        let objects = self.caches[slot].objects;
        let walk = cc.walk_freelist(mem, objects);
        let head = match walk.bad {
            None => cc.freelist,
            Some(bad) => self.cpu_freelist_corrupt(mem, slot, &cc, bad),
        };
        let inuse = objects - walk.free;
        let pfn = cc.slab_pfn();
        let c = &mut self.caches[slot];
        let m = &mut self.metas[pfn as usize];
        m.freelist = if head == 0 {
            NIL
        } else {
            (head - cc.slab) as u32
        };
        m.inuse = inuse as u16;
        c.node.list_inuse += inuse as u64;
        match list_kind(m) {
            ListKind::Empty if c.node.empty.nr >= SLAB_EMPTY_RESERVE => {
                self.discard_slab(pages, slot, pfn)
            }
            kind => c.node.list_push(&mut self.metas, kind, pfn),
        }
    }

    /// A CPU free list the walk of [`KmemCacheCpu::walk_freelist`] found
    /// broken at `bad`, as `on_freelist()` fixes one: a free pointer that
    /// leads off the slab's objects is cleared, so the list ends at `bad`
    /// ("Freechain corrupt"); a list whose head is no object, or that is
    /// longer than the slab (a cycle), is dropped whole (`bad` 0:
    /// "Freepointer corrupt", "Freelist cleared"). The objects cut off
    /// count as in use from then on (Linux: "Object count adjusted"), as
    /// the views counted them already; the corruption is counted and
    /// reported. Returns the list's head after the fix (0: none).
    #[cold]
    #[inline(never)]
    fn cpu_freelist_corrupt<M: ObjectMemory + ?Sized>(
        &mut self,
        mem: &M,
        slot: usize,
        cc: &KmemCacheCpu,
        bad: u64,
    ) -> u64 {
        let offset = cc.offset;
        if bad == 0 {
            self.corrupt(slot, CorruptionKind::FreePointer, cc.freelist, Some(offset));
            return 0;
        }
        mem.write_u64(bad + u64::from(offset), 0);
        self.corrupt(slot, CorruptionKind::FreePointer, bad, Some(offset));
        cc.freelist
    }

    /// cf. `flush_all()`: deactivate every CPU's slab of cache `slot`, so
    /// that every slab of the cache is on a list (or counted full). What a
    /// shrink and `kmem_cache_destroy` do first; the free lists stay intact,
    /// so nothing is lost but the fast path's next hit.
    pub(crate) fn flush_all<M: ObjectMemory + ?Sized, S: PageSource + ?Sized>(
        &mut self,
        mem: &M,
        pages: &S,
        slot: usize,
    ) {
        for cpu in 0..NR_CPUS {
            self.deactivate_slab(mem, pages, cpu, slot);
        }
    }

    /// Every CPU slab of cache `slot`: `(cpu, its kmem_cache_cpu)`.
    pub(crate) fn cpu_slabs(&self, slot: usize) -> impl Iterator<Item = (usize, &KmemCacheCpu)> {
        self.pcpu
            .iter()
            .map(move |pc| &pc.slabs[slot & (MAX_CACHES - 1)])
            .enumerate()
            .filter(|(_, cc)| cc.slab != 0)
    }

    /// Objects of CPU slab `cc` of cache `slot` in use (handed out or
    /// quarantined): `objects` less its free list's length, walked (see
    /// the module docs, "Exact counts"). Exclusive side only.
    pub(crate) fn cpu_slab_inuse<M: ObjectMemory + ?Sized>(
        &self,
        mem: &M,
        slot: usize,
        cc: &KmemCacheCpu,
    ) -> u32 {
        let objects = self.caches[slot & (MAX_CACHES - 1)].objects;
        objects - cc.walk_freelist(mem, objects).free
    }

    /// Objects of cache `slot` in use: on listed slabs plus on CPU slabs.
    pub(crate) fn active_objs<M: ObjectMemory + ?Sized>(&self, mem: &M, slot: usize) -> u64 {
        let cpu: u64 = self
            .cpu_slabs(slot)
            .map(|(_, cc)| u64::from(self.cpu_slab_inuse(mem, slot, cc)))
            .sum();
        self.caches[slot].node.list_inuse + cpu
    }

    /// Whether head frame `pfn` is a CPU slab of cache `slot`.
    pub(crate) fn is_cpu_slab(&self, slot: usize, pfn: u32) -> bool {
        self.cpu_slabs(slot).any(|(_, cc)| cc.slab == slab_va(pfn))
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

    /// The free fast path (cf. `slab_free()` → `do_slab_free()`): an object
    /// of this CPU's slab of the cache `kmem_cache_free` names — for
    /// `kfree` (`expect` `None`), of the cache this CPU used last — is
    /// pushed onto the CPU's free list.
    ///
    /// Why a hint: Linux's `do_slab_free()` first finds the cache from the
    /// object (`virt_to_slab()` → `slab->slab_cache`), so the addresses of
    /// its two stores (the object's free pointer, `c->freelist`) wait for
    /// that load, and the next allocation's load of `c->freelist` waits
    /// for them: a chain of dependent loads through every `kfree`. Here
    /// the cache comes from the hint, which does not depend on the object,
    /// and the object is checked to lie on that cache's CPU slab, at an
    /// object start, with plain arithmetic — which proves it is that
    /// cache's object. Anything else (another cache, another slab, a bad
    /// pointer) goes the general way, [`Self::slab_free_lookup`].
    #[inline(always)]
    pub(crate) fn slab_free<M: ObjectMemory, S: PageSource + ?Sized>(
        &mut self,
        mem: &M,
        pages: &S,
        addr: u64,
        expect: Option<CacheId>,
    ) -> Result<(), Corruption> {
        let cpu_id = self.smp_processor_id();
        let pc = &mut *self.pcpu[cpu_id];
        let hint = match expect {
            Some(e) => e.slot as usize,
            None => pc.hint as usize,
        } & (MAX_CACHES - 1);
        let cpu = &mut pc.slabs[hint];
        // Wraps to a huge offset below the slab, or without a CPU slab.
        let off = addr.wrapping_sub(cpu.slab);
        let head = cpu.freelist;
        if cpu.is_object_offset(off)
            && head != addr
            && expect.is_none_or(|e| e.generation == self.caches[hint].generation)
        {
            set_freepointer_fast(mem, addr + cpu.offset as u64, head);
            cpu.freelist = addr;
            return Ok(());
        }
        // `kfree(NULL)` and `kfree(ZERO_SIZE_PTR)` are no-ops (cf.
        // `ZERO_OR_NULL_PTR()`), tested here rather than first: no such
        // address passes the test above (a CPU's bound is 0 without a slab,
        // and a slab lies far above them), so a pair does not pay for it.
        if expect.is_none() && addr <= crate::kmalloc::ZERO_SIZE_PTR {
            return Ok(());
        }
        self.slab_free_lookup(mem, pages, addr, expect)
    }

    /// The general free (cf. `kfree()` → `virt_to_slab()` →
    /// `do_slab_free()`): address → overlay entry → cache; an object start
    /// of a plain cache's slab (and of the cache `kmem_cache_free` named) is
    /// pushed onto this CPU's free list if the slab is this CPU's, else
    /// goes to [`Self::__slab_free`]. The cache becomes this CPU's hint, so
    /// a run of frees to one cache takes the fast path. Anything odd — no
    /// slab, another cache, not an object start, a debug cache — goes to
    /// [`Self::slab_free_odd`]. Inlined into `kfree` (see the module docs).
    #[inline(always)]
    fn slab_free_lookup<M: ObjectMemory, S: PageSource + ?Sized>(
        &mut self,
        mem: &M,
        pages: &S,
        addr: u64,
        expect: Option<CacheId>,
    ) -> Result<(), Corruption> {
        let pfn = (addr.wrapping_sub(PAGE_OFFSET) >> PAGE_SHIFT) as usize;
        let slot = self
            .metas
            .get(pfn)
            .map_or(usize::MAX, |m| (m.cache as usize).wrapping_sub(1));
        let Some(c) = self.caches.get_mut(slot) else {
            return self.slab_free_odd(mem, pages, addr, expect);
        };
        let off = addr & c.slab_mask;
        if !c.is_plain_object_offset(off)
            || expect.is_some_and(|e| e.slot as usize != slot || e.generation != c.generation)
        {
            return self.slab_free_odd(mem, pages, addr, expect);
        }
        let base = addr - off;
        let head = pfn & !(c.pfn_mask as usize);
        let cpu_id = self.smp_processor_id();
        self.pcpu[cpu_id].hint = CacheSlot::new(slot);
        // This CPU's slab; another CPU's frozen one is `__slab_free`'s to
        // find (its overlay entry says so).
        if base == self.pcpu[cpu_id].slabs[slot].slab {
            return self.free_to_cpu_slab(mem, slot, cpu_id, addr);
        }
        self.__slab_free(mem, pages, slot, head, base, addr)
    }

    /// Push `addr` onto CPU `cpu`'s free list of cache `slot`, whose slab
    /// it lies on (or report a double free of the list's head).
    #[inline(always)]
    fn free_to_cpu_slab<M: ObjectMemory>(
        &mut self,
        mem: &M,
        slot: usize,
        cpu: usize,
        addr: u64,
    ) -> Result<(), Corruption> {
        let slot = slot & (MAX_CACHES - 1);
        let cc = &mut self.pcpu[cpu & (NR_CPUS - 1)].slabs[slot];
        let offset = u64::from(cc.offset);
        let first = cc.freelist;
        if first == addr {
            return Err(self.double_free_cpu(mem, slot, cpu, addr));
        }
        mem.write_u64(addr + offset, first);
        cc.freelist = addr;
        Ok(())
    }

    /// A free into a slab another CPU has frozen (its overlay entry says
    /// so, cf. `slab->frozen`): only the exclusive side gets here, and the
    /// object goes back onto that CPU's free list (SLUB's remote free into
    /// a frozen slab, which Linux does with a cmpxchg on the slab's free
    /// list). A free into a listed slab — the common case with objects
    /// freed in random order — thus reads no other CPU's slot.
    #[cold]
    #[inline(never)]
    fn free_to_frozen_slab<M: ObjectMemory>(
        &mut self,
        mem: &M,
        slot: usize,
        base: u64,
        addr: u64,
    ) -> Result<(), Corruption> {
        let slot = slot & (MAX_CACHES - 1);
        match (0..NR_CPUS).find(|&k| self.pcpu[k].slabs[slot].slab == base) {
            Some(k) => self.free_to_cpu_slab(mem, slot, k, addr),
            None => unreachable!("slab {base:#x} marked frozen but no CPU's"),
        }
    }

    /// The frees [`Self::slab_free_lookup`] sets aside, each checked in
    /// `kfree()`'s order: an address in no slab (a `kmalloc_large` block,
    /// or an invalid free), the wrong cache for `kmem_cache_free` (cf.
    /// `cache_from_obj()`), not an object start, or an object of a debug
    /// cache (cf. `free_debug_processing()`).
    #[cold]
    #[inline(never)]
    fn slab_free_odd<M: ObjectMemory, S: PageSource + ?Sized>(
        &mut self,
        mem: &M,
        pages: &S,
        addr: u64,
        expect: Option<CacheId>,
    ) -> Result<(), Corruption> {
        let pfn = (addr.wrapping_sub(PAGE_OFFSET) >> PAGE_SHIFT) as usize;
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
        let c = &self.caches[slot];
        if !c.is_object_offset(addr & c.slab_mask) {
            let kind = CorruptionKind::InvalidFree(InvalidFreeKind::NotObjectStart);
            return Err(self.corrupt(slot, kind, addr, None));
        }
        // A debug cache: it has no CPU slab; every free is checked.
        let head = (pfn & !(c.pfn_mask as usize)) as u32;
        self.slab_free_checked(mem, pages, slot, head, addr)
    }

    /// `addr` heads this CPU's free list of cache `slot`: freeing it again
    /// is a double free (cf. `set_freepointer()`'s `BUG_ON(object == fp)`).
    /// Pop it and keep it out of circulation.
    #[cold]
    #[inline(never)]
    fn double_free_cpu<M: ObjectMemory>(
        &mut self,
        mem: &M,
        slot: usize,
        cpu: usize,
        addr: u64,
    ) -> Corruption {
        let slot = slot & (MAX_CACHES - 1);
        let c = &mut self.caches[slot];
        let cc = &mut self.pcpu[cpu & (NR_CPUS - 1)].slabs[slot];
        cc.freelist = mem.read_u64(addr + c.offset as u64);
        c.quarantined += 1;
        self.corrupt(slot, CorruptionKind::DoubleFree, addr, None)
    }

    /// cf. `__slab_free()`: a free into slab `head` (no CPU's, its first
    /// byte at `base`) of plain cache `slot`. Push onto the slab's own free list; its list changes
    /// only on full → partial (to the tail, as `__slab_free()` does without
    /// CPU partial lists: the slab then collects more frees before it is
    /// frozen again) and partial → empty (to the empty list, or back to the
    /// buddy allocator past the reserve). The double frees this path can
    /// see — the object heads its slab's free list, or the slab is empty
    /// already — go on to [`Self::slab_free_checked`].
    #[inline(always)]
    fn __slab_free<M: ObjectMemory, S: PageSource + ?Sized>(
        &mut self,
        mem: &M,
        pages: &S,
        slot: usize,
        head: usize,
        base: u64,
        addr: u64,
    ) -> Result<(), Corruption> {
        let slot = slot & (MAX_CACHES - 1);
        let c = &mut self.caches[slot];
        debug_assert!(!c.is_debug() && base == slab_va(head as u32));
        let m = &mut self.metas[head];
        if m.prev == FROZEN {
            return self.free_to_frozen_slab(mem, slot, base, addr);
        }
        let prior = m.freelist;
        let off = (addr - base) as u32;
        // One test for the rare cases: a double free (the object heads the
        // free list — NIL is no offset — or the slab is empty already) and
        // the last object of the slab coming back (a list move).
        if prior == off || m.inuse <= 1 {
            return self.__slab_free_last(mem, pages, slot, head, base, addr);
        }
        let prior_va = if prior == NIL { 0 } else { base + prior as u64 };
        mem.write_u64(addr + c.offset as u64, prior_va);
        m.freelist = off;
        m.inuse -= 1;
        c.node.list_inuse -= 1;
        // Full → partial (to the tail, see above), or nothing: with objects
        // freed in random order both are common and a branch on which one
        // mispredicts half the time. So both run the same stores: into the
        // slab's entry and the old tail's link when the slab moves, into
        // `self.sink` (a scratch entry never read) when it does not.
        let to_partial = prior == NIL;
        use core::hint::select_unpredictable as pick;
        let pfn = head as u32;
        let tail = c.node.partial.tail;
        let e = pick(to_partial, m, &mut self.sink);
        e.prev = tail;
        e.next = NIL;
        c.node.partial.tail = pick(to_partial, pfn, tail);
        c.node.partial.nr += to_partial as u32;
        c.node.full.nr -= to_partial as u32;
        // The old tail's link to the slab, or the list head if the list
        // was empty (rare under churn): NIL when the slab does not move,
        // which it is already (a tail has no next; an empty list no head).
        let link = pick(to_partial, pfn, NIL);
        if tail != NIL {
            self.metas[tail as usize].next = link;
        } else {
            c.node.partial.head = link;
        }
        Ok(())
    }

    /// [`Self::__slab_free`]'s rare cases, out of line: a double free goes
    /// on to [`Self::slab_free_checked`]; the slab's last object in use is
    /// pushed and the slab, empty now, moves ([`Self::slab_free_relist`]).
    #[cold]
    #[inline(never)]
    fn __slab_free_last<M: ObjectMemory, S: PageSource + ?Sized>(
        &mut self,
        mem: &M,
        pages: &S,
        slot: usize,
        head: usize,
        base: u64,
        addr: u64,
    ) -> Result<(), Corruption> {
        let slot = slot & (MAX_CACHES - 1);
        let c = &mut self.caches[slot];
        let m = &mut self.metas[head];
        let prior = m.freelist;
        let prior_va = if prior == NIL { 0 } else { base + prior as u64 };
        if prior_va == addr || m.inuse == 0 {
            return self.slab_free_checked(mem, pages, slot, head as u32, addr);
        }
        debug_assert_eq!(m.inuse, 1);
        mem.write_u64(addr + c.offset as u64, prior_va);
        m.freelist = (addr - base) as u32;
        m.inuse = 0;
        c.node.list_inuse -= 1;
        self.slab_free_relist(pages, slot, head as u32, prior == NIL);
        Ok(())
    }

    /// The rarer list moves at the end of `__slab_free()`, out of line so
    /// that the common cases keep few registers: a slab that is empty now
    /// leaves the partial list (or the full count, if it `was_full` with
    /// one object) for the empty list, or goes back to the buddy allocator
    /// past the reserve (cf. `slab_empty:` → `discard_slab()`).
    #[inline(never)]
    fn slab_free_relist<S: PageSource + ?Sized>(
        &mut self,
        pages: &S,
        slot: usize,
        head: u32,
        was_full: bool,
    ) {
        let slot = slot & (MAX_CACHES - 1);
        let c = &mut self.caches[slot];
        let metas = &mut *self.metas;
        if was_full {
            c.node.full.nr -= 1;
        } else {
            c.node.partial.remove(metas, head);
        }
        if metas[head as usize].inuse != 0 {
            c.node.partial.push_tail(metas, head);
        } else if c.node.empty.nr < SLAB_EMPTY_RESERVE {
            c.node.empty.push(metas, head);
        } else {
            self.discard_slab(pages, slot, head);
        }
    }

    /// The general `__slab_free()` with `free_debug_processing()`: a free
    /// to a debug cache, or a double free into a slab that is no CPU's (of
    /// its free list's head, or into an empty slab).
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
        let before = list_kind(&self.metas[head as usize]);
        if self.caches[slot].is_debug() {
            if let Err(e) = self.free_debug_checks(mem, pages, slot, head, addr) {
                self.relist(pages, slot, head, before);
                return Err(e);
            }
        } else {
            // In an empty slab every object is on the free list: the walk in
            // quarantine_free_object() finds this one wherever it is.
            let m = &self.metas[head as usize];
            let heads_list = m.freelist != NIL && slab_va(head) + m.freelist as u64 == addr;
            if heads_list || m.inuse == 0 {
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
        c.node.list_inuse -= 1;
        self.relist(pages, slot, head, before);
        Ok(())
    }

    /// Take the free object `addr` off its (non-CPU) slab's free list and
    /// count it in use and quarantined.
    pub(super) fn quarantine_free_object<M: ObjectMemory>(
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
        c.node.list_inuse += 1;
        c.quarantined += 1;
    }
}
