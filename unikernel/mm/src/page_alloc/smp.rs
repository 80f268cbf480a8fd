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
mod tests;

use core::sync::atomic::Ordering::Relaxed;

use super::pcp::{PerCpuPages, nr_pcp_free, order_to_pindex, pcp_allowed_order};
use super::zone_lock::{ZoneFree, flags_of, flags_update, pageblock_mt_bits};
use super::{AllocFlags, PageAlloc};
use crate::gfp::GfpFlags;
use crate::page::{NIL, OwnerTag, Page, PageFlags};
use crate::types::{Order, Pfn};
use crate::vmstat::VmEvent;
use crate::zone::{FreeList, MIGRATE_PCPTYPES, MigrateType, NR_ZONES};

/// Orders the fast paths serve (0..=`PAGE_ALLOC_COSTLY_ORDER`).
const PCP_ORDERS: usize = super::pcp::PAGE_ALLOC_COSTLY_ORDER + 1;

/// What one CPU's fast paths counted since the last fold (cf.
/// `vm_stat_diff` / the per-CPU `vm_event_states`): `pgalloc_<zone>`,
/// `pgfree`, and the blocks for [`crate::vmstat::AllocCounters`].
/// [`PageAlloc::fold_vm_diffs`] adds them to the global counters under
/// the exclusive lock, which every reader of the counters holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmDiff {
    /// Pages handed out per zone.
    pub pgalloc: [u64; NR_ZONES],
    /// Pages freed.
    pub pgfree: u64,
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
        pgalloc: [0; NR_ZONES],
        pgfree: 0,
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

/// Bits of a gfp mask that decide the fast path's zone, watermark and
/// list: the zone modifiers (`GFP_ZONEMASK`) and `__GFP_RECLAIMABLE`
/// (with `__GFP_MOVABLE`, the migrate type).
pub(crate) const FAST_GFP_BITS: u32 = GfpFlags::ZONEMASK
    .union(GfpFlags::RECLAIMABLE)
    .bits();

/// [`FastPaths::alloc`] rows: one per value of the [`FAST_GFP_BITS`].
const FAST_ALLOC_ROWS: usize = FAST_GFP_BITS as usize + 1;
const _: () = assert!(FAST_GFP_BITS == 0x1f);

/// One row of [`FastPaths::alloc`]: where an order ≤ 3 request with these
/// zone and mobility bits is served when it can be served at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FastAlloc {
    /// The zone's LOW watermark, plus its `lowmem_reserve` against the
    /// request's highest zone, plus its HighAtomic reserve (which an
    /// ALLOC_WMARK_LOW request may not use): free pages must exceed this
    /// (and the order's `2^order - 1`, and the CMA pages for a request
    /// that may not use them) — `__zone_watermark_ok()`'s rule.
    pub mark: u64,
    /// The first populated zone of the zonelist (`gfp_zone()` and down),
    /// or [`NR_ZONES`]: no fast path for these bits (a bad zone
    /// combination, no populated zone, the per-CPU lists off).
    pub zi: u8,
    /// The request's migrate type (`gfp_migratetype()`), < 3.
    pub mt: u8,
    /// Movable: free CMA pages count (ALLOC_CMA).
    pub cma: bool,
}

impl FastAlloc {
    /// No fast path.
    pub const NONE: FastAlloc = FastAlloc {
        mark: 0,
        zi: NR_ZONES as u8,
        mt: 0,
        cma: false,
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
    /// The kernel heap's reserve `[start, start + len)` (len 0: none):
    /// its blocks go back to the reserve, and its pool frames (owner
    /// `reserve`) are refused, both on the general path.
    pub reserve_start: u64,
    /// See `reserve_start`.
    pub reserve_len: u64,
}

impl FastPaths {
    /// Every call takes the general path.
    pub const NONE: FastPaths = FastPaths {
        alloc: [FastAlloc::NONE; FAST_ALLOC_ROWS],
        free_limit: 0,
        reserve_start: 0,
        reserve_len: 0,
    };
}

/// `mt` bits of a pageblock (its first frame's `PB_MIGRATE` field) → the
/// per-CPU list type a freed block waits on: its own for the three PCP
/// types, Movable for HighAtomic and CMA (and 6–7, which read as
/// Movable); [`FREE_MT_SLOW`] for Isolate (the general path frees it
/// straight to the buddy lists). Four bits a type.
const FREE_MT_TABLE: u32 = {
    let mut t = 0u32;
    let mut mt = 0;
    while mt < 8 {
        let v = if mt == MigrateType::Isolate as u32 {
            FREE_MT_SLOW
        } else if mt < MIGRATE_PCPTYPES as u32 {
            mt
        } else {
            MigrateType::Movable as u32
        };
        t |= v << (4 * mt);
        mt += 1;
    }
    t
};
const FREE_MT_SLOW: u32 = 0xf;

/// The per-CPU list type for a freed block in a pageblock of type bits
/// `mt` (see [`FREE_MT_TABLE`]).
#[inline(always)]
const fn free_pcp_mt(mt: usize) -> u32 {
    (FREE_MT_TABLE >> (4 * (mt & 7))) & 0xf
}

impl PageAlloc<'_> {
    /// Recomputes [`FastPaths`] from its inputs; every exclusive-side
    /// change of one calls it (see [`FastPaths`] for the list).
    pub(crate) fn refresh_fast_paths(&mut self) {
        self.fast = self.compute_fast_paths();
    }

