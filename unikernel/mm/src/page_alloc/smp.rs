//! The per-CPU fast paths: order ≤ 3 allocations and frees that touch only
//! the running CPU's lists, with no lock another CPU takes in the common
//! case (cf. `rmqueue_pcplist()` and `free_unref_page()` under
//! `pcp_spin_lock()` in Linux 6.1, which take `zone->lock` only to refill
//! or trim a list).
//!
//! The allocator sits in a [`crate::sync::BrLock`]: one flag per CPU.
//! [`PageAlloc::alloc_pcp_cpu`] and [`PageAlloc::free_pcp_cpu`] run with
//! only their CPU's flag held, next to the same calls on other CPUs. A
//! list that is empty or over `high` is refilled (`rmqueue_bulk`) or
//! trimmed (`free_pcppages_bulk`, [`PageAlloc::pcp_trim_cpu`]) under that
//! flag plus the zone's `zone->lock` ([`super::zone_lock`], which says who
//! protects what). Every other path — a refill that must steal from
//! another migrate type, drains, the buddy allocator itself, compaction,
//! the views — takes the exclusive side (all flags).
//!
//! The shared side never forms a reference to the whole [`PageAlloc`]:
//! other CPUs write parts of it at the same time (their slots, and zones
//! under their zone locks), so it works from the raw pointer
//! [`crate::sync::BrReadGuard::as_ptr`] gives, reading only fields the
//! exclusive side alone writes and, atomically, the zone counters.
//!
//! What a fast path may touch, and why it is its own:
//! * its CPU's [`PerCpuPages`] for each zone and its [`VmDiff`] — slots no
//!   other CPU reads while the flag is held ([`crate::sync::PcpCell`]);
//! * the descriptors of blocks on its own lists, and of the block its
//!   caller hands back or receives — owned, as Linux's `struct page` is by
//!   whoever holds the page, through raw pointers;
//! * `flags` atomically: a pageblock's migrate type is read from its first
//!   frame's flags by any CPU freeing a page of that pageblock, while that
//!   frame may be one this CPU is handing out;
//! * zone counters read racily (atomic loads), as `zone_watermark_fast()`
//!   reads `NR_FREE_PAGES`; the other zone fields read-only.
//!
//! Anything unusual — a watermark to check fully, fault injection, a frame
//! on the LRU, in the heap's reserve, not yet initialised, an isolated
//! pageblock, a misuse to refuse, a refill that finds its migrate type's
//! lists empty — returns to the caller, which takes the exclusive side and
//! runs the general path.

#![allow(unsafe_code)]

#[cfg(test)]
mod fast_tests;

#[cfg(test)]
extern crate std;
#[cfg(test)]
std::thread_local! {
    /// Tests turn [`PageAlloc::alloc_pages_pcp_refill`] and
    /// [`PageAlloc::free_pages_buddy_fast`] off to compare them with the
    /// full paths they stand for.
    static NO_FAST_REFILL: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
}
#[cfg(test)]
mod tests;

use core::sync::atomic::Ordering::Relaxed;

use super::pcp::{PerCpuPages, nr_pcp_free, pcp_allowed_order};
use super::zone_lock::{ZoneFree, flags_of, flags_update};
use super::{AllocFlags, PageAlloc};
use crate::gfp::GfpFlags;
use crate::page::{NIL, OwnerTag, Page, PageFlags};
use crate::types::{Order, Pfn};
use crate::zone::{FreeList, MIGRATE_PCPTYPES, MigrateType, NR_ZONES, PAGEBLOCK_NR_PAGES};

/// Orders the fast paths serve (0..=`PAGE_ALLOC_COSTLY_ORDER`).
const PCP_ORDERS: usize = super::pcp::PAGE_ALLOC_COSTLY_ORDER + 1;

/// What one CPU's fast paths counted since the last fold (cf.
/// `vm_stat_diff` / the per-CPU `vm_event_states`): the blocks for
/// [`crate::vmstat::AllocCounters`] (from which `pgalloc_<zone>` and
/// `pgfree` are derived, see [`PageAlloc::vm_events`]).
/// [`PageAlloc::fold_vm_diffs`] adds them to the global counters under
/// the exclusive lock, which every reader of the counters holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmDiff {
    /// Blocks handed out, by zone and order.
    pub alloc: [[u64; PCP_ORDERS]; NR_ZONES],
    /// Blocks freed, by zone and order.
    pub free: [[u64; PCP_ORDERS]; NR_ZONES],
    /// Refills and trims done under a zone lock rather than the exclusive
    /// side (not a Linux counter: shows the zone locks at work).
    pub zone_locked: [u64; 2],
}

impl VmDiff {
    /// Nothing counted.
    pub const ZERO: VmDiff = VmDiff {
        alloc: [[0; PCP_ORDERS]; NR_ZONES],
        free: [[0; PCP_ORDERS]; NR_ZONES],
        zone_locked: [0; 2],
    };
}

/// What [`PageAlloc::free_pcp_cpu`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeFast {
    /// The block is on this CPU's list.
    Done,
    /// The block is on this CPU's list, which is now over `high`: give
    /// `count` pages back from list `pindex` of zone `zi` under the zone
    /// lock ([`PageAlloc::pcp_trim_cpu`]).
    Trim {
        /// Zone index.
        zi: usize,
        /// The list the block went on.
        pindex: usize,
        /// Pages to give back.
        count: u32,
    },
    /// Nothing changed: take the exclusive lock and free through
    /// [`PageAlloc::free_pages`], which decides (and refuses misuse).
    Slow,
}

/// Flags the fast free path leaves to the general one.
const FREE_SLOW_FLAGS: PageFlags = PageFlags::BUDDY
    .union(PageFlags::PCP)
    .union(PageFlags::TAIL)
    .union(PageFlags::SLAB)
    .union(PageFlags::LRU)
    .union(PageFlags::RESERVED)
    .union(PageFlags::NOMAP);

/// What the fast free path checks in the head's flags: `HEAD` and the
/// [`FREE_SLOW_FLAGS`].
const FREE_FLAGS_MASK: u16 = PageFlags::HEAD.union(FREE_SLOW_FLAGS).0;
/// What it checks in the head's zone and order bytes, read as one `u16`
/// (see [`Page`]'s layout): the zone byte's bits no zone index sets, and
/// the order byte.
const FREE_ZONE_ORDER_MASK: u16 = (0xff & !(NR_ZONES as u16 - 1)) | 0xff00;
const _: () = {
    assert!(NR_ZONES.is_power_of_two() && crate::types::NR_CPUS.is_power_of_two());
    // The layout FREE_ZONE_ORDER_MASK reads (little-endian, as x86-64).
    assert!(core::mem::offset_of!(Page, flags) == 0);
    assert!(core::mem::offset_of!(Page, zone) == 2);
    assert!(core::mem::offset_of!(Page, order) == 3);
    // The layout `prep_taken_head` and the buddy free path's head store write.
    assert!(core::mem::offset_of!(Page, refcount) == 4);
    assert!(core::mem::offset_of!(Page, owner) == 6);
    assert!(core::mem::offset_of!(Page, prev) == 8 && core::mem::offset_of!(Page, next) == 12);
    assert!(core::mem::size_of::<OwnerTag>() == 2 && core::mem::size_of::<PageFlags>() == 2);
    assert!(cfg!(target_endian = "little"));
};

/// Marks the tails of a `__GFP_COMP` block being handed out (cf.
/// `prep_compound_page()`), out of line.
///
/// # Safety
/// The block `[i, i + 2^o)` of the live `map` is the caller's.
#[inline(never)]
unsafe fn prep_tails(map: *mut Page, i: usize, o: usize, owner: OwnerTag) {
    // SAFETY: the caller's block; flags atomically.
    unsafe {
        flags_update(map.add(i), PageFlags::COMPOUND, PageFlags::EMPTY);
        for t in i + 1..i + (1 << o) {
            flags_update(map.add(t), PageFlags::TAIL, PageFlags::EMPTY);
            (*map.add(t)).owner = owner;
        }
    }
}

