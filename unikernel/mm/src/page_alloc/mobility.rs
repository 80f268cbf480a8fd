//! Grouping pages by mobility (cf. the "anti-fragmentation" half of
//! `mm/page_alloc.c`, Linux 6.1).
//!
//! Memory is cut into pageblocks of `2^PAGEBLOCK_ORDER` frames, each with
//! a [`MigrateType`] (all Movable at boot, as `memmap_init()` leaves them).
//! Every order has one free list per type; a free block goes to the list
//! of its pageblock's type, and an allocation takes from the type its GFP
//! names ([`GfpFlags::migratetype`](crate::gfp::GfpFlags::migratetype)).
//! When that type's lists are empty it steals from another type
//! ([`PageAlloc::rmqueue_fallback`]): the largest block of the first
//! suitable fallback type in Linux's table, claiming the whole pageblock
//! when the block is large enough or the requester is unmovable, so that
//! unmovable allocations cluster in few pageblocks instead of pinning all
//! of them — which is what keeps high orders available to a long-running
//! machine. Each steal is an `mm_page_alloc_extfrag` event
//! ([`ExtfragStats`]).
//!
//! High-order atomic allocations get a reserve of their own: after such an
//! allocation succeeds its pageblock may become HighAtomic
//! ([`PageAlloc::reserve_highatomic_pageblock`], up to 1 % of the zone),
//! which only ALLOC_HARDER requests use, until a request that may reclaim
//! finds nothing and gives it back
//! ([`PageAlloc::unreserve_highatomic_pageblock`]).

use super::PageAlloc;
use crate::page::{NIL, PageFlags};
use crate::types::{MAX_ORDER, Order, Pfn};
use crate::zone::{MIGRATE_TYPES, MigrateType, PAGEBLOCK_NR_PAGES, PAGEBLOCK_ORDER, ZoneType};

/// How an allocation attempt may use a zone (cf. the `ALLOC_*` flags that
/// concern the free lists).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllocFlags {
    /// `ALLOC_HARDER`: an atomic request in the slow path; may take the
    /// HighAtomic reserve, which then counts as free for it.
    pub harder: bool,
    /// `ALLOC_NOFRAGMENT`: steal from another type only whole pageblocks.
    pub nofragment: bool,
    /// `ALLOC_CMA`: a movable request, which may use CMA pageblocks
    /// (`gfp_to_alloc_flags_cma()`); for others they are not free memory.
    pub cma: bool,
}

/// Fallbacks of each type, in preference order (cf. `fallbacks[]`).
const FALLBACKS: [[MigrateType; 2]; 3] = [
    [MigrateType::Reclaimable, MigrateType::Movable], // Unmovable
    [MigrateType::Reclaimable, MigrateType::Unmovable], // Movable
    [MigrateType::Unmovable, MigrateType::Movable],   // Reclaimable
];

/// Counts of `mm_page_alloc_extfrag` events: allocations served from a
/// pageblock of another migrate type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExtfragStats {
    /// The last fallback, for the `mm_page_alloc_extfrag` tracepoint
    /// (taken by the allocation that caused it).
    pub last: Option<crate::trace::TraceEvent>,
    /// Every fallback.
    pub events: u64,
    /// Fallbacks below pageblock order that left the pageblock's type as it
    /// was: the pageblock now mixes types (the tracepoint's
    /// `fragmenting=1`).
    pub fragmenting: u64,
    /// Fallbacks that changed the pageblock's type (`change_ownership=1`).
    pub change_ownership: u64,
}

impl ExtfragStats {
    /// No event yet.
    pub const ZERO: ExtfragStats = ExtfragStats {
        last: None,
        events: 0,
        fragmenting: 0,
        change_ownership: 0,
    };
}