    /// [`FastPaths`] as the inputs say now.
    pub(crate) fn compute_fast_paths(&self) -> FastPaths {
        let mut fast = FastPaths::NONE;
        for (bits, row) in fast.alloc.iter_mut().enumerate() {
            let gfp = GfpFlags::from_bits_truncate(bits as u32);
            if !self.pcp_on || gfp.is_zone_bad() {
                continue;
            }
            let highest = gfp.gfp_zone().index();
            // The zonelist's first populated zone (cf. the first zoneref
            // get_page_from_freelist() does not skip).
            let Some(zi) = (0..=highest)
                .rev()
                .find(|&zi| self.zones[zi].is_populated())
            else {
                continue;
            };
            let zone = &self.zones[zi];
            if zone.pcp[0].high == 0 {
                continue;
            }
            let mt = gfp.migratetype();
            *row = FastAlloc {
                mark: zone.watermarks.low
                    + zone.lowmem_reserve[highest]
                    + zone.nr_reserved_highatomic,
                zi: zi as u8,
                mt: mt as u8,
                cma: mt == MigrateType::Movable,
            };
        }
        let lists_on = self.pcp_on
            && self
                .zones
                .iter()
                .all(|z| !z.is_populated() || z.pcp.iter().all(|p| p.high > 0));
        fast.free_limit = if lists_on {
            self.deferred
                .first_uninitialised()
                .unwrap_or(u64::MAX)
                .min(self.layout.max_pfn.0)
        } else {
            0
        };
        if let Some(r) = &self.reserve {
            let s = r.stats();
            fast.reserve_start = s.start_pfn.0;
            fast.reserve_len = r.nr_pages();
        }
        fast
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
            for (zi, n) in d.pgalloc.iter().enumerate() {
                self.vm_events.count_zid(VmEvent::PgAllocDma, zi, *n);
            }
            self.vm_events.count(VmEvent::PgFree, d.pgfree);
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
        // SAFETY: a field only the exclusive side writes.
        if !pcp_allowed_order(o) || unsafe { (*pa).fail_page_alloc_armed } || gfp.is_zone_bad() {
            return None;
        }
        let highest = gfp.gfp_zone().index();
        // The zonelist's first populated zone (cf. the first zoneref
        // get_page_from_freelist() does not skip).
        // SAFETY: `managed_pages` is written by the exclusive side only.
        let zi = (0..=highest)
            .rev()
            .find(|&zi| unsafe { (*pa).zones[zi].managed_pages } > 0)?;
        // SAFETY: a raw place; fields read as the table in `zone_lock` says.
        let zone = unsafe { &raw mut (*pa).zones[zi] };
        // cf. zone_watermark_fast() for ALLOC_WMARK_LOW without
        // ALLOC_HARDER: HighAtomic pages are not usable, CMA pages only by
        // movable requests; a high-order request needs a block on a list
        // it may take from (cf. __zone_watermark_ok()).
        let mt = gfp.migratetype();
        let cma = mt == MigrateType::Movable;
        // SAFETY: see above.
        let (free, mark, mut unusable) = unsafe {
            let mut unusable = (*zone).nr_reserved_highatomic + (1u64 << o) - 1;
            if !cma {
                unusable += ld64(&raw mut (*zone).nr_free_cma);
            }
            (
                ld64(&raw mut (*zone).free_pages),
                (*zone).watermarks.low + (*zone).lowmem_reserve[highest],
                unusable,
            )
        };
        unusable = unusable.min(free);
        if free - unusable <= mark {
            return None;
        }
        if o > 0 {
            // SAFETY: list heads and counts, loaded atomically.
            let found = (o..crate::types::NR_ORDERS).any(|a| unsafe {
                let area = &raw mut (*zone).free_area[a];
                let nonempty =
                    move |m: MigrateType| ld32(&raw mut (*area).free_list[m.index()].head) != NIL;
                ld64(&raw mut (*area).nr_free) > 0
                    && (MigrateType::ALL[..MIGRATE_PCPTYPES]
                        .iter()
                        .any(|&m| nonempty(m))
                        || (cma && nonempty(MigrateType::Cma)))
            });
            if !found {
                return None;
            }
        }
        Some((zi, order_to_pindex(mt, o)))
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
        if pcp.lists[pindex].head == NIL {
            // cf. rmqueue_pcplist() → __rmqueue_pcplist() → rmqueue_bulk().
            if pcp.high == 0 {
                return None;
            }
            let mut batch = pcp.batch;
            if batch > 1 {
                batch = (batch >> o).max(2);
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
                return None;
            }
            // SAFETY: our slot.
            unsafe { (*pa).vm_diff[cpu].slot_mut() }.zone_locked[0] += 1;
        }
        // SAFETY: our slot and list (the refill's borrow has ended).
        let pfn = unsafe { Self::pcp_pop_prep(pa, cpu, zi, pindex, gfp, order, owner) };
        // SAFETY: our slot.
        let diff = unsafe { (*pa).vm_diff[cpu].slot_mut() };
        diff.pgalloc[zi] += 1 << o;
        diff.alloc[zi][o] += 1;
        Some(Pfn(u64::from(pfn)))
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
        if self.zones[zi].pcp[cpu].lists[pindex].head == NIL {
            return None;
        }
        // SAFETY: `&mut self`: the exclusive side owns every slot and list.
        let pfn = unsafe { Self::pcp_pop_prep(self, cpu, zi, pindex, gfp, order, owner) };
        // cf. rmqueue(): __count_zid_vm_events(PGALLOC, ...).
        self.vm_events
            .count_zid(VmEvent::PgAllocDma, zi, order.nr_pages());
        self.alloc_counters.count_alloc(zi, order.index());
        Some(Pfn(u64::from(pfn)))
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
        let o = order.index();
        // SAFETY: the caller's contract: the slot, the list and its blocks'
        // descriptors are ours; flags are written atomically.
        unsafe {
            let map = (*pa).mem_map.base();
            let pcp: &mut PerCpuPages = (*pa).zones[zi].pcp[cpu].slot_mut();
            pcp.free_factor >>= 1;
            let pfn = list_pop_head_raw(map, &mut pcp.lists[pindex]);
            pcp.count -= 1 << o;
            let i = pfn as usize;
            let p = map.add(i);
            flags_update(
                p,
                PageFlags::HEAD,
                PageFlags::BUDDY
                    .union(PageFlags::PCP)
                    .union(PageFlags::MOVABLE),
            );
            (*p).order = order.get();
            (*p).refcount = 1;
            (*p).owner = owner;
            (*p).prev = NIL;
            (*p).next = NIL;
            // cf. prep_compound_page(), for a `__GFP_COMP` block.
            if o > 0 && gfp.contains(GfpFlags::COMP) {
                flags_update(p, PageFlags::COMPOUND, PageFlags::EMPTY);
                for t in i + 1..i + (1 << o) {
                    flags_update(map.add(t), PageFlags::TAIL, PageFlags::EMPTY);
                    (*map.add(t)).owner = owner;
                }
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
        // SAFETY: `layout`, `deferred`, `reserve` and `mem_map` are written
        // by the exclusive side only, which is not running.
        let (max_pfn, map, slow) = unsafe {
            (
                (*pa).layout.max_pfn,
                (*pa).mem_map.base(),
                (*pa).deferred.is_uninitialised(pfn.0)
                    || (*pa).reserve.as_ref().is_some_and(|r| r.contains(pfn)),
            )
        };
        if !pcp_allowed_order(o) || pfn >= max_pfn || slow {
            return FreeFast::Slow;
        }
        let i = pfn.index();
        // SAFETY: in bounds (checked against max_pfn); flags atomically.
        let p = unsafe { map.add(i) };
        let flags = PageFlags(unsafe { flags_of(p) }.load(Relaxed));
        if !flags.contains(PageFlags::HEAD) || flags.intersects(FREE_SLOW_FLAGS) {
            return FreeFast::Slow;
        }
        // SAFETY: the caller owns the block, so its head descriptor.
        let (head_order, owner, zi) = unsafe { ((*p).order, (*p).owner, usize::from((*p).zone)) };
        if usize::from(head_order) != o || owner == OwnerTag::RESERVE || zi >= NR_ZONES {
            return FreeFast::Slow;
        }
        // SAFETY: the caller holds `cpu`'s flag.
        let pcp: &mut PerCpuPages = unsafe { (*pa).zones[zi].pcp[cpu].slot_mut() };
        // SAFETY: `pfn` < max_pfn.
        let mt = unsafe { pageblock_mt_bits(map, pfn.0) };
        if pcp.high == 0 || mt == MigrateType::Isolate as usize {
            return FreeFast::Slow;
        }
        if SHARED {
            // SAFETY: our slot.
            let diff = unsafe { (*pa).vm_diff[cpu].slot_mut() };
            diff.pgfree += 1 << o;
            diff.free[zi][o] += 1;
        } else {
            // cf. __free_pages_ok() / free_unref_page_commit(): PGFREE.
            // SAFETY: the exclusive side owns the counters.
            unsafe {
                (*pa).vm_events.count(VmEvent::PgFree, 1 << o);
                (*pa).alloc_counters.count_free(zi, o);
            }
        }
        // cf. free_pages_prepare(): the descriptors are clean again, tails
        // included for a compound block; cf. free_unref_page_commit(): on
        // the list, marked PCP.
        // SAFETY: the caller's block; flags atomically.
        unsafe {
            flags_update(
                p,
                PageFlags::PCP,
                PageFlags::HEAD
                    .union(PageFlags::COMPOUND)
                    .union(PageFlags::SLAB)
                    .union(PageFlags::MOVABLE),
            );
            (*p).refcount = 0;
            (*p).owner = OwnerTag::NONE;
            if flags.contains(PageFlags::COMPOUND) {
                for t in i + 1..i + (1 << o) {
                    flags_update(
                        map.add(t),
                        PageFlags::EMPTY,
                        PageFlags::TAIL.union(PageFlags::SLAB),
                    );
                    (*map.add(t)).owner = OwnerTag::NONE;
                }
            }
        }
        // HighAtomic and CMA blocks wait on the Movable lists (as in
        // `free_unref_page`); 6 and 7 read as Movable too.
        let pcp_mt = if mt >= MIGRATE_PCPTYPES {
            MigrateType::Movable as usize
        } else {
            mt
        };
        let pindex = MIGRATE_PCPTYPES * o + pcp_mt; // cf. order_to_pindex()
        // SAFETY: our list; `pfn` is the caller's block, now on it.
        unsafe { list_add_head_raw(map, &mut pcp.lists[pindex], pfn.0 as u32) };
        pcp.count += 1 << o;
        let free_high = pcp.free_factor > 0 && o > 0;
        let high = if free_high { 0 } else { pcp.high };
        if pcp.count >= high {
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
            let zf = ZoneFree::new(pa, zi);
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
            let zf = ZoneFree::new(pa, zi);
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
                    zf.free_one_page(u64::from(pfn), order, mt, false);
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
// ----------------------------------------------------------------------

/// Unlinks the first block of a non-empty list.
///
/// # Safety
/// The list and its blocks' descriptors are the caller's alone; `map` is
/// the live `mem_map`.
#[inline(always)]
unsafe fn list_pop_head_raw(map: *mut Page, list: &mut FreeList) -> u32 {
    let pfn = list.head;
    // SAFETY: the caller's list: its members' links are ours.
    unsafe {
        let p = map.add(pfn as usize);
        let next = (*p).next;
        (*p).next = NIL;
        list.head = next;
        if next == NIL {
            list.tail = NIL;
        } else {
            (*map.add(next as usize)).prev = NIL;
        }
    }
    pfn
}

/// Unlinks the last block of a non-empty list.
///
/// # Safety
/// As for [`list_pop_head_raw`].
#[inline(always)]
unsafe fn list_pop_tail_raw(map: *mut Page, list: &mut FreeList) -> u32 {
    let pfn = list.tail;
    // SAFETY: the caller's list.
    unsafe {
        let p = map.add(pfn as usize);
        let prev = (*p).prev;
        (*p).prev = NIL;
        list.tail = prev;
        if prev == NIL {
            list.head = NIL;
        } else {
            (*map.add(prev as usize)).next = NIL;
        }
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
    // SAFETY: the caller's list and block.
    unsafe {
        let p = map.add(pfn as usize);
        (*p).prev = NIL;
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
    let prev = list.tail;
    // SAFETY: the caller's list and block.
    unsafe {
        let p = map.add(pfn as usize);
        (*p).prev = prev;
        (*p).next = NIL;
        if prev == NIL {
            list.head = pfn;
        } else {
            (*map.add(prev as usize)).next = pfn;
        }
    }
    list.tail = pfn;
}
