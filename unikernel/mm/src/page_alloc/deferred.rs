//! Deferred struct-page initialisation (cf. `CONFIG_DEFERRED_STRUCT_PAGE_INIT`
//! in Linux 6.1's `mm/page_alloc.c`).
//!
//! Writing every descriptor of `mem_map` and handing every free frame to
//! the buddy allocator is the part of boot that grows with memory. Linux
//! initialises at boot only what early boot needs (`defer_init()`: the low
//! zones, and the first section of the node's last zone), initialises the
//! rest from a kthread (`deferred_init_memmap()`), and lets an allocation
//! that finds a zone short grow it on the spot (`deferred_grow_zone()`),
//! all before userspace runs (`page_alloc_init_late()`).
//!
//! Here ([`PageAlloc::new_deferred`], cf. `free_area_init()` +
//! `memblock_free_all()` under `defer_init()`):
//! - ZONE_DMA is initialised whole, every other zone its first `boot_pages`
//!   (rounded up to [`MAX_ORDER_NR_PAGES`]). Unlike Linux, the lower zones
//!   defer too: any zone can grow here, not only the node's last one.
//! - Always written at boot: the frames of memblock reservations, wherever
//!   they lie (cf. `reserve_bootmem_region()`), the first frame of every
//!   pageblock (it carries the pageblock's migrate type, which readers of
//!   any pageblock may ask for), and a zone's last chunk where it ends
//!   short of a chunk edge (the next zone's frees look for buddies there);
//!   the deferred frames among them stay off the free lists until their
//!   turn.
//! - The rest is a list of spans (free RAM, or holes), initialised in
//!   `MAX_ORDER_NR_PAGES`-aligned chunks, descriptors first and then the
//!   frees (cf. `deferred_init_maxorder()`): a buddy is never looked up in
//!   a descriptor not yet written, and no block straddles a chunk edge, so
//!   the blocks come out exactly as eager initialisation makes them.
//! - There are no threads: the kernel's main loop calls
//!   [`PageAlloc::deferred_init_chunk`] between network polls (cf.
//!   `deferred_init_memmap_chunk()`), `get_page_from_freelist()` grows a
//!   zone that cannot serve ([`PageAlloc::deferred_grow_zone`]), and
//!   whatever must see every frame (compaction, `POST /api/reset`, the
//!   in-guest selftest) finishes first ([`PageAlloc::deferred_init_all`]).
//!
//! Meanwhile every view is right: `present_pages` counts the deferred RAM
//! from the start (computed from memblock, as Linux's
//! `calculate_node_totalpages()` does), `managed_pages` and the free lists
//! grow as chunks are handed over (as `__free_pages_core()` makes them
//! grow), `totalram_pages()` (MemTotal) includes the deferred pages from the
//! start as 6.1's `memblock_free_all()` counts them, and
//! [`PageAlloc::page`] shows a descriptor not yet written as reserved with
//! owner `deferred` (a hole: not RAM). When the last chunk is in, the
//! watermarks are computed again from the full zones (cf.
//! `init_per_zone_wmark_min()`, an initcall that runs after
//! `page_alloc_init_late()`), and the allocator is in exactly the state
//! [`PageAlloc::new`] + [`PageAlloc::memblock_free_all`] +
//! [`PageAlloc::setup_watermarks`] leave.

use super::{InitError, PageAlloc};
use crate::memblock::Memblock;
use crate::page::{NIL, OwnerTag, Page, PageFlags};
use crate::types::{MAX_ORDER, NR_ORDERS, Order, Pfn};
use crate::vmstat::VmEvent;
use crate::zone::{MigrateType, NR_ZONES, PAGEBLOCK_NR_PAGES, ZoneLayout, ZoneType};

/// Frames in a `MAX_ORDER` block (cf. `MAX_ORDER_NR_PAGES`): deferred init
/// works in aligned chunks of this size, so no buddy block straddles the
/// edge between initialised and uninitialised frames.
pub const MAX_ORDER_NR_PAGES: u64 = 1 << MAX_ORDER;

/// cf. `PAGES_PER_SECTION` (128 MiB of 4 KiB frames): the least
/// [`PageAlloc::deferred_grow_zone`] hands over, as Linux's does.
pub const PAGES_PER_SECTION: u64 = 1 << 15;

/// Spans of uninitialised frames tracked; a boot with more (a memory map
/// riddled with reservations) initialises the rest of its zones eagerly.
const MAX_SPANS: usize = 32;

