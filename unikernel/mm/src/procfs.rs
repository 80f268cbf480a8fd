//! Linux `/proc` text views of the memory manager: `buddyinfo`, `zoneinfo`,
//! `meminfo`, `iomem` and `vmstat`, byte-compatible with Linux 6.1's format
//! strings.
//!
//! Existing tools (`free`, `vmstat`, `sar`, monitoring agents, ad-hoc
//! `awk` scripts) parse these files by column and label, so the layout is
//! copied from the kernel's own `seq_printf()` calls rather than
//! approximated: each writer below cites the function it mirrors. Values we
//! do not track (LRU lists, swap, page cache, NUMA events) are printed as 0
//! so the set of lines is what a parser expects from an x86_64 kernel built
//! with `CONFIG_HIGHMEM`-style zones, `CONFIG_SWAP`, `CONFIG_MEMORY_FAILURE`,
//! `CONFIG_TRANSPARENT_HUGEPAGE` and `CONFIG_HUGETLB_PAGE`, without NUMA,
//! CMA, zswap or zsmalloc. `/proc/vmstat` is the exception: API.md
//! promises that its counters are all real, so it leaves out the lines it
//! cannot fill (see `procfs/vmstat.rs`).
//!
//! There is no heap in this crate: every view writes into a
//! [`core::fmt::Write`], and `/proc/iomem`'s resource tree is built into a
//! caller-supplied slice.

use core::fmt::{self, Write};

use crate::memblock::Memblock;
use crate::page_alloc::PageAlloc;
use crate::types::{NR_ORDERS, PAGE_SHIFT, PhysAddr};
use crate::zone::{MigrateType, NR_ZONES, PAGEBLOCK_NR_PAGES, PAGEBLOCK_ORDER, Zone};

/// The only NUMA node (`pgdat->node_id`).
pub const NODE_ID: u32 = 0;

/// Pages → kB (cf. `K()` / `<< (PAGE_SHIFT - 10)`).
const fn pages_to_kb(nr_pages: u64) -> u64 {
    nr_pages << (PAGE_SHIFT - 10)
}

/// cf. `populated_zone()`: a zone with RAM in it, managed or not.
const fn populated(zone: &Zone) -> bool {
    zone.present_pages > 0
}

// ----------------------------------------------------------------------
// /proc/buddyinfo
// ----------------------------------------------------------------------

/// `/proc/buddyinfo` (cf. `frag_show()` → `frag_show_print()`): one line per
/// populated zone, free blocks per order. Every count is followed by a
/// space, including the last one, as in Linux.
pub fn buddyinfo(pa: &PageAlloc<'_>, w: &mut impl Write) -> fmt::Result {
    for zone in pa.zones().iter().filter(|z| populated(z)) {
        write!(w, "Node {}, zone {:>8} ", NODE_ID, zone.name())?;
        for area in &zone.free_area {
            write!(w, "{:>6} ", area.nr_free)?;
        }
        w.write_char('\n')?;
    }
    Ok(())
}

// ----------------------------------------------------------------------
// /proc/pagetypeinfo
// ----------------------------------------------------------------------

/// `/proc/pagetypeinfo` (cf. `pagetypeinfo_show()`,
/// `pagetypeinfo_showfree_print()`, `pagetypeinfo_showblockcount_print()`):
/// populated zones only; free blocks per migrate type and order, counted
/// by walking each list as Linux does (stopping at 100000 and printing
/// `>100000`), then pageblocks per migrate type, stepping from the zone's
/// first PFN over frames that have a descriptor in this zone.
pub fn pagetypeinfo(pa: &PageAlloc<'_>, w: &mut impl Write) -> fmt::Result {
    writeln!(w, "Page block order: {PAGEBLOCK_ORDER}")?;
    writeln!(w, "Pages per block:  {PAGEBLOCK_NR_PAGES}")?;
    w.write_char('\n')?;

    write!(w, "{:<43} ", "Free pages count per migrate type at order")?;
    for order in 0..crate::types::NR_ORDERS {
        write!(w, "{order:>6} ")?;
    }
    w.write_char('\n')?;
    for (zi, zone) in pa.zones().iter().enumerate().filter(|(_, z)| populated(z)) {
        for mt in MigrateType::ALL {
            write!(
                w,
                "Node {:>4}, zone {:>8}, type {:>12} ",
                NODE_ID,
                zone.name(),
                mt.name()
            )?;
            for order in 0..crate::types::NR_ORDERS {
                let (count, overflow) = pa.count_free_list(zi, order, mt, 100_000);
                if overflow {
                    write!(w, ">{count:>6} ")?;
                } else {
                    write!(w, "{count:>6} ")?;
                }
            }
            w.write_char('\n')?;
        }
    }

    write!(w, "\n{:<23}", "Number of blocks type ")?;
    for mt in MigrateType::ALL {
        write!(w, "{:>12} ", mt.name())?;
    }
    w.write_char('\n')?;
    for zone in pa.zones().iter().filter(|z| populated(z)) {
        let counts = pa.pageblock_counts(zone.ztype);
        write!(w, "Node {}, zone {:>8} ", NODE_ID, zone.name())?;
        for n in counts {
            write!(w, "{n:>12} ")?;
        }
        w.write_char('\n')?;
    }
    Ok(())
}

