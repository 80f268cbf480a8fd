//! Memory compaction and page migration (cf. `mm/compaction.c` and
//! `mm/migrate.c`, Linux 6.1).
//!
//! Two scanners walk a zone toward each other: the *migrate scanner* from
//! the zone's start collects movable pages, the *free scanner* from its end
//! takes free pages off the free lists as targets. Each movable page is
//! copied to a target, its one owner repoints its reference, and the source
//! is freed — so used pages gather at the zone's end and free memory
//! coalesces at its start into high-order blocks. The run ends when the
//! scanners meet, or, for an allocation of some order, as soon as a block
//! of that order is free (`__compact_finished()`).
//!
//! What is movable: an allocated order-0 block on an LRU list (the page
//! cache) or marked [`PageFlags::MOVABLE`] by its owner (the API's
//! `__GFP_MOVABLE` pages). Higher-order blocks are skipped, as Linux's
//! compaction skips compound pages. The owner is asked first
//! ([`MigrateOwner::can_migrate`]); a pinned page (kmapped, say) fails
//! with `pgmigrate_fail`, as a page whose extra reference Linux finds in
//! `folio_migrate_mapping()`.
//!
//! Locking: the scanners run under the zone lock; the copy and the
//! owner's callbacks run without it (Linux migrates with the zone lock
//! dropped too), so an owner may take the zone lock itself.
//!
//! Deferral (`defer_compaction()`, `compaction_deferred()`,
//! `compaction_defer_reset()`): after a failed direct compaction for some
//! order, the zone skips the next `1 << compact_defer_shift` attempts at
//! that order or above, the shift growing to 6 with each failure.

use crate::gfp::GfpFlags;
use crate::manager::MemoryManager;
use crate::page::{OwnerTag, PageFlags};
use crate::page_alloc::PageAlloc;
use crate::platform::{FRAME_BYTES, Platform};
use crate::procfs::fragmentation_index;
use crate::types::{MAX_ORDER, Order, Pfn};
use crate::vmstat::VmEvent;
use crate::zone::{MigrateType, PAGEBLOCK_NR_PAGES, PAGEBLOCK_ORDER, ZoneType};

/// Pages migrated per batch (cf. `COMPACT_CLUSTER_MAX`, `SWAP_CLUSTER_MAX`).
pub const COMPACT_CLUSTER_MAX: usize = 32;
/// Most failures before a zone defers compaction as long as it can (cf.
/// `COMPACT_MAX_DEFER_SHIFT`).
pub const COMPACT_MAX_DEFER_SHIFT: u32 = 6;
/// `vm.extfrag_threshold`: below this fragmentation index a failing
/// high-order request lacks memory, not contiguity, and compaction is not
/// tried (cf. `sysctl_extfrag_threshold`).
pub const EXTFRAG_THRESHOLD: i64 = 500;
/// Orders above this are "costly" (cf. `PAGE_ALLOC_COSTLY_ORDER`).
pub const PAGE_ALLOC_COSTLY_ORDER: usize = 3;

/// The one owner of movable pages, asked by compaction (cf. the
/// `migrate_folio` operation of a mapping, and the reference checks of
/// `folio_migrate_mapping()`).
pub trait MigrateOwner {
    /// Whether the page at `pfn` may move now (`false`: pinned).
    fn can_migrate(&mut self, pfn: Pfn) -> bool;
    /// The contents of each `src` are now at its `dst`: repoint every
    /// reference (and any mapping of it) to `dst`. The zone lock is not
    /// held.
    fn migrated(&mut self, moves: &[(Pfn, Pfn)]);
}

/// An owner with no movable pages of its own (the page cache's LRU pages
/// still move; their references are in `mem_map`).
pub struct NoOwner;

impl MigrateOwner for NoOwner {
    fn can_migrate(&mut self, _pfn: Pfn) -> bool {
        true
    }
    fn migrated(&mut self, _moves: &[(Pfn, Pfn)]) {}
}

/// How a compaction run ended (cf. `enum compact_result`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompactResult {
    /// Not tried: the zone was deferred for this order.
    Deferred,
    /// Not tried: too little free memory to migrate into, or the request
    /// fails for lack of memory rather than fragmentation.
    Skipped,
    /// A block of the requested order is free now (or already was).
    Success,
    /// The scanners met: the whole zone was compacted.
    Complete,
}