/// A run of frames whose descriptors are not written yet, in one zone:
/// free RAM, or a hole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    start: u64,
    end: u64,
    ram: bool,
}

impl Span {
    const EMPTY: Span = Span {
        start: 0,
        end: 0,
        ram: false,
    };
}

/// Counters of deferred init, for the boot log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeferredStats {
    /// Free frames handed over at boot (the part not deferred).
    pub boot_pages: u64,
    /// Free frames deferred at boot.
    pub deferred_pages: u64,
    /// Chunks [`PageAlloc::deferred_init_chunk`] has done.
    pub chunks: u64,
    /// Zone growths an allocation asked for.
    pub grows: u64,
    /// Free frames handed over by those growths.
    pub grown_pages: u64,
}

/// What is left to initialise (cf. `pgdat->first_deferred_pfn`, one per
/// zone here): the spans of each zone, in PFN order.
#[derive(Clone, Debug)]
pub struct DeferredInit {
    spans: [Span; MAX_SPANS],
    /// Zone `z`'s spans still to do are `spans[next[z]..last[z]]`; the
    /// first may have been trimmed from below as chunks were done.
    next: [usize; NR_ZONES],
    last: [usize; NR_ZONES],
    /// Free frames not handed over yet, per zone.
    pending: [u64; NR_ZONES],
    /// Spans left over all zones: 0 once everything is initialised, the
    /// fast path of every check.
    nr_left: usize,
    stats: DeferredStats,
}

impl DeferredInit {
    /// Nothing deferred (an allocator built by [`PageAlloc::new`]).
    pub const NONE: DeferredInit = DeferredInit {
        spans: [Span::EMPTY; MAX_SPANS],
        next: [0; NR_ZONES],
        last: [0; NR_ZONES],
        pending: [0; NR_ZONES],
        nr_left: 0,
        stats: DeferredStats {
            boot_pages: 0,
            deferred_pages: 0,
            chunks: 0,
            grows: 0,
            grown_pages: 0,
        },
    };

    /// Free frames of zone `zt` not handed over yet.
    pub fn pending_pages(&self, zt: ZoneType) -> u64 {
        self.pending[zt.index()]
    }

    /// Free frames not handed over yet, over all zones.
    pub fn pending_total(&self) -> u64 {
        self.pending.iter().sum()
    }

    /// Zone `zi`'s spans still to do.
    fn zone_spans(&self, zi: usize) -> &[Span] {
        &self.spans[self.next[zi]..self.last[zi]]
    }

    /// The lowest PFN whose descriptor is not written yet, if any: the
    /// per-CPU free fast path takes only frames below it
    /// ([`super::smp::FastPaths::free_limit`]).
    pub(super) fn first_uninitialised(&self) -> Option<u64> {
        (0..NR_ZONES)
            .filter_map(|zi| self.zone_spans(zi).first().map(|s| s.start))
            .min()
    }

    /// The span holding `pfn`, if its descriptor is not written yet (cf.
    /// `early_page_uninitialised()`).
    fn span_of(&self, pfn: u64) -> Option<Span> {
        if self.nr_left == 0 {
            return None;
        }
        (0..NR_ZONES).find_map(|zi| {
            let spans = self.zone_spans(zi);
            let (first, last) = (spans.first()?, spans.last()?);
            if pfn < first.start || pfn >= last.end {
                return None;
            }
            let i = spans.partition_point(|s| s.end <= pfn);
            spans.get(i).filter(|s| s.start <= pfn).copied()
        })
    }
}

/// What a frame is at hand-over, from memblock alone (the classes
/// [`PageAlloc::memblock_free_all`] gives frames).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// In a free range: handed to the buddy allocator.
    Free,
    /// Touched by a reservation (rounded outward): reserved, labelled with
    /// the owner of the last reservation that covers it; `ram` unless it
    /// lies outside every memory region.
    Reserved { ram: bool, owner: OwnerTag },
    /// RAM in no free range and no reservation: reserved, unlabelled.
    Ram,
    /// Not RAM.
    Hole,
}

