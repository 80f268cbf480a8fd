//! The zoned buddy allocator (cf. `mm/page_alloc.c`).
//!
//! [`PageAlloc`] owns `mem_map` (one [`Page`] per frame) and the four
//! [`Zone`]s. It is the only code that changes a frame's state, so the
//! descriptors, the free lists and the counters can be checked against each
//! other at any time ([`PageAlloc::check_invariants`]).
//!
//! Life cycle, as in Linux boot:
//! 1. [`PageAlloc::new`]: every descriptor reserved and NOMAP, zone links set
//!    from the [`ZoneLayout`] (cf. `memmap_init()`).
//! 2. [`PageAlloc::mark_ram`] for each RAM range (present pages).
//! 3. [`PageAlloc::free_bootmem`] for each free range, or
//!    [`PageAlloc::memblock_free_all`] to do 2–3 from a [`Memblock`]
//!    (managed pages; cf. `memblock_free_all()`).
//! 4. [`PageAlloc::setup_watermarks`] (cf. `init_per_zone_wmark_min()`).
//! 5. [`PageAlloc::setup_kernel_reserve`]: the kernel heap's own reserve
//!    ([`crate::reserve`]), which only `__GFP_MEMALLOC` requests reach.
//!
//! Then [`PageAlloc::alloc_pages`] / [`PageAlloc::free_pages`]. Free blocks
//! are grouped by mobility (see [`mobility`]): each pageblock of 512 frames
//! has a migrate type, each order one free list per type, and an
//! allocation takes from its own type's lists before it steals from
//! another's. Blocks up to `PAGE_ALLOC_COSTLY_ORDER` pass through per-CPU
//! lists first (see [`pcp`]).
//! The crate never touches frame contents: `__GFP_ZERO` is the caller's job
//! (it owns the mappings), which keeps this code pure bookkeeping that runs
//! unchanged on the host.
//!
//! Locking: [`crate::manager::MemoryManager`] keeps `PageAlloc` in a
//! [`crate::sync::BrLock`]. `&mut self` methods run on its exclusive side
//! (every CPU's flag); the per-CPU fast paths ([`smp`]) run under one
//! CPU's flag, and their refills and trims add that zone's `zone->lock`
//! ([`zone_lock`], which tabulates who protects what).

use core::fmt;

use crate::fault_inject::{ArmedMut, FailPageAlloc};
use crate::gfp::GfpFlags;
use crate::memblock::Memblock;
use crate::page::{LIST_END, NIL, OwnerTag, Page, PageFlags};
use crate::reserve::KernelReserve;
use crate::types::{
    MAX_ORDER, NR_ORDERS, Order, PAGE_OFFSET, PAGE_SHIFT, PAGE_SIZE, Pfn, PhysAddr, VirtAddr,
};
use crate::vmstat::{AllocCounters, VmEvent, VmEvents};
use crate::zone::{
    MIGRATE_PCPTYPES, MigrateType, NR_ZONES, PAGEBLOCK_NR_PAGES, Watermarks, Zone, ZoneLayout,
    ZoneType,
};
pub use mobility::AllocFlags;

/// Errors while building the allocator or handing it boot memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitError {
    /// `mem_map` has fewer descriptors than `max_pfn` needs.
    MemMapTooSmall {
        /// Descriptors needed (= `max_pfn`).
        needed: u64,
        /// Descriptors supplied.
        len: u64,
    },
    /// `max_pfn` does not fit the 32-bit free-list links.
    MaxPfnTooLarge {
        /// The offending `max_pfn`.
        max_pfn: Pfn,
    },
    /// `start > end`, or the range reaches past `max_pfn`.
    BadRange {
        /// Range start.
        start: Pfn,
        /// Range end (exclusive).
        end: Pfn,
    },
    /// `free_bootmem` over a frame that is not RAM.
    NotRam {
        /// First offending frame.
        pfn: Pfn,
    },
    /// `free_bootmem` over a frame already given to the buddy allocator.
    NotReserved {
        /// First offending frame.
        pfn: Pfn,
    },
}

/// Allocation failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocError {
    /// No allowed zone has a free block of `order` above its watermark
    /// (cf. the "page allocation failure" report) — or `fail_page_alloc`
    /// injected the failure, which callers must not be able to tell apart.
    NoMemory {
        /// Requested order.
        order: Order,
        /// Requested flags.
        gfp: GfpFlags,
    },
    /// Contradictory zone modifiers (cf. `GFP_ZONE_BAD`, a BUG in Linux).
    ZoneBad {
        /// The flags as given.
        gfp: GfpFlags,
    },
}

/// Why a free (or another operation on an allocated block) was refused.
/// A refused call changes no state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeError {
    /// Out of range, a hole, or not RAM.
    NotRam {
        /// The frame given.
        pfn: Pfn,
    },
    /// RAM that was never handed to the buddy allocator (firmware, kernel,
    /// memblock allocations), or a frame sitting in the kernel heap's
    /// reserve pool (owner `reserve`, see [`crate::reserve`]).
    Reserved {
        /// The frame given.
        pfn: Pfn,
    },
    /// The frame is free already (a free block head or inside one).
    DoubleFree {
        /// The frame given.
        pfn: Pfn,
    },
    /// The frame is inside an allocated block but not its first frame.
    NotHead {
        /// The frame given.
        pfn: Pfn,
    },
    /// The block was allocated with another order (cf. `bad_page()`).
    WrongOrder {
        /// Order recorded at allocation.
        allocated: Order,
        /// Order passed to the free.
        requested: Order,
    },
    /// The block still backs a slab; the slab layer must release it first.
    Slab {
        /// The frame given.
        pfn: Pfn,
    },
}

impl fmt::Display for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InitError::MemMapTooSmall { needed, len } => {
                write!(f, "mem_map has {len} descriptors, {needed} needed")
            }
            InitError::MaxPfnTooLarge { max_pfn } => write!(f, "max_pfn {max_pfn} too large"),
            InitError::BadRange { start, end } => write!(f, "bad pfn range [{start}, {end})"),
            InitError::NotRam { pfn } => write!(f, "pfn {pfn} is not RAM"),
            InitError::NotReserved { pfn } => write!(f, "pfn {pfn} is not reserved"),
        }
    }
}

impl fmt::Display for AllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllocError::NoMemory { order, gfp } => {
                write!(
                    f,
                    "page allocation failure: order:{order}, mode:{:#x}({gfp})",
                    gfp.bits()
                )
            }
            AllocError::ZoneBad { gfp } => write!(f, "conflicting zone modifiers in {gfp}"),
        }
    }
}

impl fmt::Display for FreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FreeError::NotRam { pfn } => write!(f, "pfn {pfn} is not RAM"),
            FreeError::Reserved { pfn } => write!(f, "pfn {pfn} is reserved"),
            FreeError::DoubleFree { pfn } => write!(f, "pfn {pfn} is already free"),
            FreeError::NotHead { pfn } => write!(f, "pfn {pfn} is not the head of a block"),
            FreeError::WrongOrder {
                allocated,
                requested,
            } => {
                write!(
                    f,
                    "block has order {allocated}, free asked for order {requested}"
                )
            }
            FreeError::Slab { pfn } => write!(f, "pfn {pfn} still backs a slab"),
        }
    }
}