// ----------------------------------------------------------------------
// /proc/zoneinfo
// ----------------------------------------------------------------------

/// `enum node_stat_item` names in Linux 6.1 order (`vmstat_text[]`), with
/// `CONFIG_SWAP` and without `CONFIG_SHADOW_CALL_STACK` /
/// `CONFIG_NUMA_BALANCING`.
pub const NODE_STAT_NAMES: [&str; 41] = [
    "nr_inactive_anon",
    "nr_active_anon",
    "nr_inactive_file",
    "nr_active_file",
    "nr_unevictable",
    "nr_slab_reclaimable",
    "nr_slab_unreclaimable",
    "nr_isolated_anon",
    "nr_isolated_file",
    "workingset_nodes",
    "workingset_refault_anon",
    "workingset_refault_file",
    "workingset_activate_anon",
    "workingset_activate_file",
    "workingset_restore_anon",
    "workingset_restore_file",
    "workingset_nodereclaim",
    "nr_anon_pages",
    "nr_mapped",
    "nr_file_pages",
    "nr_dirty",
    "nr_writeback",
    "nr_writeback_temp",
    "nr_shmem",
    "nr_shmem_hugepages",
    "nr_shmem_pmdmapped",
    "nr_file_hugepages",
    "nr_file_pmdmapped",
    "nr_anon_transparent_hugepages",
    "nr_vmscan_write",
    "nr_vmscan_immediate_reclaim",
    "nr_dirtied",
    "nr_written",
    "nr_throttled_written",
    "nr_kernel_misc_reclaimable",
    "nr_foll_pin_acquired",
    "nr_foll_pin_released",
    "nr_kernel_stack",
    "nr_page_table_pages",
    "nr_sec_page_table_pages",
    "nr_swapcached",
];

/// `enum zone_stat_item` names in Linux 6.1 order, without
/// `CONFIG_ZSMALLOC`.
pub const ZONE_STAT_NAMES: [&str; 10] = [
    "nr_free_pages",
    "nr_zone_inactive_anon",
    "nr_zone_active_anon",
    "nr_zone_inactive_file",
    "nr_zone_active_file",
    "nr_zone_unevictable",
    "nr_zone_write_pending",
    "nr_mlock",
    "nr_bounce",
    "nr_free_cma",
];

/// What `/proc/zoneinfo` prints that the page allocator does not know: the
/// per-node counters other subsystems keep, and the per-CPU state. (The
/// pagesets themselves are the allocator's, see [`crate::page_alloc::pcp`].)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZoneinfoExtra {
    /// `nr_slab_reclaimable`, in pages.
    pub nr_slab_reclaimable: u64,
    /// `nr_slab_unreclaimable`, in pages.
    pub nr_slab_unreclaimable: u64,
    /// `nr_kernel_stack`, in kB (Linux counts this one in kB).
    pub nr_kernel_stack_kb: u64,
    /// `nr_page_table_pages`.
    pub nr_page_table_pages: u64,
    /// CPU 0's `vm stats threshold` per zone (0: counters are exact).
    pub stat_threshold: [i32; NR_ZONES],
    /// `node_unreclaimable` (kswapd gave up on the node).
    pub node_unreclaimable: bool,
}

impl ZoneinfoExtra {
    /// Nothing known beyond the page allocator.
    pub const DEFAULT: ZoneinfoExtra = ZoneinfoExtra {
        nr_slab_reclaimable: 0,
        nr_slab_unreclaimable: 0,
        nr_kernel_stack_kb: 0,
        nr_page_table_pages: 0,
        stat_threshold: [0; NR_ZONES],
        node_unreclaimable: false,
    };

    fn node_stat(&self, name: &str) -> u64 {
        match name {
            "nr_slab_reclaimable" => self.nr_slab_reclaimable,
            "nr_slab_unreclaimable" => self.nr_slab_unreclaimable,
            "nr_kernel_stack" => self.nr_kernel_stack_kb,
            "nr_page_table_pages" => self.nr_page_table_pages,
            _ => 0,
        }
    }
}

impl Default for ZoneinfoExtra {
    fn default() -> Self {
        ZoneinfoExtra::DEFAULT
    }
}