/// The class of `pfn` and where the run of that class ends (exclusive, at
/// most `limit`), from memblock's memory, reserved and free ranges.
fn classify(mb: &Memblock, pfn: u64, limit: u64) -> (Class, u64) {
    let mut end = limit;
    // Narrows `end` to the next edge of [s, e) past `pfn`; true if inside.
    let mut inside = |s: u64, e: u64| {
        if pfn < s {
            end = end.min(s);
            false
        } else if pfn < e {
            end = end.min(e);
            true
        } else {
            false
        }
    };
    let mut owner = None;
    for r in mb.reserved_regions() {
        // Outward: a partly reserved frame is reserved.
        let (s, e) = (Pfn::from_phys(r.base).0, Pfn::from_phys_up(r.end()).0);
        if inside(s, e) {
            owner = Some(OwnerTag::from_name(r.name).unwrap_or(OwnerTag::MEMBLOCK));
        }
    }
    let mut ram = false;
    for r in mb.memory_regions() {
        let (s, e) = (Pfn::from_phys_up(r.base).0, Pfn::from_phys(r.end()).0);
        ram |= inside(s, e);
    }
    let mut free = false;
    mb.for_each_free_range(|s, e| free |= inside(Pfn::from_phys(s).0, Pfn::from_phys(e).0));
    let class = match (free, owner, ram) {
        (true, _, _) => Class::Free,
        (false, Some(owner), ram) => Class::Reserved { ram, owner },
        (false, None, true) => Class::Ram,
        (false, None, false) => Class::Hole,
    };
    (class, end)
}

/// A descriptor not written yet, as [`PageAlloc::page`] shows it, per zone:
/// `[free RAM, hole]`.
static PLACEHOLDERS: [[Page; 2]; NR_ZONES] = {
    let mut out = [[Page::new_reserved(); 2]; NR_ZONES];
    let mut zi = 0;
    while zi < NR_ZONES {
        let high = if ZoneType::ALL[zi].is_highmem() {
            PageFlags::HIGHMEM
        } else {
            PageFlags::EMPTY
        };
        out[zi][0].flags = PageFlags::RESERVED.union(high);
        out[zi][0].owner = OwnerTag::DEFERRED;
        out[zi][1].flags = PageFlags::RESERVED.union(PageFlags::NOMAP).union(high);
        out[zi][0].zone = zi as u8;
        out[zi][1].zone = zi as u8;
        zi += 1;
    }
    out
};

const fn align_up(x: u64, a: u64) -> u64 {
    x.next_multiple_of(a)
}

const fn align_down(x: u64, a: u64) -> u64 {
    x - x % a
}