/// `sysctl_lowmem_reserve_ratio[]` defaults: a zone keeps back
/// 1/ratio of the memory of the zones above it.
pub const LOWMEM_RESERVE_RATIO: [u64; NR_ZONES] = [256, 256, 32, 0];
/// `watermark_scale_factor` default, in 1/10000 of managed pages.
pub const WATERMARK_SCALE_FACTOR: u64 = 10;
/// `SWAP_CLUSTER_MAX`: the HighMem MIN watermark floor.
const SWAP_CLUSTER_MAX: u64 = 32;

/// The zoned buddy allocator over a borrowed `mem_map`.
pub struct PageAlloc<'a> {
    pub(crate) mem_map: memmap::MemMap<'a>,
    pub(crate) zones: [Zone; NR_ZONES],
    layout: ZoneLayout,
    min_free_kbytes: u64,
    /// The kernel heap's reserve, once [`PageAlloc::setup_kernel_reserve`]
    /// carved it.
    pub(crate) reserve: Option<KernelReserve>,
    /// Each zone's file LRU (cf. `lruvec`), see [`crate::vmscan`].
    pub(crate) lru: [crate::vmscan::Lruvec; NR_ZONES],
    /// `fail_page_alloc` fault injection (disabled by default).
    fail_page_alloc: FailPageAlloc,
    /// `fail_page_alloc.is_armed()`, cached for the fast path.
    fail_page_alloc_armed: bool,
    /// VM event counters: `pgalloc_*` and `pgfree` counted here, the
    /// others by the mechanisms that own them.
    pub(crate) vm_events: VmEvents,
    /// Blocks allocated, freed and refused per zone and order.
    pub(crate) alloc_counters: AllocCounters,
    /// Fallback allocations from another migrate type (the
    /// `mm_page_alloc_extfrag` events), see [`mobility`].
    pub(crate) extfrag: mobility::ExtfragStats,
    /// Each zone's compaction deferral (see [`crate::compaction`]).
    pub(crate) compact_defer: [crate::compaction::CompactDefer; NR_ZONES],
    /// The CMA area, once [`PageAlloc::activate_cma`] set it up.
    pub(crate) cma: Option<crate::cma::CmaArea>,
    /// Whether [`PageAlloc::setup_watermarks`] sizes the per-CPU lists
    /// (see [`PageAlloc::set_pcp_enabled`]).
    pcp_on: bool,
    /// Descriptors not initialised yet (see [`deferred`]).
    pub(crate) deferred: deferred::DeferredInit,
    /// The CPU the exclusive holder runs on (cf. `smp_processor_id()`):
    /// whose per-CPU lists the locked paths use. Set by the lock.
    cpu: usize,
    /// CPUs online; the per-CPU lists split a zone's LOW watermark among
    /// them (cf. `zone_highsize()`), and the views show their pagesets.
    nr_cpus: usize,
    /// What each CPU's fast paths counted since the last fold (cf.
    /// `vm_stat_diff`), see [`smp`].
    pub(crate) vm_diff: [crate::sync::PcpCell<smp::VmDiff>; crate::types::NR_CPUS],
    /// Each zone's `zone->lock`: what a CPU refilling or trimming its
    /// per-CPU lists holds besides its own flag (see [`zone_lock`] for
    /// what it protects).
    pub(crate) zone_lock: [zone_lock::ZoneLock; NR_ZONES],
    /// Refills and trims done under a zone lock, folded from the per-CPU
    /// diffs (see [`PageAlloc::pcp_zone_locked_ops`]).
    pcp_zone_locked: [u64; 2],
    /// The fast paths' table, kept in step with its inputs by
    /// [`PageAlloc::refresh_fast_paths`] (see [`smp::FastPaths`]).
    pub(crate) fast: smp::FastPaths,
}

impl fmt::Debug for PageAlloc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PageAlloc")
            .field("layout", &self.layout)
            .field("zones", &self.zones)
            .finish_non_exhaustive()
    }
}

impl<'a> PageAlloc<'a> {
    /// Build the allocator with every frame reserved and not RAM.
    ///
    /// `mem_map` must hold at least `layout.max_pfn` descriptors; they are
    /// (re)initialised here, zone links included, so whatever the caller put
    /// in them is irrelevant (cf. `free_area_init()` + `memmap_init()`).
    pub fn new(mem_map: &'a mut [Page], layout: ZoneLayout) -> Result<Self, InitError> {
        Self::new_inner(mem_map, layout, true)
    }

    /// [`PageAlloc::new`], writing the descriptors only with `memmap_init`
    /// ([`PageAlloc::new_deferred`] writes the ones it needs itself).
    fn new_inner(
        mem_map: &'a mut [Page],
        layout: ZoneLayout,
        memmap_init: bool,
    ) -> Result<Self, InitError> {
        let max = layout.max_pfn.0;
        if max >= LIST_END as u64 {
            return Err(InitError::MaxPfnTooLarge {
                max_pfn: layout.max_pfn,
            });
        }
        if (mem_map.len() as u64) < max {
            return Err(InitError::MemMapTooSmall {
                needed: max,
                len: mem_map.len() as u64,
            });
        }
        let zones = ZoneType::ALL.map(|zt| {
            let (s, e) = layout.zone_range(zt);
            Zone::new(zt, s, e)
        });
        for zone in zones.iter().filter(|_| memmap_init) {
            for pfn in zone.start_pfn.0..zone.end_pfn.0 {
                let mut p = Page::new_reserved();
                p.zone = zone.ztype as u8;
                if zone.ztype.is_highmem() {
                    p.flags.insert(PageFlags::HIGHMEM);
                }
                mem_map[pfn as usize] = p;
            }
        }
        for p in mem_map[max as usize..].iter_mut() {
            *p = Page::new_reserved();
        }
        // cf. memmap_init_range(): every pageblock starts out Movable.
        for p in mem_map[..max as usize]
            .iter_mut()
            .step_by(PAGEBLOCK_NR_PAGES as usize)
            .filter(|_| memmap_init)
        {
            p.set_pageblock_migratetype(MigrateType::Movable as u8);
        }
        Ok(PageAlloc {
            mem_map: memmap::MemMap::new(mem_map),
            zones,
            layout,
            min_free_kbytes: 0,
            reserve: None,
            lru: [crate::vmscan::Lruvec::EMPTY; NR_ZONES],
            fail_page_alloc: FailPageAlloc::new(),
            fail_page_alloc_armed: false,
            vm_events: VmEvents::new(),
            alloc_counters: AllocCounters::ZERO,
            extfrag: mobility::ExtfragStats::ZERO,
            compact_defer: [crate::compaction::CompactDefer::NEW; NR_ZONES],
            cma: None,
            pcp_on: true,
            deferred: deferred::DeferredInit::NONE,
            cpu: 0,
            nr_cpus: 1,
            vm_diff: [const { crate::sync::PcpCell::new(smp::VmDiff::ZERO) };
                crate::types::NR_CPUS],
            zone_lock: [const { zone_lock::ZoneLock::new() }; NR_ZONES],
            pcp_zone_locked: [0; 2],
            fast: smp::FastPaths::none(),
        })
    }