/// `/proc/zoneinfo` (cf. `zoneinfo_show()` → `zoneinfo_show_print()`):
/// every zone, empty ones included, because `lowmem_reserve` ("protection")
/// applies to all of them. The first populated zone carries the per-node
/// stats; an unpopulated zone stops after its protection line.
pub fn zoneinfo(pa: &PageAlloc<'_>, extra: &ZoneinfoExtra, w: &mut impl Write) -> fmt::Result {
    let first_populated = pa.zones().iter().position(populated);
    for (zi, zone) in pa.zones().iter().enumerate() {
        write!(w, "Node {}, zone {:>8}", NODE_ID, zone.name())?;
        if first_populated == Some(zi) {
            w.write_str("\n  per-node stats")?;
            for name in NODE_STAT_NAMES {
                write!(w, "\n      {:<12} {}", name, extra.node_stat(name))?;
            }
        }
        let wm = zone.watermarks;
        write!(
            w,
            "\n  pages free     {}\
             \n        boost    {}\
             \n        min      {}\
             \n        low      {}\
             \n        high     {}\
             \n        spanned  {}\
             \n        present  {}\
             \n        managed  {}\
             \n        cma      {}",
            zone.free_pages,
            0, // watermark_boost: no fragmentation-driven boosting here
            wm.min,
            wm.low,
            wm.high,
            zone.spanned_pages(),
            zone.present_pages,
            zone.managed_pages,
            zone.cma_pages,
        )?;
        write!(w, "\n        protection: ({}", zone.lowmem_reserve[0])?;
        for r in &zone.lowmem_reserve[1..] {
            write!(w, ", {r}")?;
        }
        w.write_char(')')?;
        if !populated(zone) {
            w.write_char('\n')?;
            continue;
        }
        for name in ZONE_STAT_NAMES {
            let value = match name {
                "nr_free_pages" => zone.free_pages,
                "nr_free_cma" => zone.nr_free_cma,
                _ => 0,
            };
            write!(w, "\n      {:<12} {}", name, value)?;
        }
        w.write_str("\n  pagesets")?;
        for (cpu, pcp) in zone.pcp.iter().enumerate().take(pa.nr_cpus()) {
            write!(
                w,
                "\n    cpu: {}\
                 \n              count: {}\
                 \n              high:  {}\
                 \n              batch: {}\
                 \n  vm stats threshold: {}",
                cpu, pcp.count, pcp.high, pcp.batch, extra.stat_threshold[zi]
            )?;
        }
        write!(
            w,
            "\n  node_unreclaimable:  {}\
             \n  start_pfn:           {}",
            u32::from(extra.node_unreclaimable),
            zone.start_pfn.0
        )?;
        w.write_char('\n')?;
    }
    Ok(())
}

// ----------------------------------------------------------------------
// /proc/meminfo
// ----------------------------------------------------------------------

/// How a meminfo line is laid out.
#[derive(Clone, Copy, PartialEq, Eq)]
enum LineFmt {
    /// `show_val_kb()` and its `"Label:   %8lu kB\n"` cousins: label padded
    /// to 16 columns, value right-aligned in 8, `" kB"`.
    Kb,
    /// `"HardwareCorrupted: %5lu kB\n"`.
    Kb5,
    /// `"HugePages_Total:   %5lu\n"`: label padded to 19, value in 5, no unit.
    Count5,
}