impl CompactResult {
    /// Linux's name of the result (`compact_result_to_feedback`-style, as
    /// the `mm_compaction_end` tracepoint prints it).
    pub const fn name(self) -> &'static str {
        match self {
            CompactResult::Deferred => "deferred",
            CompactResult::Skipped => "skipped",
            CompactResult::Success => "success",
            CompactResult::Complete => "complete",
        }
    }
}

/// What one `compact_zone()` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompactStats {
    /// The zone.
    pub zone: ZoneType,
    /// How it ended.
    pub result: CompactResult,
    /// Pages the migrate scanner looked at (`compact_migrate_scanned`).
    pub migrate_scanned: u64,
    /// Pages the free scanner looked at (`compact_free_scanned`).
    pub free_scanned: u64,
    /// Pages isolated, sources and targets (`compact_isolated`).
    pub isolated: u64,
    /// Pages moved (`pgmigrate_success`).
    pub migrated: u64,
    /// Pages that could not move (`pgmigrate_fail`).
    pub failed: u64,
}

/// Per-zone deferral state (cf. `compact_considered`,
/// `compact_defer_shift`, `compact_order_failed` in `struct zone`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactDefer {
    /// Attempts skipped since the last failure.
    pub considered: u32,
    /// log2 of the attempts to skip.
    pub defer_shift: u32,
    /// Lowest order that failed (orders below it are not deferred).
    pub order_failed: u8,
}

impl CompactDefer {
    /// A zone that never failed.
    pub const NEW: CompactDefer = CompactDefer {
        considered: 0,
        defer_shift: 0,
        order_failed: 0,
    };

    /// cf. `defer_compaction()`.
    pub fn defer(&mut self, order: Order) {
        self.considered = 0;
        self.defer_shift = (self.defer_shift + 1).min(COMPACT_MAX_DEFER_SHIFT);
        if order.get() < self.order_failed {
            self.order_failed = order.get();
        }
    }

    /// cf. `compaction_deferred()`: whether to skip this attempt.
    pub fn deferred(&mut self, order: Order) -> bool {
        if order.get() < self.order_failed {
            return false;
        }
        self.considered += 1;
        if self.considered >= 1 << self.defer_shift {
            self.considered = 1 << self.defer_shift;
            return false;
        }
        true
    }

    /// cf. `compaction_defer_reset()`: after compaction let an allocation
    /// of `order` succeed.
    pub fn reset(&mut self, order: Order, alloc_success: bool) {
        if alloc_success {
            self.considered = 0;
            self.defer_shift = 0;
        }
        if order.get() >= self.order_failed {
            self.order_failed = order.get() + 1;
        }
    }
}