    // ----------------------------------------------------------------
    // Boot: present and managed memory
    // ----------------------------------------------------------------

    fn check_range(&self, start: Pfn, end: Pfn) -> Result<(), InitError> {
        if start > end || end > self.layout.max_pfn {
            return Err(InitError::BadRange { start, end });
        }
        Ok(())
    }

    /// Declare `[start, end)` as RAM: the frames stay reserved but become
    /// present in their zone. Frames already marked are not counted twice.
    /// Returns the number of newly present frames.
    pub fn mark_ram(&mut self, start: Pfn, end: Pfn) -> Result<u64, InitError> {
        self.check_range(start, end)?;
        let mut nr_pages = 0;
        for pfn in start.0..end.0 {
            let page = &mut self.mem_map[pfn as usize];
            if page.is_nomap() {
                page.flags.remove(PageFlags::NOMAP);
                self.zones[page.zone as usize].present_pages += 1;
                nr_pages += 1;
            }
        }
        Ok(nr_pages)
    }

    /// Label the reserved frames of `[start, end)` with `owner`, for
    /// reporting (kernel image, mem_map, firmware…). Frames that are not
    /// reserved are left alone. Returns how many were labelled.
    pub fn label_reserved(
        &mut self,
        start: Pfn,
        end: Pfn,
        owner: OwnerTag,
    ) -> Result<u64, InitError> {
        self.check_range(start, end)?;
        let mut nr_pages = 0;
        for page in &mut self.mem_map[start.index()..end.index()] {
            if page.is_reserved() {
                page.owner = owner;
                nr_pages += 1;
            }
        }
        Ok(nr_pages)
    }

    /// Hand the reserved RAM range `[start, end)` to the buddy allocator
    /// (cf. `__free_pages_memory()` → `memblock_free_pages()` →
    /// `__free_pages_core()`).
    ///
    /// The range is cut at zone boundaries and then into the largest
    /// naturally aligned blocks that fit, each freed through the normal
    /// coalescing path and appended to the tail of its free list
    /// (`FPI_TO_TAIL`) so early allocations come from low addresses. The whole
    /// range is validated first: on error nothing changes. Returns the number
    /// of frames handed over.
    pub fn free_bootmem(&mut self, start: Pfn, end: Pfn) -> Result<u64, InitError> {
        self.check_range(start, end)?;
        for pfn in start.0..end.0 {
            let page = &self.mem_map[pfn as usize];
            if page.is_nomap() {
                return Err(InitError::NotRam { pfn: Pfn(pfn) });
            }
            if !page.is_reserved() {
                return Err(InitError::NotReserved { pfn: Pfn(pfn) });
            }
        }
        for zi in 0..NR_ZONES {
            let zs = self.zones[zi].start_pfn.0.max(start.0);
            let ze = self.zones[zi].end_pfn.0.min(end.0);
            let mut pfn = zs;
            while pfn < ze {
                // cf. __free_pages_memory(): order = min(MAX_ORDER, __ffs(start)),
                // shrunk until the block ends inside the range.
                let mut order = (pfn.trailing_zeros() as usize).min(MAX_ORDER);
                while pfn + (1u64 << order) > ze {
                    order -= 1;
                }
                let nr = 1u64 << order;
                for p in &mut self.mem_map[pfn as usize..(pfn + nr) as usize] {
                    p.flags.remove(PageFlags::RESERVED);
                    p.owner = OwnerTag::NONE;
                    p.refcount = 0;
                }
                self.zones[zi].managed_pages += nr;
                let mt = self.pageblock_migratetype(Pfn(pfn));
                self.free_one_page(pfn, order, zi, mt, true);
                // cf. __free_pages_core() → __free_pages_ok(): boot memory
                // counts as freed, so pgfree starts at the managed pages.
                self.vm_events.count(VmEvent::PgFree, nr);
                pfn += nr;
            }
        }
        // Managed pages grew (a zone may have become populated).
        self.refresh_fast_paths();
        Ok(end.0 - start.0)
    }

    /// Boot hand-over from memblock: mark every memory region present, label
    /// reserved frames by their reservation's name, and free every
    /// unreserved page-aligned range (cf. `memblock_free_all()` /
    /// `free_low_memory_core_early()`). Ranges are clipped to `max_pfn`.
    /// Returns the number of frames given to the buddy allocator. Memblock's
    /// free ranges are disjoint RAM, so the only failure in practice is a
    /// second call, refused at its first range before anything is freed.
    pub fn memblock_free_all(&mut self, mb: &Memblock) -> Result<u64, InitError> {
        let max = self.layout.max_pfn;
        let clip = |s: Pfn, e: Pfn| (s.min(max), e.min(max));
        for r in mb.memory_regions() {
            let (s, e) = clip(Pfn::from_phys_up(r.base), Pfn::from_phys(r.end()));
            if s < e {
                self.mark_ram(s, e)?;
            }
        }
        for r in mb.reserved_regions() {
            // Outward: a partly reserved frame is reserved.
            let (s, e) = clip(Pfn::from_phys(r.base), Pfn::from_phys_up(r.end()));
            if s < e {
                let owner = OwnerTag::from_name(r.name).unwrap_or(OwnerTag::MEMBLOCK);
                self.label_reserved(s, e, owner)?;
            }
        }
        let mut result = Ok(0u64);
        mb.for_each_free_range(|start, end| {
            let (s, e) = clip(Pfn::from_phys(start), Pfn::from_phys(end));
            if let (true, Ok(total)) = (s < e, result) {
                result = self.free_bootmem(s, e).map(|n| total + n);
            }
        });
        result
    }

    // ----------------------------------------------------------------
    // Watermarks and lowmem_reserve
    // ----------------------------------------------------------------

    /// Compute `min_free_kbytes`, per-zone watermarks and `lowmem_reserve`
    /// from the managed pages (cf. `init_per_zone_wmark_min()`). Call after
    /// all boot memory is handed over; calling again recomputes.
    pub fn setup_watermarks(&mut self) {
        self.calculate_min_free_kbytes();
        self.setup_per_zone_wmarks();
        self.setup_per_zone_lowmem_reserve();
        // cf. setup_per_zone_wmarks() → zone_pcp_update(zone, 0).
        self.zone_pcp_update();
    }

    /// Managed pages of the zones with a direct mapping, the deferred ones
    /// included (cf. `nr_free_buffer_pages()`, which Linux reads only after
    /// deferred init: `min_free_kbytes` and the kernel reserve come out as
    /// if every page were in).
    pub(crate) fn lowmem_managed_pages(&self) -> u64 {
        self.zones
            .iter()
            .filter(|z| !z.ztype.is_highmem())
            .map(|z| z.managed_pages + self.deferred.pending_pages(z.ztype))
            .sum()
    }

    /// cf. `calculate_min_free_kbytes()`: sqrt(16 × lowmem KiB), clamped to
    /// [128 KiB, 256 MiB] — grows slower than memory so big machines do not
    /// waste a fixed percentage.
    fn calculate_min_free_kbytes(&mut self) {
        let lowmem_kbytes = self.lowmem_managed_pages() << (PAGE_SHIFT - 10);
        self.min_free_kbytes = int_sqrt(lowmem_kbytes * 16).clamp(128, 262_144);
    }