/// `/proc/meminfo` values, in kB unless the field says `_pages`
/// (cf. `meminfo_proc_show()`).
///
/// [`Meminfo::from_page_alloc`] fills what the buddy allocator knows; the
/// kernel adds slab ([`Meminfo::set_slab_kb`]), vmalloc, page tables and
/// the direct map. The same list drives the text view and the JSON view
/// ([`Meminfo::fields`]) so the two can never disagree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Meminfo {
    /// `MemTotal`: managed RAM (cf. `totalram_pages()`).
    pub mem_total_kb: u64,
    /// `MemFree`.
    pub mem_free_kb: u64,
    /// `MemAvailable` (cf. `si_mem_available()`).
    pub mem_available_kb: u64,
    /// `Buffers`.
    pub buffers_kb: u64,
    /// `Cached`.
    pub cached_kb: u64,
    /// `SwapCached`.
    pub swap_cached_kb: u64,
    /// `Active`.
    pub active_kb: u64,
    /// `Inactive`.
    pub inactive_kb: u64,
    /// `Active(anon)`.
    pub active_anon_kb: u64,
    /// `Inactive(anon)`.
    pub inactive_anon_kb: u64,
    /// `Active(file)`.
    pub active_file_kb: u64,
    /// `Inactive(file)`.
    pub inactive_file_kb: u64,
    /// `Unevictable`.
    pub unevictable_kb: u64,
    /// `Mlocked`.
    pub mlocked_kb: u64,
    /// `HighTotal`: managed HighMem.
    pub high_total_kb: u64,
    /// `HighFree`.
    pub high_free_kb: u64,
    /// `LowTotal`: managed direct-mapped RAM.
    pub low_total_kb: u64,
    /// `LowFree`.
    pub low_free_kb: u64,
    /// `SwapTotal`.
    pub swap_total_kb: u64,
    /// `SwapFree`.
    pub swap_free_kb: u64,
    /// `Dirty`.
    pub dirty_kb: u64,
    /// `Writeback`.
    pub writeback_kb: u64,
    /// `AnonPages`.
    pub anon_pages_kb: u64,
    /// `Mapped`.
    pub mapped_kb: u64,
    /// `Shmem`.
    pub shmem_kb: u64,
    /// `KReclaimable`: reclaimable slab plus other reclaimable kernel memory.
    pub k_reclaimable_kb: u64,
    /// `Slab`.
    pub slab_kb: u64,
    /// `SReclaimable`.
    pub s_reclaimable_kb: u64,
    /// `SUnreclaim`.
    pub s_unreclaim_kb: u64,
    /// `KernelStack`.
    pub kernel_stack_kb: u64,
    /// `PageTables`.
    pub page_tables_kb: u64,
    /// `SecPageTables`.
    pub sec_page_tables_kb: u64,
    /// `NFS_Unstable` (always 0 since Linux 5.8, still printed).
    pub nfs_unstable_kb: u64,
    /// `Bounce`.
    pub bounce_kb: u64,
    /// `WritebackTmp`.
    pub writeback_tmp_kb: u64,
    /// `CommitLimit` (cf. `vm_commit_limit()`, `overcommit_ratio` 50).
    pub commit_limit_kb: u64,
    /// `Committed_AS`.
    pub committed_as_kb: u64,
    /// `VmallocTotal`: size of the vmalloc area.
    pub vmalloc_total_kb: u64,
    /// `VmallocUsed`.
    pub vmalloc_used_kb: u64,
    /// `VmallocChunk` (always 0 since Linux 4.12, still printed).
    pub vmalloc_chunk_kb: u64,
    /// `Percpu`.
    pub percpu_kb: u64,
    /// `HardwareCorrupted`.
    pub hardware_corrupted_kb: u64,
    /// `AnonHugePages`.
    pub anon_huge_pages_kb: u64,
    /// `ShmemHugePages`.
    pub shmem_huge_pages_kb: u64,
    /// `ShmemPmdMapped`.
    pub shmem_pmd_mapped_kb: u64,
    /// `FileHugePages`.
    pub file_huge_pages_kb: u64,
    /// `FilePmdMapped`.
    pub file_pmd_mapped_kb: u64,
    /// `CmaTotal`: the CMA area (cf. `totalcma_pages`).
    pub cma_total_kb: u64,
    /// `CmaFree`: its free pages (`NR_FREE_CMA_PAGES`).
    pub cma_free_kb: u64,
    /// `HugePages_Total` (a count of huge pages, not kB).
    pub huge_pages_total: u64,
    /// `HugePages_Free`.
    pub huge_pages_free: u64,
    /// `HugePages_Rsvd`.
    pub huge_pages_rsvd: u64,
    /// `HugePages_Surp`.
    pub huge_pages_surp: u64,
    /// `Hugepagesize`: 2048 on x86_64.
    pub hugepagesize_kb: u64,
    /// `Hugetlb`.
    pub hugetlb_kb: u64,
    /// `DirectMap4k`: direct map covered by 4 KiB pages.
    pub direct_map_4k_kb: u64,
    /// `DirectMap2M`.
    pub direct_map_2m_kb: u64,
    /// `DirectMap1G`: printed only when the kernel uses 1 GiB pages
    /// (cf. `direct_gbpages` in `arch_report_meminfo()`).
    pub direct_map_1g_kb: Option<u64>,
    /// `si_mem_available()` before reclaimable kernel memory: free minus
    /// `totalreserve_pages`, in pages (may be negative).
    avail_base_pages: i64,
    /// Sum of the zones' LOW watermarks, in pages.
    wmark_low_pages: u64,
}

/// Number of lines [`Meminfo`] can produce.
const MEMINFO_LINES: usize = 58;

impl Meminfo {
    /// The buddy allocator's part of meminfo (cf. `si_meminfo()` and
    /// `si_mem_available()`); slab, vmalloc, page tables and the direct map
    /// are left 0 for the caller. Call after `setup_watermarks()` so
    /// MemAvailable subtracts the reserves.
    pub fn from_page_alloc(pa: &PageAlloc<'_>) -> Meminfo {
        let total = pa.totalram_pages();
        let free = pa.nr_free_pages();
        let total_high = pa.totalhigh_pages();
        let free_high = pa.nr_free_highpages();
        let wmark_low_pages = pa.zones().iter().map(|z| z.watermarks.low).sum();
        let mut mi = Meminfo {
            mem_total_kb: pages_to_kb(total),
            mem_free_kb: pages_to_kb(free),
            high_total_kb: pages_to_kb(total_high),
            high_free_kb: pages_to_kb(free_high),
            low_total_kb: pages_to_kb(total - total_high),
            low_free_kb: pages_to_kb(free - free_high),
            // cf. vm_commit_limit(): totalram * overcommit_ratio / 100 + swap.
            commit_limit_kb: pages_to_kb(total * 50 / 100),
            hugepagesize_kb: 2048,
            cma_total_kb: pages_to_kb(pa.cma_area().map_or(0, |a| a.count)),
            cma_free_kb: pages_to_kb(pa.cma_free_pages()),
            avail_base_pages: free as i64 - pa.totalreserve_pages() as i64,
            wmark_low_pages,
            ..Meminfo::default()
        };
        mi.update_available();
        mi
    }

