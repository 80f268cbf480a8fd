//! VM event counters (cf. `include/linux/vm_event_item.h`, the event half
//! of `mm/vmstat.c`).
//!
//! [`VmEvents`] holds one `u64` per [`VmEvent`]: monotonic counts of things
//! that happened (pages allocated, freed, faulted, scanned…), as opposed to
//! the zone and node *state* counters, which `/proc/vmstat` computes from
//! the structures (see [`crate::procfs::vmstat`]). Linux keeps these per CPU
//! and sums them on read (`all_vm_events()`); there is one CPU and the
//! caller holds the zone lock, so here they are plain adds.
//!
//! The enum lists the events Pagezone's mechanisms map to, in Linux 6.1's
//! `enum vm_event_item` order, with the zones Pagezone has (DMA, DMA32,
//! Normal, HighMem — no Movable or Device zone) for the per-zone items.
//! API.md promises that every counter shown is real, so a counter is
//! printed only once it is listed in [`MAINTAINED`], and it goes there
//! only when the code that counts it lands. The other variants exist so
//! that those mechanisms have their name ready; they stay 0 and hidden.

use crate::types::NR_ORDERS;
use crate::zone::{NR_ZONES, ZoneType};

/// One VM event (cf. `enum vm_event_item`). Variants are in Linux's order,
/// so sorting by discriminant is `vmstat_text[]` order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum VmEvent {
    /// `pgpgin`: data read in from backing store (pagecache read-back),
    /// counted in 512-byte sectors and shown in kB, as Linux does (cf.
    /// `submit_bio()` and `vmstat_start()`).
    PgpgIn,
    /// `pgpgout`: data written out, in sectors, shown in kB.
    PgpgOut,
    /// `pgalloc_dma`: pages allocated from ZONE_DMA.
    PgAllocDma,
    /// `pgalloc_dma32`.
    PgAllocDma32,
    /// `pgalloc_normal`.
    PgAllocNormal,
    /// `pgalloc_high`.
    PgAllocHigh,
    /// `allocstall_dma`: direct reclaim entered for a request whose
    /// highest zone is DMA.
    AllocStallDma,
    /// `allocstall_dma32`.
    AllocStallDma32,
    /// `allocstall_normal`.
    AllocStallNormal,
    /// `allocstall_high`.
    AllocStallHigh,
    /// `pgfree`: pages freed to the buddy allocator (boot hand-over included,
    /// as in Linux, where `__free_pages_core()` goes through
    /// `__free_pages_ok()`).
    PgFree,
    /// `pgactivate`: pages moved to an active LRU list.
    PgActivate,
    /// `pgdeactivate`: pages moved to an inactive LRU list.
    PgDeactivate,
    /// `pgfault`: page faults handled.
    PgFault,
    /// `pgmajfault`: faults that needed a read from backing store.
    PgMajFault,
    /// `pgrefill`: active-list pages scanned for deactivation.
    PgRefill,
    /// `pgsteal_kswapd`: pages reclaimed by kswapd.
    PgStealKswapd,
    /// `pgsteal_direct`: pages reclaimed by direct reclaim.
    PgStealDirect,
    /// `pgscan_kswapd`: inactive pages scanned by kswapd.
    PgScanKswapd,
    /// `pgscan_direct`: inactive pages scanned by direct reclaim.
    PgScanDirect,
    /// `pgscan_anon`.
    PgScanAnon,
    /// `pgscan_file`.
    PgScanFile,
    /// `pgsteal_anon`.
    PgStealAnon,
    /// `pgsteal_file`.
    PgStealFile,
    /// `slabs_scanned`: objects the shrinkers were asked to scan.
    SlabsScanned,
    /// `kswapd_low_wmark_hit_quickly`: kswapd found the LOW watermark met
    /// and went to sleep at once.
    KswapdLowWmarkHitQuickly,
    /// `kswapd_high_wmark_hit_quickly`.
    KswapdHighWmarkHitQuickly,
    /// `pageoutrun`: kswapd balancing runs.
    PageOutRun,
    /// `drop_pagecache`: writes of 1 or 3 to `drop_caches`.
    DropPagecache,
    /// `drop_slab`: writes of 2 or 3 to `drop_caches`.
    DropSlab,
    /// `oom_kill`: tasks killed by the OOM killer.
    OomKill,
    /// `pgmigrate_success`: pages migrated.
    PgMigrateSuccess,
    /// `pgmigrate_fail`: pages that could not be migrated.
    PgMigrateFail,
    /// `compact_migrate_scanned`: pages the migration scanner looked at.
    CompactMigrateScanned,
    /// `compact_free_scanned`: pages the free scanner looked at.
    CompactFreeScanned,
    /// `compact_isolated`: pages isolated by either scanner.
    CompactIsolated,
    /// `compact_stall`: direct compaction attempts.
    CompactStall,
    /// `compact_fail`: direct compactions that did not help.
    CompactFail,
    /// `compact_success`: direct compactions after which the request
    /// succeeded.
    CompactSuccess,
    /// `compact_daemon_wake`: kcompactd wake-ups.
    CompactDaemonWake,
    /// `compact_daemon_migrate_scanned`.
    CompactDaemonMigrateScanned,
    /// `compact_daemon_free_scanned`.
    CompactDaemonFreeScanned,
    /// `cma_alloc_success`.
    CmaAllocSuccess,
    /// `cma_alloc_fail`.
    CmaAllocFail,
}