    /// cf. `__setup_per_zone_wmarks()`: the MIN reserve is spread over the
    /// lowmem zones in proportion to their size; HighMem gets a small fixed
    /// MIN because its reserve cannot serve kernel allocations anyway. The
    /// LOW/HIGH gaps are a quarter of the proportional share, but at least
    /// `watermark_scale_factor` (0.1 %) of the zone.
    fn setup_per_zone_wmarks(&mut self) {
        let pages_min = self.min_free_kbytes >> (PAGE_SHIFT - 10);
        let lowmem_pages = self.lowmem_managed_pages();
        for zone in &mut self.zones {
            let managed = zone.managed_pages;
            // lowmem_pages is 0 only if no lowmem is managed: then every
            // lowmem zone has managed == 0 too and the share is 0.
            let mut tmp = (pages_min * managed).checked_div(lowmem_pages).unwrap_or(0);
            let min = if zone.ztype.is_highmem() {
                (managed / 1024).clamp(SWAP_CLUSTER_MAX, 128)
            } else {
                tmp
            };
            tmp = (tmp >> 2).max(managed * WATERMARK_SCALE_FACTOR / 10_000);
            zone.watermarks = Watermarks {
                min,
                low: min + tmp,
                high: min + 2 * tmp,
            };
        }
    }

    /// cf. `setup_per_zone_lowmem_reserve()`: zone `i` keeps back
    /// `sum(managed of zones i+1..=j) / ratio[i]` from requests that could
    /// have been served by zone `j`, so GFP_KERNEL/GFP_HIGHUSER fallback
    /// cannot starve DMA users.
    fn setup_per_zone_lowmem_reserve(&mut self) {
        for (i, &ratio) in LOWMEM_RESERVE_RATIO.iter().enumerate() {
            let clear = ratio == 0 || self.zones[i].managed_pages == 0;
            let mut managed_pages = 0;
            let mut reserve = [0u64; NR_ZONES];
            for (j, r) in reserve.iter_mut().enumerate().skip(i + 1) {
                managed_pages += self.zones[j].managed_pages;
                *r = if clear { 0 } else { managed_pages / ratio };
            }
            self.zones[i].lowmem_reserve = reserve;
        }
    }

    /// The `min_free_kbytes` computed by [`PageAlloc::setup_watermarks`]
    /// (0 before).
    pub fn min_free_kbytes(&self) -> u64 {
        self.min_free_kbytes
    }

    /// Pages the allocator keeps back from userspace-style use: per zone the
    /// largest `lowmem_reserve` plus the HIGH watermark, capped at the zone's
    /// size (cf. `calculate_totalreserve_pages()`; used for MemAvailable).
    pub fn totalreserve_pages(&self) -> u64 {
        self.zones
            .iter()
            .enumerate()
            .map(|(i, z)| {
                let max = z.lowmem_reserve[i..].iter().copied().max().unwrap_or(0);
                (max + z.watermarks.high).min(z.managed_pages)
            })
            .sum()
    }

    // ----------------------------------------------------------------
    // Allocation
    // ----------------------------------------------------------------

    /// Allocate a naturally aligned block of `2^order` frames
    /// (cf. `__alloc_pages()`).
    ///
    /// The zonelist is the highest zone `gfp` allows (`gfp_zone()`) and
    /// every zone below it. A first pass accepts a zone only above its LOW
    /// watermark; the slow path retries down to MIN, which `__GFP_HIGH` and
    /// atomic requests may undercut (cf. `gfp_to_alloc_flags()`). There is
    /// nothing to reclaim, so a request that fails both passes fails —
    /// `__GFP_NOFAIL` included, which here only means "exempt from fault
    /// injection" — unless it carries `__GFP_MEMALLOC` (and not
    /// `__GFP_NOMEMALLOC`): that one is served from the kernel heap's
    /// reserve (cf. `ALLOC_NO_WATERMARKS` from `__gfp_pfmemalloc_flags()`;
    /// see [`crate::reserve`] for how ours is stronger).
    ///
    /// Before any zone is tried, `fail_page_alloc` may fail the request on
    /// purpose (cf. `prepare_alloc_pages()` → `should_fail_alloc_page()`).
    ///
    /// The block's head is marked HEAD with `order`, refcount 1 and `owner`;
    /// the other frames TAIL. Memory is **not** zeroed even with
    /// `__GFP_ZERO`: this crate never touches frame contents, so the caller
    /// zeroes through its mapping (kmap for HighMem).
    ///
    /// Every call is counted in [`PageAlloc::alloc_counters`].
    ///
    /// The common case — a block on this CPU's list for the first zone,
    /// above its LOW watermark — is inlined into the caller
    /// (`alloc_pages_pcp_fast`); everything else is one call
    /// away, so the fast path saves and restores few registers.
    #[inline]
    pub fn alloc_pages(
        &mut self,
        gfp: GfpFlags,
        order: Order,
        owner: OwnerTag,
    ) -> Result<Pfn, AllocError> {
        if let Some(pfn) = self.alloc_pages_pcp_fast(gfp, order, owner) {
            return Ok(pfn);
        }
        self.alloc_pages_slow(gfp, order, owner)
    }

    /// [`PageAlloc::alloc_pages`] past its per-CPU fast path.
    #[inline(never)]
    fn alloc_pages_slow(
        &mut self,
        gfp: GfpFlags,
        order: Order,
        owner: OwnerTag,
    ) -> Result<Pfn, AllocError> {
        let got = self.alloc_pages_uncounted(gfp, order, owner);
        match got {
            Ok(pfn) => {
                let zid = self.mem_map[pfn.index()].zone as usize;
                self.alloc_counters.count_alloc(zid, order.index());
                // The path that found the block counted its pages in
                // pgalloc; `vm_events()` derives them from the block count
                // instead (see there), so they come off the stored count.
                self.vm_events
                    .count_zid(VmEvent::PgAllocDma, zid, order.nr_pages().wrapping_neg());
            }
            Err(AllocError::NoMemory { .. }) => {
                self.alloc_counters
                    .count_fail(gfp.gfp_zone().index(), order.index());
            }
            Err(_) => {}
        }
        got
    }