    /// Record slab usage (`SReclaimable`, `SUnreclaim`, and the `Slab` and
    /// `KReclaimable` sums) and recompute `MemAvailable`, which counts half
    /// of the reclaimable slab as available.
    pub fn set_slab_kb(&mut self, reclaimable_kb: u64, unreclaimable_kb: u64) {
        self.s_reclaimable_kb = reclaimable_kb;
        self.s_unreclaim_kb = unreclaimable_kb;
        self.slab_kb = reclaimable_kb + unreclaimable_kb;
        self.k_reclaimable_kb = reclaimable_kb;
        self.update_available();
    }

    /// cf. `si_mem_available()`: free pages above the reserves, plus the
    /// part of page cache and reclaimable kernel memory that could be
    /// freed (all but half of it, or all but the LOW watermarks' worth).
    fn update_available(&mut self) {
        let wmark_low = self.wmark_low_pages as i64;
        let pagecache = ((self.active_file_kb + self.inactive_file_kb) >> 2) as i64;
        let reclaimable = (self.k_reclaimable_kb >> 2) as i64;
        let available = self.avail_base_pages + pagecache - (pagecache / 2).min(wmark_low)
            + reclaimable
            - (reclaimable / 2).min(wmark_low);
        self.mem_available_kb = pages_to_kb(available.max(0) as u64);
    }

    /// Every line in `/proc/meminfo` order with its layout.
    fn lines(&self) -> [Option<(&'static str, u64, LineFmt)>; MEMINFO_LINES] {
        use LineFmt::{Count5, Kb, Kb5};
        [
            Some(("MemTotal", self.mem_total_kb, Kb)),
            Some(("MemFree", self.mem_free_kb, Kb)),
            Some(("MemAvailable", self.mem_available_kb, Kb)),
            Some(("Buffers", self.buffers_kb, Kb)),
            Some(("Cached", self.cached_kb, Kb)),
            Some(("SwapCached", self.swap_cached_kb, Kb)),
            Some(("Active", self.active_kb, Kb)),
            Some(("Inactive", self.inactive_kb, Kb)),
            Some(("Active(anon)", self.active_anon_kb, Kb)),
            Some(("Inactive(anon)", self.inactive_anon_kb, Kb)),
            Some(("Active(file)", self.active_file_kb, Kb)),
            Some(("Inactive(file)", self.inactive_file_kb, Kb)),
            Some(("Unevictable", self.unevictable_kb, Kb)),
            Some(("Mlocked", self.mlocked_kb, Kb)),
            Some(("HighTotal", self.high_total_kb, Kb)),
            Some(("HighFree", self.high_free_kb, Kb)),
            Some(("LowTotal", self.low_total_kb, Kb)),
            Some(("LowFree", self.low_free_kb, Kb)),
            Some(("SwapTotal", self.swap_total_kb, Kb)),
            Some(("SwapFree", self.swap_free_kb, Kb)),
            Some(("Dirty", self.dirty_kb, Kb)),
            Some(("Writeback", self.writeback_kb, Kb)),
            Some(("AnonPages", self.anon_pages_kb, Kb)),
            Some(("Mapped", self.mapped_kb, Kb)),
            Some(("Shmem", self.shmem_kb, Kb)),
            Some(("KReclaimable", self.k_reclaimable_kb, Kb)),
            Some(("Slab", self.slab_kb, Kb)),
            Some(("SReclaimable", self.s_reclaimable_kb, Kb)),
            Some(("SUnreclaim", self.s_unreclaim_kb, Kb)),
            Some(("KernelStack", self.kernel_stack_kb, Kb)),
            Some(("PageTables", self.page_tables_kb, Kb)),
            Some(("SecPageTables", self.sec_page_tables_kb, Kb)),
            Some(("NFS_Unstable", self.nfs_unstable_kb, Kb)),
            Some(("Bounce", self.bounce_kb, Kb)),
            Some(("WritebackTmp", self.writeback_tmp_kb, Kb)),
            Some(("CommitLimit", self.commit_limit_kb, Kb)),
            Some(("Committed_AS", self.committed_as_kb, Kb)),
            Some(("VmallocTotal", self.vmalloc_total_kb, Kb)),
            Some(("VmallocUsed", self.vmalloc_used_kb, Kb)),
            Some(("VmallocChunk", self.vmalloc_chunk_kb, Kb)),
            Some(("Percpu", self.percpu_kb, Kb)),
            Some(("HardwareCorrupted", self.hardware_corrupted_kb, Kb5)),
            Some(("AnonHugePages", self.anon_huge_pages_kb, Kb)),
            Some(("ShmemHugePages", self.shmem_huge_pages_kb, Kb)),
            Some(("ShmemPmdMapped", self.shmem_pmd_mapped_kb, Kb)),
            Some(("FileHugePages", self.file_huge_pages_kb, Kb)),
            Some(("FilePmdMapped", self.file_pmd_mapped_kb, Kb)),
            Some(("CmaTotal", self.cma_total_kb, Kb)),
            Some(("CmaFree", self.cma_free_kb, Kb)),
            Some(("HugePages_Total", self.huge_pages_total, Count5)),
            Some(("HugePages_Free", self.huge_pages_free, Count5)),
            Some(("HugePages_Rsvd", self.huge_pages_rsvd, Count5)),
            Some(("HugePages_Surp", self.huge_pages_surp, Count5)),
            Some(("Hugepagesize", self.hugepagesize_kb, Kb)),
            Some(("Hugetlb", self.hugetlb_kb, Kb)),
            Some(("DirectMap4k", self.direct_map_4k_kb, Kb)),
            Some(("DirectMap2M", self.direct_map_2m_kb, Kb)),
            self.direct_map_1g_kb.map(|v| ("DirectMap1G", v, Kb)),
        ]
    }

    /// `(key, value, is_kb)` for every line of `/proc/meminfo`, in order.
    /// The key is the label without its colon, exactly as `/api/meminfo`
    /// uses it; `is_kb` is false only for the `HugePages_*` counts.
    pub fn fields(&self) -> impl Iterator<Item = (&'static str, u64, bool)> {
        self.lines()
            .into_iter()
            .flatten()
            .map(|(key, value, f)| (key, value, f != LineFmt::Count5))
    }
}

/// `/proc/meminfo` (cf. `meminfo_proc_show()`, `show_val_kb()`,
/// `hugetlb_report_meminfo()` and x86's `arch_report_meminfo()`).
pub fn meminfo(mi: &Meminfo, w: &mut impl Write) -> fmt::Result {
    for (key, value, f) in mi.lines().into_iter().flatten() {
        // The label is "Key:" padded with spaces to a fixed column.
        let (label_cols, value_cols, unit) = match f {
            LineFmt::Kb => (16, 8, " kB"),
            LineFmt::Kb5 => (19, 5, " kB"),
            LineFmt::Count5 => (19, 5, ""),
        };
        let pad = label_cols - (key.len() + 1).min(label_cols);
        writeln!(w, "{key}:{:pad$}{value:>value_cols$}{unit}", "")?;
    }
    Ok(())
}

// ----------------------------------------------------------------------
// /proc/iomem
// ----------------------------------------------------------------------

/// A firmware (E820) memory type (cf. `enum e820_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum E820Type {
    /// 1: usable RAM.
    Ram,
    /// 2: reserved.
    Reserved,
    /// 3: ACPI tables.
    Acpi,
    /// 4: ACPI non-volatile storage.
    Nvs,
    /// 5: unusable memory.
    Unusable,
    /// 7: persistent memory.
    Pmem,
    /// 12: legacy persistent memory.
    Pram,
    /// 0xefffffff: soft reserved (EFI specific-purpose memory).
    SoftReserved,
    /// Any other value.
    Unknown(u32),
}