/// Number of [`VmEvent`]s (cf. `NR_VM_EVENT_ITEMS`).
pub const NR_VM_EVENTS: usize = VmEvent::CmaAllocFail as usize + 1;

/// The events something in Pagezone counts today, in `vmstat_text[]` order.
/// `/proc/vmstat` prints exactly these. Add an event here in the same
/// change that starts counting it (a host test checks that the others stay
/// 0 under the page allocator).
pub const MAINTAINED: &[VmEvent] = &[
    // The page cache's reads (`net::api::pagecache`).
    VmEvent::PgpgIn,
    VmEvent::PgAllocDma,
    VmEvent::PgAllocDma32,
    VmEvent::PgAllocNormal,
    VmEvent::PgAllocHigh,
    // Direct reclaim in the allocation slow path (`net::api::tasks`).
    VmEvent::AllocStallDma,
    VmEvent::AllocStallDma32,
    VmEvent::AllocStallNormal,
    VmEvent::AllocStallHigh,
    VmEvent::PgFree,
    // LRU aging and reclaim (`crate::vmscan`).
    VmEvent::PgActivate,
    VmEvent::PgDeactivate,
    // Demand paging (`crate::fault`) and the page cache's major faults.
    VmEvent::PgFault,
    VmEvent::PgMajFault,
    VmEvent::PgRefill,
    VmEvent::PgStealKswapd,
    VmEvent::PgStealDirect,
    VmEvent::PgScanKswapd,
    VmEvent::PgScanDirect,
    VmEvent::PgScanFile,
    VmEvent::PgStealFile,
    // Counted by the HTTP layer's OOM killer (`net::api::tasks`).
    VmEvent::OomKill,
    // Compaction and migration (`crate::compaction`).
    VmEvent::PgMigrateSuccess,
    VmEvent::PgMigrateFail,
    VmEvent::CompactMigrateScanned,
    VmEvent::CompactFreeScanned,
    VmEvent::CompactIsolated,
    VmEvent::CompactStall,
    VmEvent::CompactFail,
    VmEvent::CompactSuccess,
];

impl VmEvent {
    /// Every event, in Linux order.
    pub const ALL: [VmEvent; NR_VM_EVENTS] = {
        use VmEvent::*;
        [
            PgpgIn,
            PgpgOut,
            PgAllocDma,
            PgAllocDma32,
            PgAllocNormal,
            PgAllocHigh,
            AllocStallDma,
            AllocStallDma32,
            AllocStallNormal,
            AllocStallHigh,
            PgFree,
            PgActivate,
            PgDeactivate,
            PgFault,
            PgMajFault,
            PgRefill,
            PgStealKswapd,
            PgStealDirect,
            PgScanKswapd,
            PgScanDirect,
            PgScanAnon,
            PgScanFile,
            PgStealAnon,
            PgStealFile,
            SlabsScanned,
            KswapdLowWmarkHitQuickly,
            KswapdHighWmarkHitQuickly,
            PageOutRun,
            DropPagecache,
            DropSlab,
            OomKill,
            PgMigrateSuccess,
            PgMigrateFail,
            CompactMigrateScanned,
            CompactFreeScanned,
            CompactIsolated,
            CompactStall,
            CompactFail,
            CompactSuccess,
            CompactDaemonWake,
            CompactDaemonMigrateScanned,
            CompactDaemonFreeScanned,
            CmaAllocSuccess,
            CmaAllocFail,
        ]
    };

