//! What the slab layer shows: `/api/slabinfo` records, `/proc/slabinfo`
//! 2.1 text (cf. `slabinfo_show()` in `mm/slab_common.c`), slab page totals
//! for `/proc/meminfo`, and a full recount of every counter against the
//! structures (cf. `validate_slab_cache()`), for tests and the selftest.

use core::fmt;

use super::{
    CacheId, CacheKind, CacheName, CorruptionCounts, KmemCache, ListKind, MAX_CACHES,
    META_LARGE_HEAD, META_LARGE_TAIL, NIL, ObjectMemory, SlabAllocator, SlabFlags, SlabList,
    list_kind, slab_va,
};

/// One cache as `/api/slabinfo` shows it (API.md `Cache`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheInfo {
    /// Handle.
    pub id: CacheId,
    /// Name.
    pub name: CacheName,
    /// Bytes usable per object (`object_size`).
    pub object_size: u32,
    /// Object stride with metadata and padding (`size`, slabinfo's
    /// `<objsize>`).
    pub size: u32,
    /// Object alignment.
    pub align: u32,
    /// Objects per slab.
    pub objs_per_slab: u32,
    /// Frames per slab.
    pub pages_per_slab: u32,
    /// Objects allocated (quarantined ones included).
    pub active_objs: u64,
    /// Object capacity of all slabs.
    pub num_objs: u64,
    /// Slabs with at least one object in use.
    pub active_slabs: u64,
    /// Slabs owned.
    pub num_slabs: u64,
    /// Slabs with every object in use.
    pub slabs_full: u64,
    /// Slabs with some objects in use.
    pub slabs_partial: u64,
    /// Slabs with none in use (kept as a reserve).
    pub slabs_empty: u64,
    /// Creation flags.
    pub flags: SlabFlags,
    /// Who created it.
    pub kind: CacheKind,
    /// Detected corruptions, by kind.
    pub corruption: CorruptionCounts,
    /// Objects taken out of circulation after a corruption.
    pub quarantined: u64,
}

/// A counter or structure that disagrees with a recount.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlabCheckError {
    /// The cache concerned (`"-"` for kmalloc_large bookkeeping).
    pub cache: CacheName,
    /// What disagrees.
    pub what: &'static str,
}

impl fmt::Display for SlabCheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.cache, self.what)
    }
}