impl E820Type {
    /// From the raw E820 / PVH memory map type.
    pub const fn from_raw(raw: u32) -> E820Type {
        match raw {
            1 => E820Type::Ram,
            2 => E820Type::Reserved,
            3 => E820Type::Acpi,
            4 => E820Type::Nvs,
            5 => E820Type::Unusable,
            7 => E820Type::Pmem,
            12 => E820Type::Pram,
            0xefff_ffff => E820Type::SoftReserved,
            other => E820Type::Unknown(other),
        }
    }

    /// The raw type value.
    pub const fn raw(self) -> u32 {
        match self {
            E820Type::Ram => 1,
            E820Type::Reserved => 2,
            E820Type::Acpi => 3,
            E820Type::Nvs => 4,
            E820Type::Unusable => 5,
            E820Type::Pmem => 7,
            E820Type::Pram => 12,
            E820Type::SoftReserved => 0xefff_ffff,
            E820Type::Unknown(raw) => raw,
        }
    }

    /// The resource name `/proc/iomem` shows (cf. `e820_type_to_string()`).
    pub const fn iomem_name(self) -> &'static str {
        match self {
            E820Type::Ram => IOMEM_SYSTEM_RAM,
            E820Type::Reserved => IOMEM_RESERVED,
            E820Type::Acpi => "ACPI Tables",
            E820Type::Nvs => "ACPI Non-volatile Storage",
            E820Type::Unusable => "Unusable memory",
            E820Type::Pmem => "Persistent Memory",
            E820Type::Pram => "Persistent Memory (legacy)",
            E820Type::SoftReserved => "Soft Reserved",
            E820Type::Unknown(_) => "Unknown E820 type",
        }
    }
}

/// Resource name of RAM the kernel uses.
pub const IOMEM_SYSTEM_RAM: &str = "System RAM";
/// Resource name of reserved ranges.
pub const IOMEM_RESERVED: &str = "Reserved";

/// One `/proc/iomem` line: a resource at nesting `depth` (0 = top level).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IomemEntry<'a> {
    /// First byte.
    pub start: PhysAddr,
    /// Last byte (resources are inclusive, cf. `struct resource`).
    pub end_inclusive: PhysAddr,
    /// Resource name.
    pub name: &'a str,
    /// Nesting level; each level indents by two spaces.
    pub depth: u8,
}

impl IomemEntry<'_> {
    /// A placeholder for sizing output arrays.
    pub const EMPTY: IomemEntry<'static> = IomemEntry {
        start: PhysAddr(0),
        end_inclusive: PhysAddr(0),
        name: "",
        depth: 0,
    };
}