impl<'a> PageAlloc<'a> {
    /// Builds the allocator and hands over boot memory like
    /// [`PageAlloc::new`] + [`PageAlloc::memblock_free_all`], but writes
    /// only the descriptors boot needs: ZONE_DMA, the first `boot_pages` of
    /// every other zone, reservations, zone-edge chunks and pageblock heads
    /// (see the module doc). `mem_map` may hold anything; the descriptors
    /// left unwritten are never read before deferred init writes them.
    /// Call [`PageAlloc::setup_watermarks`] next, as after an eager boot.
    pub fn new_deferred(
        mem_map: &'a mut [Page],
        layout: ZoneLayout,
        mb: &Memblock,
        boot_pages: u64,
    ) -> Result<Self, InitError> {
        let mut pa = Self::new_inner(mem_map, layout, false)?;
        let max = layout.max_pfn.0;
        // cf. calculate_node_totalpages(): present pages from memblock.
        for r in mb.memory_regions() {
            let s = Pfn::from_phys_up(r.base).0.min(max);
            let e = Pfn::from_phys(r.end()).0.min(max);
            for zone in &mut pa.zones {
                let (zs, ze) = (zone.start_pfn.0.max(s), zone.end_pfn.0.min(e));
                zone.present_pages += ze.saturating_sub(zs);
            }
        }
        // The deferred part of each zone: [ds, de), from a chunk edge to the
        // zone's end.
        let mut deferred = [(0u64, 0u64); NR_ZONES];
        for (zi, zone) in pa.zones.iter().enumerate() {
            let (zs, ze) = (zone.start_pfn.0, zone.end_pfn.0);
            let ds = align_up(zs.saturating_add(boot_pages), MAX_ORDER_NR_PAGES);
            deferred[zi] = if zone.ztype != ZoneType::Dma && ds < ze {
                (ds, ze)
            } else {
                (ze, ze)
            };
        }
        // Spans: the deferred parts but for their reservations (and RAM
        // that is neither free nor reserved, which memblock never leaves).
        let mut spans = DeferredInit::NONE;
        let mut overflow = false;
        for (zi, &(ds, de)) in deferred.iter().enumerate() {
            spans.next[zi] = spans.nr_left;
            let mut pfn = ds;
            while pfn < de && !overflow {
                let (class, end) = classify(mb, pfn, de);
                let ram = match class {
                    Class::Free => true,
                    Class::Hole => false,
                    Class::Reserved { .. } | Class::Ram => {
                        pfn = end;
                        continue;
                    }
                };
                let n = spans.nr_left;
                if n > spans.next[zi]
                    && spans.spans[n - 1].end == pfn
                    && spans.spans[n - 1].ram == ram
                {
                    spans.spans[n - 1].end = end; // same kind across a chunk edge
                } else if n < MAX_SPANS {
                    spans.spans[n] = Span {
                        start: pfn,
                        end,
                        ram,
                    };
                    spans.nr_left += 1;
                } else {
                    overflow = true;
                }
                if ram && !overflow {
                    spans.pending[zi] += end - pfn;
                }
                pfn = end;
            }
            spans.last[zi] = spans.nr_left;
        }
        if overflow {
            // Too fragmented to track: initialise everything now.
            spans = DeferredInit::NONE;
            deferred = core::array::from_fn(|zi| (pa.zones[zi].end_pfn.0, pa.zones[zi].end_pfn.0));
        }
        pa.deferred = spans;

        // First every descriptor boot writes, then the frees: a free looks
        // at its buddy, which must be written by then.
        let eager = |zi: usize| {
            let z = &pa.zones[zi];
            let (ds, de) = deferred[zi];
            [(z.start_pfn.0, ds), (de, z.end_pfn.0)]
        };
        let ranges: [[(u64, u64); 2]; NR_ZONES] = core::array::from_fn(eager);
        for (zi, pair) in ranges.iter().enumerate() {
            for &(s, e) in pair {
                pa.init_descriptors(mb, zi, s, e);
            }
            // In the deferred part: reservations, and pageblock heads.
            let (ds, de) = deferred[zi];
            let mut pfn = ds;
            while pfn < de {
                let (class, end) = classify(mb, pfn, de);
                if matches!(class, Class::Reserved { .. } | Class::Ram) {
                    pa.init_descriptors(mb, zi, pfn, end);
                }
                pfn = end;
            }
            // The pageblock heads inside the zone's spans (the rest were
            // written above), span by span rather than a search per head.
            for i in pa.deferred.next[zi]..pa.deferred.last[zi] {
                let span = pa.deferred.spans[i];
                let first = align_up(span.start, PAGEBLOCK_NR_PAGES);
                for head in (first..span.end).step_by(PAGEBLOCK_NR_PAGES as usize) {
                    pa.init_pages(head, head + 1, zi, false, false);
                }
            }
            // The zone's last chunk may end before its chunk edge, where the
            // next zone begins: the next zone's frees look for buddies in
            // it at boot, so its frames are written now (free, but on no
            // list yet: no buddy of anything), and freed in their turn.
            let tail = align_down(de, MAX_ORDER_NR_PAGES).max(ds);
            for i in pa.deferred.next[zi]..pa.deferred.last[zi] {
                let span = pa.deferred.spans[i];
                if span.end > tail {
                    pa.init_pages(span.start.max(tail), span.end, zi, span.ram, span.ram);
                }
            }
        }
        for (zi, pair) in ranges.iter().enumerate() {
            for &(s, e) in pair {
                let mut pfn = s;
                while pfn < e {
                    let (class, end) = classify(mb, pfn, e);
                    if class == Class::Free {
                        pa.deferred.stats.boot_pages += pa.free_boot_range(zi, pfn, end);
                    }
                    pfn = end;
                }
            }
        }
        pa.deferred.stats.deferred_pages = pa.deferred.pending_total();
        Ok(pa)
    }

    /// Writes the descriptors of `[start, end)` in zone `zi` (cf.
    /// `__init_single_page()` + `memmap_init_range()`'s pageblock type):
    /// reserved and not RAM, or RAM (`ram`), or free frames (`free`,
    /// neither reserved nor owned: what `__free_pages_core()` leaves before
    /// a block goes on a free list). One template stored frame by frame,
    /// then the pageblock heads: the loop every boot and deferred chunk
    /// spends its time in.
    fn init_pages(&mut self, start: u64, end: u64, zi: usize, ram: bool, free: bool) {
        let mut flags = if free {
            PageFlags::EMPTY
        } else if ram {
            PageFlags::RESERVED
        } else {
            PageFlags::RESERVED.union(PageFlags::NOMAP)
        };
        if ZoneType::ALL[zi].is_highmem() {
            flags.insert(PageFlags::HIGHMEM);
        }
        let template = Page {
            flags,
            zone: zi as u8,
            order: 0,
            refcount: 0,
            owner: OwnerTag::NONE,
            prev: NIL,
            next: NIL,
        };
        self.mem_map[start as usize..end as usize].fill(template);
        let first_head = align_up(start, PAGEBLOCK_NR_PAGES);
        for head in (first_head..end).step_by(PAGEBLOCK_NR_PAGES as usize) {
            self.mem_map[head as usize].set_pageblock_migratetype(MigrateType::Movable as u8);
        }
    }