impl SlabAllocator<'_> {
    fn info_slot(&self, slot: usize) -> CacheInfo {
        let c = &self.caches[slot];
        let (mut full, mut partial, mut empty) =
            (c.full.nr as u64, c.partial.nr as u64, c.empty.nr as u64);
        if c.cpu_slab != NIL {
            match c.cpu_inuse {
                0 => empty += 1,
                n if n == c.objects => full += 1,
                _ => partial += 1,
            }
        }
        CacheInfo {
            id: self.id_of(slot),
            name: c.name,
            object_size: c.object_size,
            size: c.size,
            align: c.align,
            objs_per_slab: c.objects,
            pages_per_slab: 1 << c.order,
            active_objs: c.active_objs(),
            num_objs: c.nr_slabs * c.objects as u64,
            active_slabs: full + partial,
            num_slabs: c.nr_slabs,
            slabs_full: full,
            slabs_partial: partial,
            slabs_empty: empty,
            flags: c.flags,
            kind: c.kind,
            corruption: c.errors,
            quarantined: c.quarantined,
        }
    }

    /// One cache's record.
    pub fn cache_info(&self, id: CacheId) -> Option<CacheInfo> {
        self.resolve(id).ok().map(|slot| self.info_slot(slot))
    }

    /// Every live cache, newest first (the order Linux's `/proc/slabinfo`
    /// walks `slab_caches` in: user caches on top, `kmalloc-8` last).
    pub fn caches(&self) -> impl Iterator<Item = CacheInfo> + '_ {
        let mut order = [0u8; MAX_CACHES];
        let mut n = 0;
        for (slot, c) in self.caches.iter().enumerate() {
            if c.live {
                // Insertion by descending creation sequence.
                let mut i = n;
                while i > 0 && self.caches[order[i - 1] as usize].seq < c.seq {
                    order[i] = order[i - 1];
                    i -= 1;
                }
                order[i] = slot as u8;
                n += 1;
            }
        }
        (0..n).map(move |i| self.info_slot(order[i] as usize))
    }

    /// `/proc/slabinfo`, version 2.1, byte for byte in Linux's format
    /// (`print_slabinfo_header()` + `cache_show()`); SLUB has no tunables,
    /// so those columns are 0.
    pub fn slabinfo(&self, w: &mut impl fmt::Write) -> fmt::Result {
        w.write_str("slabinfo - version: 2.1\n")?;
        w.write_str(
            "# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> \
             : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>\n",
        )?;
        for c in self.caches() {
            // "%-17s %6lu %6lu %6u %4u %4d : tunables %4u %4u %4u : slabdata %6lu %6lu %6lu\n"
            writeln!(
                w,
                "{:<17} {:>6} {:>6} {:>6} {:>4} {:>4} : tunables {:>4} {:>4} {:>4} : slabdata {:>6} {:>6} {:>6}",
                c.name,
                c.active_objs,
                c.num_objs,
                c.size,
                c.objs_per_slab,
                c.pages_per_slab,
                0,
                0,
                0,
                c.active_slabs,
                c.num_slabs,
                0
            )?;
        }
        Ok(())
    }

    /// Frames held by slabs plus `kmalloc_large` blocks: `/proc/meminfo`'s
    /// `Slab` (all `SUnreclaim`; Linux accounts large kmallocs there too).
    pub fn slab_pages(&self) -> u64 {
        let slabs: u64 = self
            .caches
            .iter()
            .filter(|c| c.live)
            .map(|c| c.nr_slabs << c.order)
            .sum();
        slabs + self.large_pages
    }

    /// Live `kmalloc_large` blocks and the frames they hold.
    pub fn large_stats(&self) -> (u64, u64) {
        (self.large_allocs, self.large_pages)
    }

    /// Invalid frees of addresses that belong to no cache.
    pub fn stray_frees(&self) -> u64 {
        self.stray_frees
    }

    /// Recount everything: list links and membership, each slab's free list
    /// (bounded walk, every pointer an object start of its slab, length =
    /// objects − inuse), the active slab, `nr_slabs`, `list_inuse`, the
    /// overlay's frame labels, and the `kmalloc_large` totals. O(lowmem +
    /// objects); for tests and the selftest.
    pub fn check_invariants<M: ObjectMemory>(&self, mem: &M) -> Result<(), SlabCheckError> {
        let mut frames = [0u64; MAX_CACHES];
        // Full slabs are not linked: found here as the head frames of the
        // cache that are neither active nor on a list (unlinked, state full).
        let mut full_slabs = [0u64; MAX_CACHES];
        let mut full_inuse = [0u64; MAX_CACHES];
        let (mut large_heads, mut large_frames) = (0u64, 0u64);
        for (pfn, m) in self.metas.iter().enumerate() {
            match m.cache {
                0 => {}
                META_LARGE_HEAD => {
                    large_heads += 1;
                    large_frames += 1;
                }
                META_LARGE_TAIL => large_frames += 1,
                id if (id as usize) <= MAX_CACHES => {
                    let slot = id as usize - 1;
                    frames[slot] += 1;
                    let c = &self.caches[slot];
                    if pfn as u32 & c.pfn_mask == 0
                        && pfn as u32 != c.cpu_slab
                        && list_kind(m) == ListKind::Full
                    {
                        if m.prev != NIL || m.next != NIL {
                            return Err(self.check_err(Some(slot), "full slab is linked"));
                        }
                        if m.inuse as u32 != c.objects {
                            return Err(self.check_err(Some(slot), "full slab with free objects"));
                        }
                        full_slabs[slot] += 1;
                        full_inuse[slot] += m.inuse as u64;
                    }
                }
                _ => return Err(self.check_err(None, "frame labelled with an impossible cache")),
            }
        }
        if large_heads != self.large_allocs || large_frames != self.large_pages {
            return Err(
                self.check_err(None, "kmalloc_large counters do not match the frame labels")
            );
        }
        for (slot, c) in self.caches.iter().enumerate() {
            if !c.live {
                if frames[slot] != 0 {
                    return Err(self.check_err(Some(slot), "frames labelled with a dead cache"));
                }
                continue;
            }
            if c.full.head != NIL || c.full.tail != NIL || full_slabs[slot] != c.full.nr as u64 {
                return Err(self.check_err(Some(slot), "full slab count does not match the slabs"));
            }
            let mut inuse = full_inuse[slot];
            for (list, kind) in [(&c.partial, ListKind::Partial), (&c.empty, ListKind::Empty)] {
                inuse += self.check_list(slot, c, list, kind, mem)?;
            }
            if inuse != c.list_inuse {
                return Err(self.check_err(Some(slot), "list_inuse does not match the slabs"));
            }
            let mut nr_slabs = (c.full.nr + c.partial.nr + c.empty.nr) as u64;
            if c.cpu_slab != NIL {
                nr_slabs += 1;
                self.check_slab_frames(slot, c, c.cpu_slab)?;
                let m = &self.metas[c.cpu_slab as usize];
                if m.prev != NIL || m.next != NIL {
                    return Err(self.check_err(Some(slot), "active slab is linked on a list"));
                }
                let free = if c.freelist == 0 {
                    0
                } else {
                    self.count_free(slot, c, c.cpu_slab, c.freelist - slab_va(c.cpu_slab), mem)?
                };
                if free + c.cpu_inuse as u64 != c.objects as u64 {
                    return Err(self
                        .check_err(Some(slot), "active free list length != objects - cpu_inuse"));
                }
            } else if c.freelist != 0 || c.cpu_inuse != 0 {
                return Err(self.check_err(Some(slot), "free list without an active slab"));
            }
            if nr_slabs != c.nr_slabs {
                return Err(self.check_err(Some(slot), "nr_slabs does not match the lists"));
            }
            if frames[slot] != c.nr_slabs << c.order {
                return Err(self.check_err(Some(slot), "frame labels do not match nr_slabs"));
            }
            if c.quarantined > c.active_objs() {
                return Err(self.check_err(Some(slot), "more quarantined than allocated objects"));
            }
        }
        Ok(())
    }

    fn check_err(&self, slot: Option<usize>, what: &'static str) -> SlabCheckError {
        let cache = match slot {
            Some(s) => self.caches[s].name,
            None => CacheName::new("-").unwrap_or(self.caches[0].name),
        };
        SlabCheckError { cache, what }
    }

    fn check_list<M: ObjectMemory>(
        &self,
        slot: usize,
        c: &KmemCache,
        list: &SlabList,
        kind: ListKind,
        mem: &M,
    ) -> Result<u64, SlabCheckError> {
        let mut inuse = 0;
        let mut prev = NIL;
        let mut cur = list.head;
        let mut n = 0;
        while cur != NIL {
            if n >= list.nr {
                return Err(
                    self.check_err(Some(slot), "slab list longer than its count (or cyclic)")
                );
            }
            self.check_slab_frames(slot, c, cur)?;
            let m = &self.metas[cur as usize];
            if m.prev != prev {
                return Err(self.check_err(Some(slot), "slab list back link broken"));
            }
            if list_kind(m) != kind {
                return Err(self.check_err(Some(slot), "slab on the wrong list for its state"));
            }
            let free = if m.freelist == NIL {
                0
            } else {
                self.count_free(slot, c, cur, m.freelist as u64, mem)?
            };
            if free + m.inuse as u64 != c.objects as u64 {
                return Err(self.check_err(Some(slot), "free list length != objects - inuse"));
            }
            inuse += m.inuse as u64;
            prev = cur;
            cur = m.next;
            n += 1;
        }
        if n != list.nr {
            return Err(self.check_err(Some(slot), "slab list shorter than its count"));
        }
        if list.tail != prev {
            return Err(self.check_err(Some(slot), "slab list tail is not its last slab"));
        }
        Ok(inuse)
    }

    fn check_slab_frames(
        &self,
        slot: usize,
        c: &KmemCache,
        pfn: u32,
    ) -> Result<(), SlabCheckError> {
        if pfn & c.pfn_mask != 0 {
            return Err(self.check_err(Some(slot), "slab not aligned to its order"));
        }
        let nr = 1usize << c.order;
        let frames = self.metas.get(pfn as usize..pfn as usize + nr);
        if !frames.is_some_and(|f| f.iter().all(|m| m.cache as usize == slot + 1)) {
            return Err(self.check_err(Some(slot), "slab frame not labelled with its cache"));
        }
        Ok(())
    }

    /// Length of a free list starting at slab offset `first`.
    fn count_free<M: ObjectMemory>(
        &self,
        slot: usize,
        c: &KmemCache,
        pfn: u32,
        first: u64,
        mem: &M,
    ) -> Result<u64, SlabCheckError> {
        let base = slab_va(pfn);
        let mut off = first;
        let mut n = 0u64;
        loop {
            if off >= c.objs_end as u64 || !off.is_multiple_of(c.size as u64) {
                return Err(self.check_err(Some(slot), "free pointer off an object boundary"));
            }
            n += 1;
            if n > c.objects as u64 {
                return Err(self.check_err(Some(slot), "free list longer than the slab (cycle)"));
            }
            let next = mem.read_u64(base + off + c.offset as u64);
            if next == 0 {
                return Ok(n);
            }
            off = match next.checked_sub(base) {
                Some(o) => o,
                None => return Err(self.check_err(Some(slot), "free pointer outside its slab")),
            };
        }
    }
}