    /// [`PageAlloc::alloc_pages`] without the per-zone, per-order count.
    fn alloc_pages_uncounted(
        &mut self,
        gfp: GfpFlags,
        order: Order,
        owner: OwnerTag,
    ) -> Result<Pfn, AllocError> {
        // (The per-CPU fast path has been tried: `alloc_pages`.)
        if gfp.is_zone_bad() {
            return Err(AllocError::ZoneBad { gfp });
        }
        // cf. prepare_alloc_pages(): gfp_zone() (which BUGs on a bad
        // combination), then should_fail_alloc_page().
        if self.fail_page_alloc_armed && self.should_fail_alloc_page(gfp, order) {
            return Err(AllocError::NoMemory { order, gfp });
        }
        let highest = gfp.gfp_zone();
        // Fast path: ALLOC_WMARK_LOW, and ALLOC_NOFRAGMENT where Linux sets
        // it (cf. get_page_from_freelist() in __alloc_pages()).
        let cma = gfp.migratetype() == MigrateType::Movable;
        let fast = AllocFlags {
            harder: false,
            nofragment: self.alloc_flags_nofragment(highest),
            cma,
        };
        if let Some(pfn) =
            self.get_page_from_freelist(gfp, order, highest, |z| z.watermarks.low, fast)
        {
            self.prep_new_page_gfp(pfn, order, owner, gfp);
            return Ok(pfn);
        }
        // Slow path: ALLOC_WMARK_MIN, with ALLOC_MIN_RESERVE/ALLOC_NON_BLOCK
        // discounts, and ALLOC_HARDER for atomic requests (cf.
        // __alloc_pages_slowpath() → gfp_to_alloc_flags()).
        let slow = AllocFlags {
            harder: gfp.can_dip_below_min() && gfp.is_non_block(),
            nofragment: false,
            cma,
        };
        let min = |z: &Zone| gfp.min_watermark(z.watermarks.min);
        if let Some(pfn) = self.get_page_from_freelist(gfp, order, highest, min, slow) {
            self.prep_new_page_gfp(pfn, order, owner, gfp);
            return Ok(pfn);
        }
        // A request that would reclaim first gives back the high-order
        // atomic reserve (all but one pageblock) and drains the per-CPU
        // lists, as __alloc_pages_direct_reclaim() does before its retry.
        if gfp.allows_blocking()
            && (self.unreserve_highatomic_pageblock(highest, gfp.migratetype(), false)
                | (self.drain_all_pages() > 0))
            && let Some(pfn) = self.get_page_from_freelist(gfp, order, highest, min, slow)
        {
            self.prep_new_page_gfp(pfn, order, owner, gfp);
            return Ok(pfn);
        }
        // cf. __gfp_pfmemalloc_flags(): __GFP_NOMEMALLOC wins.
        if gfp.contains(GfpFlags::MEMALLOC)
            && !gfp.contains(GfpFlags::NOMEMALLOC)
            && let Some(pfn) = self.alloc_from_reserve(gfp, order, owner)
        {
            return Ok(pfn);
        }
        Err(AllocError::NoMemory { order, gfp })
    }

    /// Allocate and return the direct-map address (cf. `__get_free_pages()`).
    /// `__GFP_HIGHMEM` is stripped, as Linux does, because a HighMem frame
    /// has no such address.
    pub fn __get_free_pages(
        &mut self,
        gfp: GfpFlags,
        order: Order,
        owner: OwnerTag,
    ) -> Result<VirtAddr, AllocError> {
        let gfp = gfp.difference(GfpFlags::HIGHMEM);
        let pfn = self.alloc_pages(gfp, order, owner)?;
        match self.page_address(pfn) {
            Some(va) => Ok(va),
            None => {
                // Unreachable for a lowmem zone, but never leak on a
                // surprise: give the block back.
                let _ = self.free_pages(pfn, order);
                Err(AllocError::NoMemory { order, gfp })
            }
        }
    }

    /// Walk the zonelist and take the first block a zone can give above
    /// `mark(zone)` (cf. `get_page_from_freelist()`), from the migrate type
    /// `gfp` asks for. With `nofragment`, a pass that found nothing without
    /// breaking into another type's pageblocks is repeated allowing it.
    fn get_page_from_freelist(
        &mut self,
        gfp: GfpFlags,
        order: Order,
        highest: ZoneType,
        mark: impl Fn(&Zone) -> u64,
        mut flags: AllocFlags,
    ) -> Option<Pfn> {
        let mt = gfp.migratetype();
        loop {
            for zi in (0..=highest.index()).rev() {
                // cf. _deferred_grow_zone(): a zone that cannot serve while
                // it still has deferred pages grows, and is tried again.
                let got = loop {
                    let zone = &self.zones[zi];
                    if zone.is_populated()
                        && zone.watermark_ok_flags(order, mark(zone), highest, flags)
                        && let Some(pfn) = self.rmqueue(zi, order, mt, flags)
                    {
                        break Some(pfn);
                    }
                    if !self.deferred_grow_zone(zi, order) {
                        break None;
                    }
                };
                if let Some(pfn) = got {
                    // cf. rmqueue(): __count_zid_vm_events(PGALLOC, ...).
                    self.vm_events
                        .count_zid(VmEvent::PgAllocDma, zi, order.nr_pages());
                    // cf. the reserve_highatomic_pageblock() call after a
                    // successful high-order ALLOC_HARDER allocation.
                    if order.get() > 0 && flags.harder {
                        self.reserve_highatomic_pageblock(pfn, zi);
                    }
                    return Some(pfn);
                }
            }
            if !flags.nofragment {
                return None;
            }
            flags.nofragment = false;
        }
    }

    /// cf. `rmqueue()`: orders up to `PAGE_ALLOC_COSTLY_ORDER` from this
    /// CPU's list; then `rmqueue_buddy()`: an ALLOC_HARDER request tries
    /// the HighAtomic reserve first, then its own type with fallback
    /// ([`PageAlloc::rmqueue_mt`]).
    #[inline]
    fn rmqueue(
        &mut self,
        zi: usize,
        order: Order,
        mt: MigrateType,
        flags: AllocFlags,
    ) -> Option<Pfn> {
        if pcp::pcp_allowed_order(order.index())
            && let Some(pfn) = self.rmqueue_pcplist(zi, order.index(), mt, flags)
        {
            return Some(pfn);
        }
        if flags.harder
            && let Some(pfn) = self.rmqueue_smallest(zi, order, MigrateType::HighAtomic)
        {
            return Some(pfn);
        }
        self.__rmqueue(zi, order, mt, flags)
    }

    /// A block of `order` from zone `zi` for migrate type `mt`, stealing
    /// from other types if its own lists are empty (no watermark); for
    /// the kernel heap's reserve and tests.
    pub(crate) fn rmqueue_mt(&mut self, zi: usize, order: Order, mt: MigrateType) -> Option<Pfn> {
        self.__rmqueue(zi, order, mt, AllocFlags::default())
    }

    /// Mark an allocated block in its head (cf. `prep_new_page()`); the
    /// other frames are left as they were inside the free block.
    #[inline]
    pub(crate) fn prep_new_page(&mut self, pfn: Pfn, order: Order, owner: OwnerTag) {
        let p = &mut self.mem_map[pfn.index()];
        p.flags.remove(
            PageFlags::BUDDY
                .union(PageFlags::PCP)
                .union(PageFlags::MOVABLE),
        );
        p.flags.insert(PageFlags::HEAD);
        p.order = order.get();
        p.refcount = 1;
        p.owner = owner;
        p.prev = NIL;
        p.next = NIL;
    }

    /// [`PageAlloc::prep_new_page`], and [`PageAlloc::prep_compound_page`]
    /// for a `__GFP_COMP` block of order > 0.
    #[inline]
    fn prep_new_page_gfp(&mut self, pfn: Pfn, order: Order, owner: OwnerTag, gfp: GfpFlags) {
        self.prep_new_page(pfn, order, owner);
        if order.get() > 0 && gfp.contains(GfpFlags::COMP) {
            self.prep_compound_page(pfn, order);
        }
    }