    /// Writes the descriptors of `[start, end)` in zone `zi` as memblock
    /// classes them; free frames are written free but not yet freed.
    fn init_descriptors(&mut self, mb: &Memblock, zi: usize, start: u64, end: u64) {
        let mut pfn = start;
        while pfn < end {
            let (class, run_end) = classify(mb, pfn, end);
            match class {
                Class::Free => self.init_pages(pfn, run_end, zi, true, true),
                Class::Ram => self.init_pages(pfn, run_end, zi, true, false),
                Class::Hole => self.init_pages(pfn, run_end, zi, false, false),
                Class::Reserved { ram, owner } => {
                    self.init_pages(pfn, run_end, zi, ram, false);
                    for p in &mut self.mem_map[pfn as usize..run_end as usize] {
                        p.owner = owner;
                    }
                }
            }
            pfn = run_end;
        }
    }

    /// Frees `[start, end)` of zone `zi`, whose descriptors are written
    /// free, in the largest naturally aligned blocks (cf.
    /// `__free_pages_memory()` → `__free_pages_core()`, as
    /// [`PageAlloc::free_bootmem`]). Returns the frames freed.
    fn free_boot_range(&mut self, zi: usize, start: u64, end: u64) -> u64 {
        let mut pfn = start;
        while pfn < end {
            let mut order = (pfn.trailing_zeros() as usize).min(MAX_ORDER);
            while pfn + (1u64 << order) > end {
                order -= 1;
            }
            let nr = 1u64 << order;
            self.zones[zi].managed_pages += nr;
            let mt = self.pageblock_migratetype(Pfn(pfn));
            self.free_one_page(pfn, order, zi, mt, true);
            self.vm_events.count(VmEvent::PgFree, nr);
            pfn += nr;
        }
        end - start
    }