/// Physical ranges `[start, end)` of the kernel image's sections, which
/// `/proc/iomem` shows as children of the System RAM holding them
/// (cf. `code_resource`, `rodata_resource`, `data_resource`,
/// `bss_resource` in `arch/x86/kernel/setup.c`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelSections {
    /// `_text`..`_etext`.
    pub code: Option<(PhysAddr, PhysAddr)>,
    /// `__start_rodata`..`__end_rodata`.
    pub rodata: Option<(PhysAddr, PhysAddr)>,
    /// `_sdata`..`_edata`.
    pub data: Option<(PhysAddr, PhysAddr)>,
    /// `__bss_start`..`__bss_stop`.
    pub bss: Option<(PhysAddr, PhysAddr)>,
}

impl KernelSections {
    fn sorted(&self) -> [Option<(u64, u64, &'static str)>; 4] {
        let named = |r: Option<(PhysAddr, PhysAddr)>, name| {
            r.filter(|(s, e)| s < e).map(|(s, e)| (s.0, e.0, name))
        };
        let mut v = [
            named(self.code, "Kernel code"),
            named(self.rodata, "Kernel rodata"),
            named(self.data, "Kernel data"),
            named(self.bss, "Kernel bss"),
        ];
        // None sorts first; the emitter skips it.
        v.sort_unstable_by_key(|x| x.map(|(s, _, _)| s));
        v
    }
}

/// Bounded writer into the caller's output slice.
struct EntrySink<'o, 'a> {
    out: &'o mut [IomemEntry<'a>],
    len: usize,
}

impl<'a> EntrySink<'_, 'a> {
    fn push(&mut self, start: u64, end_excl: u64, name: &'a str, depth: u8) {
        if let Some(slot) = self.out.get_mut(self.len) {
            *slot = IomemEntry {
                start: PhysAddr(start),
                end_inclusive: PhysAddr(end_excl - 1),
                name,
                depth,
            };
            self.len += 1;
        }
    }

    /// Emit a top-level resource and the kernel sections nested in it.
    fn push_top(&mut self, (start, end, name): (u64, u64, &'a str), kernel: &KernelSections) {
        self.push(start, end, name, 0);
        if name == IOMEM_SYSTEM_RAM {
            for (s, e, n) in kernel.sorted().into_iter().flatten() {
                if start <= s && e <= end {
                    self.push(s, e, n, 1);
                }
            }
        }
    }
}

/// A device's MMIO range for `/proc/iomem`: `[start, end)` and its
/// owner's name as Linux shows it (a PCI function's BAR: `0000:00:01.0`).
pub type IomemDevice<'a> = (PhysAddr, PhysAddr, &'a str);