    /// Make an allocated block compound: every other frame marked TAIL with
    /// the head's owner (cf. `prep_compound_page()`).
    pub(crate) fn prep_compound_page(&mut self, pfn: Pfn, order: Order) {
        let nr = order.nr_pages() as usize;
        let block = &mut self.mem_map[pfn.index()..pfn.index() + nr];
        let (head, tails) = block.split_at_mut(1);
        head[0].flags.insert(PageFlags::COMPOUND);
        let (owner, slab) = (head[0].owner, head[0].flags.contains(PageFlags::SLAB));
        for p in tails {
            p.flags.insert(PageFlags::TAIL);
            if slab {
                p.flags.insert(PageFlags::SLAB);
            }
            p.owner = owner;
        }
    }

    /// The allocated block a frame lies in, for an unmarked frame (inside a
    /// non-compound block, or free): the first naturally aligned head above
    /// it whose order covers it (at most `MAX_ORDER` probes; a free block
    /// met first means the frame is free).
    fn find_head(&self, pfn: Pfn) -> Option<(Pfn, Order)> {
        for o in 1..=MAX_ORDER {
            let head = pfn.0 & !((1u64 << o) - 1);
            let p = self.page(Pfn(head))?; // not one deferred init has yet to write
            if usize::from(p.order) >= o {
                if p.is_head() {
                    return Some((Pfn(head), Order::new(p.order)?));
                }
                if p.is_buddy() || p.is_pcp() {
                    return None;
                }
            }
        }
        None
    }

    // ----------------------------------------------------------------
    // Free
    // ----------------------------------------------------------------

    /// Classify `pfn` as the head of an allocated block or say why not.
    fn check_free(&self, pfn: Pfn, order: Order) -> Result<usize, FreeError> {
        // Through page(): a descriptor deferred init has not written reads
        // as reserved.
        let Some(page) = self.page(pfn) else {
            return Err(FreeError::NotRam { pfn });
        };
        if page.is_nomap() {
            return Err(FreeError::NotRam { pfn });
        }
        if page.is_buddy() {
            return Err(FreeError::DoubleFree { pfn });
        }
        if page.is_tail() {
            return Err(FreeError::NotHead { pfn });
        }
        if page.is_head() {
            if page.owner == OwnerTag::RESERVE {
                return Err(FreeError::Reserved { pfn }); // in the heap's reserve pool
            }
            let allocated = Order::new(page.order).unwrap_or(Order::MAX);
            if allocated != order {
                return Err(FreeError::WrongOrder {
                    allocated,
                    requested: order,
                });
            }
            if page.is_slab() {
                return Err(FreeError::Slab { pfn });
            }
            return Ok(page.zone as usize);
        }
        if page.is_reserved() {
            return Err(FreeError::Reserved { pfn });
        }
        // Managed, unmarked: inside a non-compound block, or free.
        if self.find_head(pfn).is_some() {
            return Err(FreeError::NotHead { pfn });
        }
        Err(FreeError::DoubleFree { pfn })
    }

    /// Free a block allocated with [`PageAlloc::alloc_pages`]
    /// (cf. `__free_pages()` → `__free_one_page()`).
    ///
    /// Every misuse — wrong order, double free, a tail frame, reserved or
    /// non-RAM frames, a frame of the kernel heap's reserve pool — is
    /// refused before anything changes, so a buggy caller cannot corrupt
    /// the free lists. A block the reserve handed out goes back to the
    /// reserve, not to the buddy lists.
    ///
    /// The common case — a plain allocated head of order ≤ 3 going onto
    /// this CPU's list — is inlined into the caller
    /// (`free_pages_pcp_fast`); it does what the general path
    /// would do for such a block, and leaves everything else to it.
    ///
    /// Next, a block that goes straight to the buddy lists is freed by
    /// one call that answers yes or no (`free_pages_buddy_fast`: no
    /// `Result` to return through memory, whose pointer the merge would
    /// keep in a register); everything else by the general path.
    #[inline]
    pub fn free_pages(&mut self, pfn: Pfn, order: Order) -> Result<(), FreeError> {
        if self.free_pages_pcp_fast(pfn, order) || self.free_pages_buddy_fast(pfn, order) {
            return Ok(());
        }
        self.free_pages_slow(pfn, order)
    }

    /// [`PageAlloc::free_pages`] past its fast paths.
    #[inline(never)]
    fn free_pages_slow(&mut self, pfn: Pfn, order: Order) -> Result<(), FreeError> {
        let zi = self.check_free(pfn, order)?;
        // A page still on the LRU leaves it as it is freed (cf.
        // `__folio_clear_lru_flags()` in `__folio_put()`).
        if self.mem_map[pfn.index()].flags.contains(PageFlags::LRU) {
            let _ = self.lru_del(pfn);
        }
        // cf. __free_pages_ok() / free_unref_page_commit(): PGFREE, wherever
        // the block goes (derived from the block count, see `vm_events()`).
        self.alloc_counters.count_free(zi, order.index());
        if self.free_to_reserve(pfn, order) {
            return Ok(());
        }
        let nr = order.nr_pages() as usize;
        let block = &mut self.mem_map[pfn.index()..pfn.index() + nr];
        let (head, tails) = block.split_at_mut(1);
        let compound = head[0].is_compound();
        head[0].flags.remove(
            PageFlags::HEAD
                .union(PageFlags::COMPOUND)
                .union(PageFlags::SLAB)
                .union(PageFlags::MOVABLE),
        );
        head[0].order = 0;
        head[0].refcount = 0;
        head[0].owner = OwnerTag::NONE;
        // cf. free_tail_pages_check(): only a compound block marked them.
        if compound {
            for p in tails {
                p.flags.remove(PageFlags::TAIL.union(PageFlags::SLAB));
                p.owner = OwnerTag::NONE;
            }
        }
        if pcp::pcp_allowed_order(order.index()) {
            self.free_unref_page(pfn, order.index(), zi);
        } else {
            // cf. free_pages_prepare() → get_pfnblock_migratetype().
            let mt = self.pageblock_migratetype(pfn);
            self.free_one_page(pfn.0, order.index(), zi, mt, false);
        }
        Ok(())
    }

    /// Free by direct-map address (cf. `free_pages(addr, order)`).
    pub fn free_pages_addr(&mut self, addr: VirtAddr, order: Order) -> Result<(), FreeError> {
        match self.virt_to_phys(addr) {
            Some(pa) if pa.is_aligned(PAGE_SIZE) => self.free_pages(Pfn::from_phys(pa), order),
            _ => Err(FreeError::NotRam {
                pfn: Pfn(addr.0.wrapping_sub(PAGE_OFFSET) >> PAGE_SHIFT),
            }),
        }
    }

    /// Take a free block off its list, as the compaction free scanner
    /// isolates it (cf. `__isolate_free_page()`).
    pub(crate) fn take_free_block(&mut self, pfn: u32, order: usize, zi: usize) {
        self.del_from_free_list(pfn, order, zi);
        let p = &mut self.mem_map[pfn as usize];
        p.order = 0;
    }

    /// A zone's compaction deferral state.
    pub fn compact_defer(&self, zt: ZoneType) -> crate::compaction::CompactDefer {
        self.compact_defer[zt.index()]
    }

    /// A zone's compaction deferral state, to update.
    pub(crate) fn compact_defer_mut(
        &mut self,
        zt: ZoneType,
    ) -> &mut crate::compaction::CompactDefer {
        &mut self.compact_defer[zt.index()]
    }

