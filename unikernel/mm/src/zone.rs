//! Zones: the physical-address classes a frame can belong to, and the
//! per-zone bookkeeping (free areas, counters, watermarks, `lowmem_reserve`).
//!
//! Zones exist because not every frame can serve every request: an ISA-style
//! device reaches only the first 16 MiB (DMA), a 32-bit device only the first
//! 4 GiB (DMA32), and HighMem frames have no permanent kernel mapping. The
//! layout follows 32-bit-style Linux with a configurable `lowmem` limit (cf.
//! `zone_sizes_init()`, `max_low_pfn`) so every kind of zone can be populated
//! in one guest. This module only describes zones; the buddy allocator in
//! [`crate::page_alloc`] mutates them.

use crate::page::NIL;
use crate::types::{NR_ORDERS, PAGE_SHIFT, Pfn};

/// Zone kinds, lowest addresses first (cf. `enum zone_type`). The numeric
/// value is the zone index used in `lowmem_reserve[]` and `Page::zone`.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ZoneType {
    /// `[0, 16 MiB)`: reachable by 24-bit ISA DMA.
    Dma = 0,
    /// `[16 MiB, min(4 GiB, lowmem))`: reachable by 32-bit DMA.
    Dma32 = 1,
    /// `[4 GiB, lowmem)`: direct-mapped memory above 4 GiB.
    Normal = 2,
    /// `[lowmem, max_pfn)`: not in the direct map; needs kmap.
    HighMem = 3,
}

/// Number of zone kinds (cf. `MAX_NR_ZONES`).
pub const NR_ZONES: usize = 4;

/// First PFN above ZONE_DMA (cf. `MAX_DMA_PFN`): 16 MiB.
pub const MAX_DMA_PFN: u64 = (16 << 20) >> PAGE_SHIFT;
/// First PFN above ZONE_DMA32 (cf. `MAX_DMA32_PFN`): 4 GiB.
pub const MAX_DMA32_PFN: u64 = (4 << 30) >> PAGE_SHIFT;

impl ZoneType {
    /// All zones in index order.
    pub const ALL: [ZoneType; NR_ZONES] = [
        ZoneType::Dma,
        ZoneType::Dma32,
        ZoneType::Normal,
        ZoneType::HighMem,
    ];

    /// The name Linux prints in `/proc/zoneinfo` and `/proc/buddyinfo`.
    pub const fn name(self) -> &'static str {
        match self {
            ZoneType::Dma => "DMA",
            ZoneType::Dma32 => "DMA32",
            ZoneType::Normal => "Normal",
            ZoneType::HighMem => "HighMem",
        }
    }

    /// Zone index (cf. `zone_idx()`).
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Inverse of [`ZoneType::index`].
    pub const fn from_index(idx: usize) -> Option<ZoneType> {
        match idx {
            0 => Some(ZoneType::Dma),
            1 => Some(ZoneType::Dma32),
            2 => Some(ZoneType::Normal),
            3 => Some(ZoneType::HighMem),
            _ => None,
        }
    }

    /// Whether frames of this zone lack a direct-map address
    /// (cf. `is_highmem_idx()`).
    pub const fn is_highmem(self) -> bool {
        matches!(self, ZoneType::HighMem)
    }
}

/// Where the zone boundaries fall for one machine.
///
/// `lowmem_pfn` is the `lowmem=` limit (cf. `max_low_pfn`); `max_pfn` is one
/// past the last RAM frame. Zones tile `[0, max_pfn)` without gaps: each
/// starts where the previous one ends, and an empty zone has
/// `start_pfn == end_pfn` at that point (cf. `arch_zone_lowest_possible_pfn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZoneLayout {
    /// First frame that is not direct-mapped (start of HighMem).
    pub lowmem_pfn: Pfn,
    /// One past the last frame with a descriptor.
    pub max_pfn: Pfn,
}

impl ZoneLayout {
    /// Default `lowmem=` limit: 896 MiB, the classic i386 split.
    pub const DEFAULT_LOWMEM_BYTES: u64 = 896 << 20;

    /// A layout from byte limits: `lowmem_bytes` rounded down and
    /// `end_of_ram_bytes` rounded down to whole frames (cf. `PFN_DOWN()` of
    /// `memblock_end_of_DRAM()`).
    pub const fn from_bytes(lowmem_bytes: u64, end_of_ram_bytes: u64) -> ZoneLayout {
        ZoneLayout {
            lowmem_pfn: Pfn(lowmem_bytes >> PAGE_SHIFT),
            max_pfn: Pfn(end_of_ram_bytes >> PAGE_SHIFT),
        }
    }

