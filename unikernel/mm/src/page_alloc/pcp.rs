//! Per-CPU page lists (cf. `struct per_cpu_pages` in Linux 6.1).
//!
//! Most page allocations are small and short-lived. Splitting a 4 MiB
//! block ten times to hand out one frame, and merging it back ten times
//! when that frame is freed, is what the buddy allocator does for every
//! call; the per-CPU lists keep a small stock of blocks of orders
//! 0..=[`PAGE_ALLOC_COSTLY_ORDER`] per migrate type instead. An allocation
//! pops a block from its list, a free pushes it back (LIFO, so the frame
//! handed out next is the one most likely still in the cache), and the
//! zone's free lists are touched only in batches: [`PageAlloc::rmqueue_bulk`]
//! refills an empty list with `batch` blocks, and a list that grows past
//! `high` gives blocks back with [`PageAlloc::free_pcppages_bulk`].
//!
//! Accounting follows Linux: a block on a per-CPU list has left the buddy
//! free lists and `NR_FREE_PAGES` (buddyinfo and `free_pages` do not count
//! it); `/proc/zoneinfo` shows each list's `count`, `high` and `batch`.
//! [`PageAlloc::drain_all_pages`] gives everything back (cf.
//! `drain_all_pages()`): on `POST /api/reset`, before direct reclaim gives
//! up, before and after compaction and around CMA's range isolation.
//!
//! A block on a list is marked [`PageFlags::PCP`] with its order in the
//! head descriptor (Linux keeps the migrate type in `page->index` and no
//! flag; the flag is what lets a double free of such a block be refused and
//! the consistency walk account for it). Its other frames stay plain free
//! frames, as inside a buddy block.
//!
//! Structured per CPU: `Zone::pcp` has [`NR_CPUS`] pagesets and every
//! operation here works on [`PageAlloc::this_cpu`]'s; there is one CPU
//! until SMP brings the others up.

use super::PageAlloc;
use crate::page::{NIL, PageFlags};
use crate::types::{NR_CPUS, Order, Pfn};
use crate::zone::{FreeList, MIGRATE_PCPTYPES, MigrateType, NR_ZONES};

/// The highest order kept on per-CPU lists (cf. `PAGE_ALLOC_COSTLY_ORDER`).
pub use crate::compaction::PAGE_ALLOC_COSTLY_ORDER;

/// Lists per pageset: one per PCP migrate type and order
/// (cf. `NR_PCP_LISTS`, without THP's extra list).
pub const NR_PCP_LISTS: usize = MIGRATE_PCPTYPES * (PAGE_ALLOC_COSTLY_ORDER + 1);

/// How far `free_factor` may double the number of pages a run of frees
/// gives back at once (cf. `CONFIG_PCP_BATCH_SCALE_MAX`).
pub const PCP_BATCH_SCALE_MAX: u8 = 5;

/// One CPU's lists for one zone (cf. `struct per_cpu_pages`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PerCpuPages {
    /// Pages (not blocks) on all the lists.
    pub count: u32,
    /// Above this many pages a free gives a batch back to the buddy
    /// allocator; 0 turns the lists off (every call goes to the buddy).
    pub high: u32,
    /// Blocks taken from or given back to the buddy allocator at once.
    pub batch: u32,
    /// Doubles the pages a free gives back after each free that found the
    /// lists over `high` without an allocation in between; halved by every
    /// allocation (cf. `pcp->free_factor`).
    pub free_factor: u8,
    /// The lists, indexed by [`order_to_pindex`].
    pub lists: [FreeList; NR_PCP_LISTS],
}

impl PerCpuPages {
    /// The boot pageset: `high` 0 and `batch` 1, so nothing is kept (cf.
    /// `boot_pageset` and `pageset_init()`); [`PageAlloc::setup_watermarks`]
    /// sizes the real ones.
    pub const BOOT: PerCpuPages = PerCpuPages {
        count: 0,
        high: 0,
        batch: 1,
        free_factor: 0,
        lists: [FreeList::EMPTY; NR_PCP_LISTS],
    };
}