    /// Mark or unmark an allocated block movable by its owner (see
    /// [`PageFlags::MOVABLE`]).
    pub fn set_movable(&mut self, pfn: Pfn, movable: bool) -> Result<(), FreeError> {
        let (i, _) = self.allocated_block(pfn)?;
        let p = &mut self.mem_map[i];
        if movable {
            p.flags.insert(PageFlags::MOVABLE);
        } else {
            p.flags.remove(PageFlags::MOVABLE);
        }
        Ok(())
    }

    /// Move a free block to the tail of `mt`'s list of its order (cf.
    /// `move_to_free_list()`).
    fn move_to_free_list(&mut self, pfn: u32, order: usize, zi: usize, mt: MigrateType) {
        self.del_from_free_list(pfn, order, zi);
        self.add_to_free_list(pfn, order, zi, mt, true);
    }

    // ----------------------------------------------------------------
    // Allocated-block metadata used by other subsystems
    // ----------------------------------------------------------------

    /// Head frame and order of the allocated block containing `pfn`
    /// (cf. `compound_head()`), or `None` if `pfn` is not allocated.
    pub fn compound_head(&self, pfn: Pfn) -> Option<(Pfn, Order)> {
        let page = self.page(pfn)?;
        if page.is_head() {
            return Some((pfn, Order::new(page.order)?));
        }
        if page.is_reserved() || page.is_buddy() || page.is_pcp() {
            return None;
        }
        if !page.is_tail() {
            return self.find_head(pfn);
        }
        // A tail is at most 2^MAX_ORDER - 1 frames past its head.
        for back in 1..(1u64 << MAX_ORDER) {
            let head = Pfn(pfn.0.checked_sub(back)?);
            let p = &self.mem_map[head.index()];
            if p.is_head() {
                let order = Order::new(p.order)?;
                return (pfn.0 < head.0 + order.nr_pages()).then_some((head, order));
            }
            if !p.is_tail() {
                return None;
            }
        }
        None
    }

    /// The head's index and the frames carrying the block's metadata: all
    /// of a compound block, the head alone otherwise.
    fn allocated_block(&mut self, pfn: Pfn) -> Result<(usize, usize), FreeError> {
        let page = self.page(pfn).ok_or(FreeError::NotRam { pfn })?;
        if page.is_head() && page.owner == OwnerTag::RESERVE {
            Err(FreeError::Reserved { pfn }) // the reserve pool's, not a caller's
        } else if page.is_head() && page.is_compound() {
            Ok((pfn.index(), 1usize << page.order))
        } else if page.is_head() {
            Ok((pfn.index(), 1))
        } else if page.is_tail() {
            Err(FreeError::NotHead { pfn })
        } else if page.is_nomap() {
            Err(FreeError::NotRam { pfn })
        } else if page.is_reserved() {
            Err(FreeError::Reserved { pfn })
        } else if self.find_head(pfn).is_some() {
            Err(FreeError::NotHead { pfn })
        } else {
            Err(FreeError::DoubleFree { pfn })
        }
    }

    /// Relabel an allocated block (e.g. the slab layer takes ownership).
    /// `reserve` is the reserve pool's own label and refused.
    pub fn set_owner(&mut self, pfn: Pfn, owner: OwnerTag) -> Result<(), FreeError> {
        if owner == OwnerTag::RESERVE {
            return Err(FreeError::Reserved { pfn });
        }
        let (i, nr) = self.allocated_block(pfn)?;
        for p in &mut self.mem_map[i..i + nr] {
            p.owner = owner;
        }
        Ok(())
    }

    /// Mark or unmark an allocated block as a slab (cf. `__SetPageSlab()` /
    /// `__ClearPageSlab()`). A slab block cannot be freed until unmarked.
    pub fn set_slab(&mut self, pfn: Pfn, slab: bool) -> Result<(), FreeError> {
        let (i, nr) = self.allocated_block(pfn)?;
        for p in &mut self.mem_map[i..i + nr] {
            if slab {
                p.flags.insert(PageFlags::SLAB);
            } else {
                p.flags.remove(PageFlags::SLAB);
            }
        }
        Ok(())
    }

    // ----------------------------------------------------------------
    // Read-only views
    // ----------------------------------------------------------------

    /// One zone.
    pub fn zone(&self, zt: ZoneType) -> &Zone {
        &self.zones[zt.index()]
    }

    /// All zones in index order (DMA, DMA32, Normal, HighMem), empty ones
    /// included.
    pub fn zones(&self) -> &[Zone] {
        &self.zones
    }

    /// The zone layout this allocator was built with.
    pub fn layout(&self) -> ZoneLayout {
        self.layout
    }

    /// First frame without a direct-map address (clipped to `max_pfn`).
    pub fn lowmem_pfn(&self) -> Pfn {
        self.layout.effective_lowmem_pfn()
    }

    /// One past the last frame with a descriptor.
    pub fn max_pfn(&self) -> Pfn {
        self.layout.max_pfn
    }

    /// `fail_page_alloc` fault injection (disabled by default).
    pub fn fail_page_alloc(&self) -> &FailPageAlloc {
        &self.fail_page_alloc
    }