    /// The lowmem limit clipped to `max_pfn`: everything below is
    /// direct-mapped.
    pub const fn effective_lowmem_pfn(&self) -> Pfn {
        if self.lowmem_pfn.0 < self.max_pfn.0 {
            self.lowmem_pfn
        } else {
            self.max_pfn
        }
    }

    /// Upper bound of each zone before clipping to the previous zone's end
    /// (cf. `max_zone_pfns[]` in `zone_sizes_init()`).
    const fn zone_limit(&self, zt: ZoneType) -> u64 {
        let low = self.effective_lowmem_pfn().0;
        match zt {
            ZoneType::Dma => min(MAX_DMA_PFN, low),
            ZoneType::Dma32 => min(MAX_DMA32_PFN, low),
            ZoneType::Normal => low,
            ZoneType::HighMem => self.max_pfn.0,
        }
    }

    /// `[start, end)` PFN range of `zt`; may be empty.
    pub const fn zone_range(&self, zt: ZoneType) -> (Pfn, Pfn) {
        let start = match zt {
            ZoneType::Dma => 0,
            ZoneType::Dma32 => self.zone_limit(ZoneType::Dma),
            ZoneType::Normal => self.zone_limit(ZoneType::Dma32),
            ZoneType::HighMem => self.zone_limit(ZoneType::Normal),
        };
        let end = self.zone_limit(zt);
        (Pfn(start), Pfn(if end > start { end } else { start }))
    }

    /// The zone `pfn` falls in, or `None` at or above `max_pfn`
    /// (cf. `page_zonenum()` computed from the layout).
    pub const fn zone_of(&self, pfn: Pfn) -> Option<ZoneType> {
        if pfn.0 >= self.max_pfn.0 {
            return None;
        }
        let mut i = 0;
        while i < NR_ZONES {
            let zt = ZoneType::ALL[i];
            let (s, e) = self.zone_range(zt);
            if pfn.0 >= s.0 && pfn.0 < e.0 {
                return Some(zt);
            }
            i += 1;
        }
        None
    }
}

const fn min(a: u64, b: u64) -> u64 {
    if a < b { a } else { b }
}

/// `pageblock_order` on x86_64 (`HUGETLB_PAGE_ORDER`): the granule that
/// carries a migrate type.
pub const PAGEBLOCK_ORDER: usize = 9;
/// Frames per pageblock (cf. `pageblock_nr_pages`).
pub const PAGEBLOCK_NR_PAGES: u64 = 1 << PAGEBLOCK_ORDER;

/// What may be done with a page's contents, which decides where it is
/// allocated from so that unmovable pages do not pin every pageblock
/// (cf. `enum migratetype` in `include/linux/mmzone.h`, Linux's order with
/// `CONFIG_CMA` and `CONFIG_MEMORY_ISOLATION`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MigrateType {
    /// Kernel memory that cannot move (slab, page tables, most of the API).
    Unmovable = 0,
    /// Can be migrated (`__GFP_MOVABLE`: user-style and page-cache pages).
    Movable = 1,
    /// Can be freed by reclaim (`__GFP_RECLAIMABLE`: reclaimable slabs).
    Reclaimable = 2,
    /// Pageblocks kept for high-order atomic allocations
    /// (`reserve_highatomic_pageblock()`).
    HighAtomic = 3,
    /// A CMA area: lent to movable allocations only.
    Cma = 4,
    /// Being isolated (compaction, CMA): no allocation from it.
    Isolate = 5,
}

/// Number of migrate types (cf. `MIGRATE_TYPES`).
pub const MIGRATE_TYPES: usize = 6;
/// Types that have per-CPU lists and merge freely (cf. `MIGRATE_PCPTYPES`).
pub const MIGRATE_PCPTYPES: usize = 3;

impl MigrateType {
    /// Every type, in index order.
    pub const ALL: [MigrateType; MIGRATE_TYPES] = [
        MigrateType::Unmovable,
        MigrateType::Movable,
        MigrateType::Reclaimable,
        MigrateType::HighAtomic,
        MigrateType::Cma,
        MigrateType::Isolate,
    ];

    /// `migratetype_names[]`: what `/proc/pagetypeinfo` prints.
    pub const fn name(self) -> &'static str {
        match self {
            MigrateType::Unmovable => "Unmovable",
            MigrateType::Movable => "Movable",
            MigrateType::Reclaimable => "Reclaimable",
            MigrateType::HighAtomic => "HighAtomic",
            MigrateType::Cma => "CMA",
            MigrateType::Isolate => "Isolate",
        }
    }

    /// The array index.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The type with index `i`.
    pub const fn from_index(i: usize) -> Option<MigrateType> {
        if i < MIGRATE_TYPES {
            Some(Self::ALL[i])
        } else {
            None
        }
    }

    /// Whether free blocks of this type may merge with blocks of another
    /// type at pageblock order and above (cf. `migratetype_is_mergeable()`):
    /// HighAtomic, CMA and Isolate blocks keep their own accounting.
    pub const fn is_mergeable(self) -> bool {
        self.index() < MIGRATE_PCPTYPES
    }
}