/// Which list holds blocks of `order` and type `mt` (cf. `order_to_pindex()`).
pub const fn order_to_pindex(mt: MigrateType, order: usize) -> usize {
    MIGRATE_PCPTYPES * order + mt as usize
}

/// The order of list `pindex` (cf. `pindex_to_order()`).
pub const fn pindex_to_order(pindex: usize) -> usize {
    pindex / MIGRATE_PCPTYPES
}

/// Whether blocks of `order` go through the per-CPU lists
/// (cf. `pcp_allowed_order()`).
pub const fn pcp_allowed_order(order: usize) -> bool {
    order <= PAGE_ALLOC_COSTLY_ORDER
}

/// `batch` for a zone of `managed` pages: about a quarter of a thousandth
/// of the zone, at most 1 MiB / 4, rounded to 2^n - 1 to spread the
/// batches over cache colours (cf. `zone_batchsize()`), and at least 1
/// (cf. `zone_set_pageset_high_and_batch()`).
pub fn zone_batchsize(managed: u64) -> u32 {
    let batch = ((managed >> 10).min((1 << 20) / crate::types::PAGE_SIZE) / 4).max(1);
    let spread = batch + batch / 2;
    let pow2 = 1u64 << (63 - spread.leading_zeros());
    ((pow2 - 1) as u32).max(1)
}

/// `high` for a zone: its LOW watermark split across the CPUs that share
/// the zone, so full lists never wake kswapd early, and at least four
/// batches (cf. `zone_highsize()` with `percpu_pagelist_high_fraction` 0).
pub fn zone_highsize(low_wmark: u64, batch: u32, nr_split_cpus: u32) -> u32 {
    let high = low_wmark / u64::from(nr_split_cpus.max(1));
    (high.min(u64::from(u32::MAX)) as u32).max(batch << 2)
}

