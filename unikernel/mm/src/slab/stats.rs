//! What the slab layer shows: `/api/slabinfo` records, `/proc/slabinfo`
//! 2.1 text (cf. `slabinfo_show()` in `mm/slab_common.c`), slab page totals
//! for `/proc/meminfo`, and a full recount of every counter against the
//! structures (cf. `validate_slab_cache()`), for tests and the selftest.

use core::fmt;

use super::debug::check_free_object;
use super::{
    CacheId, CacheKind, CacheName, CorruptionCounts, CorruptionKind, FROZEN, KmemCache,
    KmemCacheCpu, ListKind, MAX_CACHES, META_LARGE_HEAD, META_LARGE_TAIL, NIL, ObjectMemory,
    SlabAllocator, SlabFlags, SlabList, list_kind, slab_va,
};
use crate::selfcheck::{Checked, Problem, SLAB};
use crate::types::{PAGE_OFFSET, PAGE_SIZE, Pfn};

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
    /// Cache `slot`'s record. Its CPU slabs' counts are walked (see
    /// `cpu.rs`, "Exact counts"): exclusive side only.
    fn info_slot<M: ObjectMemory + ?Sized>(&self, mem: &M, slot: usize) -> CacheInfo {
        let c = &self.caches[slot];
        let (mut full, mut partial, mut empty) = (
            c.node.full.nr as u64,
            c.node.partial.nr as u64,
            c.node.empty.nr as u64,
        );
        let mut active_objs = c.node.list_inuse;
        for (_, cc) in self.cpu_slabs(slot) {
            let inuse = self.cpu_slab_inuse(mem, slot, cc);
            active_objs += u64::from(inuse);
            match inuse {
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
            active_objs,
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
    pub fn cache_info<M: ObjectMemory + ?Sized>(&self, mem: &M, id: CacheId) -> Option<CacheInfo> {
        self.resolve(id).ok().map(|slot| self.info_slot(mem, slot))
    }

    /// Every live cache, newest first (the order Linux's `/proc/slabinfo`
    /// walks `slab_caches` in: user caches on top, `kmalloc-8` last).
    pub fn caches<'s, M: ObjectMemory + ?Sized>(
        &'s self,
        mem: &'s M,
    ) -> impl Iterator<Item = CacheInfo> + 's {
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
        (0..n).map(move |i| self.info_slot(mem, order[i] as usize))
    }

    /// `/proc/slabinfo`, version 2.1, byte for byte in Linux's format
    /// (`print_slabinfo_header()` + `cache_show()`); SLUB has no tunables,
    /// so those columns are 0.
    pub fn slabinfo<M: ObjectMemory + ?Sized>(
        &self,
        mem: &M,
        w: &mut impl fmt::Write,
    ) -> fmt::Result {
        w.write_str("slabinfo - version: 2.1\n")?;
        w.write_str(
            "# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> \
             : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>\n",
        )?;
        for c in self.caches(mem) {
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
    /// objects − inuse), every CPU slab, `nr_slabs`, `list_inuse`, the
    /// overlay's frame labels, the `kmalloc_large` totals, and the poison
    /// and red zone of every free object of a debug cache. O(lowmem +
    /// objects); for tests and the selftest. The first problem of
    /// `SlabAllocator::check_each`.
    pub fn check_invariants<M: ObjectMemory>(&self, mem: &M) -> Result<(), SlabCheckError> {
        let mut first = None;
        let dash = self.dash();
        self.check_each(
            mem,
            &mut |p| {
                first.get_or_insert(SlabCheckError {
                    cache: p.cache.unwrap_or(dash),
                    what: p.what,
                });
            },
            &mut Checked::default(),
        );
        first.map_or(Ok(()), Err)
    }

    /// The walk behind [`SlabAllocator::check_invariants`] (cf.
    /// `validate_slab_cache()` → `validate_slab()` → `check_object()`),
    /// reporting every problem with its cache and slab or object address,
    /// and counting what it walked.
    pub(crate) fn check_each<M: ObjectMemory>(
        &self,
        mem: &M,
        sink: &mut dyn FnMut(Problem),
        checked: &mut Checked,
    ) {
        let mut frames = [0u64; MAX_CACHES];
        // Full slabs are not linked: found here as the head frames of the
        // cache that are neither active nor on a list (unlinked, state full).
        let mut full_slabs = [0u64; MAX_CACHES];
        let mut full_inuse = [0u64; MAX_CACHES];
        let (mut large_heads, mut large_frames) = (0u64, 0u64);
        for (pfn, m) in self.metas.iter().enumerate() {
            let pfn = pfn as u32;
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
                    if pfn & c.pfn_mask == 0
                        && list_kind(m) == ListKind::Full
                        && !self.is_cpu_slab(slot, pfn)
                    {
                        if m.prev != NIL || m.next != NIL {
                            sink(self.problem(Some(slot), "full slab is linked", pfn));
                        }
                        if m.inuse as u32 != c.objects {
                            sink(self.problem(Some(slot), "full slab with free objects", pfn));
                        }
                        full_slabs[slot] += 1;
                        full_inuse[slot] += m.inuse as u64;
                    }
                }
                _ => sink(self.problem(None, "frame labelled with an impossible cache", pfn)),
            }
        }
        if large_heads != self.large_allocs || large_frames != self.large_pages {
            sink(Problem {
                cache: Some(self.dash()),
                ..Problem::new(
                    SLAB,
                    "kmalloc_large counters do not match the frame labels",
                    None,
                )
            });
        }
        for (slot, c) in self.caches.iter().enumerate() {
            let geometry = |cc: &KmemCacheCpu| (cc.div_magic, cc.offset, cc.objs_end);
            let want = |cc: &KmemCacheCpu| {
                let bound = if cc.slab != 0 { c.objs_end } else { 0 };
                (c.div_magic, c.offset, bound)
            };
            if self
                .pcpu
                .iter()
                .any(|pc| geometry(&pc.slabs[slot]) != want(&pc.slabs[slot]))
            {
                sink(cache_problem(c, "a CPU's geometry copy differs from the cache's"));
            }
            if !c.live {
                if frames[slot] != 0 {
                    sink(cache_problem(c, "frames labelled with a dead cache"));
                }
                continue;
            }
            checked.caches += 1;
            checked.slabs += c.nr_slabs;
            checked.objects += c.nr_slabs * c.objects as u64;
            if c.node.full.head != NIL
                || c.node.full.tail != NIL
                || full_slabs[slot] != c.node.full.nr as u64
            {
                sink(cache_problem(c, "full slab count does not match the slabs"));
            }
            let mut inuse = full_inuse[slot];
            for (list, kind) in [
                (&c.node.partial, ListKind::Partial),
                (&c.node.empty, ListKind::Empty),
            ] {
                inuse += self.check_list(slot, c, list, kind, mem, sink, checked);
            }
            if inuse != c.node.list_inuse {
                sink(cache_problem(c, "list_inuse does not match the slabs"));
            }
            let mut nr_slabs = (c.node.full.nr + c.node.partial.nr + c.node.empty.nr) as u64;
            for (cpu, cc) in self.cpu_slabs(slot) {
                nr_slabs += 1;
                self.check_cpu_slab(slot, c, cpu, cc, mem, sink, checked);
            }
            if nr_slabs != c.nr_slabs {
                sink(cache_problem(c, "nr_slabs does not match the lists"));
            }
            if frames[slot] != c.nr_slabs << c.order {
                sink(cache_problem(c, "frame labels do not match nr_slabs"));
            }
            if c.quarantined > self.active_objs(mem, slot) {
                sink(cache_problem(c, "more quarantined than allocated objects"));
            }
        }
    }

    /// Every frame the slab layer holds, in PFN order: `(pfn, is a
    /// kmalloc_large frame, cache of a slab frame)`.
    pub(crate) fn for_each_frame(&self, mut f: impl FnMut(Pfn, bool, Option<CacheName>)) {
        for (pfn, m) in self.metas.iter().enumerate() {
            let pfn = Pfn(pfn as u64);
            match m.cache {
                0 => {}
                META_LARGE_HEAD | META_LARGE_TAIL => f(pfn, true, None),
                id => f(pfn, false, self.caches.get(id as usize - 1).map(|c| c.name)),
            }
        }
    }

    /// The name of no cache, for kmalloc_large bookkeeping.
    fn dash(&self) -> CacheName {
        CacheName::new("-").unwrap_or(self.caches[0].name)
    }

    /// A problem of the slab at head frame `pfn` (its address).
    fn problem(&self, slot: Option<usize>, what: &'static str, pfn: u32) -> Problem {
        Problem {
            cache: Some(slot.map_or_else(|| self.dash(), |s| self.caches[s].name)),
            ..Problem::new(SLAB, what, Some(slab_va(pfn)))
        }
    }

    /// One CPU's slab of a cache (cf. what `validate_slab_cache()` sees
    /// after `flush_all()`, checked here without flushing): frames
    /// labelled, frozen (on no list; its overlay entry has no free list and
    /// counts every object in use), owned by no other CPU, not of a debug
    /// cache, and the CPU's free list a proper list of its slab (at most
    /// `objects` long: a cycle is reported).
    #[allow(clippy::too_many_arguments)]
    fn check_cpu_slab<M: ObjectMemory>(
        &self,
        slot: usize,
        c: &KmemCache,
        cpu: usize,
        cc: &KmemCacheCpu,
        mem: &M,
        sink: &mut dyn FnMut(Problem),
        checked: &mut Checked,
    ) {
        let off = cc.slab.wrapping_sub(PAGE_OFFSET);
        let pfn = cc.slab_pfn();
        if off & (PAGE_SIZE - 1) != 0 || pfn as usize >= self.metas.len() {
            sink(cache_problem(c, "CPU slab address is no slab").at(cc.slab));
            return;
        }
        self.check_slab_frames(slot, c, pfn, sink);
        let m = &self.metas[pfn as usize];
        if m.prev != FROZEN || m.next != NIL {
            sink(self.problem(
                Some(slot),
                "CPU slab is linked on a list or not marked frozen",
                pfn,
            ));
        }
        if m.freelist != NIL || m.inuse as u32 != c.objects {
            sink(self.problem(Some(slot), "CPU slab is not frozen", pfn));
        }
        if self
            .cpu_slabs(slot)
            .any(|(o, oc)| o != cpu && oc.slab == cc.slab)
        {
            sink(self.problem(Some(slot), "slab is two CPUs' slab", pfn));
        }
        if c.is_debug() {
            sink(self.problem(Some(slot), "debug cache with a CPU slab", pfn));
        }
        // Its length is what the counts are made of (`objects` less it:
        // the fast paths keep no count), so only its shape is checked.
        if cc.freelist != 0 {
            let first = cc.freelist.wrapping_sub(cc.slab);
            self.walk_free(slot, c, pfn, first, mem, sink, checked);
        }
    }

    /// Walks one cache list; returns the objects in use on it.
    #[allow(clippy::too_many_arguments)]
    fn check_list<M: ObjectMemory>(
        &self,
        slot: usize,
        c: &KmemCache,
        list: &SlabList,
        kind: ListKind,
        mem: &M,
        sink: &mut dyn FnMut(Problem),
        checked: &mut Checked,
    ) -> u64 {
        let mut inuse = 0;
        let mut prev = NIL;
        let mut cur = list.head;
        let mut n = 0;
        while cur != NIL {
            if n >= list.nr {
                let what = "slab list longer than its count (or cyclic)";
                sink(self.problem(Some(slot), what, cur));
                return inuse;
            }
            if (cur as usize) >= self.metas.len() {
                sink(self.problem(Some(slot), "slab list link past the overlay", cur));
                return inuse;
            }
            self.check_slab_frames(slot, c, cur, sink);
            let m = &self.metas[cur as usize];
            if m.prev != prev {
                sink(self.problem(Some(slot), "slab list back link broken", cur));
            }
            if list_kind(m) != kind {
                sink(self.problem(Some(slot), "slab on the wrong list for its state", cur));
            }
            let free = if m.freelist == NIL {
                Some(0)
            } else {
                self.walk_free(slot, c, cur, m.freelist as u64, mem, sink, checked)
            };
            if free.is_some_and(|f| f + m.inuse as u64 != c.objects as u64) {
                sink(self.problem(Some(slot), "free list length != objects - inuse", cur));
            }
            inuse += m.inuse as u64;
            prev = cur;
            cur = m.next;
            n += 1;
        }
        if n != list.nr {
            sink(self.problem(Some(slot), "slab list shorter than its count", prev));
        }
        if list.tail != prev {
            sink(self.problem(Some(slot), "slab list tail is not its last slab", list.tail));
        }
        inuse
    }

    fn check_slab_frames(
        &self,
        slot: usize,
        c: &KmemCache,
        pfn: u32,
        sink: &mut dyn FnMut(Problem),
    ) {
        if pfn & c.pfn_mask != 0 {
            sink(self.problem(Some(slot), "slab not aligned to its order", pfn));
        }
        let nr = 1usize << c.order;
        let frames = self.metas.get(pfn as usize..pfn as usize + nr);
        if !frames.is_some_and(|f| f.iter().all(|m| m.cache as usize == slot + 1)) {
            sink(self.problem(Some(slot), "slab frame not labelled with its cache", pfn));
        }
    }

    /// Walks a free list from slab offset `first` (cf. `on_freelist()`,
    /// bounded by the object count so a cycle ends it): every pointer an
    /// object start inside the slab, and in a debug cache every free
    /// object's poison and red zone intact (cf. `check_object(…,
    /// SLUB_RED_INACTIVE)`). Returns its length, `None` if it broke off.
    #[allow(clippy::too_many_arguments)]
    fn walk_free<M: ObjectMemory>(
        &self,
        slot: usize,
        c: &KmemCache,
        pfn: u32,
        first: u64,
        mem: &M,
        sink: &mut dyn FnMut(Problem),
        checked: &mut Checked,
    ) -> Option<u64> {
        let base = slab_va(pfn);
        let debug = c
            .flags
            .intersects(SlabFlags::POISON.union(SlabFlags::RED_ZONE));
        let mut off = first;
        let mut n = 0u64;
        loop {
            if off >= c.objs_end as u64 || !off.is_multiple_of(c.size as u64) {
                sink(self.problem(Some(slot), "free pointer off an object boundary", pfn));
                return None;
            }
            n += 1;
            if n > c.objects as u64 {
                sink(self.problem(Some(slot), "free list longer than the slab (cycle)", pfn));
                return None;
            }
            checked.free_objects += 1;
            let obj = base + off;
            if debug {
                checked.poison_checked += 1;
                match check_free_object(c, mem, obj) {
                    Some((CorruptionKind::RedZone, _)) => {
                        sink(cache_problem(c, "free object's red zone overwritten").at(obj))
                    }
                    Some(_) => sink(cache_problem(c, "free object's poison overwritten").at(obj)),
                    None => {}
                }
            }
            let next = mem.read_u64(obj + c.offset as u64);
            if next == 0 {
                return Some(n);
            }
            off = match next.checked_sub(base) {
                Some(o) => o,
                None => {
                    sink(self.problem(Some(slot), "free pointer outside its slab", pfn));
                    return None;
                }
            };
        }
    }
}

/// A problem of cache `c` as a whole (a counter, a list).
fn cache_problem(c: &KmemCache, what: &'static str) -> Problem {
    Problem {
        cache: Some(c.name),
        ..Problem::new(SLAB, what, None)
    }
}

#[cfg(test)]
impl SlabAllocator<'_> {
    /// Where a cache keeps the free pointer inside a free object, for tests
    /// that break a free list on purpose.
    pub(crate) fn free_pointer_offset(&self, id: CacheId) -> u32 {
        self.caches[id.slot()].offset
    }
}