    /// `fail_page_alloc`, to arm or tune (the debugfs files in Linux).
    pub fn fail_page_alloc_mut(&mut self) -> ArmedMut<'_, FailPageAlloc> {
        ArmedMut::new(&mut self.fail_page_alloc, &mut self.fail_page_alloc_armed)
    }

    /// The VM event counters (`/proc/vmstat`'s events). The page allocator
    /// counts `pgalloc_<zone>` (every block it hands out, the reserve's
    /// included; not [`PageAlloc::take_page_off_buddy`], as in Linux) and
    /// `pgfree` (every block freed, boot memory included).
    ///
    /// Each `alloc_pages()`/`free_pages()` is counted once, in
    /// [`PageAlloc::alloc_counters`] (blocks by zone and order); the pages
    /// `pgalloc_<zone>` and `pgfree` add for those are derived here
    /// (`blocks << order`), and the stored counters hold the rest (boot
    /// memory handed over, the heap's own use of its reserve) — cf. Linux
    /// summing its per-CPU event counters on read (`all_vm_events()`).
    pub fn vm_events(&self) -> VmEvents {
        let mut ev = self.vm_events;
        let c = &self.alloc_counters;
        for zi in 0..NR_ZONES {
            let (mut alloc, mut free) = (0u64, 0u64);
            for o in 0..NR_ORDERS {
                alloc = alloc.wrapping_add(c.alloc[zi][o] << o);
                free = free.wrapping_add(c.free[zi][o] << o);
            }
            ev.count_zid(VmEvent::PgAllocDma, zi, alloc);
            ev.count(VmEvent::PgFree, free);
        }
        ev
    }

    /// Blocks allocated, freed and refused per zone and order (see
    /// [`AllocCounters`] for what counts).
    pub fn alloc_counters(&self) -> &AllocCounters {
        &self.alloc_counters
    }

    /// The VM event counters, for the mechanisms outside the page
    /// allocator that count events (faults, OOM kills, reclaim stalls…).
    pub fn vm_events_mut(&mut self) -> &mut VmEvents {
        &mut self.vm_events
    }

    /// cf. `should_fail_alloc_page()`, once the cached flag says it may.
    #[cold]
    #[inline(never)]
    fn should_fail_alloc_page(&mut self, gfp: GfpFlags, order: Order) -> bool {
        let fail = self.fail_page_alloc.should_fail_alloc_page(gfp, order);
        // `times` may have run out.
        self.fail_page_alloc_armed = self.fail_page_alloc.attr.is_armed();
        fail
    }

    /// Free frames over all zones (cf. `nr_free_pages()`).
    pub fn nr_free_pages(&self) -> u64 {
        self.zones.iter().map(|z| z.free_pages).sum()
    }

    /// Frames managed by the buddy allocator (cf. `totalram_pages()`), the
    /// deferred ones included as Linux 6.1's `memblock_free_all()` counts
    /// them (`/proc/meminfo`'s MemTotal does not change as they come in).
    pub fn totalram_pages(&self) -> u64 {
        self.zones.iter().map(|z| z.managed_pages).sum::<u64>() + self.deferred.pending_total()
    }

    /// Managed HighMem frames (cf. `totalhigh_pages()`).
    pub fn totalhigh_pages(&self) -> u64 {
        self.zones[ZoneType::HighMem.index()].managed_pages
    }

    /// Free HighMem frames (cf. `nr_free_highpages()`).
    pub fn nr_free_highpages(&self) -> u64 {
        self.zones[ZoneType::HighMem.index()].free_pages
    }

    /// Free blocks per order of one zone (a `/proc/buddyinfo` row).
    pub fn free_area_counts(&self, zt: ZoneType) -> [u64; NR_ORDERS] {
        self.zones[zt.index()].free_area_counts()
    }

    /// The zone `pfn` belongs to (holes included), `None` past `max_pfn`.
    pub fn zone_of(&self, pfn: Pfn) -> Option<ZoneType> {
        self.layout.zone_of(pfn)
    }

    /// The descriptor of `pfn` (cf. `pfn_to_page()`), `None` past `max_pfn`.
    /// One deferred init has not written yet reads as reserved (owner
    /// `deferred`) or, in a hole, as not RAM (see [`deferred`]).
    pub fn page(&self, pfn: Pfn) -> Option<&Page> {
        if pfn < self.layout.max_pfn {
            if let Some(placeholder) = self.deferred_placeholder(pfn) {
                return Some(placeholder);
            }
            self.mem_map.get(pfn.index())
        } else {
            None
        }
    }

    /// Direct-map address of a lowmem frame (cf. `page_address()`); `None`
    /// for HighMem, which must be kmapped.
    pub fn page_address(&self, pfn: Pfn) -> Option<VirtAddr> {
        (pfn < self.lowmem_pfn()).then(|| VirtAddr(PAGE_OFFSET + pfn.phys().0))
    }

    /// Direct-map address of a lowmem physical address (cf. `__va()` /
    /// `phys_to_virt()`); `None` at or above lowmem.
    pub fn phys_to_virt(&self, pa: PhysAddr) -> Option<VirtAddr> {
        (pa < self.lowmem_pfn().phys()).then(|| VirtAddr(PAGE_OFFSET + pa.0))
    }

    /// Physical address behind a direct-map address (cf. `__pa()` /
    /// `virt_to_phys()`); `None` outside the direct map.
    pub fn virt_to_phys(&self, va: VirtAddr) -> Option<PhysAddr> {
        let pa = va.0.checked_sub(PAGE_OFFSET)?;
        (pa < self.lowmem_pfn().phys().0).then_some(PhysAddr(pa))
    }
}

impl Zone {
    /// Can this zone serve `order` without going below `mark` plus the
    /// reserve it keeps from requests preferring `highest_zoneidx`?
    /// (cf. `zone_watermark_ok()` for a request without ALLOC_HARDER;
    /// `mark` already includes any reserve discount.)
    pub fn watermark_ok(&self, order: Order, mark: u64, highest_zoneidx: ZoneType) -> bool {
        self.watermark_ok_flags(order, mark, highest_zoneidx, AllocFlags::default())
    }

    /// cf. `__zone_watermark_ok()`: the HighAtomic reserve does not count
    /// as free unless ALLOC_HARDER may use it, nor free CMA pages unless
    /// ALLOC_CMA, and a high-order request needs a block on a list it may
    /// take from.
    pub fn watermark_ok_flags(
        &self,
        order: Order,
        mark: u64,
        highest_zoneidx: ZoneType,
        flags: AllocFlags,
    ) -> bool {
        let harder = flags.harder;
        // cf. __zone_watermark_unusable_free(). Page counts fit an i64
        // many times over (the PFN links are 32-bit).
        let mut unusable = order.nr_pages() as i64 - 1;
        if !harder {
            unusable += self.nr_reserved_highatomic as i64;
        }
        if !flags.cma {
            unusable += self.nr_free_cma as i64;
        }
        // free_pages may go negative here - that's OK (as in Linux).
        let free = self.free_pages as i64 - unusable;
        let min = mark as i64 + self.lowmem_reserve[highest_zoneidx.index()] as i64;
        if free <= min {
            return false;
        }
        if order.get() == 0 {
            return true;
        }
        self.free_area[order.index()..].iter().any(|a| {
            a.nr_free > 0
                && (MigrateType::ALL[..MIGRATE_PCPTYPES]
                    .iter()
                    .any(|&mt| !a.is_empty(mt))
                    || (flags.cma && !a.is_empty(MigrateType::Cma))
                    || (harder && !a.is_empty(MigrateType::HighAtomic)))
        })
    }
}

/// Integer square root, rounded down (cf. `int_sqrt()`).
pub fn int_sqrt(x: u64) -> u64 {
    if x < 2 {
        return x;
    }
    // Newton's method from an overestimate; converges monotonically down.
    let mut r = 1u64 << (64 - x.leading_zeros()).div_ceil(2);
    loop {
        let next = (r + x / r) / 2;
        if next >= r {
            return r;
        }
        r = next;
    }
}

mod check;
pub mod deferred;
pub mod memmap;
pub mod mobility;
pub mod pcp;
pub mod smp;
mod take;
pub mod zone_lock;

/// A small machine for host tests of the modules above the allocator: 64 MiB
/// of RAM from 0 with page 0 reserved, lowmem 32 MiB (so HighMem exists),
/// memory handed over and watermarks set. The caller provides `mem_map`
/// (`(64 << 20) >> 12` entries of `Page::new_reserved()`).
#[cfg(test)]
pub(crate) fn test_machine_64m(mem_map: &mut [crate::page::Page]) -> PageAlloc<'_> {
    let ram = 64u64 << 20;
    let mut mb = Memblock::new();
    mb.add(crate::types::PhysAddr(0), ram).unwrap();
    mb.reserve(crate::types::PhysAddr(0), 0x1000, "bios")
        .unwrap();
    let mut pa = PageAlloc::new(mem_map, ZoneLayout::from_bytes(32 << 20, ram)).unwrap();
    pa.memblock_free_all(&mb).unwrap();
    pa.setup_watermarks();
    pa
}
#[cfg(test)]
mod tests;