/// cf. `prep_new_page()` for a block [`ZoneFree::rmqueue_smallest_taken`]
/// has just taken off the lists, whose head still says BUDDY and has its
/// old links: flags, zone, order, refcount and owner as one store, the
/// links as another (the fields of [`PageAlloc::prep_new_page`], in two
/// stores instead of five after the unlink's two).
///
/// # Safety
/// The exclusive side; `pfn` < max_pfn is such a block's head in the live
/// `map`.
#[inline(always)]
unsafe fn prep_taken_head(map: *mut Page, pfn: u32, order: Order, owner: OwnerTag) {
    // SAFETY: the caller's contract: nobody else runs, the frame is ours.
    unsafe {
        let p = map.add(pfn as usize);
        let w = p.cast::<u32>().read();
        let flags = (w as u16
            & !PageFlags::BUDDY
                .union(PageFlags::PCP)
                .union(PageFlags::MOVABLE)
                .0)
            | PageFlags::HEAD.0;
        let zone = u64::from(w >> 16 & 0xff);
        p.cast::<u64>().write_unaligned(
            u64::from(flags)
                | zone << 16
                | u64::from(order.get()) << 24
                | 1 << 32
                | u64::from(owner.0) << 48,
        );
        (&raw mut (*p).prev).cast::<u64>().write_unaligned(u64::MAX);
    }
}

/// Cleans the tails of a compound block being freed (cf.
/// `free_tail_pages_check()`), out of line: the fast path frees few.
///
/// # Safety
/// The block `[i, i + 2^o)` of the live `map` is the caller's.
#[inline(never)]
unsafe fn free_tails(map: *mut Page, i: usize, o: usize) {
    for t in i + 1..i + (1 << o) {
        // SAFETY: the caller's block; flags atomically.
        unsafe {
            flags_update(
                map.add(t),
                PageFlags::EMPTY,
                PageFlags::TAIL.union(PageFlags::SLAB),
            );
            (*map.add(t)).owner = OwnerTag::NONE;
        }
    }
}

/// Bits of a gfp mask that decide the fast path's zone, watermark and
/// list: the zone modifiers (`GFP_ZONEMASK`) and `__GFP_RECLAIMABLE`
/// (with `__GFP_MOVABLE`, the migrate type).
pub(crate) const FAST_GFP_BITS: u32 = GfpFlags::ZONEMASK.union(GfpFlags::RECLAIMABLE).bits();

/// [`FastPaths::alloc`] rows: one per value of the [`FAST_GFP_BITS`].
const FAST_ALLOC_ROWS: usize = FAST_GFP_BITS as usize + 1;
const _: () = assert!(FAST_GFP_BITS == 0x1f);

/// One row of [`FastPaths::alloc`]: where an order ≤ 3 request with these
/// zone and mobility bits is served when it can be served at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FastAlloc {
    /// By order: the zone's LOW watermark, plus its `lowmem_reserve`
    /// against the request's highest zone, plus its HighAtomic reserve
    /// (which an ALLOC_WMARK_LOW request may not use), plus `2^order - 1`:
    /// free pages must exceed this (and the free CMA pages, for a request
    /// that may not use them) — `__zone_watermark_ok()`'s rule.
    pub mark: [u64; PCP_ORDERS],
    /// The first populated zone of the zonelist (`gfp_zone()` and down),
    /// or [`NR_ZONES`]: no fast path for these bits (a bad zone
    /// combination, no populated zone). With the per-CPU lists off the
    /// row still holds: the lists are empty, and the refill path takes
    /// the block from the buddy lists.
    pub zi: u8,
    /// The request's migrate type (`gfp_migratetype()`), < 3.
    pub mt: u8,
    /// Movable: free CMA pages count (ALLOC_CMA).
    pub cma: bool,
    /// Not movable, and the zone has CMA pages: its free CMA pages are
    /// to be added to the mark (a zone without any has none free).
    pub count_cma: bool,
}

impl FastAlloc {
    /// No fast path.
    #[cfg(test)]
    pub const NONE: FastAlloc = FastAlloc {
        mark: [0; PCP_ORDERS],
        zi: NR_ZONES as u8,
        mt: 0,
        cma: false,
        count_cma: false,
    };
}

/// What the per-CPU fast paths would otherwise work out at every call
/// from a dozen fields (cf. the per-zone `_watermark[]` + `lowmem_reserve`
/// sums Linux's `zone_watermark_fast()` reads, and its static keys):
/// computed by [`PageAlloc::refresh_fast_paths`] on the exclusive side
/// whenever an input changes — watermarks, `lowmem_reserve`,
/// `managed_pages` (boot hand-over, deferred growth), the HighAtomic
/// reserve, the lists' `high` (on/off, CPUs online), deferred init's
/// progress, the kernel heap's reserve. `check_invariants` recomputes it
/// and compares, so a forgotten refresh shows up in every property test.
/// (Fault injection is not folded in: its own cached flag is tested.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FastPaths {
    /// Indexed by `gfp & FAST_GFP_BITS`.
    pub alloc: [FastAlloc; FAST_ALLOC_ROWS],
    /// A free of a block at or past this PFN takes the general path:
    /// `max_pfn`, or the first descriptor deferred init has not written,
    /// or 0 while any populated zone keeps no per-CPU lists (`high` 0).
    pub free_limit: u64,
    /// The same limit for a free that goes straight to the buddy lists
    /// ([`PageAlloc::free_pages_buddy_fast`]): `max_pfn`, or the first
    /// descriptor deferred init has not written, whether or not the zones
    /// keep per-CPU lists.
    pub buddy_free_limit: u64,
    /// The kernel heap's reserve `[start, start + len)` (len 0: none):
    /// its blocks go back to the reserve, and its pool frames (owner
    /// `reserve`) are refused, both on the general path.
    pub reserve_start: u64,
    /// See `reserve_start`.
    pub reserve_len: u64,
    /// Per zone, the `MAX_ORDER`-aligned PFNs `[lo, lo + span)` whose
    /// whole `MAX_ORDER` block lies in the zone and below `max_pfn`: the
    /// buddy fast free's merge needs no range or zone check there
    /// (span 0: none). A function of the zone spans and `max_pfn`.
    pub merge_lo: [u64; NR_ZONES],
    /// See `merge_lo`.
    pub merge_span: [u64; NR_ZONES],
}

impl FastPaths {
    /// Every call takes the general path.
    #[cfg(test)]
    pub const NONE: FastPaths = FastPaths {
        alloc: [FastAlloc::NONE; FAST_ALLOC_ROWS],
        free_limit: 0,
        buddy_free_limit: 0,
        reserve_start: 0,
        reserve_len: 0,
        merge_lo: [0; NR_ZONES],
        merge_span: [0; NR_ZONES],
    };

    /// [`FastPaths::NONE`], built by code: as a constant it would be a
    /// 1.5 KiB template in the kernel image's read-only data.
    #[inline(never)]
    pub fn none() -> FastPaths {
        FastPaths {
            alloc: core::array::from_fn(|_| FastAlloc {
                mark: [0; PCP_ORDERS],
                zi: NR_ZONES as u8,
                mt: 0,
                cma: false,
                count_cma: false,
            }),
            free_limit: 0,
            buddy_free_limit: 0,
            reserve_start: 0,
            reserve_len: 0,
            merge_lo: [0; NR_ZONES],
            merge_span: [0; NR_ZONES],
        }
    }
}

/// `mt` bits of a pageblock (its first frame's `PB_MIGRATE` field) → the
/// per-CPU list type a freed block waits on: its own for the three PCP
/// types, Movable for HighAtomic and CMA (and 6–7, which read as
/// Movable); [`FREE_MT_SLOW`] for Isolate (the general path frees it
/// straight to the buddy lists).
static FREE_PCP_MT: [u8; 8] = {
    let mut t = [MigrateType::Movable as u8; 8];
    let mut mt = 0;
    while mt < MIGRATE_PCPTYPES {
        t[mt] = mt as u8;
        mt += 1;
    }
    t[MigrateType::Isolate as usize] = FREE_MT_SLOW;
    t
};
const FREE_MT_SLOW: u8 = 0xff;