/// One free list of one order and migrate type (cf. `free_list[]`).
///
/// Intrusive and doubly linked through `Page::prev/next` so a buddy can be
/// unlinked in O(1) when it merges. `tail` lets boot-time frees append
/// (cf. `FPI_TO_TAIL`) so early allocations come from low addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FreeList {
    /// PFN of the first free block, or [`NIL`].
    pub head: u32,
    /// PFN of the last free block, or [`NIL`].
    pub tail: u32,
}

impl FreeList {
    /// An empty list.
    pub const EMPTY: FreeList = FreeList {
        head: NIL,
        tail: NIL,
    };

    /// Whether no block is on it (cf. `free_area_empty()`).
    pub const fn is_empty(&self) -> bool {
        self.head == NIL
    }
}

/// The free blocks of one order in one zone, one list per migrate type
/// (cf. `struct free_area`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FreeArea {
    /// One list per [`MigrateType`].
    pub free_list: [FreeList; MIGRATE_TYPES],
    /// Blocks (not pages) on all the lists (cf. `nr_free`).
    pub nr_free: u64,
}

impl FreeArea {
    /// No free block.
    pub const EMPTY: FreeArea = FreeArea {
        free_list: [FreeList::EMPTY; MIGRATE_TYPES],
        nr_free: 0,
    };

    /// Whether the list of `mt` is empty (cf. `free_area_empty()`).
    pub const fn is_empty(&self, mt: MigrateType) -> bool {
        self.free_list[mt.index()].is_empty()
    }
}

impl Default for FreeArea {
    fn default() -> Self {
        FreeArea::EMPTY
    }
}

/// Zone watermarks in pages (cf. `_watermark[WMARK_MIN/LOW/HIGH]`).
///
/// Allocations normally need `free > low`; only the slow path may go down to
/// `min`, and atomic allocations a bit below it. kswapd would reclaim until
/// `high` (there is nothing to reclaim here; the value is reported).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Watermarks {
    /// Floor for ordinary allocations in the slow path.
    pub min: u64,
    /// Floor for fast-path allocations; below it kswapd would be woken.
    pub low: u64,
    /// Target kswapd would reclaim up to.
    pub high: u64,
}

/// Which watermark an allocation attempt is checked against
/// (cf. `ALLOC_WMARK_MIN/LOW/HIGH`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatermarkKind {
    /// `watermarks.min`
    Min,
    /// `watermarks.low`
    Low,
    /// `watermarks.high`
    High,
}

impl Watermarks {
    /// The value of one watermark.
    pub const fn get(&self, kind: WatermarkKind) -> u64 {
        match kind {
            WatermarkKind::Min => self.min,
            WatermarkKind::Low => self.low,
            WatermarkKind::High => self.high,
        }
    }
}

/// One zone (cf. `struct zone`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Zone {
    /// Which zone this is.
    pub ztype: ZoneType,
    /// First PFN of the zone span (cf. `zone_start_pfn`).
    pub start_pfn: Pfn,
    /// One past the last PFN of the span (cf. `zone_end_pfn()`).
    pub end_pfn: Pfn,
    /// RAM frames in the span, holes excluded (cf. `present_pages`).
    pub present_pages: u64,
    /// Frames handed to the buddy allocator, i.e. present minus reserved
    /// (cf. `managed_pages`).
    pub managed_pages: u64,
    /// Frames currently free in this zone (cf. `NR_FREE_PAGES`).
    pub free_pages: u64,
    /// Free lists by order.
    pub free_area: [FreeArea; NR_ORDERS],
    /// Per migrate type, bit `order` set while `free_area[order]`'s list
    /// of that type has a block: the buddy allocator's search reads one
    /// word instead of the list heads (kept by
    /// `page_alloc::zone_lock::ZoneFree`; not in Linux).
    pub free_area_mask: [u16; MIGRATE_TYPES],
    /// Watermarks in pages; all zero until `setup_watermarks()`.
    pub watermarks: Watermarks,
    /// Pages this zone keeps back from allocations whose preferred zone is
    /// higher: `lowmem_reserve[j]` applies when the request could have used
    /// zone `j` (cf. `lowmem_reserve[]`, shown as "protection" in zoneinfo).
    pub lowmem_reserve: [u64; crate::zone::NR_ZONES],
    /// Pages in pageblocks reserved for high-order atomic allocations
    /// (cf. `nr_reserved_highatomic`).
    pub nr_reserved_highatomic: u64,
    /// Managed pages of a CMA area in this zone (cf. `cma_pages`).
    pub cma_pages: u64,
    /// Free pages on the CMA lists (cf. `NR_FREE_CMA_PAGES`).
    pub nr_free_cma: u64,
    /// Each CPU's page lists (cf. `per_cpu_pageset`), see
    /// [`crate::page_alloc::pcp`].
    pub pcp: [crate::sync::PcpCell<crate::page_alloc::pcp::PerCpuPages>; crate::types::NR_CPUS],
}