impl PageAlloc<'_> {
    /// cf. `compaction_suitable()`: whether compacting zone `zt` can help an
    /// allocation of `order`: `Success` if it would succeed already,
    /// `Skipped` if there is too little free memory to migrate into
    /// (`min`/`low` plus `compact_gap()` = twice the request), or, for a
    /// costly order, if the fragmentation index says it fails for lack of
    /// memory; `Complete` ("continue") otherwise.
    pub fn compaction_suitable(&self, zt: ZoneType, order: Order) -> CompactResult {
        let zone = self.zone(zt);
        if zone.watermark_ok(order, zone.watermarks.low, zt) {
            return CompactResult::Success;
        }
        let mark = if order.index() > PAGE_ALLOC_COSTLY_ORDER {
            zone.watermarks.low
        } else {
            zone.watermarks.min
        };
        let gap = 2u64 << order.get();
        if !zone.watermark_ok(Order::ZERO, mark + gap, zt) {
            return CompactResult::Skipped;
        }
        if order.index() > PAGE_ALLOC_COSTLY_ORDER {
            let index = fragmentation_index(zone, order.index());
            if (0..=EXTFRAG_THRESHOLD).contains(&index) {
                return CompactResult::Skipped;
            }
        }
        CompactResult::Complete
    }

    /// Whether `pfn` heads a block compaction may migrate: allocated,
    /// order 0, not a slab, and on an LRU or marked movable.
    pub(crate) fn migratable_page(&self, pfn: Pfn) -> bool {
        self.migratable(pfn.0)
    }

    fn migratable(&self, pfn: u64) -> bool {
        let p = &self.mem_map[pfn as usize];
        p.is_head()
            && p.order == 0
            && !p.is_slab()
            && p.owner != OwnerTag::RESERVE
            && p.owner != OwnerTag::COMPACTION
            && p.flags.intersects(PageFlags::LRU.union(PageFlags::MOVABLE))
    }

    /// The migrate scanner (cf. `isolate_migratepages()`): from `*pfn` up to
    /// `end`, collect up to `out.len()` migratable pages; free blocks are
    /// stepped over whole. Returns how many, counting pages looked at.
    fn scan_migratable(
        &self,
        pfn: &mut u64,
        end: u64,
        out: &mut [Pfn],
        scanned: &mut u64,
    ) -> usize {
        let mut n = 0;
        while *pfn < end && n < out.len() {
            let p = &self.mem_map[*pfn as usize];
            *scanned += 1;
            if p.is_buddy() {
                *pfn += 1u64 << p.order;
                continue;
            }
            if self.migratable(*pfn) {
                out[n] = Pfn(*pfn);
                n += 1;
            }
            *pfn += 1;
        }
        n
    }

    /// The free scanner (cf. `isolate_freepages()`,
    /// `suitable_migration_target()`): walk pageblocks down from
    /// `*free_pfn` (a pageblock start) while above `low`, taking free
    /// blocks below pageblock order out of Movable pageblocks and splitting
    /// them into order-0 targets, until `out` is full. Targets are marked
    /// allocated to [`OwnerTag::COMPACTION`].
    fn isolate_freepages(
        &mut self,
        zi: usize,
        free_pfn: &mut u64,
        low: u64,
        out: &mut [Pfn],
        have: &mut usize,
        scanned: &mut u64,
    ) {
        let (zone_start, zone_end) = (self.zones[zi].start_pfn.0, self.zones[zi].end_pfn.0);
        while *have < out.len()
            && *free_pfn + PAGEBLOCK_NR_PAGES > low
            && *free_pfn + PAGEBLOCK_NR_PAGES > zone_start
        {
            let block = *free_pfn;
            let end = (block + PAGEBLOCK_NR_PAGES).min(zone_end);
            let suitable = self.pageblock_migratetype(Pfn(block)) == MigrateType::Movable;
            let mut p = block.max(low).max(zone_start);
            while suitable && p < end && *have < out.len() {
                let page = &self.mem_map[p as usize];
                *scanned += 1;
                if !page.is_buddy() {
                    p += 1;
                    continue;
                }
                let order = usize::from(page.order);
                if order >= PAGEBLOCK_ORDER {
                    // A pageblock free as a whole is what compaction is
                    // making: never split it for targets.
                    p += 1 << order;
                    continue;
                }
                self.take_free_block(p as u32, order, zi);
                for i in 0..1u64 << order {
                    if *have < out.len() {
                        self.prep_new_page(Pfn(p + i), Order::ZERO, OwnerTag::COMPACTION);
                        out[*have] = Pfn(p + i);
                        *have += 1;
                    } else {
                        // More than needed: the rest goes straight back.
                        self.prep_new_page(Pfn(p + i), Order::ZERO, OwnerTag::COMPACTION);
                        let _ = self.free_pages(Pfn(p + i), Order::ZERO);
                    }
                }
                p += 1 << order;
            }
            if *have < out.len() {
                // Pageblock done: the next one down.
                if *free_pfn < PAGEBLOCK_NR_PAGES {
                    break;
                }
                *free_pfn -= PAGEBLOCK_NR_PAGES;
            }
        }
    }

    /// cf. `__compact_finished()` for an allocation of `order` and type
    /// `mt`: a free block of at least that order on `mt`'s lists, or on a
    /// fallback type's whose pageblock the request could claim.
    fn compact_finished(&self, zi: usize, order: Order, mt: MigrateType) -> bool {
        (order.index()..=MAX_ORDER).any(|o| {
            !self.zones[zi].free_area[o].is_empty(mt) || self.has_stealable_fallback(zi, o, mt)
        })
    }

    /// Move the descriptor state of a migrated page to its target, then
    /// free the source (cf. `folio_migrate_flags()`, `putback`, and the
    /// source's release in `migrate_pages()`).
    pub(crate) fn finish_migration(&mut self, src: Pfn, dst: Pfn) {
        let (owner, movable) = {
            let s = &self.mem_map[src.index()];
            (s.owner, s.flags.contains(PageFlags::MOVABLE))
        };
        {
            let d = &mut self.mem_map[dst.index()];
            d.owner = owner;
            if movable {
                d.flags.insert(PageFlags::MOVABLE);
            }
        }
        if self.mem_map[src.index()].flags.contains(PageFlags::LRU) {
            let _ = self.lru_replace(src, dst);
        }
        self.mem_map[src.index()].flags.remove(PageFlags::MOVABLE);
        let _ = self.free_pages(src, Order::ZERO);
    }
}