impl PageAlloc<'_> {
    /// Recomputes [`FastPaths`] from its inputs; every exclusive-side
    /// change of one calls it (see [`FastPaths`] for the list). Row by
    /// row, in place: no table-sized temporaries on the caller's stack
    /// (an AP's is 16 KiB).
    #[inline(never)]
    pub(crate) fn refresh_fast_paths(&mut self) {
        for bits in 0..FAST_ALLOC_ROWS {
            self.fast.alloc[bits] = self.fast_alloc_row(bits);
        }
        let (limit, buddy_limit, start, len) = self.fast_free_fields();
        self.fast.free_limit = limit;
        self.fast.buddy_free_limit = buddy_limit;
        self.fast.reserve_start = start;
        self.fast.reserve_len = len;
        (self.fast.merge_lo, self.fast.merge_span) = self.fast_merge_fields();
    }

    /// Whether [`FastPaths`] differs from what its inputs say now (for
    /// `check_invariants`).
    #[inline(never)]
    pub(crate) fn fast_paths_stale(&self) -> bool {
        let f = &self.fast;
        let mut stale = (
            f.free_limit,
            f.buddy_free_limit,
            f.reserve_start,
            f.reserve_len,
        ) != self.fast_free_fields();
        stale |= (f.merge_lo, f.merge_span) != self.fast_merge_fields();
        for bits in 0..FAST_ALLOC_ROWS {
            stale |= f.alloc[bits] != self.fast_alloc_row(bits);
        }
        stale
    }

    /// [`FastPaths`] as the inputs say now (tests).
    #[cfg(test)]
    pub(crate) fn compute_fast_paths(&self) -> FastPaths {
        let (free_limit, buddy_free_limit, reserve_start, reserve_len) = self.fast_free_fields();
        let (merge_lo, merge_span) = self.fast_merge_fields();
        FastPaths {
            alloc: core::array::from_fn(|bits| self.fast_alloc_row(bits)),
            free_limit,
            buddy_free_limit,
            reserve_start,
            reserve_len,
            merge_lo,
            merge_span,
        }
    }

    /// `(merge_lo, merge_span)` of [`FastPaths`]: per zone, the
    /// `MAX_ORDER` blocks wholly inside its span and below `max_pfn`.
    fn fast_merge_fields(&self) -> ([u64; NR_ZONES], [u64; NR_ZONES]) {
        const CHUNK: u64 = 1 << crate::types::MAX_ORDER;
        let max_pfn = self.layout.max_pfn.0;
        let mut lo = [0; NR_ZONES];
        let mut span = [0; NR_ZONES];
        for (zi, z) in self.zones.iter().enumerate() {
            let l = z.start_pfn.0.next_multiple_of(CHUNK);
            let h = z.end_pfn.0.min(max_pfn) & !(CHUNK - 1);
            lo[zi] = l;
            span[zi] = h.saturating_sub(l);
        }
        (lo, span)
    }

    /// Row `bits` of [`FastPaths::alloc`] as the inputs say now.
    fn fast_alloc_row(&self, bits: usize) -> FastAlloc {
        let none = FastAlloc {
            mark: [0; PCP_ORDERS],
            zi: NR_ZONES as u8,
            mt: 0,
            cma: false,
            count_cma: false,
        };
        let gfp = GfpFlags::from_bits_truncate(bits as u32);
        if gfp.is_zone_bad() {
            return none;
        }
        let highest = gfp.gfp_zone().index();
        // The zonelist's first populated zone (cf. the first zoneref
        // get_page_from_freelist() does not skip).
        let Some(zi) = (0..=highest)
            .rev()
            .find(|&zi| self.zones[zi].is_populated())
        else {
            return none;
        };
        let zone = &self.zones[zi];
        let mt = gfp.migratetype();
        let mark = zone.watermarks.low + zone.lowmem_reserve[highest] + zone.nr_reserved_highatomic;
        let cma = mt == MigrateType::Movable;
        FastAlloc {
            mark: core::array::from_fn(|o| mark + (1 << o) - 1),
            zi: zi as u8,
            mt: mt as u8,
            cma,
            count_cma: !cma && zone.cma_pages > 0,
        }
    }

    /// `(free_limit, buddy_free_limit, reserve_start, reserve_len)` of
    /// [`FastPaths`] as the inputs say now.
    fn fast_free_fields(&self) -> (u64, u64, u64, u64) {
        // (`high` is set for every CPU's pageset of a zone at once.)
        let lists_on = self.pcp_on
            && self
                .zones
                .iter()
                .all(|z| !z.is_populated() || z.pcp[0].high > 0);
        let buddy_limit = self
            .deferred
            .first_uninitialised()
            .unwrap_or(u64::MAX)
            .min(self.layout.max_pfn.0);
        let limit = if lists_on { buddy_limit } else { 0 };
        match &self.reserve {
            Some(r) => (limit, buddy_limit, r.stats().start_pfn.0, r.nr_pages()),
            None => (limit, buddy_limit, 0, 0),
        }
    }

    /// Adds every CPU's [`VmDiff`] to the event counters and clears it
    /// (cf. `fold_diff()` in `refresh_cpu_vm_stats()`). The lock calls it
    /// before handing out the exclusive side, so readers see exact counts.
    #[inline]
    pub fn fold_vm_diffs(&mut self) {
        for cpu in 0..self.nr_cpus {
            let d = &mut *self.vm_diff[cpu];
            if *d == VmDiff::ZERO {
                continue;
            }
            for zi in 0..NR_ZONES {
                for o in 0..PCP_ORDERS {
                    self.alloc_counters.add_alloc(zi, o, d.alloc[zi][o]);
                    self.alloc_counters.add_free(zi, o, d.free[zi][o]);
                }
            }
            self.pcp_zone_locked[0] += d.zone_locked[0];
            self.pcp_zone_locked[1] += d.zone_locked[1];
            *d = VmDiff::ZERO;
        }
    }

    /// The zone and per-CPU list the common case of
    /// [`PageAlloc::alloc_pages`] serves `gfp`/`order` from, as
    /// `(zone index, list index)`: order ≤ costly, the first populated
    /// zone the request may use, above its LOW watermark — the first zone
    /// the full path would try. `None` when the full path must decide (no
    /// such zone, a watermark to deal with, fault injection armed, bad
    /// zone flags). The shared side runs the same check through
    /// [`PageAlloc::pcp_fast_target_raw`].
    #[inline(always)]
    pub(super) fn pcp_fast_target(
        &mut self,
        gfp: GfpFlags,
        order: Order,
    ) -> Option<(usize, usize)> {
        // SAFETY: `&mut self`: live, and the exclusive side.
        unsafe { Self::pcp_fast_target_raw(self, gfp, order) }
    }

    /// [`PageAlloc::pcp_fast_target`] through a raw pointer, for the
    /// shared side: the zone counters other CPUs' zone-lock holders write
    /// are loaded atomically (racily, as `zone_watermark_fast()` reads
    /// them), the rest is written by the exclusive side only.
    ///
    /// # Safety
    /// `pa` is live, and the caller holds a flag of its lock (or `&` it).
    #[inline(always)]
    pub(super) unsafe fn pcp_fast_target_raw(
        pa: *mut Self,
        gfp: GfpFlags,
        order: Order,
    ) -> Option<(usize, usize)> {
        use super::zone_lock::{ld32, ld64};
        let o = order.index();
        // SAFETY: fields only the exclusive side writes; the row is in
        // bounds (masked).
        let (row, armed): (&FastAlloc, bool) = unsafe {
            (
                (*pa)
                    .fast
                    .alloc
                    .get_unchecked((gfp.bits() & FAST_GFP_BITS) as usize),
                (*pa).fail_page_alloc_armed,
            )
        };
        // The row says "no" for a bad zone combination (cf. GFP_ZONE_BAD),
        // no populated zone, or lists off.
        let zi = usize::from(row.zi);
        if !pcp_allowed_order(o) || zi >= NR_ZONES || armed {
            return None;
        }
        // SAFETY: a raw place; fields read as the table in `zone_lock` says.
        let zone = unsafe { &raw mut (*pa).zones[zi] };
        // cf. zone_watermark_fast() for ALLOC_WMARK_LOW without
        // ALLOC_HARDER: free pages less the unusable ones (the HighAtomic
        // reserve, in the row's mark; CMA pages unless movable; 2^order - 1)
        // must exceed LOW + lowmem_reserve[highest] (cf.
        // __zone_watermark_ok()).
        let mut need = row.mark[o];
        // SAFETY: zone counters, loaded atomically.
        unsafe {
            if row.count_cma {
                need += ld64(&raw mut (*zone).nr_free_cma);
            }
            if ld64(&raw mut (*zone).free_pages) <= need {
                return None;
            }
        }
        if o > 0 {
            // A high-order request needs a block on a list it may take
            // from (cf. __zone_watermark_ok()).
            // SAFETY: list heads and counts, loaded atomically.
            let found = (o..crate::types::NR_ORDERS).any(|a| unsafe {
                let area = &raw mut (*zone).free_area[a];
                let nonempty =
                    move |m: MigrateType| ld32(&raw mut (*area).free_list[m.index()].head) != NIL;
                ld64(&raw mut (*area).nr_free) > 0
                    && (MigrateType::ALL[..MIGRATE_PCPTYPES]
                        .iter()
                        .any(|&m| nonempty(m))
                        || (row.cma && nonempty(MigrateType::Cma)))
            });
            if !found {
                return None;
            }
        }
        Some((zi, MIGRATE_PCPTYPES * o + usize::from(row.mt)))
    }

    /// Refills and trims of per-CPU lists done under a zone lock since
    /// boot, as `(refills, trims)`.
    pub fn pcp_zone_locked_ops(&self) -> (u64, u64) {
        (self.pcp_zone_locked[0], self.pcp_zone_locked[1])
    }

    /// [`PageAlloc::alloc_pages`]'s first case on CPU `cpu` without the
    /// exclusive lock: a block popped from `cpu`'s list of the first zone
    /// the request may use, when that zone is above its LOW watermark —
    /// the same block the general path would hand out. An empty list is
    /// refilled with a batch under the zone's lock first, as
    /// `rmqueue_pcplist()` does. `None` with nothing changed when the
    /// general path must decide (and a refill that found no block of its
    /// migrate type without stealing is one such case).
    ///
    /// # Safety
    /// `pa` is the allocator inside the [`crate::sync::BrLock`] whose
    /// `cpu` flag the caller holds (so no exclusive holder runs and no
    /// other caller uses `cpu`'s slots), `cpu < NR_CPUS`, and the caller
    /// holds no zone lock.
    #[inline]
    pub unsafe fn alloc_pcp_cpu(
        pa: *mut Self,
        cpu: usize,
        gfp: GfpFlags,
        order: Order,
        owner: OwnerTag,
    ) -> Option<Pfn> {
        // The same zone, watermark and list as `alloc_pages_pcp_fast`.
        // SAFETY: `pa` is live (the caller's contract).
        let (zi, pindex) = unsafe { Self::pcp_fast_target_raw(pa, gfp, order) }?;
        let o = order.index();
        // SAFETY: the caller holds `cpu`'s flag: this slot is ours alone;
        // `PcpCell` is an `UnsafeCell`, so the shared place is fine.
        let pcp: &mut PerCpuPages = unsafe { (*pa).zones[zi].pcp[cpu].slot_mut() };
        // SAFETY: the caller's contract; `zi`, `pindex` from the target.
        if pcp.lists[pindex].head == NIL
            && !unsafe { Self::pcp_refill_cpu(pa, cpu, zi, pindex, gfp, order) }
        {
            return None;
        }
        // SAFETY: our slot and list (the refill's borrow has ended).
        let pfn = unsafe { Self::pcp_pop_prep(pa, cpu, zi, pindex, gfp, order, owner) };
        // SAFETY: our slot.
        let diff = unsafe { (*pa).vm_diff[cpu].slot_mut() };
        diff.alloc[zi][o] += 1;
        Some(Pfn(u64::from(pfn)))
    }

    /// Refills `cpu`'s empty list `pindex` of zone `zi` with a batch under
    /// the zone's lock (cf. `rmqueue_pcplist()` → `__rmqueue_pcplist()` →
    /// `rmqueue_bulk()`); `false`, with nothing changed, when the lists are
    /// off or the buddy lists had no block of the list's type without
    /// stealing.
    ///
    /// # Safety
    /// As for [`PageAlloc::alloc_pcp_cpu`]; `zi`, `pindex` as
    /// [`PageAlloc::pcp_fast_target_raw`] gave them for `gfp`/`order`.
    #[inline(always)]
    unsafe fn pcp_refill_cpu(
        pa: *mut Self,
        cpu: usize,
        zi: usize,
        pindex: usize,
        gfp: GfpFlags,
        order: Order,
    ) -> bool {
        // SAFETY: the caller holds `cpu`'s flag: this slot is ours alone.
        let pcp: &mut PerCpuPages = unsafe { (*pa).zones[zi].pcp[cpu].slot_mut() };
        if pcp.high == 0 {
            return false;
        }
        let mut batch = pcp.batch;
        if batch > 1 {
            batch = (batch >> order.index()).max(2);
        }
        let mt = gfp.migratetype();
        let flags = AllocFlags {
            harder: false,
            nofragment: false,
            cma: mt == MigrateType::Movable,
        };
        // SAFETY: our flag, then the zone's lock (module docs).
        let got = unsafe {
            let _zone_lock = (*pa).zone_lock[zi].lock();
            Self::rmqueue_bulk_locked(pa, zi, cpu, order, batch, pindex, mt, flags)
        };
        if got == 0 {
            return false;
        }
        // SAFETY: our slot.
        unsafe { (*pa).vm_diff[cpu].slot_mut() }.zone_locked[0] += 1;
        true
    }

    /// [`PageAlloc::alloc_pcp_cpu`] for up to `out.len()` order-0 blocks at
    /// once (cf. `__alloc_pages_bulk()`, which `vmalloc()` uses through
    /// `vm_area_alloc_pages()`): the zone, its watermark and the list are
    /// chosen once, and again only after a refill (which took from the
    /// zone's free pages), then blocks are popped until `out` is full —
    /// the blocks, descriptors and counters of that many
    /// [`PageAlloc::alloc_pcp_cpu`] calls, for one take of the CPU's flag
    /// and one target. Returns how many blocks it stored at the front of
    /// `out`: fewer (0 included, with nothing changed) where a single call
    /// would have returned `None` for the next one and the general path
    /// must decide.
    ///
    /// # Safety
    /// As for [`PageAlloc::alloc_pcp_cpu`].
    pub unsafe fn alloc_pcp_cpu_bulk(
        pa: *mut Self,
        cpu: usize,
        gfp: GfpFlags,
        owner: OwnerTag,
        out: &mut [Pfn],
    ) -> usize {
        let mut n = 0;
        while n < out.len() {
            // SAFETY: `pa` is live (the caller's contract).
            let Some((zi, pindex)) = (unsafe { Self::pcp_fast_target_raw(pa, gfp, Order::ZERO) })
            else {
                break;
            };
            // SAFETY: the caller holds `cpu`'s flag: this slot is ours.
            let empty = |pa: *mut Self| unsafe {
                (*pa).zones[zi].pcp[cpu].slot_mut().lists[pindex].head == NIL
            };
            // SAFETY: the caller's contract; `zi`, `pindex` from the target.
            if empty(pa) && !unsafe { Self::pcp_refill_cpu(pa, cpu, zi, pindex, gfp, Order::ZERO) }
            {
                break;
            }
            let start = n;
            while n < out.len() && !empty(pa) {
                // SAFETY: our slot and a non-empty list of it.
                let pfn =
                    unsafe { Self::pcp_pop_prep(pa, cpu, zi, pindex, gfp, Order::ZERO, owner) };
                out[n] = Pfn(u64::from(pfn));
                n += 1;
            }
            // SAFETY: our slot.
            unsafe { (*pa).vm_diff[cpu].slot_mut() }.alloc[zi][0] += (n - start) as u64;
        }
        n
    }

    /// The common case of [`PageAlloc::alloc_pages`] on the exclusive
    /// side, in a few dozen instructions: a block from this CPU's list for
    /// [`PageAlloc::pcp_fast_target`], if the list is not empty — exactly
    /// what the full path would do then (the first zone it tries, the
    /// list it pops, the events it counts); otherwise `None` with nothing
    /// changed and the full path decides (and refills).
    #[inline(always)]
    pub(super) fn alloc_pages_pcp_fast(
        &mut self,
        gfp: GfpFlags,
        order: Order,
        owner: OwnerTag,
    ) -> Option<Pfn> {
        let (zi, pindex) = self.pcp_fast_target(gfp, order)?;
        let cpu = self.this_cpu();
        // SAFETY: `set_this_cpu` keeps it below NR_CPUS.
        unsafe { core::hint::assert_unchecked(cpu < crate::types::NR_CPUS) };
        // SAFETY: `pindex` < NR_PCP_LISTS (`pcp_fast_target`).
        if unsafe { self.zones[zi].pcp[cpu].lists.get_unchecked(pindex) }.head == NIL {
            // SAFETY: `zi` < NR_ZONES (`pcp_fast_target`).
            return unsafe { self.alloc_pages_pcp_refill(gfp, order, owner, zi, pindex) }
                .map(|pfn| Pfn(u64::from(pfn)));
        }
        // SAFETY: `&mut self`: the exclusive side owns every slot and list.
        let pfn = unsafe { Self::pcp_pop_prep(self, cpu, zi, pindex, gfp, order, owner) };
        // cf. rmqueue(): __count_zid_vm_events(PGALLOC, ...), derived from
        // the block count (see `vm_events()`).
        let o = order.index() % PCP_ORDERS; // ≤ 3 already
        let c = &mut self.alloc_counters.alloc[zi][o];
        *c = c.wrapping_add(1);
        Some(Pfn(u64::from(pfn)))
    }

    /// [`PageAlloc::alloc_pages_pcp_fast`] when its list is empty: with
    /// the lists off, a request that is not Movable and needs no compound
    /// block goes straight to [`PageAlloc::alloc_pages_buddy_taken`] (a
    /// jump: this function has no frame); everything else to
    /// [`PageAlloc::alloc_pages_pcp_refill_general`].
    ///
    /// # Safety
    /// `zi` < `NR_ZONES` (so no index of it is checked again).
    #[cold]
    #[inline(never)]
    unsafe fn alloc_pages_pcp_refill(
        &mut self,
        gfp: GfpFlags,
        order: Order,
        owner: OwnerTag,
        zi: usize,
        pindex: usize,
    ) -> Option<u32> {
        // SAFETY: the function contract; `set_this_cpu` keeps the CPU
        // below NR_CPUS.
        unsafe {
            core::hint::assert_unchecked(zi < NR_ZONES);
            core::hint::assert_unchecked(self.this_cpu() < crate::types::NR_CPUS);
        }
        #[cfg(test)]
        let fast_refill = !NO_FAST_REFILL.with(|c| c.get());
        #[cfg(not(test))]
        let fast_refill = true;
        if fast_refill
            && !self.deferred_pending()
            && self.zones[zi].pcp[self.this_cpu()].high == 0
            && gfp.migratetype() != MigrateType::Movable
            // (The flag first: a branch on it, not a flag computed.)
            && (!gfp.contains(GfpFlags::COMP) || order.index() == 0)
        {
            // SAFETY: `zi` < NR_ZONES; not Movable, no compound block.
            return unsafe { self.alloc_pages_buddy_taken(gfp, order, owner, zi) };
        }
        // SAFETY: the function contract.
        unsafe { self.alloc_pages_pcp_refill_general(gfp, order, owner, zi, pindex) }
    }

    /// [`PageAlloc::alloc_pages_pcp_refill`]'s general case: what
    /// the full path would do next — the zone passed its watermark, so
    /// `get_page_from_freelist()` → `rmqueue()` → `rmqueue_pcplist()`
    /// refills the list with a batch (`rmqueue_bulk()`, stealing as the
    /// first pass may: ALLOC_NOFRAGMENT where it applies) and pops it, or
    /// with the lists off takes the block from the buddy lists
    /// (`__rmqueue()`) — without the full path's zonelist walk and second
    /// watermark check.
    /// `None` with nothing changed when the buddy lists had nothing (the
    /// full path then goes on to the next zone), or while deferred init
    /// may still grow a zone the full path would try first.
    ///
    /// # Safety
    /// `zi` < `NR_ZONES` (so no index of it is checked again).
    #[cold]
    #[inline(never)]
    unsafe fn alloc_pages_pcp_refill_general(
        &mut self,
        gfp: GfpFlags,
        order: Order,
        owner: OwnerTag,
        zi: usize,
        pindex: usize,
    ) -> Option<u32> {
        // SAFETY: the function contract; an `Order` is ≤ MAX_ORDER.
        unsafe {
            core::hint::assert_unchecked(zi < NR_ZONES);
            core::hint::assert_unchecked(order.index() <= crate::types::MAX_ORDER);
            // `set_this_cpu` keeps it below NR_CPUS.
            core::hint::assert_unchecked(self.this_cpu() < crate::types::NR_CPUS);
        }
        if self.deferred_pending() {
            return None;
        }
        #[cfg(test)]
        if NO_FAST_REFILL.with(|c| c.get()) {
            return None;
        }
        let cpu = self.this_cpu();
        let o = order.index();
        let mt = gfp.migratetype();
        let cma = mt == MigrateType::Movable;
        if self.zones[zi].pcp[cpu].high == 0 {
            // The lists are off: `rmqueue()` goes on to `__rmqueue()`.
            // Its search of `mt`'s (and CMA's) own lists does not depend
            // on ALLOC_NOFRAGMENT, which only a fallback reads: worked out
            // when the search found nothing.
            let zf = self.zone_free(zi);
            let own = AllocFlags {
                harder: false,
                nofragment: false,
                cma,
            };
            // SAFETY: `&mut self`: the exclusive side.
            let pfn = match unsafe { zf.rmqueue_nofallback(order, mt, own) } {
                Some(pfn) => Pfn(u64::from(pfn)),
                None => {
                    let flags = AllocFlags {
                        nofragment: self.alloc_flags_nofragment(gfp.gfp_zone()),
                        ..own
                    };
                    // (Its own first search finds nothing again.)
                    self.__rmqueue(zi, order, mt, flags)?
                }
            };
            self.prep_new_page_gfp(pfn, order, owner, gfp);
            self.alloc_counters.count_alloc(zi, o);
            return Some(pfn.0 as u32);
        }
        let flags = AllocFlags {
            harder: false,
            nofragment: self.alloc_flags_nofragment(gfp.gfp_zone()),
            cma,
        };
        let mut batch = self.zones[zi].pcp[cpu].batch;
        if batch > 1 {
            batch = (batch >> o).max(2);
        }
        if self.rmqueue_bulk(zi, cpu, o, batch, pindex, mt, flags) == 0 {
            return None;
        }
        // SAFETY: `&mut self`: the exclusive side; the list is not empty.
        let pfn = unsafe { Self::pcp_pop_prep(self, cpu, zi, pindex, gfp, order, owner) };
        self.alloc_counters.count_alloc(zi, o);
        Some(pfn)
    }

    /// [`PageAlloc::alloc_pages_pcp_refill`] with the lists off, for a
    /// request of a migrate type other than Movable (no CMA first) and no
    /// compound block to mark: `__rmqueue()`'s search of `mt`'s own lists
    /// (cf. `__rmqueue_smallest()`), `prep_new_page()` writing the head
    /// once, the event counted, then `expand()` — the split last, as a
    /// jump to its out-of-line copy, so this function saves no registers.
    /// When `mt`'s lists are empty, the steal of `__rmqueue()`
    /// ([`PageAlloc::alloc_pages_buddy_fallback`]).
    ///
    /// # Safety
    /// `zi` < `NR_ZONES`; the request is not Movable, and not `__GFP_COMP`
    /// above order 0.
    #[inline(never)]
    unsafe fn alloc_pages_buddy_taken(
        &mut self,
        gfp: GfpFlags,
        order: Order,
        owner: OwnerTag,
        zi: usize,
    ) -> Option<u32> {
        // SAFETY: the function contract; an `Order` is ≤ MAX_ORDER.
        unsafe {
            core::hint::assert_unchecked(zi < NR_ZONES);
            core::hint::assert_unchecked(order.index() <= crate::types::MAX_ORDER);
        }
        let o = order.index();
        let mt = gfp.migratetype();
        debug_assert!(mt != MigrateType::Movable && (o == 0 || !gfp.contains(GfpFlags::COMP)));
        // Everything through one raw pointer: the two closures below use
        // it one at a time.
        let pa: *mut Self = self;
        // SAFETY: `&mut self`: the exclusive side. `prep` writes the head
        // (`prep_new_page()`'s fields) and a counter, nothing of the lists
        // or of the halves; `on_empty` runs instead of it.
        unsafe {
            let map = (*pa).mem_map.base();
            ZoneFree::<true>::new(pa, zi).rmqueue_smallest_taken(
                o,
                mt,
                // (`move`: captured by reference, the values would go
                // through the stack, and the calls could not be jumps.)
                move |pfn| {
                    prep_taken_head(map, pfn, order, owner);
                    (*pa).alloc_counters.count_alloc(zi, o);
                },
                move || (*pa).alloc_pages_buddy_fallback(gfp, order, owner, zi),
            )
        }
    }

    /// [`PageAlloc::alloc_pages_buddy_taken`] when `mt`'s own lists are
    /// empty: `__rmqueue()`'s steal from a fallback type, with
    /// ALLOC_NOFRAGMENT as the first pass sets it.
    #[cold]
    #[inline(never)]
    fn alloc_pages_buddy_fallback(
        &mut self,
        gfp: GfpFlags,
        order: Order,
        owner: OwnerTag,
        zi: usize,
    ) -> Option<u32> {
        let flags = AllocFlags {
            harder: false,
            nofragment: self.alloc_flags_nofragment(gfp.gfp_zone()),
            cma: false,
        };
        // (Its own first search finds nothing again.)
        let pfn = self.__rmqueue(zi, order, gfp.migratetype(), flags)?;
        self.prep_new_page_gfp(pfn, order, owner, gfp);
        self.alloc_counters.count_alloc(zi, order.index());
        Some(pfn.0 as u32)
    }

    /// Pops the first block of CPU `cpu`'s non-empty list `pindex` of zone
    /// `zi` and makes it the caller's: `prep_new_page()` (and
    /// `prep_compound_page()` for a `__GFP_COMP` block).
    ///
    /// # Safety
    /// The caller holds `cpu`'s flag (or the exclusive side), the list is
    /// not empty, `pa` is live.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn pcp_pop_prep(
        pa: *mut Self,
        cpu: usize,
        zi: usize,
        pindex: usize,
        gfp: GfpFlags,
        order: Order,
        owner: OwnerTag,
    ) -> u32 {
        let o = order.index() % PCP_ORDERS; // ≤ 3 (the caller's target)
        debug_assert!(pindex < super::pcp::NR_PCP_LISTS && cpu < crate::types::NR_CPUS);
        // SAFETY: the caller's contract: the slot, the list and its blocks'
        // descriptors are ours; flags are written atomically; `pindex` is
        // a list index (`pcp_fast_target`).
        unsafe {
            let map = (*pa).mem_map.base();
            let pcp: &mut PerCpuPages = (*pa).zones[zi].pcp[cpu].slot_mut();
            pcp.free_factor >>= 1;
            let list = pcp.lists.get_unchecked_mut(pindex);
            // The list's first block (cf. list_first_entry() + list_del()).
            let pfn = list_pop_head_raw(map, list);
            let i = pfn as usize;
            let p = map.add(i);
            pcp.count -= 1 << o;
            // cf. prep_new_page(). `order` is the list's already.
            flags_update(
                p,
                PageFlags::HEAD,
                PageFlags::BUDDY
                    .union(PageFlags::PCP)
                    .union(PageFlags::MOVABLE),
            );
            (*p).refcount = 1;
            (*p).owner = owner;
            (*p).prev = NIL;
            (*p).next = NIL;
            // cf. prep_compound_page(), for a `__GFP_COMP` block.
            if o > 0 && gfp.contains(GfpFlags::COMP) {
                prep_tails(map, i, o, owner);
            }
            pfn
        }
    }

    /// [`PageAlloc::free_pages`] of an order ≤ 3 block on CPU `cpu`
    /// without the exclusive lock: the block goes on `cpu`'s list (cf.
    /// `free_unref_page()`). Only a plain allocated head of exactly `order`
    /// takes this path; anything else is [`FreeFast::Slow`] with nothing
    /// changed.
    ///
    /// # Safety
    /// As for [`PageAlloc::alloc_pcp_cpu`]; and the caller owns the block
    /// (no other CPU frees or reads it meanwhile), as any caller of
    /// `free_pages` must.
    #[inline]
    pub unsafe fn free_pcp_cpu(pa: *mut Self, cpu: usize, pfn: Pfn, order: Order) -> FreeFast {
        // SAFETY: the caller's contract.
        unsafe { Self::free_pcp_inner::<true>(pa, cpu, pfn, order) }
    }

    /// The common case of [`PageAlloc::free_pages`] on the exclusive side:
    /// [`PageAlloc::free_pcp_cpu`]'s block onto this CPU's list (trimmed
    /// if it grew past `high`), the events counted directly. `false` with
    /// nothing changed when the general path must decide.
    #[inline(always)]
    pub(super) fn free_pages_pcp_fast(&mut self, pfn: Pfn, order: Order) -> bool {
        let cpu = self.this_cpu();
        // SAFETY: `&mut self`: the exclusive side; the caller of
        // `free_pages` owns the block.
        match unsafe { Self::free_pcp_inner::<false>(self, cpu, pfn, order) } {
            FreeFast::Done => true,
            FreeFast::Trim { zi, pindex, count } => {
                self.pcp_trim_exclusive(zi, cpu, count, pindex);
                true
            }
            FreeFast::Slow => false,
        }
    }

    /// [`PageAlloc::free_pages`] of a plain allocated head that goes
    /// straight to the buddy lists — an order above the per-CPU lists', a
    /// zone whose lists are off, or an isolated pageblock — validated the
    /// way [`PageAlloc::free_pcp_cpu`] validates (the head's flags, then
    /// its zone and order bytes, against a pattern; the table's PFN limit
    /// and the heap reserve's range) instead of by `check_free()` and the
    /// LRU and reserve look-ups. `false` with nothing changed for
    /// anything else (misuse included): the general path decides.
    /// What it does is the general path's for such a block
    /// (cf. `free_pages_prepare()` + `__free_pages_ok()` /
    /// `free_unref_page()` → `free_one_page()`).
    #[inline(never)]
    pub(super) fn free_pages_buddy_fast(&mut self, pfn: Pfn, order: Order) -> bool {
        #[cfg(test)]
        if NO_FAST_REFILL.with(|c| c.get()) {
            return false;
        }
        let o = order.index();
        // SAFETY: an `Order` is ≤ MAX_ORDER; saying so spares the merge's
        // callers' indexing by the merged order a bounds check.
        unsafe { core::hint::assert_unchecked(o <= crate::types::MAX_ORDER) };
        let fast = &self.fast;
        if pfn.0 >= fast.buddy_free_limit
            || pfn.0.wrapping_sub(fast.reserve_start) < fast.reserve_len
        {
            return false;
        }
        let map = self.mem_map.base();
        let i = pfn.index();
        // SAFETY: `&mut self`: the exclusive side; `pfn` < max_pfn; the
        // caller of `free_pages` owns the block. As in `free_pcp_inner`:
        // the flags atomically, then zone and order as one `u16` (offset
        // 2 of a 4-aligned descriptor).
        let (p, flags, zone_order) = unsafe {
            let p = map.add(i);
            (
                p,
                PageFlags(flags_of(p).load(Relaxed)),
                p.cast::<u16>().add(1).read(),
            )
        };
        if flags.0 & FREE_FLAGS_MASK != PageFlags::HEAD.0
            || zone_order & FREE_ZONE_ORDER_MASK != (o as u16) << 8
        {
            return false;
        }
        let zi = usize::from(zone_order) & (NR_ZONES - 1); // checked < NR_ZONES
        // SAFETY: `pfn` < max_pfn.
        let mt = unsafe { super::zone_lock::pageblock_mt_raw(map, pfn.0) };
        let cpu = self.this_cpu();
        // SAFETY: `set_this_cpu` keeps it below NR_CPUS.
        unsafe { core::hint::assert_unchecked(cpu < crate::types::NR_CPUS) };
        if pcp_allowed_order(o) && self.zones[zi].pcp[cpu].high != 0 && mt != MigrateType::Isolate {
            return false; // the block waits on a per-CPU list
        }
        // cf. __free_pages_ok(): PGFREE (derived from the block count).
        self.alloc_counters.count_free(zi, o);
        // cf. free_pages_prepare(): the descriptors are clean again, tails
        // included for a compound block. The head's flags, zone, order,
        // refcount and owner as one store (nobody else runs): the buddy
        // core's next look at this word, a 32-bit one, then finds it in
        // one store (a load spanning narrower stores still in the store
        // buffer waits for them to reach the cache).
        // SAFETY: the caller's block; the exclusive side.
        unsafe {
            let clean = flags.0
                & !PageFlags::HEAD
                    .union(PageFlags::COMPOUND)
                    .union(PageFlags::MOVABLE)
                    .0;
            // Order 0, refcount 0, owner NONE.
            p.cast::<u64>()
                .write_unaligned(u64::from(clean) | u64::from(zone_order & 0xff) << 16);
            debug_assert!(
                (*p).flags.0 == clean && (*p).order == 0 && (*p).refcount == 0,
                "head word"
            );
            debug_assert_eq!((*p).owner, OwnerTag::NONE);
            if flags.contains(PageFlags::COMPOUND) {
                free_tails(map, i, o);
            }
        }
        // The block's MAX_ORDER block wholly in the zone (the table's
        // range): the merge checks no buddy's range or zone.
        let in_zone = pfn.0.wrapping_sub(self.fast.merge_lo[zi]) < self.fast.merge_span[zi];
        let zf = self.zone_free(zi);
        // SAFETY: `&mut self`: the exclusive side; `in_zone` is the
        // merge's own test, worked out ahead.
        unsafe { zf.free_one_page_inline_known(pfn.0, o, mt, in_zone) };
        true
    }

    #[inline(never)]
    fn pcp_trim_exclusive(&mut self, zi: usize, cpu: usize, count: u32, pindex: usize) {
        self.free_pcppages_bulk(zi, cpu, count, pindex);
    }

    /// [`PageAlloc::free_pcp_cpu`], counting into the CPU's diff
    /// (`SHARED`) or straight into the counters (the exclusive side).
    ///
    /// # Safety
    /// As for [`PageAlloc::free_pcp_cpu`]; with `!SHARED`, the caller
    /// holds the exclusive side.
    #[inline(always)]
    unsafe fn free_pcp_inner<const SHARED: bool>(
        pa: *mut Self,
        cpu: usize,
        pfn: Pfn,
        order: Order,
    ) -> FreeFast {
        let o = order.index();
        // SAFETY: the caller's contract (the exclusive side's `cpu` is kept
        // below it by `set_this_cpu`).
        unsafe { core::hint::assert_unchecked(cpu < crate::types::NR_CPUS) };
        // SAFETY: the table and `mem_map` are written by the exclusive side
        // only, which is not running.
        let (fast, map) = unsafe { (&(*pa).fast, (*pa).mem_map.base()) };
        // Past `max_pfn`, not initialised yet, lists off (the limit), or
        // the heap's reserve (its pool frames, owner `reserve`, lie in it
        // too): the general path decides.
        if !pcp_allowed_order(o)
            || pfn.0 >= fast.free_limit
            || pfn.0.wrapping_sub(fast.reserve_start) < fast.reserve_len
        {
            return FreeFast::Slow;
        }
        let i = pfn.index();
        // SAFETY: in bounds (below `free_limit` ≤ max_pfn).
        let p = unsafe { map.add(i) };
        // The head's flags, and its zone and order bytes as one `u16` (a
        // plain load: the caller owns the frame, so no one else writes
        // them now). Two loads, each within what the allocation last
        // stored there, so the store buffer forwards them when a block is
        // freed right after it was handed out; one wider load spanning
        // the flags and refcount/owner stores would wait for them to reach
        // the cache (about as long as the rest of the free).
        // SAFETY: `p` is a live descriptor; the flags atomically; offset 2
        // of a 4-aligned descriptor is 2-aligned.
        let (flags, zone_order) = unsafe {
            (
                PageFlags(flags_of(p).load(Relaxed)),
                p.cast::<u16>().add(1).read(),
            )
        };
        // A plain allocated head (no free, tail, slab, LRU, reserved or
        // non-RAM bit), of exactly this order, in a real zone.
        if flags.0 & FREE_FLAGS_MASK != PageFlags::HEAD.0
            || zone_order & FREE_ZONE_ORDER_MASK != (o as u16) << 8
        {
            return FreeFast::Slow;
        }
        let zi = usize::from(zone_order) & (NR_ZONES - 1); // checked < NR_ZONES
        // SAFETY: the caller holds `cpu`'s flag.
        let pcp: &mut PerCpuPages = unsafe { (*pa).zones[zi].pcp[cpu].slot_mut() };
        // HighAtomic and CMA blocks wait on the Movable lists (as in
        // `free_unref_page`); an isolated pageblock's go to the buddy.
        // SAFETY: `pfn` < max_pfn.
        let pcp_mt = FREE_PCP_MT[unsafe {
            // The pageblock's first descriptor, from `p`'s byte offset.
            let off = i * size_of::<Page>();
            let first = map.byte_add(off & !(PAGEBLOCK_NR_PAGES as usize * size_of::<Page>() - 1));
            usize::from(flags_of(first).load(Relaxed) >> PageFlags::PB_MIGRATE.0.trailing_zeros())
        }];
        if pcp_mt == FREE_MT_SLOW {
            return FreeFast::Slow;
        }
        if SHARED {
            // SAFETY: our slot.
            let diff = unsafe { (*pa).vm_diff[cpu].slot_mut() };
            diff.free[zi][o] += 1;
        } else {
            // cf. __free_pages_ok() / free_unref_page_commit(): PGFREE,
            // derived from the block count (see `vm_events()`).
            // SAFETY: the exclusive side owns the counters.
            unsafe {
                let c = &mut (*pa).alloc_counters.free[zi][o % PCP_ORDERS];
                *c = c.wrapping_add(1);
            }
        }
        // cf. free_pages_prepare(): the descriptors are clean again, tails
        // included for a compound block; cf. free_unref_page_commit(): on
        // the list, marked PCP.
        // SAFETY: the caller's block; flags atomically.
        unsafe {
            flags_of(p).store(
                (flags.0
                    & !PageFlags::HEAD
                        .union(PageFlags::COMPOUND)
                        .union(PageFlags::SLAB)
                        .union(PageFlags::MOVABLE)
                        .0)
                    | PageFlags::PCP.0,
                Relaxed,
            );
            (*p).refcount = 0;
            (*p).owner = OwnerTag::NONE;
            if flags.contains(PageFlags::COMPOUND) {
                free_tails(map, i, o);
            }
        }
        let pindex = MIGRATE_PCPTYPES * o + pcp_mt as usize; // cf. order_to_pindex()
        // SAFETY: our list (o ≤ 3 and pcp_mt < 3: in bounds); `pfn` is the
        // caller's block, now on it.
        unsafe { list_add_head_raw(map, pcp.lists.get_unchecked_mut(pindex), pfn.0 as u32) };
        pcp.count += 1 << o;
        // High-order blocks freed in a row (no allocation between) are not
        // kept: they fragment the zone (cf. `free_high`).
        let free_high = o > 0 && pcp.free_factor > 0;
        if free_high || pcp.count >= pcp.high {
            let high = if free_high { 0 } else { pcp.high };
            let count = nr_pcp_free(pcp, high, free_high);
            return FreeFast::Trim { zi, pindex, count };
        }
        FreeFast::Done
    }

    /// Gives `count` pages back from CPU `cpu`'s lists of zone `zi`,
    /// starting at list `pindex`, after [`FreeFast::Trim`], under the
    /// zone's lock (cf. the `free_pcppages_bulk()` call in
    /// `free_unref_page_commit()`, under `zone->lock`). Fewer if a drain
    /// got there first.
    ///
    /// # Safety
    /// As for [`PageAlloc::alloc_pcp_cpu`].
    pub unsafe fn pcp_trim_cpu(pa: *mut Self, cpu: usize, zi: usize, pindex: usize, count: u32) {
        // SAFETY: our slot (the caller's flag).
        let listed = unsafe { (*pa).zones[zi].pcp[cpu].slot_mut() }.count;
        if count == 0 || listed == 0 {
            return;
        }
        // SAFETY: our flag, then the zone's lock (module docs).
        unsafe {
            let _zone_lock = (*pa).zone_lock[zi].lock();
            Self::free_pcppages_bulk_locked(pa, zi, cpu, count, pindex);
        }
        // SAFETY: our slot.
        unsafe { (*pa).vm_diff[cpu].slot_mut() }.zone_locked[1] += 1;
    }

    /// Gives `count` pages back from this CPU's lists of zone `zi` (the
    /// exclusive side's [`PageAlloc::pcp_trim_cpu`]).
    pub fn pcp_trim(&mut self, zi: usize, pindex: usize, count: u32) {
        let cpu = self.this_cpu();
        if count > 0 && self.zones[zi].pcp[cpu].count > 0 {
            self.free_pcppages_bulk(zi, cpu, count, pindex);
        }
    }

    /// Give `count` pages back to the buddy allocator from this CPU's lists,
    /// round-robin from list `pindex`, oldest blocks first (cf.
    /// `free_pcppages_bulk()`). Each block goes to the free list of its
    /// pageblock's type as it is now (the block may have been isolated or
    /// reserved since it was freed).
    pub(super) fn free_pcppages_bulk(&mut self, zi: usize, cpu: usize, count: u32, pindex: usize) {
        // SAFETY: `&mut self`: the exclusive side, which the function's
        // contract accepts in place of the flag and zone lock.
        unsafe { Self::free_pcppages_bulk_locked(self, zi, cpu, count, pindex) }
    }

    /// Move up to `count` blocks of `order` of `mt` (or CMA, for a movable
    /// request) from zone `zi`'s free lists to the tail of CPU `cpu`'s
    /// list `pindex`, without stealing from other migrate types; returns
    /// how many (cf. `rmqueue_bulk()`).
    ///
    /// # Safety
    /// The caller holds `cpu`'s flag and zone `zi`'s lock, or the
    /// exclusive side; `pa` is live.
    #[allow(clippy::too_many_arguments)]
    unsafe fn rmqueue_bulk_locked(
        pa: *mut Self,
        zi: usize,
        cpu: usize,
        order: Order,
        count: u32,
        pindex: usize,
        mt: MigrateType,
        flags: AllocFlags,
    ) -> u32 {
        // SAFETY: the caller's contract: the zone's free lists and our
        // slot are ours; `mem_map` never changes.
        unsafe {
            let zf = ZoneFree::<false>::new(pa, zi);
            let map = (*pa).mem_map.base();
            let pcp = (*pa).zones[zi].pcp[cpu].slot_mut();
            let mut alloced = 0;
            while alloced < count {
                let Some(pfn) = zf.rmqueue_nofallback(order, mt, flags) else {
                    break;
                };
                let p = map.add(pfn as usize);
                flags_update(p, PageFlags::PCP, PageFlags::EMPTY);
                (*p).order = order.get();
                list_add_tail_raw(map, &mut pcp.lists[pindex], pfn);
                alloced += 1;
            }
            pcp.count += alloced << order.get();
            alloced
        }
    }

    /// Give `count` pages back to the buddy allocator from CPU `cpu`'s
    /// lists of zone `zi`, round-robin from list `pindex`, oldest blocks
    /// first (cf. `free_pcppages_bulk()`). Each block goes to the free list
    /// of its pageblock's type as it is now (the block may have been
    /// isolated or reserved since it was freed).
    ///
    /// # Safety
    /// The caller holds `cpu`'s flag and zone `zi`'s lock, or the
    /// exclusive side; `pa` is live.
    pub(super) unsafe fn free_pcppages_bulk_locked(
        pa: *mut Self,
        zi: usize,
        cpu: usize,
        count: u32,
        pindex: usize,
    ) {
        // SAFETY: as for `rmqueue_bulk_locked`.
        unsafe {
            let zf = ZoneFree::<false>::new(pa, zi);
            let map = (*pa).mem_map.base();
            let pcp = (*pa).zones[zi].pcp[cpu].slot_mut();
            let mut count = count.min(pcp.count);
            let mut pindex = pindex;
            while count > 0 {
                while pcp.lists[pindex].head == NIL {
                    pindex = (pindex + 1) % super::pcp::NR_PCP_LISTS;
                }
                let order = super::pcp::pindex_to_order(pindex);
                loop {
                    let pfn = list_pop_tail_raw(map, &mut pcp.lists[pindex]);
                    pcp.count -= 1 << order;
                    count = count.saturating_sub(1 << order);
                    flags_update(map.add(pfn as usize), PageFlags::EMPTY, PageFlags::PCP);
                    let mt = zf.pageblock_mt(u64::from(pfn));
                    zf.free_one_page_inline(u64::from(pfn), order, mt, false);
                    if count == 0 || pcp.lists[pindex].head == NIL {
                        break;
                    }
                }
                pindex = (pindex + 1) % super::pcp::NR_PCP_LISTS;
            }
        }
    }
}