    /// The name in `/proc/vmstat` (cf. `vmstat_text[]`).
    pub const fn name(self) -> &'static str {
        use VmEvent::*;
        match self {
            PgpgIn => "pgpgin",
            PgpgOut => "pgpgout",
            PgAllocDma => "pgalloc_dma",
            PgAllocDma32 => "pgalloc_dma32",
            PgAllocNormal => "pgalloc_normal",
            PgAllocHigh => "pgalloc_high",
            AllocStallDma => "allocstall_dma",
            AllocStallDma32 => "allocstall_dma32",
            AllocStallNormal => "allocstall_normal",
            AllocStallHigh => "allocstall_high",
            PgFree => "pgfree",
            PgActivate => "pgactivate",
            PgDeactivate => "pgdeactivate",
            PgFault => "pgfault",
            PgMajFault => "pgmajfault",
            PgRefill => "pgrefill",
            PgStealKswapd => "pgsteal_kswapd",
            PgStealDirect => "pgsteal_direct",
            PgScanKswapd => "pgscan_kswapd",
            PgScanDirect => "pgscan_direct",
            PgScanAnon => "pgscan_anon",
            PgScanFile => "pgscan_file",
            PgStealAnon => "pgsteal_anon",
            PgStealFile => "pgsteal_file",
            SlabsScanned => "slabs_scanned",
            KswapdLowWmarkHitQuickly => "kswapd_low_wmark_hit_quickly",
            KswapdHighWmarkHitQuickly => "kswapd_high_wmark_hit_quickly",
            PageOutRun => "pageoutrun",
            DropPagecache => "drop_pagecache",
            DropSlab => "drop_slab",
            OomKill => "oom_kill",
            PgMigrateSuccess => "pgmigrate_success",
            PgMigrateFail => "pgmigrate_fail",
            CompactMigrateScanned => "compact_migrate_scanned",
            CompactFreeScanned => "compact_free_scanned",
            CompactIsolated => "compact_isolated",
            CompactStall => "compact_stall",
            CompactFail => "compact_fail",
            CompactSuccess => "compact_success",
            CompactDaemonWake => "compact_daemon_wake",
            CompactDaemonMigrateScanned => "compact_daemon_migrate_scanned",
            CompactDaemonFreeScanned => "compact_daemon_free_scanned",
            CmaAllocSuccess => "cma_alloc_success",
            CmaAllocFail => "cma_alloc_fail",
        }
    }

    /// `pgalloc_<zone>` (cf. `PGALLOC` + `zone_idx` in `__count_zid_vm_events()`).
    pub const fn pgalloc(zone: ZoneType) -> VmEvent {
        match zone {
            ZoneType::Dma => VmEvent::PgAllocDma,
            ZoneType::Dma32 => VmEvent::PgAllocDma32,
            ZoneType::Normal => VmEvent::PgAllocNormal,
            ZoneType::HighMem => VmEvent::PgAllocHigh,
        }
    }

    /// `allocstall_<zone>`, for the request's highest zone (cf.
    /// `__count_zid_vm_events(ALLOCSTALL, sc->reclaim_idx, 1)`).
    pub const fn allocstall(zone: ZoneType) -> VmEvent {
        match zone {
            ZoneType::Dma => VmEvent::AllocStallDma,
            ZoneType::Dma32 => VmEvent::AllocStallDma32,
            ZoneType::Normal => VmEvent::AllocStallNormal,
            ZoneType::HighMem => VmEvent::AllocStallHigh,
        }
    }

    /// Whether [`MAINTAINED`] lists this event (it is printed).
    pub fn is_maintained(self) -> bool {
        MAINTAINED.contains(&self)
    }
}

// The per-zone items must be consecutive in zone order for `count_zid`.
const _: () = {
    assert!(VmEvent::PgAllocHigh as usize - VmEvent::PgAllocDma as usize == NR_ZONES - 1);
    assert!(VmEvent::AllocStallHigh as usize - VmEvent::AllocStallDma as usize == NR_ZONES - 1);
};

/// The event counters (cf. `struct vm_event_state`, summed over CPUs).
/// Counters wrap on overflow, as Linux's `unsigned long`s do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmEvents {
    counters: [u64; NR_VM_EVENTS],
}

impl Default for VmEvents {
    fn default() -> Self {
        VmEvents::new()
    }
}

impl VmEvents {
    /// All counters 0.
    pub const fn new() -> VmEvents {
        VmEvents {
            counters: [0; NR_VM_EVENTS],
        }
    }

    /// Add `n` to `item` (cf. `count_vm_events()`).
    #[inline]
    pub fn count(&mut self, item: VmEvent, n: u64) {
        let c = &mut self.counters[item as usize];
        *c = c.wrapping_add(n);
    }

    /// Add 1 to `item` (cf. `count_vm_event()`).
    #[inline]
    pub fn inc(&mut self, item: VmEvent) {
        self.count(item, 1);
    }

    /// Add `n` to the per-zone item of zone index `zid`, `base` being the
    /// item's DMA variant (cf. `__count_zid_vm_events()`); for the hot
    /// paths, which hold a zone index rather than a [`ZoneType`].
    #[inline]
    pub(crate) fn count_zid(&mut self, base: VmEvent, zid: usize, n: u64) {
        let c = &mut self.counters[base as usize + zid];
        *c = c.wrapping_add(n);
    }