    /// The placeholder [`PageAlloc::page`] shows for `pfn` if its
    /// descriptor is not written yet.
    #[inline]
    pub(crate) fn deferred_placeholder(&self, pfn: Pfn) -> Option<&'static Page> {
        if self.deferred.nr_left == 0 {
            return None; // the common case, without a call
        }
        let span = self.deferred.span_of(pfn.0)?;
        let zi = self.layout.zone_of(pfn)?.index();
        Some(&PLACEHOLDERS[zi][usize::from(!span.ram)])
    }

    /// Whether the descriptor of `pfn` is not written yet (cf.
    /// `early_page_uninitialised()`).
    pub fn early_page_uninitialised(&self, pfn: Pfn) -> bool {
        self.deferred.span_of(pfn.0).is_some()
    }

    /// Free frames deferred init has still to hand over.
    pub fn deferred_pending_pages(&self) -> u64 {
        self.deferred.pending_total()
    }

    /// Free frames of zone `zt` deferred init has still to hand over.
    pub fn deferred_pages(&self, zt: ZoneType) -> u64 {
        self.deferred.pending_pages(zt)
    }

    /// Whether deferred init has anything left.
    pub fn deferred_pending(&self) -> bool {
        self.deferred.nr_left > 0
    }

    /// Deferred init's counters.
    pub fn deferred_stats(&self) -> DeferredStats {
        self.deferred.stats
    }

    /// Initialises and frees the next `MAX_ORDER_NR_PAGES` chunk of zone
    /// `zi` that holds uninitialised frames: every descriptor of its spans
    /// first, then the frees (cf. `deferred_init_maxorder()`). Returns the
    /// frames it covered and the free ones among them; (0, 0) if the zone
    /// has nothing left.
    fn deferred_init_maxorder(&mut self, zi: usize) -> (u64, u64) {
        let Some(first) = self.deferred.zone_spans(zi).first().copied() else {
            return (0, 0);
        };
        let chunk = align_down(first.start, MAX_ORDER_NR_PAGES);
        let chunk_end = chunk + MAX_ORDER_NR_PAGES;
        let (next, last) = (self.deferred.next[zi], self.deferred.last[zi]);
        let mut covered = 0;
        for i in next..last {
            let s = self.deferred.spans[i];
            if s.start >= chunk_end {
                break;
            }
            self.init_pages(s.start, s.end.min(chunk_end), zi, s.ram, s.ram);
            covered += s.end.min(chunk_end) - s.start;
        }
        let mut freed = 0;
        for i in next..last {
            let s = self.deferred.spans[i];
            if s.start >= chunk_end {
                break;
            }
            if s.ram {
                freed += self.free_boot_range(zi, s.start, s.end.min(chunk_end));
            }
            if s.end <= chunk_end {
                self.deferred.next[zi] += 1;
                self.deferred.nr_left -= 1;
            } else {
                self.deferred.spans[i].start = chunk_end;
            }
        }
        self.deferred.pending[zi] -= freed;
        if self.deferred.nr_left == 0 {
            // cf. init_per_zone_wmark_min(), run after page_alloc_init_late().
            self.setup_watermarks();
        }
        // Managed pages grew and the uninitialised part shrank.
        self.refresh_fast_paths();
        (covered, freed)
    }

    /// One step of deferred init from the kernel's main loop (cf.
    /// `deferred_init_memmap_chunk()`): whole chunks of the lowest zone
    /// with work left until `max_pages` frames are covered. Returns the
    /// frames freed; the watermarks are recomputed after the last chunk.
    pub fn deferred_init_chunk(&mut self, max_pages: u64) -> u64 {
        let Some(zi) = (0..NR_ZONES).find(|&zi| !self.deferred.zone_spans(zi).is_empty()) else {
            return 0;
        };
        self.deferred.stats.chunks += 1;
        let (mut covered, mut freed) = (0, 0);
        while covered < max_pages.max(1) {
            let (c, f) = self.deferred_init_maxorder(zi);
            if c == 0 {
                break;
            }
            covered += c;
            freed += f;
        }
        freed
    }

    /// Grows zone `zi` by at least `max(2^order, PAGES_PER_SECTION)` free
    /// frames or all it has left (cf. `deferred_grow_zone()`, which the
    /// allocator calls when the zone cannot serve). False if the zone had
    /// nothing deferred.
    pub(crate) fn deferred_grow_zone(&mut self, zi: usize, order: Order) -> bool {
        if self.deferred.zone_spans(zi).is_empty() {
            return false;
        }
        let needed = order.nr_pages().max(PAGES_PER_SECTION);
        let mut freed = 0;
        while freed < needed {
            let (covered, f) = self.deferred_init_maxorder(zi);
            if covered == 0 {
                break;
            }
            freed += f;
        }
        self.deferred.stats.grows += 1;
        self.deferred.stats.grown_pages += freed;
        true
    }

    /// Initialises whatever zone `zt` still has deferred.
    pub fn deferred_init_zone(&mut self, zt: ZoneType) -> u64 {
        let mut freed = 0;
        loop {
            let (covered, f) = self.deferred_init_maxorder(zt.index());
            if covered == 0 {
                return freed;
            }
            freed += f;
        }
    }

    /// Initialises everything still deferred (cf. `deferred_init_memmap()`
    /// for every node, as `page_alloc_init_late()` waits for). Returns the
    /// frames freed.
    pub fn deferred_init_all(&mut self) -> u64 {
        ZoneType::ALL
            .iter()
            .map(|&zt| self.deferred_init_zone(zt))
            .sum()
    }

    /// The free blocks deferred init will add, per zone and order: what
    /// `/proc/buddyinfo` gains when it is done (the deferred chunks never
    /// merge with blocks outside them).
    pub fn deferred_free_area_counts(&self) -> [[u64; NR_ORDERS]; NR_ZONES] {
        let mut counts = [[0; NR_ORDERS]; NR_ZONES];
        for (zi, zone_counts) in counts.iter_mut().enumerate() {
            for s in self.deferred.zone_spans(zi).iter().filter(|s| s.ram) {
                let mut pfn = s.start;
                while pfn < s.end {
                    let mut order = (pfn.trailing_zeros() as usize).min(MAX_ORDER);
                    while pfn + (1u64 << order) > s.end {
                        order -= 1;
                    }
                    zone_counts[order] += 1;
                    pfn += 1 << order;
                }
            }
        }
        counts
    }
}

#[cfg(test)]
mod tests;