/// cf. `can_steal_fallback()`: whether a fallback at `order` may take the
/// whole pageblock for `start`.
const fn can_steal_fallback(order: usize, start: MigrateType) -> bool {
    // Leaving a pageblock-sized or larger block to its old type would
    // only invite the next fallback: always claim it. Unmovable and
    // reclaimable requests claim even small blocks' pageblocks, to
    // cluster; movable ones only from half a pageblock.
    order >= PAGEBLOCK_ORDER
        || order >= PAGEBLOCK_ORDER / 2
        || matches!(start, MigrateType::Reclaimable | MigrateType::Unmovable)
}

impl PageAlloc<'_> {
    // ------------------------------------------------------------------
    // Pageblock flags
    // ------------------------------------------------------------------

    /// The migrate type of the pageblock holding `pfn` (cf.
    /// `get_pageblock_migratetype()`).
    pub fn pageblock_migratetype(&self, pfn: Pfn) -> MigrateType {
        let first = pfn.0 & !(PAGEBLOCK_NR_PAGES - 1);
        self.mem_map
            .get(first as usize)
            .and_then(|p| MigrateType::from_index(usize::from(p.pageblock_migratetype())))
            .unwrap_or(MigrateType::Movable)
    }

    /// Set the type of the pageblock holding `pfn` (cf.
    /// `set_pageblock_migratetype()`).
    pub(crate) fn set_pageblock_migratetype(&mut self, pfn: Pfn, mt: MigrateType) {
        let first = pfn.0 & !(PAGEBLOCK_NR_PAGES - 1);
        if let Some(p) = self.mem_map.get_mut(first as usize) {
            p.set_pageblock_migratetype(mt as u8);
        }
    }

    /// Pageblocks of each type in zone `zt`, counted as
    /// `pagetypeinfo_showblockcount_print()` does: stepping from the zone's
    /// first frame, every frame with a descriptor in this zone names its
    /// pageblock.
    pub fn pageblock_counts(&self, zt: ZoneType) -> [u64; MIGRATE_TYPES] {
        let zone = &self.zones[zt.index()];
        let mut counts = [0; MIGRATE_TYPES];
        let mut pfn = zone.start_pfn.0;
        while pfn < zone.end_pfn.0 {
            if self
                .mem_map
                .get(pfn as usize)
                .is_some_and(|p| usize::from(p.zone) == zt.index())
            {
                counts[self.pageblock_migratetype(Pfn(pfn)).index()] += 1;
            }
            pfn += PAGEBLOCK_NR_PAGES;
        }
        counts
    }

    /// Blocks on one free list, walked as `pagetypeinfo_showfree_print()`
    /// does: stops at `limit` and says so.
    pub fn count_free_list(
        &self,
        zi: usize,
        order: usize,
        mt: MigrateType,
        limit: u64,
    ) -> (u64, bool) {
        let mut n = 0;
        let mut cur = self.zones[zi].free_area[order].free_list[mt.index()].head;
        while crate::page::is_pfn_link(cur) {
            if n >= limit {
                return (limit, true);
            }
            n += 1;
            cur = self.mem_map[cur as usize].next;
        }
        (n, false)
    }

    /// The `mm_page_alloc_extfrag` counts.
    pub fn extfrag_stats(&self) -> ExtfragStats {
        self.extfrag
    }

    // ------------------------------------------------------------------
    // Fallback
    // ------------------------------------------------------------------

    /// cf. `alloc_flags_nofragment()`: on a single node whose preferred
    /// zone is Normal (so DMA32 lies below it), the fast path first tries
    /// without breaking into other types' pageblocks below pageblock order.
    pub(crate) fn alloc_flags_nofragment(&self, highest: ZoneType) -> bool {
        let preferred = (0..=highest.index())
            .rev()
            .find(|&zi| self.zones[zi].is_populated());
        preferred == Some(ZoneType::Normal.index())
    }

    /// cf. `find_suitable_fallback()`: the first type in `start`'s fallback
    /// row with a free block of `order`, and whether its pageblock may be
    /// claimed.
    fn find_suitable_fallback(
        &self,
        zi: usize,
        order: usize,
        start: MigrateType,
    ) -> Option<(MigrateType, bool)> {
        let area = &self.zones[zi].free_area[order];
        if area.nr_free == 0 {
            return None;
        }
        let row = FALLBACKS.get(start.index())?;
        row.iter()
            .find(|&&mt| !area.is_empty(mt))
            .map(|&mt| (mt, can_steal_fallback(order, start)))
    }

    /// Whether a request of `mt` could claim a pageblock through a free
    /// block of `order` of another type (cf. `find_suitable_fallback()`
    /// with `only_stealable`).
    pub(crate) fn has_stealable_fallback(&self, zi: usize, order: usize, mt: MigrateType) -> bool {
        self.find_suitable_fallback(zi, order, mt)
            .is_some_and(|(_, can_steal)| can_steal)
    }

    /// cf. `__rmqueue_fallback()`: steal a block from another type for
    /// `start` — the largest one, to claim a whole pageblock and keep types
    /// apart; but for a movable request that may not claim the pageblock,
    /// the smallest, to fragment as little as possible. With `nofragment`,
    /// only blocks of pageblock order and up. Returns whether a block was
    /// moved to `start`'s lists (the caller retries from them).
    pub(crate) fn rmqueue_fallback(
        &mut self,
        zi: usize,
        order: Order,
        start: MigrateType,
        flags: AllocFlags,
    ) -> bool {
        if start.index() >= FALLBACKS.len() {
            return false; // HighAtomic, CMA, Isolate never steal
        }
        let min_order = if flags.nofragment {
            PAGEBLOCK_ORDER.max(order.index())
        } else {
            order.index()
        };
        let mut found = None;
        for current in (min_order..=MAX_ORDER).rev() {
            let Some((mt, can_steal)) = self.find_suitable_fallback(zi, current, start) else {
                continue;
            };
            if !can_steal && start == MigrateType::Movable && current > order.index() {
                // find_smallest: the smallest block any fallback list has.
                found = (order.index()..=MAX_ORDER).find_map(|o| {
                    self.find_suitable_fallback(zi, o, start)
                        .map(|(mt, steal)| (o, mt, steal))
                });
                break;
            }
            found = Some((current, mt, can_steal));
            break;
        }
        let Some((current, fallback, can_steal)) = found else {
            return false;
        };
        let head = self.zones[zi].free_area[current].free_list[fallback.index()].head;
        if head == NIL {
            return false;
        }
        let old = self.pageblock_migratetype(Pfn(u64::from(head)));
        self.steal_suitable_fallback(zi, head, current, start, can_steal);
        let new = self.pageblock_migratetype(Pfn(u64::from(head)));
        // cf. trace_mm_page_alloc_extfrag(): fragmenting when a block
        // smaller than a pageblock was taken without claiming it.
        self.extfrag.events += 1;
        if current < PAGEBLOCK_ORDER && new != start {
            self.extfrag.fragmenting += 1;
        }
        if new != old {
            self.extfrag.change_ownership += 1;
        }
        self.extfrag.last = Some(crate::trace::TraceEvent::MmPageAllocExtfrag {
            pfn: Pfn(u64::from(head)),
            alloc_order: order.get(),
            fallback_order: current as u8,
            alloc_migratetype: start as u8,
            fallback_migratetype: fallback as u8,
            change_ownership: new != old,
        });
        true
    }

    /// cf. `steal_suitable_fallback()`: move the free block at `head` (of
    /// `order`) to `start`'s list — and, when allowed, every free block of
    /// its pageblock, claiming the pageblock if at least half of it is
    /// free or already used alike.
    fn steal_suitable_fallback(
        &mut self,
        zi: usize,
        head: u32,
        order: usize,
        start: MigrateType,
        whole_block: bool,
    ) {
        let pfn = Pfn(u64::from(head));
        let old = self.pageblock_migratetype(pfn);
        if old != MigrateType::HighAtomic {
            // A block of pageblock order or more: all of its pageblocks
            // change type (cf. change_pageblock_range()).
            if order >= PAGEBLOCK_ORDER {
                for i in 0..(1u64 << (order - PAGEBLOCK_ORDER)) {
                    self.set_pageblock_migratetype(pfn.add(i * PAGEBLOCK_NR_PAGES), start);
                }
            } else if whole_block
                && let Some((free, movable)) = self.move_freepages_block(pfn, start)
                && free > 0
            {
                // Pages already used like the requester's count on its
                // side; without page owners, "movable" means on an LRU.
                let alike = if start == MigrateType::Movable {
                    movable
                } else if old == MigrateType::Movable {
                    PAGEBLOCK_NR_PAGES - (free + movable)
                } else {
                    0
                };
                if free + alike >= PAGEBLOCK_NR_PAGES / 2 {
                    self.set_pageblock_migratetype(pfn, start);
                }
                return; // the block moved with its pageblock's free blocks
            }
        }
        self.move_to_free_list(head, order, zi, start);
    }

    /// cf. `move_freepages_block()`: move every free block of the
    /// pageblock holding `pfn` to `mt`'s lists. `None` when the pageblock
    /// is not wholly inside one zone; else the pages moved and the
    /// allocated pages that are movable (on an LRU).
    pub(crate) fn move_freepages_block(&mut self, pfn: Pfn, mt: MigrateType) -> Option<(u64, u64)> {
        let start = pfn.0 & !(PAGEBLOCK_NR_PAGES - 1);
        let end = start + PAGEBLOCK_NR_PAGES;
        let zi = usize::from(self.mem_map.get(pfn.index())?.zone);
        let zone = &self.zones[zi];
        if start < zone.start_pfn.0 || end > zone.end_pfn.0 {
            return None;
        }
        let (mut moved, mut movable) = (0, 0);
        let mut p = start;
        while p < end {
            let page = &self.mem_map[p as usize];
            if !page.is_buddy() {
                if page.flags.contains(PageFlags::LRU) {
                    movable += 1;
                }
                p += 1;
                continue;
            }
            let order = usize::from(page.order);
            self.move_to_free_list(p as u32, order, zi, mt);
            p += 1 << order;
            moved += 1 << order;
        }
        Some((moved, movable))
    }

    // ------------------------------------------------------------------
    // The high-order atomic reserve
    // ------------------------------------------------------------------

    /// cf. `reserve_highatomic_pageblock()`: after a high-order atomic
    /// allocation at `pfn`, make its pageblock HighAtomic (and its free
    /// blocks with it), up to 1 % of the zone plus one pageblock. Only
    /// pageblocks of the ordinary types are taken.
    pub(crate) fn reserve_highatomic_pageblock(&mut self, pfn: Pfn, zi: usize) {
        let zone = &self.zones[zi];
        let max_managed = zone.managed_pages / 100 + PAGEBLOCK_NR_PAGES;
        if zone.nr_reserved_highatomic >= max_managed {
            return;
        }
        if !self.pageblock_migratetype(pfn).is_mergeable() {
            return;
        }
        self.zones[zi].nr_reserved_highatomic += PAGEBLOCK_NR_PAGES;
        self.refresh_fast_paths(); // the reserve is part of the fast mark
        self.set_pageblock_migratetype(pfn, MigrateType::HighAtomic);
        let _ = self.move_freepages_block(pfn, MigrateType::HighAtomic);
    }

    /// cf. `unreserve_highatomic_pageblock()`: give one HighAtomic
    /// pageblock with a free block back to `mt`, in the first zone of the
    /// zonelist that has one — keeping each zone's last reserved pageblock
    /// unless `force`. Returns whether free pages moved.
    pub(crate) fn unreserve_highatomic_pageblock(
        &mut self,
        highest: ZoneType,
        mt: MigrateType,
        force: bool,
    ) -> bool {
        for zi in (0..=highest.index()).rev() {
            let zone = &self.zones[zi];
            if !force && zone.nr_reserved_highatomic <= PAGEBLOCK_NR_PAGES {
                continue;
            }
            for order in 0..=MAX_ORDER {
                let head =
                    self.zones[zi].free_area[order].free_list[MigrateType::HighAtomic.index()].head;
                if head == NIL {
                    continue;
                }
                let pfn = Pfn(u64::from(head));
                if self.pageblock_migratetype(pfn) == MigrateType::HighAtomic {
                    let z = &mut self.zones[zi];
                    z.nr_reserved_highatomic -= PAGEBLOCK_NR_PAGES.min(z.nr_reserved_highatomic);
                    self.refresh_fast_paths();
                }
                self.set_pageblock_migratetype(pfn, mt);
                if self
                    .move_freepages_block(pfn, mt)
                    .is_some_and(|(n, _)| n > 0)
                {
                    return true;
                }
            }
        }
        false
    }

    /// For `POST /api/reset`: every HighAtomic pageblock goes back to
    /// Movable, what boot left it as, and free blocks that only their
    /// types kept apart merge again — so the buddy state can equal boot's.
    pub fn release_highatomic_reserve(&mut self) {
        for zi in 0..self.zones.len() {
            let (start, end) = (self.zones[zi].start_pfn.0, self.zones[zi].end_pfn.0);
            let mut pfn = start & !(PAGEBLOCK_NR_PAGES - 1);
            while pfn < end {
                if self.pageblock_migratetype(Pfn(pfn)) == MigrateType::HighAtomic {
                    self.set_pageblock_migratetype(Pfn(pfn), MigrateType::Movable);
                    let _ = self.move_freepages_block(Pfn(pfn), MigrateType::Movable);
                }
                pfn += PAGEBLOCK_NR_PAGES;
            }
            self.zones[zi].nr_reserved_highatomic = 0;
        }
        self.refresh_fast_paths();
        self.remerge_free_blocks();
    }

    /// Merge free buddies of pageblock order and up that type rules kept
    /// apart and that may merge now (after a type change).
    fn remerge_free_blocks(&mut self) {
        for order in PAGEBLOCK_ORDER..MAX_ORDER {
            for zi in 0..self.zones.len() {
                let mut i = 0;
                // Re-walk from the start after each merge: the lists
                // changed under us.
                while let Some(pfn) = self.nth_free_block(zi, order, i) {
                    let buddy = pfn ^ (1u64 << order);
                    let (mt, bmt) = (
                        self.pageblock_migratetype(Pfn(pfn)),
                        self.pageblock_migratetype(Pfn(buddy)),
                    );
                    let mergeable = mt == bmt || (mt.is_mergeable() && bmt.is_mergeable());
                    if mergeable && self.page_is_buddy(buddy, order, zi) {
                        self.del_from_free_list(pfn as u32, order, zi);
                        self.del_from_free_list(buddy as u32, order, zi);
                        for p in [pfn, buddy] {
                            let page = &mut self.mem_map[p as usize];
                            page.flags.remove(PageFlags::BUDDY);
                            page.order = 0;
                        }
                        let low = pfn.min(buddy);
                        let low_mt = self.pageblock_migratetype(Pfn(low));
                        self.free_one_page(low, order + 1, zi, low_mt, false);
                        i = 0;
                    } else {
                        i += 1;
                    }
                }
            }
        }
    }

    /// The `i`-th free block of `order` in zone `zi`, over all lists.
    fn nth_free_block(&self, zi: usize, order: usize, mut i: usize) -> Option<u64> {
        for list in &self.zones[zi].free_area[order].free_list {
            let mut cur = list.head;
            while crate::page::is_pfn_link(cur) {
                if i == 0 {
                    return Some(u64::from(cur));
                }
                i -= 1;
                cur = self.mem_map[cur as usize].next;
            }
        }
        None
    }
}

#[cfg(test)]
mod tests;