impl Zone {
    /// An empty zone spanning `[start_pfn, end_pfn)`.
    pub const fn new(ztype: ZoneType, start_pfn: Pfn, end_pfn: Pfn) -> Zone {
        Zone {
            ztype,
            start_pfn,
            end_pfn,
            present_pages: 0,
            managed_pages: 0,
            free_pages: 0,
            free_area: [FreeArea::EMPTY; NR_ORDERS],
            free_area_mask: [0; MIGRATE_TYPES],
            watermarks: Watermarks {
                min: 0,
                low: 0,
                high: 0,
            },
            lowmem_reserve: [0; NR_ZONES],
            nr_reserved_highatomic: 0,
            cma_pages: 0,
            nr_free_cma: 0,
            pcp: [const { crate::sync::PcpCell::new(crate::page_alloc::pcp::PerCpuPages::BOOT) };
                crate::types::NR_CPUS],
        }
    }

    /// Frames in the span, holes included (cf. `spanned_pages`).
    pub const fn spanned_pages(&self) -> u64 {
        self.end_pfn.0 - self.start_pfn.0
    }

    /// Whether the zone has any memory the buddy allocator can hand out
    /// (cf. `populated_zone()` / `managed_zone()`).
    pub const fn is_populated(&self) -> bool {
        self.managed_pages > 0
    }

    /// Whether `pfn` lies inside the span (cf. `zone_spans_pfn()`).
    pub const fn spans(&self, pfn: Pfn) -> bool {
        pfn.0 >= self.start_pfn.0 && pfn.0 < self.end_pfn.0
    }

    /// Zone name (cf. `zone->name`).
    pub const fn name(&self) -> &'static str {
        self.ztype.name()
    }

    /// Number of free blocks of each order, as in `/proc/buddyinfo`.
    pub fn free_area_counts(&self) -> [u64; NR_ORDERS] {
        let mut out = [0; NR_ORDERS];
        for (o, fa) in out.iter_mut().zip(self.free_area.iter()) {
            *o = fa.nr_free;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(l: ZoneLayout) -> [(u64, u64); NR_ZONES] {
        ZoneType::ALL.map(|z| {
            let (s, e) = l.zone_range(z);
            (s.0, e.0)
        })
    }

    #[test]
    fn layout_2g_lowmem_896m() {
        let l = ZoneLayout::from_bytes(896 << 20, 0x7ffe_0000);
        assert_eq!(
            ranges(l),
            [
                (0, 4096),
                (4096, 229_376),
                (229_376, 229_376),
                (229_376, 0x7ffe0)
            ]
        );
        assert_eq!(l.zone_of(Pfn(4095)), Some(ZoneType::Dma));
        assert_eq!(l.zone_of(Pfn(4096)), Some(ZoneType::Dma32));
        assert_eq!(l.zone_of(Pfn(229_376)), Some(ZoneType::HighMem));
        assert_eq!(l.zone_of(Pfn(0x7ffe0)), None);
    }

    #[test]
    fn layout_lowmem_above_4g() {
        // 8 GiB of address space, lowmem 6 GiB.
        let l = ZoneLayout::from_bytes(6 << 30, 8 << 30);
        assert_eq!(
            ranges(l),
            [
                (0, 4096),
                (4096, 1 << 20),
                (1 << 20, 6 << 18),
                (6 << 18, 8 << 18)
            ]
        );
    }

    #[test]
    fn layout_small_machine_clips() {
        // 12 MiB machine: only DMA, everything else empty at 12 MiB.
        let l = ZoneLayout::from_bytes(896 << 20, 12 << 20);
        assert_eq!(
            ranges(l),
            [(0, 3072), (3072, 3072), (3072, 3072), (3072, 3072)]
        );
        // lowmem below 16 MiB: DMA shrinks, the rest is HighMem.
        let l = ZoneLayout::from_bytes(8 << 20, 64 << 20);
        assert_eq!(
            ranges(l),
            [(0, 2048), (2048, 2048), (2048, 2048), (2048, 16384)]
        );
    }
}