/// The exclusive side's list operations (`&mut self` is the proof the raw
/// functions below ask for).
impl PageAlloc<'_> {
    /// Unlinks the first block of list `pindex` of `cpu`'s pageset of zone
    /// `zi`, which must not be empty.
    #[inline(always)]
    pub(super) fn pcp_list_pop_head(&mut self, zi: usize, cpu: usize, pindex: usize) -> u32 {
        let map = self.mem_map.base();
        let list = &mut self.zones[zi].pcp[cpu].lists[pindex];
        assert!(list.head != NIL, "pop from an empty per-CPU list");
        // SAFETY: `&mut self`: the list and every descriptor are ours; the
        // list is not empty, so its head is a frame below max_pfn.
        unsafe { list_pop_head_raw(map, list) }
    }

    /// Links `pfn` (below max_pfn) at the head or tail of list `pindex`
    /// of `cpu`'s pageset of zone `zi`.
    #[inline(always)]
    pub(super) fn pcp_list_add(
        &mut self,
        zi: usize,
        cpu: usize,
        pindex: usize,
        pfn: u32,
        tail: bool,
    ) {
        assert!(u64::from(pfn) < self.layout.max_pfn.0);
        let map = self.mem_map.base();
        let list = &mut self.zones[zi].pcp[cpu].lists[pindex];
        // SAFETY: `&mut self`: the list and every descriptor are ours;
        // `pfn` is in bounds (checked).
        unsafe {
            if tail {
                list_add_tail_raw(map, list, pfn);
            } else {
                list_add_head_raw(map, list, pfn);
            }
        }
    }
}