impl PageAlloc<'_> {
    /// The CPU whose pagesets the locked calls use (cf. `this_cpu_ptr()`):
    /// the one holding the lock ([`PageAlloc::set_this_cpu`]).
    #[inline(always)]
    pub(crate) const fn this_cpu(&self) -> usize {
        self.cpu
    }

    /// Says which CPU holds the lock now; out-of-range CPUs use CPU 0's
    /// lists.
    #[inline(always)]
    pub fn set_this_cpu(&mut self, cpu: usize) {
        self.cpu = if cpu < NR_CPUS { cpu } else { 0 };
    }

    /// CPUs online (1 until SMP bring-up says more).
    pub fn nr_cpus(&self) -> usize {
        self.nr_cpus
    }

    /// Sets the CPUs online and resizes the lists' `high` for them (cf.
    /// `zone_pcp_update()` from the CPU-hotplug callbacks).
    pub fn set_nr_cpus(&mut self, n: usize) {
        self.nr_cpus = n.clamp(1, NR_CPUS);
        self.zone_pcp_update();
    }

    /// One CPU's pageset for zone `zt` (`/proc/zoneinfo`'s "pagesets").
    pub fn pageset(&self, zi: usize, cpu: usize) -> &PerCpuPages {
        &self.zones[zi].pcp[cpu]
    }

    /// Pages on every per-CPU list of every zone.
    pub fn nr_pcp_pages(&self) -> u64 {
        self.zones
            .iter()
            .flat_map(|z| z.pcp.iter())
            .map(|p| u64::from(p.count))
            .sum()
    }

    /// Whether the per-CPU lists are in use (`high` > 0 anywhere).
    pub fn pcp_enabled(&self) -> bool {
        self.pcp_on
    }

    /// Turn the per-CPU lists on (sized from the watermarks, as at boot) or
    /// off: drained, and back to the boot pageset's `high` 0 / `batch` 1,
    /// with which every call goes straight to the buddy allocator — what
    /// the benchmarks call "pcp bypassed" and some tests want for exact
    /// buddy predictions.
    pub fn set_pcp_enabled(&mut self, on: bool) {
        self.pcp_on = on;
        self.zone_pcp_update();
    }

    /// Size every zone's pagesets from its watermarks (cf.
    /// `zone_pcp_update()` → `zone_set_pageset_high_and_batch()`), or reset
    /// them to the boot pageset while the lists are off. Lists over the new
    /// `high` are drained.
    pub(crate) fn zone_pcp_update(&mut self) {
        for zi in 0..NR_ZONES {
            let zone = &self.zones[zi];
            let (high, batch) = if self.pcp_on && zone.is_populated() {
                let batch = zone_batchsize(zone.managed_pages);
                (
                    zone_highsize(zone.watermarks.low, batch, self.nr_cpus as u32),
                    batch,
                )
            } else {
                (0, 1)
            };
            self.set_zone_pagesets(zi, high, batch);
        }
        // The watermarks (`setup_watermarks` ends here), `high` and the
        // lists' on/off state all feed the fast paths.
        self.refresh_fast_paths();
    }

    /// Every pageset of zone `zi` gets `high` and `batch`; lists over the
    /// new `high` are drained (cf. `pageset_update()`).
    fn set_zone_pagesets(&mut self, zi: usize, high: u32, batch: u32) {
        for cpu in 0..NR_CPUS {
            let pcp = &mut self.zones[zi].pcp[cpu];
            pcp.high = high;
            pcp.batch = batch;
            if pcp.count > high {
                self.drain_pages_zone(zi, cpu);
            }
        }
    }

    /// Every populated zone's pagesets get `high` and `batch` (lists over
    /// the new `high` drained): tests force refills and trims with small
    /// ones (cf. writing `percpu_pagelist_high_fraction`, which sets
    /// `high` only).
    #[cfg(test)]
    pub(crate) fn set_pcp_high_batch(&mut self, high: u32, batch: u32) {
        for zi in 0..NR_ZONES {
            if self.zones[zi].is_populated() {
                self.set_zone_pagesets(zi, high, batch);
            }
        }
        self.refresh_fast_paths();
    }

    /// cf. `rmqueue_pcplist()` → `__rmqueue_pcplist()`: the first block of
    /// the list for (`order`, `mt`), refilled with `batch` blocks (scaled
    /// down by order) when empty. `None` when the lists are off or the
    /// buddy allocator had nothing.
    #[inline]
    pub(super) fn rmqueue_pcplist(
        &mut self,
        zi: usize,
        order: usize,
        mt: MigrateType,
        flags: super::AllocFlags,
    ) -> Option<Pfn> {
        let cpu = self.this_cpu();
        let pindex = order_to_pindex(mt, order);
        let pcp = &mut self.zones[zi].pcp[cpu];
        if pcp.high == 0 {
            return None;
        }
        pcp.free_factor >>= 1;
        if pcp.lists[pindex].head == NIL {
            let mut batch = pcp.batch;
            if batch > 1 {
                batch = (batch >> order).max(2);
            }
            if self.rmqueue_bulk(zi, cpu, order, batch, pindex, mt, flags) == 0 {
                return None;
            }
        }
        self.zones[zi].pcp[cpu].count -= 1 << order;
        let pfn = self.pcp_list_pop_head(zi, cpu, pindex);
        self.mem_map[pfn as usize].flags.remove(PageFlags::PCP);
        Some(Pfn(u64::from(pfn)))
    }

    /// Move up to `count` blocks of `order` from the buddy free lists (with
    /// fallback, as any allocation) to the tail of list `pindex`; returns
    /// how many (cf. `rmqueue_bulk()`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn rmqueue_bulk(
        &mut self,
        zi: usize,
        cpu: usize,
        order: usize,
        count: u32,
        pindex: usize,
        mt: MigrateType,
        flags: super::AllocFlags,
    ) -> u32 {
        let o = Order::new(order as u8).unwrap_or(Order::ZERO);
        let mut alloced = 0;
        while alloced < count {
            // `__rmqueue()`'s search of `mt`'s own lists, inline; its
            // fallback (which searches them again first) only when they
            // have nothing.
            let pfn = match self.rmqueue_nofallback(zi, o, mt, flags) {
                Some(pfn) => pfn,
                None => match self.__rmqueue(zi, o, mt, flags) {
                    Some(pfn) => pfn.0 as u32,
                    None => break,
                },
            };
            let p = &mut self.mem_map[pfn as usize];
            p.flags.insert(PageFlags::PCP);
            p.order = order as u8;
            self.pcp_list_add(zi, cpu, pindex, pfn, true);
            alloced += 1;
        }
        self.zones[zi].pcp[cpu].count += alloced << order;
        alloced
    }

    /// Put a freed block of at most costly order on this CPU's list, or
    /// hand it straight to the buddy allocator when the lists are off or
    /// its pageblock is isolated; then trim a list grown past `high` (cf.
    /// `free_unref_page()` → `free_unref_page_commit()`). The block's
    /// descriptors are already clean.
    #[inline]
    pub(super) fn free_unref_page(&mut self, pfn: Pfn, order: usize, zi: usize) {
        let mt = self.pageblock_migratetype(pfn);
        let cpu = self.this_cpu();
        if self.zones[zi].pcp[cpu].high == 0 || mt == MigrateType::Isolate {
            self.free_one_page(pfn.0, order, zi, mt, false);
            return;
        }
        // HighAtomic and CMA blocks wait on the Movable lists, so they can
        // be had back; the drain returns them to their own lists.
        let pcp_mt = if mt.index() >= MIGRATE_PCPTYPES {
            MigrateType::Movable
        } else {
            mt
        };
        let pindex = order_to_pindex(pcp_mt, order);
        let pfn = pfn.0 as u32;
        let p = &mut self.mem_map[pfn as usize];
        p.flags.insert(PageFlags::PCP);
        p.order = order as u8;
        self.pcp_list_add(zi, cpu, pindex, pfn, false);
        let pcp = &mut self.zones[zi].pcp[cpu];
        pcp.count += 1 << order;
        // High-order blocks freed in a row (no allocation between) are not
        // kept: they fragment the zone (cf. `free_high`).
        let free_high = pcp.free_factor > 0 && order > 0;
        let high = if free_high { 0 } else { pcp.high };
        if pcp.count >= high {
            let n = nr_pcp_free(pcp, high, free_high);
            self.free_pcppages_bulk(zi, cpu, n, pindex);
        }
    }

    /// Empty one CPU's lists for zone `zi` (cf. `drain_pages_zone()`).
    fn drain_pages_zone(&mut self, zi: usize, cpu: usize) -> u64 {
        let count = self.zones[zi].pcp[cpu].count;
        if count > 0 {
            self.free_pcppages_bulk(zi, cpu, count, 0);
        }
        u64::from(count)
    }

    /// Empty every CPU's lists for zone `zi` (cf. `drain_all_pages(zone)`);
    /// returns the pages given back.
    pub fn drain_zone_pages(&mut self, zi: usize) -> u64 {
        (0..NR_CPUS).map(|cpu| self.drain_pages_zone(zi, cpu)).sum()
    }

    /// Empty every per-CPU list of every zone (cf. `drain_all_pages(NULL)`);
    /// returns the pages given back to the buddy allocator.
    pub fn drain_all_pages(&mut self) -> u64 {
        (0..NR_ZONES).map(|zi| self.drain_zone_pages(zi)).sum()
    }
}

/// How many pages a free over `high` gives back: `batch`, doubled per
/// consecutive such free (up to [`PCP_BATCH_SCALE_MAX`]), keeping at
/// least `batch` on the list; everything for high-order frees in a row
/// (cf. `nr_pcp_free()`).
pub(super) fn nr_pcp_free(pcp: &mut PerCpuPages, high: u32, free_high: bool) -> u32 {
    if free_high {
        return pcp.count;
    }
    let batch = pcp.batch;
    if high < batch {
        return 1;
    }
    let (min_nr_free, max_nr_free) = (batch, high - batch);
    let scaled = batch << pcp.free_factor;
    if scaled < max_nr_free && pcp.free_factor < PCP_BATCH_SCALE_MAX {
        pcp.free_factor += 1;
    }
    scaled.clamp(min_nr_free, max_nr_free.max(min_nr_free))
}