impl<P: Platform> MemoryManager<'_, P> {
    /// `compact_zone()`: compact zone `zt` — for an allocation of `order`
    /// (stopping as soon as a block of it is free), or, with `None`, all of
    /// it (`/proc/sys/vm/compact_memory`). Movable pages of `owner`'s and
    /// the page cache's move; counters go to vmstat. Not deferred or
    /// checked for suitability here: see [`MemoryManager::try_to_compact_pages`].
    pub fn compact_zone(
        &self,
        zt: ZoneType,
        target: Option<(Order, MigrateType)>,
        owner: &mut dyn MigrateOwner,
    ) -> CompactStats {
        let zi = zt.index();
        let mut stats = CompactStats {
            zone: zt,
            result: CompactResult::Complete,
            migrate_scanned: 0,
            free_scanned: 0,
            isolated: 0,
            migrated: 0,
            failed: 0,
        };
        let (start, end) = {
            let mut pa = self.lock();
            // Blocks on the per-CPU lists are free memory the scanners
            // would skip and that could never merge: give them back first.
            // And the scanners read every descriptor of the zone: deferred
            // init finishes first (Linux compacts only after
            // page_alloc_init_late()).
            pa.deferred_init_zone(zt);
            pa.drain_zone_pages(zi);
            let z = pa.zone(zt);
            (z.start_pfn.0, z.end_pfn.0)
        };
        if start >= end {
            return stats;
        }
        let mut migrate_pfn = start;
        let mut free_pfn = (end - 1) & !(PAGEBLOCK_NR_PAGES - 1);
        crate::trace_event!(
            self,
            MmCompactionBegin {
                zone_start: start,
                migrate_pfn,
                free_pfn,
                zone_end: end,
                sync: true
            }
        );
        let mut targets = [Pfn(0); COMPACT_CLUSTER_MAX];
        let mut nr_targets = 0usize;
        let mut met = false;
        while !met {
            let mut sources = [Pfn(0); COMPACT_CLUSTER_MAX];
            let nr_sources = {
                let pa = self.lock();
                if let Some((o, mt)) = target
                    && pa.compact_finished(zi, o, mt)
                {
                    stats.result = CompactResult::Success;
                    break;
                }
                // The migrate scanner stops below the free scanner's
                // pageblock: pages moved there must not move again.
                let limit = free_pfn.clamp(start, end);
                pa.scan_migratable(
                    &mut migrate_pfn,
                    limit,
                    &mut sources,
                    &mut stats.migrate_scanned,
                )
            };
            if nr_sources == 0 {
                break; // the migrate scanner reached the free scanner
            }
            let mut moves = [(Pfn(0), Pfn(0)); COMPACT_CLUSTER_MAX];
            let mut nr_moves = 0;
            for &src in &sources[..nr_sources] {
                if !owner.can_migrate(src) {
                    stats.failed += 1;
                    continue;
                }
                if nr_targets == 0 {
                    // Only targets above the page being moved: moving it
                    // down would undo compaction.
                    let mut pa = self.lock();
                    pa.isolate_freepages(
                        zi,
                        &mut free_pfn,
                        src.0 + 1,
                        &mut targets,
                        &mut nr_targets,
                        &mut stats.free_scanned,
                    );
                    stats.isolated += nr_targets as u64;
                }
                let Some(&dst) = targets[..nr_targets].last().filter(|d| d.0 > src.0) else {
                    met = true; // no free page above: the scanners met
                    break;
                };
                nr_targets -= 1;
                copy_frame(self.platform(), src, dst);
                moves[nr_moves] = (src, dst);
                nr_moves += 1;
                stats.isolated += 1;
            }
            if nr_moves > 0 {
                owner.migrated(&moves[..nr_moves]);
                let mut pa = self.lock();
                for &(src, dst) in &moves[..nr_moves] {
                    pa.finish_migration(src, dst);
                }
                // The sources went to the per-CPU lists as they were
                // freed; they must reach the buddy lists to merge (cf.
                // lru_add_drain_cpu_zone() → drain_local_pages() in
                // compact_zone()).
                pa.drain_zone_pages(zi);
                stats.migrated += nr_moves as u64;
            }
        }
        // cf. release_freepages(): unused targets go back.
        let mut pa = self.lock();
        for &t in &targets[..nr_targets] {
            let _ = pa.free_pages(t, Order::ZERO);
        }
        pa.drain_zone_pages(zi);
        if let Some((o, mt)) = target
            && pa.compact_finished(zi, o, mt)
        {
            stats.result = CompactResult::Success;
        }
        let ev = pa.vm_events_mut();
        ev.count(VmEvent::CompactMigrateScanned, stats.migrate_scanned);
        ev.count(VmEvent::CompactFreeScanned, stats.free_scanned);
        ev.count(VmEvent::CompactIsolated, stats.isolated);
        ev.count(VmEvent::PgMigrateSuccess, stats.migrated);
        ev.count(VmEvent::PgMigrateFail, stats.failed);
        drop(pa);
        crate::trace_event!(
            self,
            MmCompactionEnd {
                zone_start: start,
                migrate_pfn,
                free_pfn,
                zone_end: end,
                sync: true,
                status: stats.result.name()
            }
        );
        stats
    }

    /// `/proc/sys/vm/compact_memory` for one zone or all (cf.
    /// `compact_node()`): every populated zone compacted whole.
    pub fn compact_memory(
        &self,
        zone: Option<ZoneType>,
        owner: &mut dyn MigrateOwner,
    ) -> ([Option<CompactStats>; crate::zone::NR_ZONES], u64) {
        let mut out = [None; crate::zone::NR_ZONES];
        let mut total = 0;
        for zt in ZoneType::ALL {
            if zone.is_some_and(|z| z != zt) || !self.lock().zone(zt).is_populated() {
                continue;
            }
            let s = self.compact_zone(zt, None, owner);
            total += s.migrated;
            out[zt.index()] = Some(s);
        }
        (out, total)
    }

    /// Direct compaction for an allocation that failed (cf.
    /// `try_to_compact_pages()` → `compact_zone_order()` per zone of the
    /// zonelist): `compact_stall`, then each zone not deferred and suitable
    /// is compacted until the order is free; `compact_success` or
    /// `compact_fail`, deferring the zone on failure.
    pub fn try_to_compact_pages(
        &self,
        gfp: GfpFlags,
        order: Order,
        owner: &mut dyn MigrateOwner,
    ) -> CompactResult {
        let (highest, mt) = (gfp.gfp_zone(), gfp.migratetype());
        if order.get() == 0 {
            return CompactResult::Skipped;
        }
        self.lock().vm_events_mut().inc(VmEvent::CompactStall);
        let mut best = CompactResult::Skipped;
        for zi in (0..=highest.index()).rev() {
            let zt = ZoneType::ALL[zi];
            {
                let mut pa = self.lock();
                if !pa.zone(zt).is_populated() {
                    continue;
                }
                if pa.compact_defer_mut(zt).deferred(order) {
                    best = best_of(best, CompactResult::Deferred);
                    continue;
                }
                match pa.compaction_suitable(zt, order) {
                    CompactResult::Complete => {}
                    r => {
                        best = best_of(best, r);
                        if r == CompactResult::Success {
                            break;
                        }
                        continue;
                    }
                }
            }
            let s = self.compact_zone(zt, Some((order, mt)), owner);
            let mut pa = self.lock();
            if s.result == CompactResult::Success {
                pa.compact_defer_mut(zt).reset(order, false);
                best = CompactResult::Success;
                break;
            }
            pa.compact_defer_mut(zt).defer(order);
            best = best_of(best, s.result);
        }
        let mut pa = self.lock();
        pa.vm_events_mut().inc(if best == CompactResult::Success {
            VmEvent::CompactSuccess
        } else {
            VmEvent::CompactFail
        });
        best
    }
}

/// The more hopeful of two results.
fn best_of(a: CompactResult, b: CompactResult) -> CompactResult {
    let rank = |r| match r {
        CompactResult::Deferred => 0,
        CompactResult::Skipped => 1,
        CompactResult::Complete => 2,
        CompactResult::Success => 3,
    };
    if rank(b) > rank(a) { b } else { a }
}

/// Copies one frame to another through the platform, in pieces through a
/// small buffer (the platform lends one frame at a time).
pub(crate) fn copy_frame<P: Platform>(platform: &P, src: Pfn, dst: Pfn) {
    const CHUNK: usize = 512;
    let mut buf = [0u8; CHUNK];
    for at in (0..FRAME_BYTES).step_by(CHUNK) {
        platform.with_frame(src, &mut |s| buf.copy_from_slice(&s[at..at + CHUNK]));
        platform.with_frame(dst, &mut |d| d[at..at + CHUNK].copy_from_slice(&buf));
    }
}

#[cfg(test)]
mod tests;