// ----------------------------------------------------------------------
// The per-CPU lists: doubly linked through `Page::prev/next`, reached
// through raw pointers (the exclusive side uses the same functions).
//
// Two links are left stale because nothing reads them: the first block's
// `prev` (a pop from the head would otherwise write the next block's
// descriptor to clear it) and the list's `tail` once it is empty. A list
// is empty when `head` is NIL; `check_invariants` checks every other link.
// ----------------------------------------------------------------------

/// Unlinks the first block of a non-empty list, and leaves its links to
/// the caller (who writes them).
///
/// # Safety
/// The list and its blocks' descriptors are the caller's alone; `map` is
/// the live `mem_map`.
#[inline(always)]
unsafe fn list_pop_head_raw(map: *mut Page, list: &mut FreeList) -> u32 {
    let pfn = list.head;
    // SAFETY: the caller's list: its members' links are ours. The new
    // first block's `prev` goes stale (see above).
    list.head = unsafe { (*map.add(pfn as usize)).next };
    pfn
}

/// Unlinks the last block of a non-empty list.
///
/// # Safety
/// As for [`list_pop_head_raw`].
#[inline(always)]
unsafe fn list_pop_tail_raw(map: *mut Page, list: &mut FreeList) -> u32 {
    let pfn = list.tail;
    if pfn == list.head {
        list.head = NIL; // the only block; `tail` goes stale
        return pfn;
    }
    // SAFETY: the caller's list; the last block is not the first, so its
    // `prev` is live.
    unsafe {
        let prev = (*map.add(pfn as usize)).prev;
        list.tail = prev;
        (*map.add(prev as usize)).next = NIL;
    }
    pfn
}

/// Links `pfn` at the head of a list.
///
/// # Safety
/// The list, its blocks and `pfn`'s descriptor are the caller's alone.
#[inline(always)]
unsafe fn list_add_head_raw(map: *mut Page, list: &mut FreeList, pfn: u32) {
    let next = list.head;
    // SAFETY: the caller's list and block. Its `prev` is not kept while
    // it is first (see above).
    unsafe {
        let p = map.add(pfn as usize);
        (*p).next = next;
        if next == NIL {
            list.tail = pfn;
        } else {
            (*map.add(next as usize)).prev = pfn;
        }
    }
    list.head = pfn;
}

/// Links `pfn` at the tail of a list.
///
/// # Safety
/// As for [`list_add_head_raw`].
#[inline(always)]
unsafe fn list_add_tail_raw(map: *mut Page, list: &mut FreeList, pfn: u32) {
    // SAFETY: the caller's list and block.
    unsafe {
        let p = map.add(pfn as usize);
        (*p).next = NIL;
        if list.head == NIL {
            (*p).prev = NIL;
            list.head = pfn;
        } else {
            let prev = list.tail;
            (*p).prev = prev;
            (*map.add(prev as usize)).next = pfn;
        }
    }
    list.tail = pfn;
}