    /// The value of `item` (cf. `all_vm_events()` for one item).
    pub const fn get(&self, item: VmEvent) -> u64 {
        self.counters[item as usize]
    }

    /// The value `/proc/vmstat` shows for `item`: [`VmEvents::get`], but
    /// `pgpgin`/`pgpgout` turned from sectors into kB (cf. `vmstat_start()`).
    pub const fn reported(&self, item: VmEvent) -> u64 {
        match item {
            VmEvent::PgpgIn | VmEvent::PgpgOut => self.get(item) / 2,
            _ => self.get(item),
        }
    }

    /// `(event, reported value)` for each [`MAINTAINED`] event, in Linux
    /// order: what `/proc/vmstat` prints after the state counters.
    pub fn maintained(self) -> impl Iterator<Item = (VmEvent, u64)> {
        MAINTAINED.iter().map(move |&e| (e, self.reported(e)))
    }
}

/// Blocks handed out, freed and refused by the page allocator, per zone
/// and order: `/metrics`' `pagezone_page_{alloc,free,alloc_fail}_total`.
///
/// Linux has no such table (`pgalloc_<zone>` and `pgfree` count pages,
/// not blocks, and no zone-and-order split exists in `/proc/vmstat`); its
/// nearest relative is the `mm_page_alloc` tracepoint's `order` and
/// `zone` fields, aggregated. [`PageAlloc::alloc_pages`] counts each call:
/// a success under the zone the block came from, a `NoMemory` failure
/// under the request's highest zone (`gfp_zone()`, as `allocstall_<zone>`
/// is counted), so a request that the slow path retries after reclaim
/// counts each failed attempt. [`PageAlloc::free_pages`] counts each block
/// freed; the boot hand-over of memblock's memory is not a free here.
///
/// [`PageAlloc::alloc_pages`]: crate::page_alloc::PageAlloc::alloc_pages
/// [`PageAlloc::free_pages`]: crate::page_alloc::PageAlloc::free_pages
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllocCounters {
    /// Blocks allocated, by zone index and order.
    pub alloc: [[u64; NR_ORDERS]; NR_ZONES],
    /// Blocks freed, by zone index and order.
    pub free: [[u64; NR_ORDERS]; NR_ZONES],
    /// Failed allocations, by the request's highest zone and order.
    pub fail: [[u64; NR_ORDERS]; NR_ZONES],
}

impl Default for AllocCounters {
    fn default() -> Self {
        AllocCounters::ZERO
    }
}

impl AllocCounters {
    /// All counters 0.
    pub const ZERO: AllocCounters = AllocCounters {
        alloc: [[0; NR_ORDERS]; NR_ZONES],
        free: [[0; NR_ORDERS]; NR_ZONES],
        fail: [[0; NR_ORDERS]; NR_ZONES],
    };

    #[inline]
    fn bump(table: &mut [[u64; NR_ORDERS]; NR_ZONES], zid: usize, order: usize) {
        if let Some(c) = table.get_mut(zid).and_then(|t| t.get_mut(order)) {
            *c = c.wrapping_add(1);
        }
    }

    /// One block of `order` allocated from zone index `zid`.
    #[inline]
    pub(crate) fn count_alloc(&mut self, zid: usize, order: usize) {
        Self::bump(&mut self.alloc, zid, order);
    }

    /// One block of `order` freed to zone index `zid`.
    #[inline]
    pub(crate) fn count_free(&mut self, zid: usize, order: usize) {
        Self::bump(&mut self.free, zid, order);
    }

    /// `n` blocks of `order` allocated from zone index `zid` (a CPU's
    /// fast-path counts, folded).
    #[inline]
    pub(crate) fn add_alloc(&mut self, zid: usize, order: usize, n: u64) {
        if let Some(c) = self.alloc.get_mut(zid).and_then(|t| t.get_mut(order)) {
            *c = c.wrapping_add(n);
        }
    }

    /// `n` blocks of `order` freed to zone index `zid` (folded).
    #[inline]
    pub(crate) fn add_free(&mut self, zid: usize, order: usize, n: u64) {
        if let Some(c) = self.free.get_mut(zid).and_then(|t| t.get_mut(order)) {
            *c = c.wrapping_add(n);
        }
    }

    /// One failed request of `order` whose highest zone is index `zid`.
    #[inline]
    pub(crate) fn count_fail(&mut self, zid: usize, order: usize) {
        Self::bump(&mut self.fail, zid, order);
    }
}

#[cfg(test)]
mod tests;