/// [`build_iomem_entries`] with device ranges (PCI BARs) added where
/// `insert_resource()` would put them: nested under the top-level
/// resource that holds one whole, else at the top level, in address
/// order (with no host-bridge window, as with `pci=nocrs`, Linux's PCI
/// root bus is `iomem_resource` itself, so BARs in a hole of the e820 map
/// are top-level lines). A range that straddles a resource's edge, or is
/// empty, is left out, as `insert_resource()` refuses a conflict; so is
/// any past the first 16 (a machine here has one driven PCI function).
pub fn build_iomem_entries_with_devices<'a>(
    mb: &Memblock,
    firmware_map: &[(PhysAddr, PhysAddr, E820Type)],
    kernel: KernelSections,
    devices: &[IomemDevice<'a>],
    out: &mut [IomemEntry<'a>],
) -> usize {
    let mut len = build_iomem_entries(mb, firmware_map, kernel, out);
    let mut sorted: [Option<IomemDevice<'a>>; 16] = [None; 16];
    for (slot, d) in sorted.iter_mut().zip(devices) {
        *slot = Some(*d);
    }
    sorted.sort_unstable_by_key(|d| d.map(|(s, _, _)| s.0));
    for (start, end, name) in sorted.into_iter().flatten() {
        if start.0 >= end.0 || len >= out.len() {
            continue;
        }
        let last = end.0 - 1;
        let tops = || (0..len).filter(|&i| out[i].depth == 0);
        let holder = tops().find(|&i| out[i].start.0 <= start.0 && last <= out[i].end_inclusive.0);
        let straddles = tops().any(|i| {
            let (s, e) = (out[i].start.0, out[i].end_inclusive.0);
            s <= last && start.0 <= e && !(s <= start.0 && last <= e)
        });
        if straddles {
            continue;
        }
        let (at, depth) = match holder {
            // After the holder's children that start below it.
            Some(h) => {
                let mut at = h + 1;
                while at < len && out[at].depth > 0 && out[at].start.0 < start.0 {
                    at += 1;
                }
                (at, 1)
            }
            // Before the first top-level resource above it.
            None => (tops().find(|&i| out[i].start.0 > start.0).unwrap_or(len), 0),
        };
        out[at..=len].rotate_right(1);
        out[at] = IomemEntry {
            start,
            end_inclusive: PhysAddr(last),
            name,
            depth,
        };
        len += 1;
    }
    len
}

/// Build Linux-like `/proc/iomem` resources into `out` and return how many
/// were written (at most `out.len()`; a full slice may mean truncation).
///
/// `firmware_map` is the boot memory map as `(start, end_exclusive, type)`
/// in any order. The result mirrors what x86 Linux registers from its e820
/// table (cf. `e820__reserve_resources()`), sorted and nested:
/// - `System RAM` for RAM memblock knows (`memblock.memory`), with the
///   kernel's sections as children; page 0 is shown `Reserved` as Linux
///   does (cf. `trim_bios_range()`);
/// - firmware types by their Linux names (`Reserved`, `ACPI Tables`,
///   `ACPI Non-volatile Storage`, `Unusable memory`, …); where firmware
///   entries overlap the higher type number wins (cf.
///   `e820__update_table()`);
/// - firmware RAM the kernel does not use, such as RAM cut off by `mem=`
///   (memblock's `limited` list), as `Reserved`: it exists, `ioremap` may
///   map it, but it is not System RAM;
/// - adjacent ranges of the same name are merged, as the e820 sanitizer
///   merges adjacent entries of one type.
pub fn build_iomem_entries<'a>(
    mb: &Memblock,
    firmware_map: &[(PhysAddr, PhysAddr, E820Type)],
    kernel: KernelSections,
    out: &mut [IomemEntry<'a>],
) -> usize {
    const PAGE0_END: u64 = 0x1000;
    let ranges = || {
        let fw = firmware_map.iter().map(|&(s, e, _)| (s.0, e.0));
        let mem = mb.memory_regions().iter().map(|r| (r.base.0, r.end().0));
        let lim = mb.limited_regions().iter().map(|r| (r.base.0, r.end().0));
        fw.chain(mem).chain(lim).chain([(0, PAGE0_END)])
    };
    let covers = |(s, e): (u64, u64), a: u64| s <= a && a < e;
    let mut sink = EntrySink { out, len: 0 };
    let mut pending: Option<(u64, u64, &'static str)> = None;
    let mut cur = 0u64;
    // Sweep over every range boundary; between two boundaries every source
    // either covers the whole segment or none of it. O(n²) in the number of
    // ranges, which is small, and needs no sorting buffer.
    loop {
        let next = ranges()
            .flat_map(|(s, e)| [s, e])
            .filter(|&b| b > cur)
            .min();
        let Some(next) = next else { break };
        let in_memblock = mb
            .memory_regions()
            .iter()
            .any(|r| covers((r.base.0, r.end().0), cur));
        let is_ram = in_memblock && cur >= PAGE0_END;
        let firmware = firmware_map
            .iter()
            .filter(|(s, e, _)| covers((s.0, e.0), cur))
            .map(|(_, _, t)| *t)
            .max_by_key(|t| t.raw());
        let limited = mb
            .limited_regions()
            .iter()
            .any(|r| covers((r.base.0, r.end().0), cur));
        let name = match (is_ram, firmware) {
            (true, _) => Some(IOMEM_SYSTEM_RAM),
            (false, Some(E820Type::Ram)) => Some(IOMEM_RESERVED),
            (false, Some(t)) => Some(t.iomem_name()),
            (false, None) if limited || in_memblock => Some(IOMEM_RESERVED),
            (false, None) => None,
        };
        pending = match (pending, name) {
            (Some((s, e, n)), Some(name)) if e == cur && n == name => Some((s, next, n)),
            (p, name) => {
                if let Some(p) = p {
                    sink.push_top(p, &kernel);
                }
                name.map(|n| (cur, next, n))
            }
        };
        cur = next;
    }
    if let Some(p) = pending {
        sink.push_top(p, &kernel);
    }
    sink.len
}

/// `/proc/iomem` (cf. `r_show()`): `"%*s%0*llx-%0*llx : %s\n"`, two spaces
/// of indent per level and at least 8 hex digits (the root spans the whole
/// 64-bit space, so Linux uses width 8, growing as needed).
pub fn iomem(entries: &[IomemEntry<'_>], w: &mut impl Write) -> fmt::Result {
    for e in entries {
        let indent = usize::from(e.depth) * 2;
        writeln!(
            w,
            "{:indent$}{:08x}-{:08x} : {}",
            "", e.start.0, e.end_inclusive.0, e.name
        )?;
    }
    Ok(())
}

/// Free-block counts of every zone, for callers comparing buddyinfo
/// snapshots (e.g. `/api/reset` must restore the boot-time view).
pub fn free_area_snapshot(pa: &PageAlloc<'_>) -> [[u64; NR_ORDERS]; NR_ZONES] {
    let mut out = [[0; NR_ORDERS]; NR_ZONES];
    for (o, z) in out.iter_mut().zip(pa.zones()) {
        *o = z.free_area_counts();
    }
    out
}

mod extfrag;
mod vmstat;
pub use extfrag::{
    ContigPageInfo, extfrag_index, fill_contig_page_info, fragmentation_index,
    fragmentation_index_of, unusable_free_index, unusable_index,
};
pub use vmstat::{VmstatExtra, vmstat, vmstat_fields};

#[cfg(test)]
pub(crate) mod tests;
